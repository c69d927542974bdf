"""mailha imapd."""
