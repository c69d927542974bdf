"""mailha haagent."""
