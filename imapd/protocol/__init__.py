"""Sans-IO IMAP protocol core: bytes in, typed commands out; typed values, bytes out.

Never imports trio, grpc or the store, and never logs.

- parser.py: the incremental CommandParser (framing, literals, limits, APPEND streaming; events in events.py)
- command_grammar.py, fetch_grammar.py, search_grammar.py, reader.py: the grammar behind it
- commands.py: one frozen dataclass per command; fetch_spec.py / search_spec.py: FETCH items and SEARCH keys
- values.py: typed IMAP values (atoms, strings, literals, lists) and their exact wire bytes; the
  session writes its responses with them and the byte helpers of imapd/message/wire.py
- states.py: connection states, their transition table and the per-state command table
- sequence.py (sequence sets), mutf7.py (mailbox names), deflate.py (COMPRESS=DEFLATE codec)
- errors.py: the core's exception root (`ProtocolError`)
"""
