"""WebSocket consumers of the relay app."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class RelayConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """PLACEHOLDER for the relay protocol at /ws/v1 (publish, subscribe, acks).

    It accepts every connection and answers every frame with an error frame
    ``{"type": "error", "code": ..., "message": ...}``: ``not_implemented`` for any JSON
    frame, ``invalid_json`` for a text frame that is not JSON and ``binary_frame`` for a
    binary frame. A bad frame never closes the socket. The delivery service replaces
    ``receive_json``.
    """

    async def connect(self) -> None:
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Channels' JSON consumer raises on binary or malformed frames, which would drop the
        # connection with no word to the client; answer with an error frame instead.
        if text_data is None:
            await self.send_error("binary_frame", "Frames must be JSON text frames.")
            return
        try:
            content = await self.decode_json(text_data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            await self.send_error("invalid_json", "The frame is not valid JSON.")
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_error(
            "not_implemented", "The relay protocol is not implemented yet on this server."
        )

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
