"""Regression tests for issue 9: what a hostile client or mailbox owner tried."""
