"""Backup, restore and export of the mail store (`mailha backup ...`, `mailha export ...`)."""
