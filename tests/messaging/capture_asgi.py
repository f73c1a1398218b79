"""The relay's ASGI application, recording every message it receives and sends — HTTP request
and response bodies, WebSocket frames (after the WebSocket layer: unmasked, uncompressed) —
to the file named by ``VEILPOST_CAPTURE_FILE``: what an operator could log at the relay."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from webapp.asgi import application as relay

_CAPTURE = open(os.environ["VEILPOST_CAPTURE_FILE"], "a", encoding="utf-8")  # noqa: SIM115


def _record(direction: str, message: dict[str, Any]) -> None:
    entry: dict[str, Any] = {"direction": direction, "type": message.get("type")}
    for name in ("text", "body", "bytes"):
        value = message.get(name)
        if isinstance(value, bytes):
            entry[name] = base64.b64encode(value).decode()
        elif isinstance(value, str):
            entry[name] = value
    for name in ("path", "query_string"):
        if name in message:
            value = message[name]
            entry[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    _CAPTURE.write(json.dumps(entry) + "\n")
    _CAPTURE.flush()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] in ("http", "websocket"):
        _record(
            "scope",
            {
                "type": scope["type"],
                "path": scope.get("path", ""),
                "query_string": scope.get("query_string", b""),
            },
        )

    async def receiving() -> Any:
        message = await receive()
        _record("in", message)
        return message

    async def sending(message: dict[str, Any]) -> None:
        _record("out", message)
        await send(message)

    await relay(scope, receiving, sending)
