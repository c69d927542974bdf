"""imapd beside the store answers a repeated LOGIN from its local read (store/reader.py
`verified_login`): only a pair the store accepted, bound to the stored hash it was accepted
with, for an account that is still enabled. Everything else must reach the store, so a
changed password, a disabled or deleted account and a wrong password are refused at once."""

from __future__ import annotations

import pathlib

import trio

from imapd.errors import StoreError, StoreErrorKind
from imapd.store_grpc import GrpcStore
from mailha_api import settings_pb2, store_pb2
from store.reader import LocalReader
from tests.store_fixtures import StoreServer


async def _login(store: GrpcStore, name: str, password: str) -> str | StoreErrorKind:
    try:
        return await store.authenticate(name, password)
    except StoreError as exc:
        return exc.kind


def test_a_repeated_login_is_answered_locally_and_every_change_of_the_account_reaches_the_store(
    tmp_path: pathlib.Path,
) -> None:
    server = StoreServer(tmp_path / "data", tmp_path / "s.sock").start()
    try:
        with server.client() as client:
            epoch = client.epoch()
            client.create_user("ann", "ann-secret")
            client.add_address("ann@example.org", "ann")
            client.create_user("bob", "bob-secret")

        async def main() -> None:
            reader = LocalReader(server.data_dir)
            store = GrpcStore(server.address, epoch, local=reader)
            try:
                assert await _login(store, "ann", "ann-secret") == "ann"  # the store verified: remembered
                assert await _login(store, "ann@example.org", "ann-secret") == "ann"
                assert len(reader.logins) == 2
                assert await _login(store, "ann", "wrong") == StoreErrorKind.UNAUTHENTICATED
                assert await _login(store, "ann", "") == StoreErrorKind.UNAUTHENTICATED
                assert await _login(store, "nobody", "ann-secret") == StoreErrorKind.UNAUTHENTICATED
                assert len(reader.logins) == 2  # failures are never remembered

                # With the store gone, only the remembered pairs still log in: they are local.
                server.stop()
                assert await _login(store, "ann", "ann-secret") == "ann"
                assert await _login(store, "ann@example.org", "ann-secret") == "ann"
                assert await _login(store, "ann", "wrong") == StoreErrorKind.UNAVAILABLE
                assert await _login(store, "bob", "bob-secret") == StoreErrorKind.UNAVAILABLE
                server.start()  # --fence-next: a new epoch for the writes below

                with server.client() as client:
                    now = client.epoch()
                    client.stub.SetPassword(store_pb2.SetPasswordRequest(epoch=now, name="ann", password="ann-new"))
                assert await _login(store, "ann", "ann-secret") == StoreErrorKind.UNAUTHENTICATED
                assert await _login(store, "ann", "ann-new") == "ann"
                assert await _login(store, "ann", "ann-new") == "ann"

                with server.client() as client:
                    settings = client.settings.GetSettings(settings_pb2.GetSettingsRequest(user="ann"))
                    settings.disabled = True
                    client.settings.PutSettings(settings_pb2.PutSettingsRequest(settings=settings))
                assert await _login(store, "ann", "ann-new") == StoreErrorKind.UNAUTHENTICATED

                assert await _login(store, "bob", "bob-secret") == "bob"
                with server.client() as client:
                    client.stub.DeleteUser(store_pb2.DeleteUserRequest(epoch=now, name="bob"))
                assert await _login(store, "bob", "bob-secret") == StoreErrorKind.UNAUTHENTICATED
            finally:
                await store.aclose()

        trio.run(main)
    finally:
        server.stop()
