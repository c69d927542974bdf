"""mailha import: copy mail from mbox files, Maildir trees and IMAP servers into the store."""
