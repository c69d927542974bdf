"""mailha lmtpd."""
