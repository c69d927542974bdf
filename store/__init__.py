"""mailha store."""
