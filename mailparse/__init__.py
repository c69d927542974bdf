"""Reading a stored message: headers, MIME tree, charset and transfer decoding,
addresses, the text SEARCH and the store's indexes match against, and what
the store computes once per message at append: SORT/THREAD keys (with the
RFC 5051 collation and the SORT criteria they serve) and the PREVIEW text.

Below both the store (full-text and header indexes) and imapd (FETCH, SEARCH,
SORT); imports no other mailha package. Nothing here raises on a broken
message: every parser falls back to a readable interpretation (text/plain or
application/octet-stream), as RFC 3501 leaves broken MIME to the server.
"""
