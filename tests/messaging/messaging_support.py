"""Helpers of the messaging tests: a peer is a client with its store, connection and run loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from veilpost.client.client import Client, ClientEvent, Message
from veilpost.client.identity import InstallationKey
from veilpost.client.storage import Store, new_key
from veilpost.transport import RelayConnection


@dataclass
class Peer:
    name: str
    key: InstallationKey
    store_path: Path
    store_key: bytes
    client: Client
    connection: RelayConnection
    task: asyncio.Task[None]
    events: list[ClientEvent] = field(default_factory=list)

    @property
    def inbox_id(self) -> str:
        return self.client.inbox_id

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.connection.close()
        self.client.store.close()

    async def wait_for(
        self, predicate: Callable[[Peer], bool], timeout: float = 20.0, what: str = ""
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what or predicate}")
            await asyncio.sleep(0.05)

    def texts(self, conversation_id: str) -> list[str]:
        return [
            m.text
            for m in self.client.messages(conversation_id, limit=1000, newest_first=False)
            if m.content_type.startswith("veilpost.org/text")
        ]

    def messages(self, conversation_id: str) -> list[Message]:
        return self.client.messages(conversation_id, limit=1000, newest_first=False)


async def open_peer(
    url: str,
    name: str,
    directory: Path,
    *,
    key: InstallationKey | None = None,
    store_key: bytes | None = None,
    store_path: Path | None = None,
    expect_inbox: str | None = None,
    start: bool = True,
) -> Peer:
    """Connect a client (a fresh key unless ``key``) with its store in ``directory``."""
    key = key or InstallationKey.generate()
    store_key = store_key or new_key()
    path = store_path or directory / f"{name}-{key.installation_id[:8]}.sqlite3"
    store = Store.open(str(path), store_key)
    if expect_inbox is not None:
        Client.expect_inbox(store, expect_inbox)
    connection = await RelayConnection.open(url, key)
    client = Client(key, connection.inbox_id, store, connection)
    if start:
        await client.start()
    return Peer(name, key, path, store_key, client, connection, asyncio.create_task(client.run()))
