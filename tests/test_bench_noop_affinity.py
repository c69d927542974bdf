"""bench/noop_affinity.py: the CPU sets of each condition, and finding a server's processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bench import noop_affinity


def test_same_shares_one_cpu_split_uses_two_free_allows_all() -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    for round_index in (0, 1):
        client, server = noop_affinity._cpu_sets("same", round_index)
        assert client == server and len(client) == 1
        client, server = noop_affinity._cpu_sets("split", round_index)
        assert len(client) == len(server) == 1 and not client & server
    # The pinned CPU alternates between rounds, so neither CPU's other load decides alone.
    assert noop_affinity._cpu_sets("same", 0) != noop_affinity._cpu_sets("same", 1)
    client, server = noop_affinity._cpu_sets("free", 0)
    assert client == server == frozenset(range(os.cpu_count() or 1))


def test_holders_names_the_process_holding_the_server_side_of_a_connection() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            with served:
                peer_port = client.getsockname()[1]
                assert noop_affinity._holders(port, peer_port) == {os.getpid()}
                assert noop_affinity._holders(port, peer_port + 1 if peer_port < 65535 else 1) == set()


def test_tree_holds_the_root_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = noop_affinity._tree([os.getpid()])
        assert os.getpid() in tree and child.pid in tree
        assert os.getppid() not in tree  # above the root: not part of it
    finally:
        child.kill()
        child.wait()
