"""Helpers for the relay tests: real installation keys, MLS messages, a WebSocket client.

Test modules that open WebSockets import the autouse fixture :func:`fresh_channel_layer`.
(This is a module rather than ``conftest.py`` because tests/client has the project's one
``conftest`` module name for mypy.)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from veilpost.codec import encode
from veilpost.crypto import get_backend, get_cipher_suite
from veilpost.mls.builders import new_key_package
from veilpost.mls.commit import Commit
from veilpost.mls.credential import Credential
from veilpost.mls.framing import (
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
)
from veilpost.mls.welcome import Welcome
from webapp.asgi import application
from webapp.relay.identifiers import auth_message, installation_id

HOST = "testserver"  # in ALLOWED_HOSTS during tests; the audience clients sign
SUITE = get_cipher_suite(0x0001)
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """A new in-memory channel layer per test: its queues belong to one test's event loop."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def next_id() -> str:
    return f"msg-{next(_ids)}"


class Device:
    """An installation's Ed25519 key, real, from ``veilpost.crypto``."""

    def __init__(self) -> None:
        self.private_key, self.public_key = SUITE.signature_key_pair()

    @property
    def installation_id(self) -> str:
        return installation_id(self.public_key)

    @property
    def welcome_topic(self) -> str:
        return f"welcome:{self.installation_id}"

    def sign(self, message: bytes) -> bytes:
        return get_backend().ed25519_sign(self.private_key, message)

    def answer(self, nonce: bytes, audience: str = HOST) -> bytes:
        return self.sign(auth_message(audience, nonce))

    def auth_frame(self, challenge: dict[str, Any], **extra: Any) -> dict[str, Any]:
        nonce = unb64(challenge["nonce"])
        return {
            "type": "auth",
            "nonce": challenge["nonce"],
            "public_key": b64(self.public_key),
            "signature": b64(self.answer(nonce, challenge["audience"])),
            **extra,
        }

    def key_package(self) -> bytes:
        key_package, _, _ = new_key_package(
            SUITE,
            Credential.basic(self.installation_id.encode()),
            self.private_key,
            now=int(time.time()),
        )
        return encode(MLSMessage(key_package))


# --- MLS messages (the relay reads only their cleartext headers) -----------------------------


def private_message(
    group_id: bytes,
    epoch: int = 0,
    content_type: ContentType = ContentType.APPLICATION,
    ciphertext: bytes = b"ciphertext",
) -> bytes:
    return encode(
        MLSMessage(PrivateMessage(group_id, epoch, content_type, b"", b"sender-data", ciphertext))
    )


def commit(group_id: bytes, epoch: int, ciphertext: bytes = b"commit") -> bytes:
    """A commit as a PrivateMessage (content type in the clear, the rest encrypted)."""
    return private_message(group_id, epoch, ContentType.COMMIT, ciphertext)


def public_commit(group_id: bytes, epoch: int) -> bytes:
    """A commit as a PublicMessage (signed, not encrypted)."""
    content = FramedContent(group_id, epoch, Sender.member(0), b"", Commit())
    auth = FramedContentAuthData(b"signature", confirmation_tag=b"confirmation-tag")
    return encode(MLSMessage(PublicMessage(content, auth, membership_tag=b"membership-tag")))


def welcome(secret: bytes = b"group-info") -> bytes:
    return encode(MLSMessage(Welcome(0x0001, [], secret)))


# --- A WebSocket client against the real ASGI application ------------------------------------


class RelayClient:
    """A client of /ws/v1 through Channels' WebsocketCommunicator."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.challenge: dict[str, Any] = {}
        self.installation_id: str | None = None

    @classmethod
    async def open(cls, host: str = HOST) -> RelayClient:
        """Connect and read the challenge, without authenticating."""
        communicator = WebsocketCommunicator(
            application, "/ws/v1", headers=[(b"host", host.encode())]
        )
        connected, _ = await communicator.connect()
        assert connected
        client = cls(communicator)
        client.challenge = await client.receive("challenge")
        return client

    @classmethod
    async def connect(cls, device: Device | None = None) -> RelayClient:
        """Connect and authenticate as ``device`` (a new one by default)."""
        client = await cls.open()
        device = device or Device()
        await client.send(device.auth_frame(client.challenge))
        authenticated = await client.receive("authenticated")
        client.installation_id = authenticated["installation_id"]
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self, expected_type: str | None = None, timeout: float = 2) -> dict[str, Any]:
        frame: dict[str, Any] = await self.communicator.receive_json_from(timeout)
        if expected_type is not None:
            assert frame["type"] == expected_type, frame
        return frame

    async def error(self, code: str) -> dict[str, Any]:
        frame = await self.receive("error")
        assert frame["code"] == code, frame
        assert isinstance(frame["message"], str) and frame["message"]
        return frame

    async def nothing(self, timeout: float = 0.1) -> None:
        assert await self.communicator.receive_nothing(timeout), "expected no frame"

    async def closed(self, timeout: float = 2) -> int:
        """Wait for the relay to close the socket; return the close code."""
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "websocket.close", message
        code = int(message.get("code", 1000))
        # What the server does next, as Daphne would: report the disconnect, let it finish.
        await self.communicator.send_input({"type": "websocket.disconnect", "code": code})
        await self.communicator.wait(timeout)
        return code

    async def publish(self, topic: str, payload: bytes, id: str | None = None) -> dict[str, Any]:
        await self.send(
            {"type": "publish", "topic": topic, "id": id or next_id(), "payload": b64(payload)}
        )
        return await self.receive()

    async def subscribe(self, topics: dict[str, int]) -> dict[str, Any]:
        await self.send({"type": "subscribe", "topics": topics})
        return await self.receive("subscribed")

    async def envelopes(self, count: int, timeout: float = 2) -> list[dict[str, Any]]:
        return [await self.receive("envelope", timeout) for _ in range(count)]

    async def close(self) -> None:
        await self.communicator.disconnect()


async def gather_envelopes(client: RelayClient, count: int, timeout: float = 5) -> list[int]:
    """Read ``count`` envelope frames (acknowledging them) and return their sequences."""
    sequences: list[int] = []
    async with asyncio.timeout(timeout):
        while len(sequences) < count:
            frame = await client.receive(timeout=timeout)
            assert frame["type"] == "envelope", frame
            sequences.append(frame["sequence"])
            await client.send({"type": "received", "topics": {frame["topic"]: frame["sequence"]}})
    return sequences
