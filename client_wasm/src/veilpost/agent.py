"""The agent SDK: a Veilpost agent in a few lines (layer 6).

::

    from veilpost.agent import Agent

    agent = Agent.from_env()          # VEILPOST_RELAY_URL, VEILPOST_DB_PATH, VEILPOST_DB_KEY, ...

    @agent.on_text
    async def echo(ctx):
        await ctx.reply(f"echo: {ctx.text}")

    agent.run_forever()

An agent is a :class:`~veilpost.client.Client` on the asyncio transport, with an encrypted
SQLite file (its installation key is kept inside it unless given). :meth:`Agent.run` connects,
catches up on every conversation from its cursors, then handles messages as they arrive; when
the relay goes away it reconnects with backoff and catches up again. A handler that raises is
logged and the agent carries on.

Environment variables (:meth:`Agent.from_env`):

=========================  ==========================================================
``VEILPOST_RELAY_URL``      the relay (default ``http://127.0.0.1:8000``)
``VEILPOST_DB_PATH``        the agent's database file (default ``veilpost-agent.sqlite3``)
``VEILPOST_DB_KEY``         its encryption key: 64 hex characters (required)
``VEILPOST_KEY``            the installation key, 64 hex (default: made once, kept in the DB)
``VEILPOST_WALLET_KEY``     an Ethereum private key: bind its address to the agent's inbox
=========================  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from veilpost.client.client import (
    Client,
    ClientEvent,
    Conversation,
    Message,
    stored_installation_key,
)
from veilpost.client.content import Reaction, Reply
from veilpost.client.errors import ClientError, RelayError
from veilpost.client.identity import InstallationKey
from veilpost.client.storage import Store, parse_key
from veilpost.transport import RelayConnection, RelayUnavailable

__all__ = ["Agent", "AgentConfigError", "MessageContext"]

log = logging.getLogger("veilpost.agent")

DEFAULT_RELAY_URL = "http://127.0.0.1:8000"
DEFAULT_DB_PATH = "veilpost-agent.sqlite3"

Handler = Callable[["MessageContext"], Awaitable[Any] | Any]
ConversationHandler = Callable[["Agent", Conversation], Awaitable[Any] | Any]


class AgentConfigError(ValueError):
    """The agent's configuration (environment variables, arguments) is incomplete or wrong."""


@dataclass
class MessageContext:
    """What a handler gets: the message, its conversation, and ways to answer."""

    agent: Agent
    message: Message
    conversation: Conversation

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def content(self) -> Any:
        return self.message.content

    @property
    def sender_inbox_id(self) -> str:
        return self.message.sender_inbox_id

    @property
    def is_dm(self) -> bool:
        return self.conversation.id.startswith("dm:")

    async def send(self, content: Any) -> Message:
        """Send ``content`` to this conversation."""
        return await self.agent.client.send(self.conversation.id, content)

    async def reply(self, content: Any, *, quote: bool = False) -> Message:
        """Answer in this conversation (as a :class:`Reply` referencing the message when
        ``quote``)."""
        if quote:
            content = Reply(reference=self.message.id, content=content)
        return await self.send(content)

    async def react(self, emoji: str) -> Message:
        return await self.send(
            Reaction(reference=self.message.id, action="added", content=emoji, schema="unicode")
        )


