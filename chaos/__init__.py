"""mailha chaos."""
