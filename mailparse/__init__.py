"""Reading a stored message: headers, MIME tree, charset and transfer decoding,
addresses, and the text SEARCH and the store's indexes match against.

Below both the store (full-text and header indexes) and imapd (FETCH, SEARCH,
SORT); imports no other mailha package. Nothing here raises on a broken
message: every parser falls back to a readable interpretation (text/plain or
application/octet-stream), as RFC 3501 leaves broken MIME to the server.
"""
