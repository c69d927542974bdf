"""Sans-IO IMAP protocol core: bytes in, typed commands out; typed responses, bytes out.

Never imports trio, grpc or the store, and never logs.
"""
