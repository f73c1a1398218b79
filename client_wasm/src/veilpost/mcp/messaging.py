"""``veilpost mcp``: this profile's Veilpost messaging as MCP tools, over stdio.

An MCP host (a desktop assistant, an IDE) starts ``veilpost mcp`` as a subprocess and talks
MCP on its stdin and stdout; the process is a Veilpost agent on the profile of
``VEILPOST_DB_PATH`` (opened with ``VEILPOST_DB_KEY``) against ``VEILPOST_RELAY_URL``, with
reconnects and catch-up. stdout carries only the protocol: every log line goes to stderr.

Tools (results are structured; lists are paginated by an opaque ``next_cursor``):

=====================  ==================================================================
``get_identity``       this profile's inbox id, installation id and bound addresses
``list_conversations`` DMs and groups, most recently active first
``read_messages``      a conversation's messages, newest page first (each page oldest
                       first; ``next_cursor`` reads further back)
``send_message``       a text to a conversation, an inbox id or a ``0x`` address (a DM)
``start_dm``           the DM with an inbox id or ``0x`` address (made if needed)
``create_group``       a new group with members, a name and a description
``wait_for_messages``  messages from others that arrived since the last call (waits up to
                       ``timeout_seconds`` for one)
=====================  ==================================================================

Read receipts, profiles and MCP traffic are not listed as messages. A tool that fails
(an unknown conversation, the relay not reachable yet) returns an error result that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from veilpost.agent import Agent, MessageContext
from veilpost.client.client import Client, Conversation, Message
from veilpost.client.content import ContentError, McpMessage, Profile, ReadReceipt
from veilpost.client.errors import ClientError
from veilpost.client.storage import MessageCursor

__all__ = [
    "ConversationInfo",
    "ConversationPage",
    "Identity",
    "MessageInfo",
    "MessagePage",
    "MessagingTools",
    "NewMessages",
    "SentMessage",
    "serve_stdio",
]

log = logging.getLogger("veilpost.mcp")

READY_TIMEOUT = 20.0
"""Seconds a tool waits for the agent to be connected before it says it is not."""
MAX_WAIT_SECONDS = 300.0
"""Longest ``wait_for_messages`` timeout."""
MAX_SCAN = 2000
"""Messages ``read_messages`` looks at per call (hidden ones count: a page may come short)."""
_INCOMING_KEPT = 1000  # messages kept for wait_for_messages
_HIDDEN = (ReadReceipt, Profile, McpMessage)


class Identity(BaseModel):
    """Who this profile is."""

    inbox_id: str
    installation_id: str
    addresses: list[str] = Field(description="0x addresses bound to the inbox")
    relay_url: str


class ConversationInfo(BaseModel):
    """A DM or a group."""

    id: str = Field(description="dm:<inbox id> or group:<hex>")
    kind: Literal["dm", "group"]
    name: str
    description: str
    peer_inbox_id: str | None = Field(description="the other inbox of a DM")
    members: list[str] = Field(description="member inbox ids")
    active: bool = Field(description="false once this profile left or was removed")
    last_message_at: str | None = Field(description="ISO 8601 time of the newest message")


class ConversationPage(BaseModel):
    """A page of conversations."""

    conversations: list[ConversationInfo]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class MessageInfo(BaseModel):
    """One message."""

    id: str
    conversation_id: str
    sender_inbox_id: str
    from_me: bool
    sent_at: str = Field(description="ISO 8601, UTC (when this profile stored it)")
    content_type: str
    text: str = Field(description="the text, or a description of other content")
    status: str = Field(description="received, sent, sending or failed")


class MessagePage(BaseModel):
    """A page of a conversation's history, oldest first."""

    conversation_id: str
    messages: list[MessageInfo]
    next_cursor: str | None = Field(description="pass as `cursor` to read older messages")


class SentMessage(BaseModel):
    """A message this profile sent."""

    conversation_id: str
    message_id: str
    status: Literal["sent", "queued"] = Field(
        description="queued: the relay is unreachable; it goes out when it is back"
    )


class NewMessages(BaseModel):
    """Messages from others that arrived, oldest first."""

    messages: list[MessageInfo]
    timed_out: bool = Field(description="true when none arrived within the timeout")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _visible(message: Message) -> bool:
    try:
        return not isinstance(message.content, _HIDDEN)
    except ContentError:
        return True  # shown as its content type


def _info(client: Client, message: Message) -> MessageInfo:
    try:
        text = message.text
    except ContentError:
        text = f"[{message.content_type}, malformed]"
    return MessageInfo(
        id=message.id,
        conversation_id=message.conversation_id,
        sender_inbox_id=message.sender_inbox_id,
        from_me=message.sender_inbox_id == client.inbox_id,
        sent_at=_iso(message.sent_at_ns),
        content_type=message.content_type,
        text=text,
        status=message.status,
    )


