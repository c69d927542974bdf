"""IMAP message semantics: ENVELOPE/BODYSTRUCTURE, sections, FETCH rendering, SEARCH evaluation, SORT/THREAD.

The MIME reading underneath (headers, MIME tree, decoding) is mailparse/, which the store shares.

Nothing here raises on a broken message: every parser falls back to a
readable interpretation (RFC 3501 leaves broken MIME to the server; we treat
what cannot be parsed as text/plain or application/octet-stream).
"""
