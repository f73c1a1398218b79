"""The client's view of the relay: the port an adapter implements (``docs/protocol.md``).

The client core never opens a socket. It calls a :class:`RelayPort` — implemented over asyncio
WebSockets and HTTP for CPython (:mod:`veilpost.transport`), and over the browser's fetch and
WebSocket in the crypto worker — and receives :class:`Envelope` values from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from veilpost.protocol import b64decode

__all__ = ["ClaimedKeyPackage", "Envelope", "InboxInfo", "RelayPort"]


@dataclass(frozen=True)
class Envelope:
    """One stored message of a topic, as delivered."""

    topic: str
    sequence: int
    id: str
    wire_format: str
    epoch: int | None
    content_type: str | None
    payload: bytes
    created_at: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        return cls(
            topic=data["topic"],
            sequence=int(data["sequence"]),
            id=data["id"],
            wire_format=data["wire_format"],
            epoch=data.get("epoch"),
            content_type=data.get("content_type"),
            payload=b64decode(data["payload"]),
            created_at=data.get("created_at", ""),
        )


@dataclass(frozen=True)
class ClaimedKeyPackage:
    installation_id: str
    key_package: bytes | None
    last_resort: bool


@dataclass(frozen=True)
class InboxInfo:
    inbox_id: str
    installations: tuple[str, ...]
    latest_record_version: int | None
    addresses: tuple[str, ...] = ()


class RelayPort(Protocol):
    """What the client needs from the relay. Every method raises
    :class:`~veilpost.client.errors.RelayError` with the relay's error code when refused."""

    installation_id: str
    inbox_id: str

    async def publish(self, topic: str, publish_id: str, payload: bytes) -> int:
        """Store ``payload`` on ``topic``; return its sequence (also for a duplicate id).
        A commit that lost its epoch raises :class:`~veilpost.client.errors.EpochConflict`."""
        ...

    async def subscribe(self, cursors: dict[str, int]) -> None:
        """Deliver the topics after their cursors (see :meth:`next_envelope`)."""
        ...

    async def next_envelope(self) -> Envelope:
        """The next delivered envelope, waiting for one."""
        ...

    async def received(self, cursors: dict[str, int]) -> None:
        """Acknowledge processed envelopes (flow control)."""
        ...

    async def history(
        self, topic: str, after: int, limit: int = 100
    ) -> tuple[list[Envelope], bool]:
        """Stored envelopes after ``after``, oldest first, and whether more follow."""
        ...

    async def upload_key_packages(self, packages: list[tuple[bytes, bool]]) -> None: ...

    async def key_package_count(self) -> tuple[int, bool]:
        """``(remaining unclaimed, has a last-resort package)``."""
        ...

    async def claim_key_packages(self, inbox_id: str) -> list[ClaimedKeyPackage]: ...

    async def inbox(self, inbox_id: str) -> InboxInfo: ...

    async def identity_record(
        self, inbox_id: str, version: int | None
    ) -> tuple[int, bytes, bytes, bytes]:
        """Version ``version`` (``None``: the latest) of the inbox's record: ``(version,
        record, signature, signer key)``."""
        ...

    async def put_identity_record(
        self, inbox_id: str, version: int, record: bytes, signature: bytes
    ) -> None: ...

    async def add_installation(self, public_key: bytes) -> None: ...

    async def lookup_address(self, address: str) -> tuple[str, bytes, int] | None:
        """The inbox an ``0x`` address is bound to, the wallet's signature and its time, or
        ``None``."""
        ...

    async def bind_address(self, address: str, signature: bytes, issued_at: int) -> None: ...

    async def put_blob(self, data: bytes) -> str: ...

    async def get_blob(self, blob_id: str) -> bytes: ...

    async def conversations(self) -> list[dict[str, Any]]:
        """Every row of ``GET /conversations`` (all pages)."""
        ...

    async def set_read_cursor(self, topic: str, sequence: int) -> None:
        """Move this installation's read cursor on ``topic`` forward to ``sequence`` (``PUT
        /conversations/{topic}/read-cursor``; a lower value leaves it where it is)."""
        ...