class Agent:
    """An agent; see the module documentation."""

    def __init__(
        self,
        *,
        db_path: str,
        db_key: bytes,
        relay_url: str = DEFAULT_RELAY_URL,
        key: InstallationKey | None = None,
        wallet_key: bytes | None = None,
    ) -> None:
        self.relay_url = relay_url
        self.db_path = db_path
        self._db_key = db_key
        self._key = key
        self._wallet_key = wallet_key
        self._message_handlers: list[tuple[Callable[[MessageContext], bool], Handler]] = []
        self._conversation_handlers: list[ConversationHandler] = []
        self._ready_handlers: list[Callable[[Agent], Awaitable[Any] | Any]] = []
        self._client: Client | None = None
        self._connection: RelayConnection | None = None
        self._store: Store | None = None
        self.address: str | None = None
        self.ready = asyncio.Event()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Agent:
        """An agent configured by the ``VEILPOST_*`` variables (see the module documentation);
        :class:`AgentConfigError` says which one is missing or malformed."""
        env = os.environ if environ is None else environ
        raw_db_key = env.get("VEILPOST_DB_KEY", "")
        if not raw_db_key:
            raise AgentConfigError(
                "VEILPOST_DB_KEY is not set: the agent's database is encrypted with it"
                " (64 hex characters; make one with `veilpost keygen`)"
            )
        try:
            db_key = parse_key(raw_db_key)
        except ValueError as exc:
            raise AgentConfigError(f"VEILPOST_DB_KEY: {exc}") from None
        key = None
        if env.get("VEILPOST_KEY"):
            try:
                key = InstallationKey.from_hex(env["VEILPOST_KEY"])
            except ValueError as exc:
                raise AgentConfigError(f"VEILPOST_KEY: {exc}") from None
        wallet = None
        if env.get("VEILPOST_WALLET_KEY"):
            try:
                wallet = bytes.fromhex(env["VEILPOST_WALLET_KEY"].removeprefix("0x"))
            except ValueError:
                raise AgentConfigError("VEILPOST_WALLET_KEY: expected 64 hex characters") from None
        return cls(
            db_path=env.get("VEILPOST_DB_PATH", DEFAULT_DB_PATH),
            db_key=db_key,
            relay_url=env.get("VEILPOST_RELAY_URL", DEFAULT_RELAY_URL),
            key=key,
            wallet_key=wallet,
        )

    # -- handlers ------------------------------------------------------------------------------

    def on_message(self, handler: Handler) -> Handler:
        """Call ``handler(ctx)`` for every message from someone else (any content type)."""
        self._message_handlers.append((lambda ctx: True, handler))
        return handler

    def on_text(self, handler: Handler) -> Handler:
        """Call ``handler(ctx)`` for text (and markdown) messages."""

        def is_text(ctx: MessageContext) -> bool:
            return isinstance(ctx.content, str) or type(ctx.content).__name__ == "Markdown"

        self._message_handlers.append((is_text, handler))
        return handler

    def on_reaction(self, handler: Handler) -> Handler:
        """Call ``handler(ctx)`` for reactions."""
        self._message_handlers.append((lambda ctx: isinstance(ctx.content, Reaction), handler))
        return handler

    def on_ready(
        self, handler: Callable[[Agent], Awaitable[Any] | Any]
    ) -> Callable[[Agent], Awaitable[Any] | Any]:
        """Call ``handler(agent)`` once connected and caught up (on every (re)start)."""
        self._ready_handlers.append(handler)
        return handler

    def on_conversation(self, handler: ConversationHandler) -> ConversationHandler:
        """Call ``handler(agent, conversation)`` when the agent joins a new conversation."""
        self._conversation_handlers.append(handler)
        return handler

    # -- state --------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ClientError("the agent is not started: await agent.start() or run it")
        return self._client

    @property
    def inbox_id(self) -> str:
        return self.client.inbox_id

    def _open_store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.db_path, self._db_key)
        return self._store

    def installation_key(self) -> InstallationKey:
        """The agent's installation key: the one given, else the one kept in its database
        (made on first use)."""
        if self._key is None:
            self._key = stored_installation_key(self._open_store())
        return self._key

    def expect_inbox(self, inbox_id: str) -> None:
        """Before the first start of a new device: it joins ``inbox_id`` (a device of that
        inbox admits its key) instead of making a new inbox."""
        self.installation_key()
        Client.expect_inbox(self._open_store(), inbox_id)

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, publish what the relay needs, and subscribe (catching up)."""
        key = self.installation_key()
        store = self._open_store()
        self._connection = await RelayConnection.open(self.relay_url, key)
        self._client = Client(
            key, self._connection.inbox_id, store, self._connection, track_unhandled=True
        )
        await self._client.start()
        if self._wallet_key is not None:
            self.address = await self._client.bind_address(self._wallet_key)
        self.ready.set()
        log.info("agent %s ready on %s", self._client.inbox_id, self.relay_url)
        for handler in self._ready_handlers:
            await self._call(handler, self)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._client = None
        self.ready.clear()

    async def run(self) -> None:
        """Start (retrying with backoff while the relay is unreachable), then process and
        dispatch messages until cancelled."""
        delay = 0.5
        while True:
            try:
                await self.start()
                break
            except (RelayUnavailable, OSError) as exc:
                log.warning("cannot reach the relay at %s (%s); retrying", self.relay_url, exc)
                await self.stop()
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, 30.0)
        client = self.client
        for message in client.unhandled():  # received before a crash, never handled
            await self._dispatch(ClientEvent("message", message.conversation_id, message))
        processing = asyncio.create_task(self._process(client))
        getting: asyncio.Future[ClientEvent] | None = None
        try:
            while True:
                getting = asyncio.ensure_future(client.events.get())
                done, _ = await asyncio.wait(
                    {getting, processing}, return_when=asyncio.FIRST_COMPLETED
                )
                if processing in done:  # it only ends for good (a revoked key)
                    getting.cancel()
                    processing.result()
                event = getting.result()
                await self._dispatch(event)
        finally:
            if getting is not None:
                getting.cancel()  # a cancelled run leaves no wait on the queue behind
            processing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await processing
            await self.stop()

    async def _process(self, client: Client) -> None:
        while True:
            try:
                await client.run()
            except RelayError as exc:
                if exc.code in ("installation_revoked", "bad_signature"):
                    log.error("the relay refused this agent's key for good: %s", exc)
                    raise
                log.warning("processing interrupted (%s); continuing", exc)
                await asyncio.sleep(1)
            except Exception:  # anything else: keep the agent alive, loudly
                log.exception("processing interrupted; continuing")
                await asyncio.sleep(1)

    def run_forever(self) -> None:
        """Run until interrupted (Ctrl-C)."""
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.run())

    async def _dispatch(self, event: ClientEvent) -> None:
        client = self.client
        if event.kind == "conversation":
            for conversation_handler in self._conversation_handlers:
                await self._call(
                    conversation_handler, self, client.conversation(event.conversation_id)
                )
            return
        message = event.message
        if event.kind != "message" or message is None or message.sender_inbox_id == client.inbox_id:
            return
        context = MessageContext(self, message, client.conversation(event.conversation_id))
        for wants, handler in self._message_handlers:
            try:
                matched = wants(context)
            except Exception:  # a content that does not decode
                log.exception("matching message %s", message.id)
                continue
            if matched:
                await self._call(handler, context)
        client.mark_handled(message)  # handlers ran (a crash before this runs them again)

    async def _call(self, handler: Callable[..., Any], *args: Any) -> None:
        try:
            result = handler(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a handler's error must not stop the agent
            log.exception("handler %s failed", getattr(handler, "__name__", handler))
