"""MCP messages as Veilpost content and back, and the errors Veilpost's transports answer
with.

:class:`~veilpost.client.content.McpMessage` (the content type ``veilpost.org/mcp:1.0``)
carries one JSON-RPC message of one session as JSON text; here it meets the ``mcp`` SDK's
:class:`~mcp.shared.message.SessionMessage`, which the SDK's transports carry.

JSON-RPC error codes of the transports (MCP's implementation-defined band, -32000..-32019; the
SDK itself uses -32000 for a closed connection and -32001 for a timeout):

======================  ======  =============================================================
:data:`NOT_ALLOWED`     -32010  the caller's inbox is not on the server's allow-list
:data:`TOO_LARGE`       -32011  the message is larger than one Veilpost message carries
:data:`SEND_FAILED`     -32012  the request could not be sent (the relay refused it)
:data:`NOT_SERVED_HERE` -32013  MCP is served in DMs only, and this conversation is a group
:data:`UNKNOWN_SESSION` -32014  the session is not open at the server (it restarted, or ended
                                the session when idle): open a new one and initialize
:data:`TOO_MANY`        -32015  the session has as many requests under way as the server takes
``REQUEST_TIMEOUT``     -32001  no answer came in time (the client transport's ``timeout``)
``CONNECTION_CLOSED``   -32000  the agent under the transport stopped
``INVALID_REQUEST``     -32600  a malformed MCP message (its error says what is wrong)
======================  ======  =============================================================
"""

from __future__ import annotations

from typing import Any, Final

from mcp.shared.message import SessionMessage
from mcp.types import (
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from veilpost.client.content import McpMessage

__all__ = [
    "CONNECTION_CLOSED",
    "INVALID_REQUEST",
    "NOT_ALLOWED",
    "NOT_SERVED_HERE",
    "REQUEST_TIMEOUT",
    "SEND_FAILED",
    "TOO_LARGE",
    "TOO_MANY",
    "UNKNOWN_SESSION",
    "McpPayloadError",
    "error_message",
    "opens_session",
    "to_mcp_message",
    "to_session_message",
]

NOT_ALLOWED: Final = -32010
"""JSON-RPC error: the caller's inbox is not on the server's allow-list."""
TOO_LARGE: Final = -32011
"""JSON-RPC error: the message is larger than one Veilpost message carries."""
SEND_FAILED: Final = -32012
"""JSON-RPC error: the request could not be sent over Veilpost."""
NOT_SERVED_HERE: Final = -32013
"""JSON-RPC error: MCP is not served in this conversation (a group: DMs only)."""
UNKNOWN_SESSION: Final = -32014
"""JSON-RPC error: the session is not open at the server (it restarted, or ended it idle)."""
TOO_MANY: Final = -32015
"""JSON-RPC error: the session has as many requests under way as the server takes at once."""


class McpPayloadError(ValueError):
    """An MCP message the SDK cannot read (well-formed JSON-RPC, but not an MCP message the
    SDK's types accept); the message says which and why."""


def to_session_message(message: McpMessage) -> SessionMessage:
    """The SDK's form of ``message``; :class:`McpPayloadError` if its types refuse it."""
    try:
        parsed = jsonrpc_message_adapter.validate_json(message.data, by_name=False)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise McpPayloadError(
            f"MCP {message.kind} is not a JSON-RPC message the SDK accepts:"
            f" {first.get('msg')}{f' at {where}' if where else ''}"
        ) from None
    return SessionMessage(parsed)


def to_mcp_message(session: str, item: SessionMessage | JSONRPCMessage) -> McpMessage:
    """The Veilpost content for an SDK message in ``session`` (serialized as the SDK's own
    stdio transport does); :class:`~veilpost.client.content.InvalidContent` if it cannot
    travel (over :data:`~veilpost.client.content.MAX_MCP_MESSAGE_BYTES`)."""
    message = item.message if isinstance(item, SessionMessage) else item
    data = message.model_dump_json(by_alias=True, exclude_unset=True).encode("utf-8")
    return McpMessage(session, data)


def error_message(
    request_id: str | int | None, code: int, text: str, data: Any = None
) -> JSONRPCError:
    """A JSON-RPC error answering ``request_id`` (``None``: the id could not be read)."""
    return JSONRPCError(
        jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=text, data=data)
    )


def opens_session(message: McpMessage) -> bool:
    """Whether ``message`` may open a new server session: the ``initialize`` handshake (the
    2025 protocol), ``server/discover``, or a request of the 2026-07-28 protocol, which
    carries its protocol version in every request's ``_meta``."""
    if message.kind != "request":
        return False
    if message.method in ("initialize", "server/discover"):
        return True
    params = message.json.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta
