"""The transport's liveness against a real relay: the keepalive ping of connections whose socket
cannot ping by itself (a browser's WebSocket), a relay that goes silent, and the network-event
hooks ``drop`` / ``reconnect_now`` a browser calls on ``offline`` / ``online``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from veilpost.client.identity import InstallationKey
from veilpost.protocol import welcome_topic
from veilpost.transport import ConnectionState, RelayConnection

from .conftest import Relay

pytestmark = pytest.mark.asyncio


class _Socket:
    """A real socket whose incoming frames can be silenced (a half-open connection: the
    peer is gone but nothing says so), counting the frames sent and received."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.silent = False
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        await self.inner.send(text)

    async def recv(self) -> str:
        while True:
            text = str(await self.inner.recv())
            if not self.silent:
                self.received.append(json.loads(text))
                return text

    async def close(self) -> None:
        await self.inner.close()


class _Watched(RelayConnection):
    """A connection whose sockets the test can see and silence, with a state log."""

    sockets: list[_Socket]
    states: list[ConnectionState]

    async def _open_socket(self) -> Any:
        socket = _Socket(await super()._open_socket())
        self.sockets.append(socket)
        return socket


async def _open(relay: Relay, **attributes: Any) -> _Watched:
    cls: type[_Watched] = type("Connection", (_Watched,), attributes)
    states: list[ConnectionState] = []
    cls.sockets = []
    cls.states = states
    return await cls.open(relay.url, InstallationKey.generate(), on_state=states.append)


async def _until(condition: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_quiet_connection_is_pinged_and_stays_up(relay: Relay) -> None:
    connection = await _open(relay, keepalive=0.2)
    try:
        socket = connection.sockets[0]
        await _until(lambda: sum(f.get("type") == "pong" for f in socket.received) >= 3)
        assert sum(f.get("type") == "ping" for f in socket.sent) >= 3
        assert len(connection.sockets) == 1 and connection.connected
        assert [s.state for s in connection.states] == ["connecting", "connected"]
    finally:
        await connection.close()


async def test_without_keepalive_nothing_is_sent_on_a_quiet_connection(relay: Relay) -> None:
    connection = await _open(relay)  # CPython's websockets pings at the protocol level
    try:
        sent_after_start = len(connection.sockets[0].sent)
        await asyncio.sleep(0.6)
        assert len(connection.sockets[0].sent) == sent_after_start
    finally:
        await connection.close()


async def test_a_silent_relay_is_taken_for_dead_and_the_connection_made_again(
    relay: Relay,
) -> None:
    connection = await _open(relay, keepalive=0.2, first_backoff=0.05)
    try:
        connection.sockets[0].silent = True
        await _until(lambda: len(connection.sockets) >= 2 and connection.connected)
        lost = [s for s in connection.states if s.state == "disconnected"]
        assert lost and "did not answer a ping" in (lost[0].error or "")
        # The new socket works: a subscription (a request over the WebSocket) is answered.
        await connection.subscribe({welcome_topic(connection.installation_id): 0})
        assert any(f.get("type") == "subscribed" for f in connection.sockets[-1].received)
    finally:
        await connection.close()


async def test_drop_then_reconnect_now_skips_the_backoff(relay: Relay) -> None:
    # A first wait of a minute: only reconnect_now brings the connection back in time.
    connection = await _open(relay, first_backoff=60.0)
    try:
        await connection.drop()
        await _until(lambda: not connection.connected)
        assert connection.states[-1].state == "disconnected"
        await asyncio.sleep(0.2)
        assert len(connection.sockets) == 1  # still waiting out the backoff
        connection.reconnect_now()
        await _until(lambda: connection.connected and len(connection.sockets) == 2, timeout=10)
        assert connection.states[-1].state == "connected"
    finally:
        await connection.close()
