"""MCP's client transport over a Veilpost DM, and the routing of an agent's MCP messages.

:func:`connect` gives an MCP client (the SDK's ``ClientSession`` or ``mcp.Client``) the
read and write streams of one MCP session with a remote agent's MCP server: every JSON-RPC
message the SDK writes is sent, MLS-encrypted, to the DM with that agent as one
:class:`~veilpost.client.content.McpMessage` naming the session; every one the agent sends
back in that session is read. The transport runs on a started :class:`~veilpost.agent.Agent`
(``agent.run()`` running), whose client reconnects and catches up on its own: a request sent
while the relay is away waits in the encrypted outbox and goes out on reconnect.

The transport answers for the network, so the MCP client never hangs:

- a request unanswered after ``timeout`` seconds gets a ``REQUEST_TIMEOUT`` error (and the
  server a ``notifications/cancelled``); the error says whether the relay is unreachable;
- a request the relay refuses gets :data:`~veilpost.mcp.content.SEND_FAILED`; one larger than a
  Veilpost message carries gets :data:`~veilpost.mcp.content.TOO_LARGE`;
- when the agent stops, pending requests get ``CONNECTION_CLOSED`` and the read stream ends;
- a malformed message from the server reaches the SDK as an exception item (which it logs),
  never as a crash; answers that come after their timeout are dropped.

:class:`McpRouter` is the one message handler an agent gets for MCP: it hands each MCP message
to the client session it belongs to (by DM and session id, and only from that DM's peer), or
else to the agent's :class:`~veilpost.mcp.serving.McpHost`, if it serves one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCRequest

from veilpost.agent import Agent, MessageContext
from veilpost.client.content import (
    CONTENT_TYPE_MCP,
    MAX_MCP_SESSION_BYTES,
    ContentError,
    ContentTypeId,
    EncodedContent,
    InvalidContent,
    McpMessage,
)
from veilpost.client.errors import ClientError

from .content import (
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    REQUEST_TIMEOUT,
    SEND_FAILED,
    TOO_LARGE,
    McpPayloadError,
    error_message,
    to_mcp_message,
    to_session_message,
)
from .sessions import PendingRequest, PendingRequests

if TYPE_CHECKING:
    from .serving import McpHost

__all__ = ["DEFAULT_TIMEOUT", "McpClientTransport", "McpRouter", "McpTransportError", "connect"]

log = logging.getLogger("veilpost.mcp")

DEFAULT_TIMEOUT = 60.0
"""Seconds a request waits for its answer, by default."""
_WATCH_SECONDS = 0.5  # how often the transport looks at deadlines and at the agent
_SESSION_RE = re.compile(r"[A-Za-z0-9_-]+")


class McpTransportError(ClientError):
    """An MCP transport over Veilpost cannot be opened (the agent is not running, the
    session id is malformed or in use)."""

    code = "mcp_transport"


def is_mcp_content(content_type: str) -> bool:
    """Whether a message's content type (its text form) is MCP (any 1.x version)."""
    try:
        return ContentTypeId.parse(content_type).is_compatible_with(CONTENT_TYPE_MCP)
    except ContentError:
        return False


def _session_parameter(encoded: bytes) -> str | None:
    """The session id an MCP content names, even when its JSON is malformed."""
    try:
        session = EncodedContent.from_bytes(encoded).parameter("session")
    except ContentError:
        return None
    if session is None or not _SESSION_RE.fullmatch(session):
        return None
    return session if len(session.encode()) <= MAX_MCP_SESSION_BYTES else None


class McpRouter:
    """Hands an agent's incoming MCP messages to its client sessions and to its MCP server
    (see the module documentation). One per agent: :meth:`of`."""

    _routers: ClassVar[weakref.WeakKeyDictionary[Agent, McpRouter]] = weakref.WeakKeyDictionary()

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.host: McpHost | None = None
        self._clients: dict[tuple[str, str], McpClientTransport] = {}
        # Client.new_dm made twice at once for one peer can make two half-built DMs.
        self.dm_lock = asyncio.Lock()
        agent.on_message(self._on_message)

    @classmethod
    def of(cls, agent: Agent) -> McpRouter:
        """The router of ``agent`` (made, and its handler registered, on first use)."""
        router = cls._routers.get(agent)
        if router is None:
            router = cls._routers[agent] = cls(agent)
        return router

    def add_client(self, transport: McpClientTransport) -> None:
        key = (transport.conversation_id, transport.session)
        if key in self._clients:
            raise McpTransportError(
                f"MCP session {transport.session} is open already in {transport.conversation_id}"
            )
        self._clients[key] = transport

    def remove_client(self, transport: McpClientTransport) -> None:
        key = (transport.conversation_id, transport.session)
        if self._clients.get(key) is transport:
            del self._clients[key]

    async def _on_message(self, ctx: MessageContext) -> None:
        message = ctx.message
        if not is_mcp_content(message.content_type):
            return
        session = _session_parameter(message.encoded)
        value: McpMessage | None = None
        problem = ""
        try:
            content = ctx.content
        except ContentError as exc:
            problem = str(exc)
        else:
            if not isinstance(content, McpMessage):  # a newer minor version decoded otherwise
                return
            value = content
        client = None if session is None else self._clients.get((ctx.conversation.id, session))
        if client is not None and message.sender_inbox_id == client.peer_inbox_id:
            client.deliver(value if value is not None else problem)
        elif self.host is not None:
            await self.host.receive(ctx, session, value, problem)
        else:
            log.info(
                "MCP message from inbox %s in %s for session %s, which nothing here serves",
                message.sender_inbox_id,
                ctx.conversation.id,
                session,
            )


