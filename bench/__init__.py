"""mailha bench."""
