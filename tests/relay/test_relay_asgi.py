"""The real ASGI application (webapp.asgi): /ws/v1 routing, its Host and Origin checks, HTTP.

The protocol itself is tested in test_relay_ws.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from relay_support import fresh_channel_layer  # noqa: F401  (autouse fixture)

from webapp.asgi import application

pytestmark = pytest.mark.asyncio


async def connect(headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/v1", headers=[(b"host", b"localhost:8000"), *(headers or [])]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_websocket_reaches_the_relay_consumer() -> None:
    communicator = await connect()

    frame = await communicator.receive_json_from()

    assert frame["type"] == "challenge"
    assert frame["audience"] == "localhost:8000"  # the Host header, which clients sign
    await communicator.disconnect()


@pytest.mark.parametrize("host", [None, b"evil.example", b""])
async def test_handshake_with_a_host_we_do_not_serve_is_refused(host: bytes | None) -> None:
    headers = [] if host is None else [(b"host", host)]
    communicator = WebsocketCommunicator(application, "/ws/v1", headers=headers)

    connected, code = await communicator.connect()

    assert not connected
    assert code == 4400


@pytest.mark.django_db(transaction=True)
async def test_handshake_without_origin_is_accepted() -> None:
    # Agents and the CLI are not browsers and send no Origin header.
    communicator = await connect(headers=[])
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_same_host_browser_origin_is_accepted() -> None:
    communicator = await connect(headers=[(b"origin", b"http://localhost:8000")])
    await communicator.disconnect()


async def test_foreign_browser_origin_is_refused() -> None:
    communicator = WebsocketCommunicator(
        application, "/ws/v1", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_unknown_websocket_path_is_refused() -> None:
    communicator = WebsocketCommunicator(application, "/ws/v2")
    with pytest.raises(ValueError, match="No route found"):
        await communicator.connect()


async def http_get(path: str) -> tuple[int, bytes]:
    """GET ``path`` from the ASGI app (channels' HttpCommunicator fails on a body-less event)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    requests = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never disconnects; Django cancels this wait
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(application(scope, receive, send), timeout=10)
    assert sent[0]["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.django_db(transaction=True)
async def test_http_goes_to_django() -> None:
    status, body = await http_get("/api/v1/health")

    assert status == 200
    assert b'"status": "ok"' in body


@pytest.mark.skipif(not settings.VEILPOST_SERVE_STATIC, reason="VEILPOST_SERVE_STATIC is off")
async def test_static_files_are_served() -> None:
    status, body = await http_get("/static/chat/app.css")

    assert status == 200
    assert b"font-family" in body


@pytest.mark.skipif(not settings.VEILPOST_SERVE_STATIC, reason="VEILPOST_SERVE_STATIC is off")
@pytest.mark.parametrize(
    "path", ["/static/relay/../../../webapp/settings.py", "/static/../manage.py", "/static/nope.js"]
)
async def test_static_path_outside_or_missing_is_4xx(path: str) -> None:
    status, body = await http_get(path)

    assert status in {400, 404}
    assert b"SECRET_KEY" not in body and b"django" not in body