class _WriteStream:
    """The write stream the SDK gets: it hands each message to the transport at once (the
    wait for its answer starts then), which sends them in order."""

    def __init__(self, transport: McpClientTransport) -> None:
        self._transport = transport

    async def send(self, item: SessionMessage, /) -> None:
        self._transport._accept(item)
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._transport._writes_closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


class McpClientTransport:
    """One MCP client session with the MCP server of the agent ``server`` (an inbox id or
    ``0x`` address), over the DM with it; an async context manager that yields
    ``(read_stream, write_stream)`` for the SDK. Made by :func:`connect`, which see."""

    def __init__(
        self,
        agent: Agent,
        server: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: str | None = None,
    ) -> None:
        if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"the timeout must be a positive number of seconds, got {timeout!r}")
        self.session = session if session is not None else secrets.token_hex(16)
        if not _SESSION_RE.fullmatch(self.session) or len(self.session) > MAX_MCP_SESSION_BYTES:
            raise McpTransportError(
                f"MCP session id {self.session!r} is not 1..{MAX_MCP_SESSION_BYTES} letters,"
                " digits, '_' and '-'"
            )
        self.agent = agent
        self.server = server
        self.timeout = float(timeout)
        self.conversation_id = ""
        self.peer_inbox_id = ""
        self._pending = PendingRequests(self.timeout)
        self._queue: asyncio.Queue[McpMessage] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._read_send: MemoryObjectSendStream[SessionMessage | Exception]
        self._read_recv: MemoryObjectReceiveStream[SessionMessage | Exception]
        self._read_send, self._read_recv = anyio.create_memory_object_stream[
            SessionMessage | Exception
        ](math.inf)
        self._tasks: list[asyncio.Task[None]] = []
        self._entered = False
        self._closed = False
        self._writes_closed = False

    # -- opening and closing ---------------------------------------------------------------

    async def __aenter__(
        self,
    ) -> tuple[MemoryObjectReceiveStream[SessionMessage | Exception], _WriteStream]:
        if self._entered:
            raise McpTransportError("this MCP transport was opened already; make a new one")
        self._entered = True
        if not self.agent.ready.is_set():
            raise McpTransportError(
                "the agent is not running: start agent.run() (and wait for agent.ready)"
                " before opening an MCP session over it"
            )
        router = McpRouter.of(self.agent)
        async with router.dm_lock:
            conversation = await self.agent.client.new_dm(self.server)
        self.conversation_id = conversation.id
        self.peer_inbox_id = conversation.peer_inbox_id or ""
        router.add_client(self)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name=f"mcp-write-{self.session}"),
            asyncio.create_task(self._watch(), name=f"mcp-watch-{self.session}"),
        ]
        log.info("MCP session %s with inbox %s opened", self.session, self.peer_inbox_id)
        return self._read_recv, _WriteStream(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the session here (the server's side ends when it is idle long enough)."""
        if self._closed:
            return
        self._closed = True
        McpRouter.of(self.agent).remove_client(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._read_send.close()

    @property
    def pending(self) -> int:
        """How many requests wait for their answer."""
        return len(self._pending)

    # -- from the SDK to the server ----------------------------------------------------------

    def _accept(self, item: SessionMessage) -> None:
        if self._closed or self._writes_closed:
            raise anyio.ClosedResourceError
        message = item.message
        request = message if isinstance(message, JSONRPCRequest) else None
        try:
            content = to_mcp_message(self.session, message)
        except InvalidContent as exc:
            if request is None:
                log.warning("an MCP message of session %s cannot be sent: %s", self.session, exc)
            else:
                self._answer(
                    request.id, TOO_LARGE, f"the {request.method} request cannot travel: {exc}"
                )
            return
        if request is not None:
            try:
                self._pending.add(request.id, request.method, asyncio.get_running_loop().time())
            except ValueError as exc:
                log.warning("MCP session %s: %s", self.session, exc)
                return
            self._wake.set()
        self._queue.put_nowait(content)

    async def _write_loop(self) -> None:
        while True:
            content = await self._queue.get()
            try:
                sent = await self.agent.client.send(self.conversation_id, content)
            except (ClientError, OSError, TimeoutError) as exc:
                failure = str(exc) or type(exc).__name__
            else:
                if sent.status == "sent":
                    continue
                if self.agent.client.is_queued(sent):
                    log.info(
                        "MCP %s of session %s waits in the outbox (%s)",
                        content.kind,
                        self.session,
                        sent.error,
                    )
                    continue
                failure = sent.error or "refused"
            request_id = content.request_id if content.kind == "request" else None
            pending = None if request_id is None else self._pending.answer(request_id)
            if pending is None:
                log.warning(
                    "an MCP %s of session %s was not sent: %s", content.kind, self.session, failure
                )
            else:
                self._answer(
                    pending.request_id,
                    SEND_FAILED,
                    f"could not send the {pending.method} request to inbox"
                    f" {self.peer_inbox_id} over Veilpost: {failure}",
                )

    # -- deadlines and the agent's life ------------------------------------------------------

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            deadline = self._pending.next_deadline()
            wait = _WATCH_SECONDS if deadline is None else deadline - loop.time()
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait, _WATCH_SECONDS)):
                        await self._wake.wait()
            if not self.agent.ready.is_set():
                self._lose("the Veilpost agent under this MCP session stopped")
                return
            for pending in self._pending.expire(loop.time()):
                self._answer(pending.request_id, REQUEST_TIMEOUT, self._timeout_text(pending))
                if pending.method != "initialize":  # MCP: initialize is never cancelled
                    self._queue.put_nowait(
                        McpMessage.from_json(
                            self.session,
                            {
                                "jsonrpc": "2.0",
                                "method": "notifications/cancelled",
                                "params": {
                                    "requestId": pending.request_id,
                                    "reason": f"no answer within {self.timeout:g} s",
                                },
                            },
                        )
                    )

    def _timeout_text(self, pending: PendingRequest) -> str:
        text = (
            f"no answer to {pending.method} from inbox {self.peer_inbox_id} over Veilpost"
            f" within {self.timeout:g} s"
        )
        relay = getattr(self.agent.client, "relay", None) if self.agent.ready.is_set() else None
        if relay is not None and getattr(relay, "connected", True) is False:
            return text + " (the relay is unreachable: the request waits in the outbox)"
        return text + " (the server's agent may be offline or busy)"

    def _lose(self, reason: str) -> None:
        self._writes_closed = True  # the SDK's next write sees a closed connection
        for pending in self._pending.drain():
            self._answer(pending.request_id, CONNECTION_CLOSED, f"{pending.method}: {reason}")
        self._read_send.close()

    # -- from the server to the SDK ----------------------------------------------------------

    def _answer(self, request_id: str | int | None, code: int, text: str) -> None:
        self._hand(SessionMessage(error_message(request_id, code, text)))

    def _hand(self, item: SessionMessage | Exception) -> None:
        try:
            self._read_send.send_nowait(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("MCP session %s: the SDK stopped reading", self.session)

    def deliver(self, value: McpMessage | str) -> None:
        """Hand a message of this session from the server to the SDK (``str``: why the
        message could not be read)."""
        if isinstance(value, str):
            self._hand(
                McpPayloadError(f"inbox {self.peer_inbox_id} sent a malformed MCP message: {value}")
            )
            return
        if value.kind in ("response", "error"):
            request_id = value.request_id
            if request_id is None:
                error = value.json.get("error", {})
                self._hand(
                    McpPayloadError(
                        f"the MCP server could not read a message of session {self.session}:"
                        f" {error.get('message')}"
                    )
                )
                return
            if self._pending.answer(request_id) is None:
                log.info("MCP session %s: a late answer to %r dropped", self.session, request_id)
                return
        try:
            item = to_session_message(value)
        except McpPayloadError as exc:
            if value.kind in ("response", "error") and value.request_id is not None:
                self._answer(value.request_id, INVALID_REQUEST, f"the server's answer: {exc}")
            elif value.kind == "request" and value.request_id is not None:
                self._queue.put_nowait(
                    to_mcp_message(
                        self.session, error_message(value.request_id, INVALID_REQUEST, str(exc))
                    )
                )
            else:
                self._hand(exc)
            return
        self._hand(item)


def connect(
    agent: Agent,
    server: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    session: str | None = None,
) -> McpClientTransport:
    """An MCP client transport to the MCP server of the agent ``server`` (its inbox id or
    ``0x`` address), over the DM of the running ``agent`` with it (made if needed).

    ::

        async with connect(agent, "0x5aA3…") as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            found = await s.call_tool("search_records", {"query": "indemnity"})

        async with mcp.Client(connect(agent, inbox_id)) as client:   # or the high-level client
            tools = await client.list_tools()

    ``timeout`` bounds each request's wait for its answer (seconds); ``session`` names the
    session (default: a fresh random id, so each transport is a new MCP session).
    """
    return McpClientTransport(agent, server, timeout=timeout, session=session)