def _message_cursor(message: Message) -> str:
    return f"m1.{message.sent_at_ns}.{message.id}"


def _parse_message_cursor(cursor: str) -> MessageCursor:
    version, _, rest = cursor.partition(".")
    stamp, _, message_id = rest.partition(".")
    if version != "m1" or not stamp.isdigit() or not message_id:
        raise ToolError(f"cursor {cursor!r} is not one read_messages gave")
    return MessageCursor(int(stamp), message_id)


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Client errors as tool errors, with their message."""
    try:
        yield
    except ClientError as exc:
        raise ToolError(str(exc)) from exc


class MessagingTools:
    """The ``veilpost mcp`` server (:attr:`server`) on a running ``agent``: see the module
    documentation. :func:`serve_stdio` runs both."""

    def __init__(self, agent: Agent, *, ready_timeout: float = READY_TIMEOUT) -> None:
        self.agent = agent
        self.ready_timeout = ready_timeout
        self.running: asyncio.Task[None] | None = None
        self._incoming: deque[Message] = deque(maxlen=_INCOMING_KEPT)
        self._arrived = asyncio.Event()
        agent.on_message(self._on_message)
        self.server = self._build()

    def _on_message(self, ctx: MessageContext) -> None:
        if _visible(ctx.message):
            self._incoming.append(ctx.message)
            self._arrived.set()

    async def _client(self) -> Client:
        """The agent's client once connected; a :class:`ToolError` saying why not."""
        if self.running is not None and self.running.done():
            reason = "cancelled" if self.running.cancelled() else self.running.exception()
            raise ToolError(f"the Veilpost agent stopped: {reason}")
        try:
            async with asyncio.timeout(self.ready_timeout):
                await self.agent.ready.wait()
        except TimeoutError:
            raise ToolError(
                f"not connected to the relay at {self.agent.relay_url} yet (it keeps trying);"
                " try again shortly"
            ) from None
        return self.agent.client

    def _conversation_info(self, client: Client, row: Conversation) -> ConversationInfo:
        newest = client.messages(row.id, limit=1)
        return ConversationInfo(
            id=row.id,
            kind="dm" if row.id.startswith("dm:") else "group",
            name=row.name,
            description=row.description,
            peer_inbox_id=row.peer_inbox_id if row.id.startswith("dm:") else None,
            members=list(row.members),
            active=row.active,
            last_message_at=_iso(newest[0].sent_at_ns) if newest else None,
        )

    def _take(self, conversation_id: str | None, limit: int) -> list[Message]:
        taken: list[Message] = []
        kept: deque[Message] = deque(maxlen=_INCOMING_KEPT)
        for message in self._incoming:
            wanted = conversation_id is None or message.conversation_id == conversation_id
            if wanted and len(taken) < limit:
                taken.append(message)
            else:
                kept.append(message)
        self._incoming = kept
        return taken

    def _build(self) -> MCPServer:
        server = MCPServer(
            "veilpost",
            instructions="End-to-end-encrypted messaging (Veilpost, MLS). Conversations are"
            " DMs (dm:<inbox id>) and groups (group:<hex>); people and agents are reached by"
            " inbox id or 0x address. wait_for_messages returns what others sent since.",
        )

        @server.tool()
        async def get_identity() -> Identity:
            """This profile's inbox id (what others message), installation id and bound
            0x addresses."""
            client = await self._client()
            with _tool_errors():
                record = await client.identity(client.inbox_id)
            return Identity(
                inbox_id=client.inbox_id,
                installation_id=client.installation_id,
                addresses=record.address_list(),
                relay_url=self.agent.relay_url,
            )

        @server.tool()
        async def list_conversations(
            limit: int = 50, cursor: str | None = None
        ) -> ConversationPage:
            """List DMs and groups, most recently active first; `limit` per page (1..200),
            `cursor` from the previous page."""
            if not 1 <= limit <= 200:
                raise ToolError(f"limit must be 1..200, got {limit}")
            start = 0
            if cursor is not None:
                version, _, offset = cursor.partition(".")
                if version != "c1" or not offset.isdigit():
                    raise ToolError(f"cursor {cursor!r} is not one list_conversations gave")
                start = int(offset)
            client = await self._client()
            with _tool_errors():
                rows = [self._conversation_info(client, row) for row in client.conversations()]
            rows.sort(key=lambda row: (row.last_message_at or "", row.id), reverse=True)
            page = rows[start : start + limit]
            more = start + limit < len(rows)
            return ConversationPage(
                conversations=page, next_cursor=f"c1.{start + limit}" if more else None
            )

        @server.tool()
        async def read_messages(
            conversation_id: str, limit: int = 20, cursor: str | None = None
        ) -> MessagePage:
            """Read a conversation's messages: the newest `limit` (1..200), oldest first;
            pass `next_cursor` as `cursor` to read the page before."""
            if not 1 <= limit <= 200:
                raise ToolError(f"limit must be 1..200, got {limit}")
            before = None if cursor is None else _parse_message_cursor(cursor)
            client = await self._client()
            with _tool_errors():
                client.conversation(conversation_id)
            shown: list[Message] = []
            exhausted = False
            scanned: Message | None = None  # the oldest message looked at
            count = 0
            # One more than shown tells whether there is more. Hidden messages (MCP traffic,
            # receipts, profiles) are skipped, at most MAX_SCAN of them a call: a page may then
            # come short, with a cursor to go on from.
            while len(shown) <= limit and not exhausted and count < MAX_SCAN:
                chunk = client.messages(conversation_id, limit=limit + 1, before=before)
                exhausted = len(chunk) <= limit
                if chunk:
                    scanned = chunk[-1]
                    before = MessageCursor(scanned.sent_at_ns, scanned.id)
                count += len(chunk)
                shown += [m for m in chunk if _visible(m)]
                await asyncio.sleep(0)  # other work runs between chunks
            if len(shown) > limit:
                shown = shown[:limit]
                next_cursor: str | None = _message_cursor(shown[-1])
            elif not exhausted and scanned is not None:
                next_cursor = _message_cursor(scanned)
            else:
                next_cursor = None
            return MessagePage(
                conversation_id=conversation_id,
                messages=[_info(client, m) for m in reversed(shown)],
                next_cursor=next_cursor,
            )

        @server.tool()
        async def send_message(to: str, text: str) -> SentMessage:
            """Send `text` to `to`: a conversation id (dm:… or group:…), or an inbox id or
            0x address (then in the DM with it, made if needed)."""
            if not text:
                raise ToolError("text is empty")
            client = await self._client()
            with _tool_errors():
                if to.startswith(("dm:", "group:")):
                    conversation_id = client.conversation(to).id
                else:
                    conversation_id = (await client.new_dm(to)).id
                message = await client.send(conversation_id, text)
            if message.status == "sent":
                return SentMessage(
                    conversation_id=conversation_id, message_id=message.id, status="sent"
                )
            if client.is_queued(message):
                return SentMessage(
                    conversation_id=conversation_id, message_id=message.id, status="queued"
                )
            raise ToolError(f"the relay refused the message: {message.error}")

        @server.tool()
        async def start_dm(peer: str) -> ConversationInfo:
            """The DM with `peer` (an inbox id or 0x address), made if needed."""
            client = await self._client()
            with _tool_errors():
                return self._conversation_info(client, await client.new_dm(peer))

        @server.tool()
        async def create_group(
            members: list[str], name: str = "", description: str = ""
        ) -> ConversationInfo:
            """A new group with this profile and `members` (inbox ids or 0x addresses)."""
            client = await self._client()
            with _tool_errors():
                group = await client.new_group(members, name=name, description=description)
                return self._conversation_info(client, group)

        @server.tool()
        async def wait_for_messages(
            timeout_seconds: float = 30.0, conversation_id: str | None = None, limit: int = 20
        ) -> NewMessages:
            """Messages from others that arrived since the last call (only of
            `conversation_id`, if given), oldest first; waits up to `timeout_seconds`
            (0..300) for the first one."""
            if not 0 <= timeout_seconds <= MAX_WAIT_SECONDS:
                raise ToolError(f"timeout_seconds must be 0..{MAX_WAIT_SECONDS:g}")
            if not 1 <= limit <= 200:
                raise ToolError(f"limit must be 1..200, got {limit}")
            client = await self._client()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_seconds
            while True:
                taken = self._take(conversation_id, limit)
                if taken:
                    return NewMessages(messages=[_info(client, m) for m in taken], timed_out=False)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return NewMessages(messages=[], timed_out=True)
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._arrived.wait()

        return server


async def serve_stdio(agent: Agent) -> None:
    """Run ``agent`` and the messaging tools on stdin/stdout until the MCP host closes
    stdin."""
    tools = MessagingTools(agent)

    @agent.on_ready
    def announce(agent: Agent) -> None:
        print(
            f"veilpost mcp: inbox {agent.inbox_id} on {agent.relay_url}",
            file=sys.stderr,
            flush=True,
        )

    tools.running = asyncio.create_task(agent.run(), name="veilpost-agent")
    try:
        await tools.server.run_stdio_async()
    finally:
        tools.running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tools.running
