"""Serving an MCP server to the peers of an agent's DMs: :class:`McpHost`.

::

    from mcp.server.mcpserver import MCPServer
    from veilpost.agent import Agent
    from veilpost.mcp import McpHost

    agent = Agent.from_env()
    records = MCPServer("records")

    @records.tool()
    def search(query: str) -> list[str]: ...

    McpHost(agent, records, allow=["0x5aA3…", "3f0c9a…"])   # inbox ids or 0x addresses
    agent.run_forever()

Any ``mcp`` server works — an ``MCPServer`` or a low-level ``Server``, with its tools,
resources and prompts: the host runs the SDK's own server loop over Veilpost streams, one
server session per (DM, calling inbox, session id). Peers never share a session: the key
holds the sender's inbox as MLS authenticated it, so a peer naming another's session id only
reaches a session of its own. Inside a handler, :func:`current_caller` says who is calling.

Each incoming MCP message is checked before anything reaches the server, in this order:

1. the sender's inbox must be on the allow-list (:class:`~veilpost.mcp.access.AllowList`):
   a request from anyone else is answered with :data:`~veilpost.mcp.content.NOT_ALLOWED`,
   other messages from them are dropped (both logged);
2. the conversation must be a DM: in a group every member would read the answers, so a
   request there gets :data:`~veilpost.mcp.content.NOT_SERVED_HERE`;
3. the message must be well-formed (the codec's checks, then the SDK's types): a malformed
   one gets ``INVALID_REQUEST`` saying what is wrong (``id: null`` when no id can be read);
4. a message for a session that is not open must open one (``initialize``,
   ``server/discover``, or a request of the 2026-07-28 protocol, whose ``_meta`` carries its
   version); another request gets :data:`~veilpost.mcp.content.UNKNOWN_SESSION` (the server
   restarted, or ended the session when idle), other messages are dropped.
5. a session takes ``max_in_flight`` requests under way at once (default 32): one more gets
   :data:`~veilpost.mcp.content.TOO_MANY` until an answer goes out (or a cancellation).

Refusals of steps 1 and 2 are answered once per inbox and conversation every 10 s, and
dropped in between: each costs the agent an encrypted send, and a flood of them would slow
it for everyone else.

Sessions end when unused for ``idle_seconds`` (the client's next message opens a new one),
and beyond ``max_sessions_per_inbox`` or ``max_sessions`` the least recently used one ends.
A result larger than one Veilpost message carries is answered with
:data:`~veilpost.mcp.content.TOO_LARGE` instead. Requests that arrived while the agent was
offline are served when it catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import MCPServer, Server
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCMessage, JSONRPCResponse

from veilpost.agent import Agent, MessageContext
from veilpost.client.content import InvalidContent, McpMessage
from veilpost.client.errors import ClientError

from .access import AllowList
from .content import (
    INVALID_REQUEST,
    NOT_ALLOWED,
    NOT_SERVED_HERE,
    TOO_LARGE,
    TOO_MANY,
    UNKNOWN_SESSION,
    McpPayloadError,
    error_message,
    opens_session,
    to_mcp_message,
    to_session_message,
)
from .sessions import SessionKey, SessionTable
from .transport import McpRouter, McpTransportError

__all__ = ["McpCaller", "McpHost", "current_caller"]

log = logging.getLogger("veilpost.mcp")

_CLOSE_GRACE_SECONDS = 2.0  # a closed session's server loop is cancelled after this
_REFUSAL_INTERVAL = 10.0  # an inbox refused in a conversation gets no other answer that long


@dataclass(frozen=True)
class McpCaller:
    """Who sent the MCP request being handled: the inbox (authenticated by MLS), its DM and
    the session id."""

    inbox_id: str
    conversation_id: str
    session: str


_CALLER: contextvars.ContextVar[McpCaller | None] = contextvars.ContextVar(
    "veilpost_mcp_caller", default=None
)


def current_caller() -> McpCaller:
    """The caller of the MCP request being handled, inside a tool, resource or prompt
    handler served by :class:`McpHost`; :class:`LookupError` elsewhere."""
    caller = _CALLER.get()
    if caller is None:
        raise LookupError("not inside an MCP request served over Veilpost")
    return caller


class _ServerSession:
    """One server session: the SDK's server loop on a pair of memory streams, and the task
    that sends what it writes to the DM."""

    def __init__(self, host: McpHost, key: SessionKey) -> None:
        self.host = host
        self.key = key
        self._in_send: MemoryObjectSendStream[SessionMessage | Exception]
        self._in_recv: MemoryObjectReceiveStream[SessionMessage | Exception]
        self._in_send, self._in_recv = anyio.create_memory_object_stream[
            SessionMessage | Exception
        ](math.inf)
        self._out_send: MemoryObjectSendStream[SessionMessage]
        self._out_recv: MemoryObjectReceiveStream[SessionMessage]
        self._out_send, self._out_recv = anyio.create_memory_object_stream[SessionMessage](math.inf)
        self.tasks: list[asyncio.Task[None]] = []
        self.in_flight: set[str | int] = set()  # ids of requests not answered yet

    def start(self) -> None:
        name = f"mcp-session-{self.key.session}"
        self.tasks = [
            asyncio.create_task(self._serve(), name=name),
            asyncio.create_task(self._write(), name=name + "-write"),
        ]

    async def _serve(self) -> None:
        _CALLER.set(McpCaller(self.key.inbox_id, self.key.conversation_id, self.key.session))
        server = self.host.lowlevel_server
        try:
            await server.run(self._in_recv, self._out_send, self.host.initialization_options)
        except Exception:
            log.exception("MCP session %s of inbox %s failed", self.key.session, self.key.inbox_id)

    async def _write(self) -> None:
        async with self._out_recv:
            async for item in self._out_recv:
                answered = getattr(item.message, "id", None)
                if not hasattr(item.message, "method"):  # a response or an error
                    self.in_flight.discard(answered)
                await self.host.send(self.key.conversation_id, self.key.session, item.message)

    def track(self, value: McpMessage) -> bool:
        """Count a request as under way (False, and nothing counted, when as many as the host
        takes are already); a cancellation ends the count of the request it names (the server
        answers a cancelled request with nothing)."""
        if value.kind == "request" and value.request_id is not None:
            if len(self.in_flight) >= self.host.max_in_flight:
                return False
            self.in_flight.add(value.request_id)
        elif value.method == "notifications/cancelled":
            params = value.json.get("params") or {}
            self.in_flight.discard(params.get("requestId"))
        return True

    def deliver(self, item: SessionMessage) -> None:
        try:
            self._in_send.send_nowait(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.info("MCP session %s has ended; a message for it dropped", self.key.session)

    def close(self) -> None:
        """End the session: its server loop reads the end of its input, and is cancelled if
        it has not finished shortly after."""
        self._in_send.close()
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to cancel
            asyncio.get_running_loop().call_later(_CLOSE_GRACE_SECONDS, self.cancel)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class McpHost:
    """Serves ``server`` (an ``mcp`` ``MCPServer`` or low-level ``Server``) to the inboxes
    of ``allow`` in the DMs of ``agent``; see the module documentation.

    ``allow`` is an :class:`~veilpost.mcp.access.AllowList`, entries (inbox ids, ``0x``
    addresses, ``*`` for everyone) or their text separated by commas or spaces. An agent
    hosts at most one MCP server.
    """

    def __init__(
        self,
        agent: Agent,
        server: MCPServer[Any] | Server[Any],
        *,
        allow: AllowList | Iterable[str] | str,
        idle_seconds: float = 3600.0,
        max_sessions_per_inbox: int = 8,
        max_sessions: int = 1024,
        max_in_flight: int = 32,
    ) -> None:
        self.agent = agent
        self.max_in_flight = max_in_flight
        self._refused: dict[tuple[str, str], float] = {}  # (conversation, inbox) -> last time
        self.allow = AllowList.of(allow)
        # The SDK's own in-memory transport unwraps an MCPServer the same way.
        self.lowlevel_server: Server[Any] = (
            server._lowlevel_server if isinstance(server, MCPServer) else server
        )
        self.initialization_options = self.lowlevel_server.create_initialization_options()
        self._sessions: SessionTable[_ServerSession] = SessionTable(
            max_per_inbox=max_sessions_per_inbox,
            max_sessions=max_sessions,
            idle_seconds=idle_seconds,
        )
        self._janitor: asyncio.Task[None] | None = None
        router = McpRouter.of(agent)
        if router.host is not None:
            raise McpTransportError("this agent serves an MCP server already")
        router.host = self
        if not self.allow:
            log.warning(
                "the MCP server %s allows nobody: give allow= inbox ids or 0x addresses",
                self.lowlevel_server.name,
            )

    @property
    def sessions(self) -> list[SessionKey]:
        """The open sessions, least recently used first."""
        return list(self._sessions)

    async def close(self) -> None:
        """Stop serving: end every session and let go of the agent."""
        for _, session in self._sessions.clear():
            session.close()
            session.cancel()
        if self._janitor is not None:
            self._janitor.cancel()
        router = McpRouter.of(self.agent)
        if router.host is self:
            router.host = None

    # -- receiving -----------------------------------------------------------------------------

    async def receive(
        self, ctx: MessageContext, session: str | None, value: McpMessage | None, problem: str
    ) -> None:
        """Check one incoming MCP message (``value``, or ``None`` and the ``problem`` that
        made it unreadable) and hand it to its session; called by the agent's router."""
        sender = ctx.sender_inbox_id
        conversation_id = ctx.conversation.id
        request_id = value.request_id if value is not None and value.kind == "request" else None
        what = f"MCP {value.method or value.kind}" if value is not None else "malformed MCP message"
        refusal = None
        if not await self.allow.allows(self.agent.client, sender):
            log.warning("refused an %s from inbox %s: not on the allow-list", what, sender)
            refusal = (
                NOT_ALLOWED,
                f"inbox {sender} is not allowed to use this MCP server (it is not on its"
                " allow-list)",
            )
        elif not ctx.is_dm:
            log.warning("refused an %s from inbox %s in group %s", what, sender, conversation_id)
            refusal = (
                NOT_SERVED_HERE,
                "this agent serves MCP in DMs only: in a group every member would read the answers",
            )
        if refusal is not None:
            if not self._refused_lately(conversation_id, sender):
                await self._refuse(conversation_id, session, request_id, *refusal)
            return
        if value is None:
            log.warning("a malformed MCP message from inbox %s: %s", sender, problem)
            if session is not None:  # JSON-RPC: an error whose id cannot be read has id null
                await self.send(
                    conversation_id,
                    session,
                    error_message(None, INVALID_REQUEST, f"malformed MCP message: {problem}"),
                )
            return
        key = SessionKey(conversation_id, sender, value.session)
        now = asyncio.get_running_loop().time()
        live = self._sessions.get(key, now)
        if live is None and not opens_session(value):
            log.info("an %s for session %s, which is not open, refused", what, key.session)
            await self._refuse(
                conversation_id,
                value.session,
                request_id,
                UNKNOWN_SESSION,
                f"MCP session {value.session} is not open here (the server restarted, or ended"
                " it when idle): open a new session and initialize",
            )
            return
        try:
            item = to_session_message(value)
        except McpPayloadError as exc:
            log.warning("an MCP message from inbox %s: %s", sender, exc)
            await self._refuse(
                conversation_id, value.session, request_id, INVALID_REQUEST, str(exc)
            )
            return
        if live is None:
            live = self._open(key, now)
        if not live.track(value):
            await self._refuse(
                conversation_id,
                value.session,
                request_id,
                TOO_MANY,
                f"this session has {self.max_in_flight} requests under way already: wait for"
                " their answers",
            )
            return
        live.deliver(item)

    def _open(self, key: SessionKey, now: float) -> _ServerSession:
        session = _ServerSession(self, key)
        for old_key, old in self._sessions.add(key, session, now):
            log.info(
                "MCP session %s of inbox %s ended (session limit)",
                old_key.session,
                old_key.inbox_id,
            )
            old.close()
        session.start()
        log.info("MCP session %s of inbox %s opened", key.session, key.inbox_id)
        if self._janitor is None or self._janitor.done():
            self._janitor = asyncio.create_task(self._sweep(), name="mcp-sessions")
        return session

    async def _sweep(self) -> None:
        """End idle sessions; end them all once the agent has stopped."""
        loop = asyncio.get_running_loop()
        while len(self._sessions):
            await asyncio.sleep(min(30.0, self._sessions.idle_seconds / 4))
            if not self.agent.ready.is_set():
                for _, session in self._sessions.clear():
                    session.close()
                return
            for key, session in self._sessions.idle(loop.time()):
                log.info("MCP session %s of inbox %s ended (idle)", key.session, key.inbox_id)
                session.close()

    def _refused_lately(self, conversation_id: str, inbox_id: str) -> bool:
        """Whether this inbox was refused in this conversation less than
        :data:`_REFUSAL_INTERVAL` seconds ago (then it gets no answer: each costs the agent an
        encrypted send, and a flood of them would slow everyone else); notes the time if not."""
        now = asyncio.get_running_loop().time()
        key = (conversation_id, inbox_id)
        if now - self._refused.get(key, -math.inf) < _REFUSAL_INTERVAL:
            return True
        if len(self._refused) >= 10_000:  # forget the old ones
            self._refused = {k: t for k, t in self._refused.items() if now - t < _REFUSAL_INTERVAL}
        self._refused[key] = now
        return False

    async def _refuse(
        self,
        conversation_id: str,
        session: str | None,
        request_id: str | int | None,
        code: int,
        text: str,
    ) -> None:
        if session is not None and request_id is not None:  # notifications get no answer
            await self.send(conversation_id, session, error_message(request_id, code, text))

    # -- sending -------------------------------------------------------------------------------

    async def send(self, conversation_id: str, session: str, message: JSONRPCMessage) -> None:
        """Send one message of ``session`` to its DM (a result too large to travel is
        answered with :data:`~veilpost.mcp.content.TOO_LARGE` instead)."""
        try:
            content = to_mcp_message(session, message)
        except InvalidContent as exc:
            if not isinstance(message, JSONRPCResponse):
                log.warning("an MCP message of session %s cannot travel: %s", session, exc)
                return
            content = to_mcp_message(
                session, error_message(message.id, TOO_LARGE, f"the result cannot travel: {exc}")
            )
        try:
            sent = await self.agent.client.send(conversation_id, content)
        except (ClientError, OSError, TimeoutError) as exc:
            log.warning("an MCP %s of session %s was not sent: %s", content.kind, session, exc)
            return
        if sent.status != "sent" and not self.agent.client.is_queued(sent):
            log.warning(
                "an MCP %s of session %s was not sent: %s", content.kind, session, sent.error
            )
