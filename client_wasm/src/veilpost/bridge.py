"""The bridge between the browser's crypto worker and the messaging client (layer 5).

:class:`Bridge` wraps a started :class:`~veilpost.client.client.Client` and speaks the worker
protocol of ``docs/browser.md``: :meth:`Bridge.handle` answers one command ``{id, cmd, args}``
with ``{id, ok, result}`` or ``{id, ok: false, error: {code, message}}``, and
:meth:`Bridge.next_event` (or ``async for event in bridge.events()``) yields the page's events,
translated from the client's :attr:`~veilpost.client.client.Client.events`. It is pure Python
(standard library and ``veilpost``), so the same code runs in the worker (``veilpost.browser``)
and in the tests on CPython.

Theory of operation
-------------------

*Folding.* Reactions, read receipts and profiles are messages of the conversation like any
other (the client stores them), but the page never lists them: the bridge folds each into what
it refers to, and keeps the result in the store so that it survives restarts:

- a :class:`~veilpost.client.content.Reaction` adds its sender to (or removes it from) the
  target message's ``reactions``, and yields a ``message`` event for the target;
- a :class:`~veilpost.client.content.ReadReceipt` from inbox X means X has read the
  conversation up to the receipt: X joins ``readBy`` of every message of mine before it (by
  relay sequence on the same topic; by local time for a message that went to the other
  group of a DM made twice). A ``message`` event is yielded for each of my messages that X
  newly read (the newest 100 at most);
- a :class:`~veilpost.client.content.Profile` sets the sender's display name (the newest one
  received wins), and yields a ``conversation`` event for every conversation it is a member
  of. A profile from another device of this inbox sets this inbox's name.

Events go through one ordered queue; each command first takes in whatever the client has
emitted, so that its answer already reflects it. At start the bridge folds again what was
stored since the last fold (less a margin), so a message stored while no bridge ran (a crash,
or the same profile used by the CLI) is folded too; folding is idempotent.

*Names.* ``setName`` stores the name in the store's settings and sends a Profile to every
active conversation. The bridge sends its Profile to a conversation it joins, to one whose
members were added (the newcomers cannot read earlier messages), and at start to every
active conversation that has not had the current name yet.

*Unread counts.* The relay counts envelopes (``last_sequence - read_cursor``) without knowing
who sent them or what they are. The bridge takes the relay's count and subtracts only what it
knows: of the envelopes this client has processed, only messages from others that the page
lists count (not this inbox's own messages, not reactions, receipts, profiles or group-change
notices); envelopes the client has not processed yet count, less this inbox's own messages
among them. ``markRead`` moves the relay's read cursor of every topic of the conversation to
the relay's ``last_sequence`` (the receipt it just sent included), and remembers it, so a
count is right after ``markRead`` even before the relay answers again.

*Ordering.* ``listConversations`` is ordered by ``updatedAt``: the time of the newest listed
message, else the relay's last activity on the conversation's topics. Receipts, reactions and
profiles do not move a conversation up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veilpost.client import content as ct
from veilpost.client.client import Client, ClientEvent, Conversation, Message
from veilpost.client.errors import ClientError, RelayError
from veilpost.client.identity import fingerprint
from veilpost.client.storage import MessageCursor

__all__ = ["Bridge", "BridgeError"]

log = logging.getLogger("veilpost.bridge")

JSON = dict[str, Any]

# Store namespaces of the bridge (the client's own are listed in veilpost.client.client).
_SETTINGS = "settings"  # "display_name", "display_name_at" (the client's namespace too)
_NAMES = "bridge.names"  # inbox id -> JSON {"name", "ns"}: the newest profile received
_REACTIONS = "bridge.reactions"  # "conversation|message id" -> JSON {emoji: [inbox ids]}
_READS = "bridge.reads"  # conversation -> JSON {inbox: {"topic", "sequence", "ns"}}
_READ_CURSORS = "bridge.read_cursors"  # topic -> the read cursor markRead set
_RECEIPTS = "bridge.receipts"  # conversation -> JSON [ns, id]: newest message a receipt covered
_PROFILE_SENT = "bridge.profile_sent"  # conversation -> the name last sent there
_FOLDED = "bridge.folded"  # conversation -> the sent_at_ns folded through

DEFAULT_PAGE = 50
MAX_PAGE = 200
_SCAN_CHUNK = 200
_UNREAD_SCAN_LIMIT = 2000  # messages looked at per conversation to count unread ones
_PASSED_AFTER = 10  # messages at or below a topic's read cursor before a scan stops
_READ_EVENTS = 100  # message events a read receipt yields at most
_REFOLD_MARGIN_NS = 300 * 10**9
_SHORT_ID = 8


class BridgeError(Exception):
    """A refused command: ``code`` and, for ``invalid_args``, the ``field`` at fault."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def _invalid(field: str, message: str) -> BridgeError:
    return BridgeError("invalid_args", f"{field}: {message}", field=field)


class _Args:
    """A command's arguments, read one typed field at a time (unknown fields are refused)."""

    def __init__(self, raw: dict[str, Any], fields: frozenset[str]) -> None:
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise _invalid(unknown[0], "not an argument of this command")
        self._raw = raw

    def string(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._raw.get(name)
        if value is None:
            raise _invalid(name, "missing")
        if not isinstance(value, str):
            raise _invalid(name, f"expected a string, not {type(value).__name__}")
        if not value and not allow_empty:
            raise _invalid(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        if self._raw.get(name) is None:
            return None
        return self.string(name)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise _invalid(name, f"expected true or false, not {type(value).__name__}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(name, f"expected an integer, not {type(value).__name__}")
        if not low <= value <= high:
            raise _invalid(name, f"{value} is not in {low}..{high}")
        return value

    def strings(self, name: str, *, allow_empty: bool) -> list[str]:
        """A list of recipients (inbox ids, addresses or invite links), as recipients."""
        value = self._raw.get(name)
        if value is None and allow_empty:
            return []
        if not isinstance(value, list):
            raise _invalid(name, "missing" if value is None else "expected a list of strings")
        if not value and not allow_empty:
            raise _invalid(name, "must not be empty")
        found = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not _recipient(item):
                raise _invalid(f"{name}[{index}]", "expected an inbox id, address or invite link")
            found.append(_recipient(item))
        return found


@dataclass(frozen=True)
class _Command:
    run: Callable[[_Args], Awaitable[JSON]]
    fields: frozenset[str]


def _short(inbox_id: str) -> str:
    return inbox_id[:_SHORT_ID] if inbox_id else "someone"


def _encode_token(cursor: MessageCursor) -> str:
    raw = f"{cursor.sent_at_ns}:{cursor.message_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_token(token: str) -> MessageCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        ns, _, message_id = raw.partition(":")
        if not message_id or not ns.isdigit():
            raise ValueError(raw)
        return MessageCursor(int(ns), message_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("before", "not a page token this bridge issued") from None


def _recipient(text: str) -> str:
    """An inbox id or ``0x`` address, or an invite link ``<anything>#dm/<inbox id>``."""
    text = text.strip()
    if "#dm/" in text:
        text = urllib.parse.unquote(text.rsplit("#dm/", 1)[1]).strip().strip("/")
    return text


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _iso_ms(text: object) -> int:
    if not isinstance(text, str) or not text:
        return 0
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return 0


@dataclass(frozen=True)
class _Shown:
    """How a stored message is shown: ``None`` from :meth:`Bridge._classify` when folded."""

    kind: str
    text: str
    reply: ct.Reply | None
    attachment: ct.Attachment | ct.RemoteAttachment | None


class Bridge:
    """The worker protocol of ``docs/browser.md`` over a started client; see the module
    documentation. ``origin`` is the relay's origin (``https://relay.example``): invite links
    are ``{origin}/#dm/{inbox id}``."""

    def __init__(self, client: Client, *, origin: str) -> None:
        self.client = client
        self.origin = origin.rstrip("/")
        self._out: asyncio.Queue[JSON] = asyncio.Queue()
        self._pending: collections.deque[ClientEvent] = collections.deque()
        self._absorbing = asyncio.Lock()
        self._profile_locks: dict[str, asyncio.Lock] = {}
        self._rows: dict[str, JSON] = {}  # the relay's conversation rows, by topic
        self._names: dict[str, str] = {}
        for inbox, raw in client.store.items(_NAMES):
            self._names[inbox] = json.loads(raw)["name"]
        self._pump: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._commands: dict[str, _Command] = {
            "hello": _Command(self._hello, frozenset()),
            "setName": _Command(self._set_name, frozenset({"name"})),
            "listConversations": _Command(self._list_conversations, frozenset()),
            "messages": _Command(self._messages, frozenset({"conversationId", "limit", "before"})),
            "send": _Command(self._send, frozenset({"conversationId", "text", "replyTo"})),
            "sendAttachment": _Command(
                self._send_attachment,
                frozenset({"conversationId", "filename", "mimeType", "data"}),
            ),
            "fetchAttachment": _Command(
                self._fetch_attachment, frozenset({"conversationId", "messageId"})
            ),
            "react": _Command(
                self._react, frozenset({"conversationId", "messageId", "emoji", "remove"})
            ),
            "markRead": _Command(self._mark_read, frozenset({"conversationId"})),
            "retry": _Command(self._retry, frozenset({"conversationId", "messageId"})),
            "newDm": _Command(self._new_dm, frozenset({"recipient"})),
            "newGroup": _Command(self._new_group, frozenset({"name", "members"})),
            "addMembers": _Command(self._add_members, frozenset({"conversationId", "members"})),
            "removeMembers": _Command(
                self._remove_members, frozenset({"conversationId", "members"})
            ),
            "rename": _Command(self._rename, frozenset({"conversationId", "name"})),
            "leave": _Command(self._leave, frozenset({"conversationId"})),
        }

    # -- the protocol ---------------------------------------------------------------------

    async def handle(self, request: Any) -> JSON:
        """Answer one command; never raises for a bad request (see ``docs/browser.md``)."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict):
                raise BridgeError("invalid_request", "a request is an object {id, cmd, args}")
            name = request.get("cmd")
            command = self._commands.get(name) if isinstance(name, str) else None
            if command is None:
                raise BridgeError("unknown_command", f"unknown command {name!r}")
            raw = request.get("args")
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                raise _invalid("args", "expected an object")
            args = _Args(raw, command.fields)
            self._start()
            await self._drain()
            result = await command.run(args)
        except BridgeError as exc:
            error: JSON = {"code": exc.code, "message": str(exc)}
            if exc.field is not None:
                error["field"] = exc.field
            return {"id": request_id, "ok": False, "error": error}
        except ClientError as exc:  # RelayError included: the relay's code
            return self._error(request_id, exc.code, str(exc))
        except ct.ContentError as exc:
            return self._error(request_id, "invalid_content", str(exc))
        except (OSError, TimeoutError) as exc:
            return self._error(request_id, "relay_unavailable", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("command %r failed", request.get("cmd"))
            return self._error(request_id, "internal_error", f"{type(exc).__name__}: {exc}")
        return {"id": request_id, "ok": True, "result": result}

    @staticmethod
    def _error(request_id: Any, code: str, message: str) -> JSON:
        return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}

    async def next_event(self) -> JSON:
        """The next event for the page (``message`` or ``conversation``), waiting for one."""
        self._start()
        return await self._out.get()

    async def events(self) -> AsyncIterator[JSON]:
        """The page's events, forever."""
        while True:
            yield await self.next_event()

    async def close(self) -> None:
        """Stop taking in the client's events and cancel what runs in the background."""
        self._closed = True
        tasks = [*self._background, *([self._pump] if self._pump else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._background.clear()
        self._pump = None

    # -- taking in the client's events ----------------------------------------------------

    def _start(self) -> None:
        if self._pump is not None or self._closed:
            return
        self._pump = asyncio.ensure_future(self._run_pump())
        self._spawn(self._startup())

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        if self._closed:
            if asyncio.iscoroutine(coroutine):
                coroutine.close()
            return
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("bridge background task failed: %r", task.exception())

    async def _run_pump(self) -> None:
        while True:
            event = await self.client.events.get()
            self._pending.append(event)  # (no await in between: the order is the queue's)
            await self._absorb_pending()

    async def _drain(self) -> None:
        while True:
            try:
                self._pending.append(self.client.events.get_nowait())
            except asyncio.QueueEmpty:
                break
        await self._absorb_pending()

    async def _absorb_pending(self) -> None:
        async with self._absorbing:
            while self._pending:
                event = self._pending.popleft()
                try:
                    await self._absorb(event)
                except Exception:
                    log.exception("taking in a %s event of %s", event.kind, event.conversation_id)

    async def _absorb(self, event: ClientEvent) -> None:
        if event.kind == "message" and event.message is not None:
            await self._absorb_message(event.message, emit=True)
            return
        if event.kind not in ("conversation", "updated", "removed"):
            if event.kind == "failed":
                log.info("%s: an envelope failed: %s", event.conversation_id, event.reason)
            return
        try:
            conversation = self.client.conversation(event.conversation_id)
        except ClientError:
            return  # forgotten meanwhile
        if event.message is not None:  # the notice of a group change
            await self._absorb_message(event.message, emit=True)
        self._out.put_nowait(
            {"event": "conversation", "conversation": await self._conversation_view(conversation)}
        )
        if event.kind == "conversation":
            self._spawn(self._send_profile(event.conversation_id))
        elif event.kind == "updated" and event.message is not None:
            notice = self._value(event.message)
            if (
                self._my_name()
                and isinstance(notice, ct.GroupUpdated)
                and any(inbox != self.client.inbox_id for inbox in notice.added_inboxes)
            ):
                self._spawn(self._send_profile(event.conversation_id, again=True))

    async def _startup(self) -> None:
        """Fold what was stored since the last fold, then send the current name wherever it
        has not been sent."""
        async with self._absorbing:
            for conversation in self._conversations():
                self._refold(conversation)
        for conversation in self._conversations():
            if conversation.active:
                await self._send_profile(conversation.id)

    def _conversations(self) -> list[Conversation]:
        found = []
        for conversation_id in dict.fromkeys(c.id for c in self._safe_conversations()):
            try:
                found.append(self.client.conversation(conversation_id))
            except ClientError as exc:
                log.warning("conversation %s cannot be shown: %s", conversation_id, exc)
        return found

    def _safe_conversations(self) -> list[Conversation]:
        try:
            return self.client.conversations()
        except ClientError as exc:  # one broken conversation: list the others one by one
            log.warning("listing conversations: %s", exc)
            info = getattr(self.client, "_info", {})
            ids = dict.fromkeys(i.conversation_id for i in info.values())
            found = []
            for conversation_id in ids:
                try:
                    found.append(self.client.conversation(conversation_id))
                except ClientError:
                    continue
            return found

    def _refold(self, conversation: Conversation) -> None:
        folded = self.client.store.get(_FOLDED, conversation.id)
        start = None
        if folded is not None:
            ns = max(0, int(folded) - _REFOLD_MARGIN_NS)
            start = MessageCursor(ns, "")
        for message in self._history(conversation.id, newest_first=False, after=start):
            self._fold(message, conversation.topic)

    # -- folding ------------------------------------------------------------------------------

    def _value(self, message: Message) -> Any:
        try:
            return message.content
        except ct.ContentError:
            return None

    def _fold(self, message: Message, topic: str) -> tuple[str, Any] | None:
        """Fold one reaction, receipt or profile; ``(what, detail)`` if it changed anything."""
        value = self._value(message)
        changed: tuple[str, Any] | None = None
        if isinstance(value, ct.Reaction):
            if self._fold_reaction(message, value):
                changed = ("reaction", value.reference)
        elif isinstance(value, ct.ReadReceipt):
            moved, before = self._fold_receipt(message, topic)
            if moved:
                changed = ("receipt", before)
        elif isinstance(value, ct.Profile) and self._fold_profile(message, value):
            changed = ("profile", message.sender_inbox_id)
        folded = self.client.store.get(_FOLDED, message.conversation_id)
        if folded is None or int(folded) < message.sent_at_ns:
            self.client.store.put(
                _FOLDED, message.conversation_id, str(message.sent_at_ns).encode()
            )
        return changed

    def _fold_reaction(self, message: Message, reaction: ct.Reaction) -> bool:
        if message.status == "failed":
            return False
        key = f"{message.conversation_id}|{reaction.reference}"
        raw = self.client.store.get(_REACTIONS, key)
        table: dict[str, list[str]] = json.loads(raw) if raw else {}
        people = table.setdefault(reaction.content, [])
        reactor = message.sender_inbox_id
        if reaction.action == "added" and reactor not in people:
            people.append(reactor)
        elif reaction.action == "removed" and reactor in people:
            people.remove(reactor)
        else:
            return False
        if not people:
            del table[reaction.content]
        self.client.store.put(_REACTIONS, key, json.dumps(table).encode())
        return True

    def _reads(self, conversation_id: str) -> dict[str, JSON]:
        raw = self.client.store.get(_READS, conversation_id)
        return json.loads(raw) if raw else {}

    def _fold_receipt(self, message: Message, topic: str) -> tuple[bool, JSON | None]:
        """Record how far the receipt's sender has read: whether that moved, and the
        previous position (``None``: none)."""
        reader = message.sender_inbox_id
        if reader == self.client.inbox_id or message.sequence is None:
            return False, None
        reads = self._reads(message.conversation_id)
        old = reads.get(reader)
        new: JSON = {
            "topic": message.topic or topic,
            "sequence": message.sequence,
            "ns": message.sent_at_ns,
        }
        if old is not None:
            if old["topic"] == new["topic"] and old["sequence"] >= new["sequence"]:
                return False, old
            if old["topic"] != new["topic"] and old["ns"] >= new["ns"]:
                return False, old
        reads[reader] = new
        self.client.store.put(_READS, message.conversation_id, json.dumps(reads).encode())
        return True, old

    def _fold_profile(self, message: Message, profile: ct.Profile) -> bool:
        if message.status == "failed":
            return False
        sender, name = message.sender_inbox_id, profile.display_name
        if sender == self.client.inbox_id:
            if message.sender_installation_id == self.client.installation_id:
                return False  # sent from here
            at = self.client.store.get(_SETTINGS, "display_name_at")
            if at is not None and int(at) >= message.sent_at_ns:
                return False
            self._store_my_name(name, message.sent_at_ns)
            return True
        raw = self.client.store.get(_NAMES, sender)
        if raw is not None and json.loads(raw)["ns"] >= message.sent_at_ns:
            return False
        record = {"name": name, "ns": message.sent_at_ns}
        self.client.store.put(_NAMES, sender, json.dumps(record).encode())
        before = self._names.get(sender)
        self._names[sender] = name
        return before != name

    async def _absorb_message(self, message: Message, *, emit: bool) -> None:
        cid = message.conversation_id
        try:
            conversation = self.client.conversation(cid)
        except ClientError:
            return
        changed = self._fold(message, conversation.topic)
        if not emit:
            return
        if changed is None:
            view = self._message_view(message, conversation.topic)
            if view is not None:
                self._out.put_nowait({"event": "message", "conversationId": cid, "message": view})
            return
        what, detail = changed
        if what == "reaction":
            stored = self.client.store.get_message(cid, detail)
            if stored is not None:
                self._emit_message(Message.from_record(stored.record), conversation.topic)
        elif what == "receipt":
            self._emit_newly_read(message, conversation.topic, detail)
        elif what == "profile":
            for other in self._conversations():
                if detail in other.members:
                    self._out.put_nowait(
                        {
                            "event": "conversation",
                            "conversation": await self._conversation_view(other),
                        }
                    )

    def _emit_message(self, message: Message, topic: str) -> None:
        view = self._message_view(message, topic)
        if view is not None:
            self._out.put_nowait(
                {"event": "message", "conversationId": message.conversation_id, "message": view}
            )

    def _emit_newly_read(self, receipt: Message, topic: str, before: JSON | None) -> None:
        new = self._reads(receipt.conversation_id).get(receipt.sender_inbox_id)
        if new is None:
            return
        emitted = 0
        history = self._history(receipt.conversation_id, newest_first=True)
        for scanned, message in enumerate(history):
            if emitted >= _READ_EVENTS or scanned >= _UNREAD_SCAN_LIMIT:
                return
            if message.sender_inbox_id != self.client.inbox_id:
                continue
            if before is not None and self._covers(before, message, topic):
                return  # older ones were read before
            if self._covers(new, message, topic) and self._classify(message) is not None:
                self._emit_message(message, topic)
                emitted += 1

    @staticmethod
    def _covers(position: JSON, message: Message, topic: str) -> bool:
        """Whether a reader at ``position`` has read ``message`` (one of mine)."""
        if message.sequence is None:
            return False  # not stored by the relay yet
        if (message.topic or topic) == position["topic"]:
            return bool(message.sequence < position["sequence"])
        return bool(message.sent_at_ns < position["ns"])

    # -- names ------------------------------------------------------------------------------

    def _my_name(self) -> str | None:
        raw = self.client.store.get(_SETTINGS, "display_name")
        return None if raw is None else raw.decode("utf-8")

    def _store_my_name(self, name: str, at_ns: int) -> None:
        with self.client.store.transaction():
            self.client.store.put(_SETTINGS, "display_name", name.encode("utf-8"))
            self.client.store.put(_SETTINGS, "display_name_at", str(at_ns).encode())

    def _name(self, inbox_id: str) -> str | None:
        name = self._my_name() if inbox_id == self.client.inbox_id else self._names.get(inbox_id)
        return name or None

    def _display(self, inbox_id: str) -> str:
        return self._name(inbox_id) or _short(inbox_id)

    async def _send_profile(self, conversation_id: str, *, again: bool = False) -> None:
        """Send this inbox's name to a conversation, unless it has it (or ``again``)."""
        name = self._my_name()
        if name is None or (not name and not again):
            return
        lock = self._profile_locks.setdefault(conversation_id, asyncio.Lock())
        async with lock:
            sent = self.client.store.get(_PROFILE_SENT, conversation_id)
            if not again and sent is not None and sent.decode("utf-8") == name:
                return
            try:
                if not self.client.conversation(conversation_id).active:
                    return
                message = await self.client.send(conversation_id, ct.Profile(name))
            except (ClientError, OSError, TimeoutError) as exc:
                log.warning("sending the profile to %s: %s", conversation_id, exc)
                return
            if message.status == "sent" or self.client.is_queued(message):
                self.client.store.put(_PROFILE_SENT, conversation_id, name.encode("utf-8"))

    # -- views ----------------------------------------------------------------------------

    def _history(
        self,
        conversation_id: str,
        *,
        newest_first: bool,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> Iterator[Message]:
        """A conversation's stored messages, read in chunks."""
        while True:
            chunk = self.client.messages(
                conversation_id,
                limit=_SCAN_CHUNK,
                newest_first=newest_first,
                before=before,
                after=after,
            )
            yield from chunk
            if len(chunk) < _SCAN_CHUNK:
                return
            last = MessageCursor(chunk[-1].sent_at_ns, chunk[-1].id)
            if newest_first:
                before = last
            else:
                after = last

    def _classify(self, message: Message) -> _Shown | None:
        """How a message is listed, or ``None`` if it is folded or hidden."""
        try:
            decoded = message.decoded
        except ct.ContentError:
            return _Shown("unknown", f"[{message.content_type}]", None, None)
        value = decoded.value
        if isinstance(value, ct.Reaction | ct.ReadReceipt | ct.Profile | ct.McpMessage):
            return None  # folded into what they refer to; MCP traffic is for programs
        if not decoded.known:
            if not decoded.fallback:
                return None  # a type this client does not know, that asks not to be shown
            return _Shown("unknown", decoded.fallback, None, None)
        reply = value if isinstance(value, ct.Reply) else None
        inner = reply.content if reply is not None else value
        if isinstance(inner, str):
            return _Shown("text", inner, reply, None)
        if isinstance(inner, ct.Markdown):
            return _Shown("markdown", inner.text, reply, None)
        if isinstance(inner, ct.Attachment | ct.RemoteAttachment):
            filename = inner.filename
            text = f"Sent an attachment: {filename}" if filename else "Sent an attachment"
            return _Shown("attachment", text, reply, inner)
        if isinstance(inner, ct.GroupUpdated):
            return _Shown("notice", self._notice_text(inner), None, None)
        if isinstance(inner, ct.EncodedContent):
            return _Shown("unknown", inner.fallback or decoded.fallback or "", reply, None)
        return _Shown("unknown", decoded.fallback or "", reply, None)

    def _notice_text(self, update: ct.GroupUpdated) -> str:
        initiator = update.initiated_by_inbox_id
        who = self._display(initiator) if initiator else "Someone"

        def names(inboxes: tuple[str, ...]) -> str:
            return ", ".join(self._display(i) for i in inboxes)

        parts = []
        if update.added_inboxes:
            parts.append(f"{who} added {names(update.added_inboxes)}")
        if update.removed_inboxes:
            state = (
                "are no longer members"
                if len(update.removed_inboxes) > 1
                else "is no longer a member"
            )
            parts.append(f"{names(update.removed_inboxes)} {state}")
        for change in update.metadata_changes:
            if change.field == "group_name":
                parts.append(
                    f"{who} renamed the conversation to “{change.new}”"
                    if change.new
                    else f"{who} removed the conversation's name"
                )
            elif change.field == "description":
                parts.append(f"{who} changed the description")
            else:
                parts.append(f"{who} changed {change.field}")
        return "; ".join(parts) or f"{who} updated the conversation"

    def _message_view(self, message: Message, topic: str) -> JSON | None:
        shown = self._classify(message)
        if shown is None:
            return None
        mine = message.sender_inbox_id == self.client.inbox_id
        cid = message.conversation_id
        reply_to = None
        if shown.reply is not None:
            stored = self.client.store.get_message(cid, shown.reply.reference)
            original = Message.from_record(stored.record) if stored is not None else None
            original_shown = self._classify(original) if original is not None else None
            sender = original.sender_inbox_id if original else shown.reply.reference_inbox_id
            reply_to = {
                "id": shown.reply.reference,
                "text": original_shown.text if original_shown is not None else None,
                "senderName": self._display(sender) if sender else None,
            }
        raw = self.client.store.get(_REACTIONS, f"{cid}|{message.id}")
        table: dict[str, list[str]] = json.loads(raw) if raw else {}
        reactions = [
            {"emoji": emoji, "count": len(people), "mine": self.client.inbox_id in people}
            for emoji, people in table.items()
            if people
        ]
        read_by: list[str] = []
        if mine:
            for reader, position in self._reads(cid).items():
                if self._covers(position, message, topic):
                    read_by.append(reader)
        return {
            "id": message.id,
            "conversationId": cid,
            "senderInboxId": message.sender_inbox_id,
            "senderName": self._display(message.sender_inbox_id),
            "mine": mine,
            "kind": shown.kind,
            "text": shown.text,
            "status": message.status,
            "sentAt": _ms(message.sent_at_ns),
            "replyTo": reply_to,
            "reactions": reactions,
            "attachment": self._attachment_view(shown.attachment),
            "readBy": sorted(read_by),
        }

    @staticmethod
    def _attachment_view(value: ct.Attachment | ct.RemoteAttachment | None) -> JSON | None:
        if value is None:
            return None
        if isinstance(value, ct.Attachment):
            view: JSON = {
                "filename": value.filename,
                "mimeType": value.mime_type,
                "size": len(value.data),
                "inline": True,
            }
            if value.mime_type.lower().startswith("image/"):
                view["data"] = base64.b64encode(value.data).decode("ascii")
            return view
        return {
            "filename": value.filename or "attachment",
            "mimeType": value.mime_type or "application/octet-stream",
            "size": value.content_length,  # the encrypted size: the file's is not sent
            "inline": False,
        }

    def _topics(self, conversation: Conversation) -> list[str]:
        """Every group topic of a conversation (a DM made twice has two)."""
        return self.client.conversation_topics(conversation.id) or [conversation.topic]

    def _read_cursor(self, topic: str) -> int:
        row = self._rows.get(topic)
        relay = int(row.get("read_cursor", 0)) if row else 0
        stored = self.client.store.get(_READ_CURSORS, topic)
        return max(relay, int(stored) if stored else 0)

    def _counts_as_unread(self, message: Message) -> bool:
        if message.sender_inbox_id == self.client.inbox_id:
            return False
        shown = self._classify(message)
        return shown is not None and shown.kind != "notice"

    def _unread(self, conversation: Conversation, topics: list[str]) -> int:
        ranges: dict[str, tuple[int, int, int]] = {}
        for topic in topics:
            row = self._rows.get(topic)
            read, cursor = self._read_cursor(topic), self.client.cursor(topic)
            last = int(row.get("last_sequence", cursor)) if row else cursor
            ranges[topic] = (read, cursor, last)
        count = 0
        own_unprocessed = 0
        below: dict[str, int] = dict.fromkeys(topics, 0)
        for scanned, message in enumerate(self._history(conversation.id, newest_first=True)):
            if scanned >= _UNREAD_SCAN_LIMIT or all(n >= _PASSED_AFTER for n in below.values()):
                break
            topic = message.topic or conversation.topic
            if topic not in ranges or message.sequence is None:
                continue
            read, cursor, last = ranges[topic]
            if message.sequence <= read:
                below[topic] += 1
                continue
            if message.sender_inbox_id == self.client.inbox_id:
                if max(read, cursor) < message.sequence <= last:
                    own_unprocessed += 1
            elif message.sequence <= cursor and self._counts_as_unread(message):
                count += 1
        unprocessed = sum(
            max(0, last - max(read, cursor)) for read, cursor, last in ranges.values()
        )
        return count + max(0, unprocessed - own_unprocessed)

    def _last_listed(self, conversation_id: str) -> Message | None:
        for scanned, message in enumerate(self._history(conversation_id, newest_first=True)):
            if scanned >= _UNREAD_SCAN_LIMIT:
                return None
            if self._classify(message) is not None:
                return message
        return None

    async def _member_view(self, conversation: Conversation, inbox_id: str) -> JSON:
        try:
            print_ = fingerprint(await self.client.identity(inbox_id))
        except (ClientError, OSError, TimeoutError) as exc:
            log.info("no fingerprint for %s: %s", inbox_id, exc)
            print_ = None
        return {
            "inboxId": inbox_id,
            "name": self._name(inbox_id),
            "fingerprint": print_,
            "isMe": inbox_id == self.client.inbox_id,
            "role": conversation.role_of(inbox_id).name.lower(),
        }

    async def _conversation_view(self, conversation: Conversation) -> JSON:
        me = self.client.inbox_id
        kind = "dm" if conversation.peer_inbox_id is not None else "group"
        if conversation.name:
            title = conversation.name
        elif conversation.peer_inbox_id is not None:
            title = self._display(conversation.peer_inbox_id)
        else:
            others = [self._display(i) for i in conversation.members if i != me]
            title = ", ".join(others[:3]) + (f" +{len(others) - 3}" if len(others) > 3 else "")
            title = title or "Group"
        topics = self._topics(conversation)
        last = self._last_listed(conversation.id)
        activity = max(_iso_ms(self._rows.get(t, {}).get("last_activity_at")) for t in topics)
        return {
            "id": conversation.id,
            "kind": kind,
            "title": title,
            "name": conversation.name,
            "description": conversation.description,
            "peerInboxId": conversation.peer_inbox_id,
            "members": [await self._member_view(conversation, i) for i in conversation.members],
            "myRole": conversation.role_of(me).name.lower(),
            "active": conversation.active,
            "lastMessage": self._message_view(last, conversation.topic) if last else None,
            "unread": self._unread(conversation, topics),
            "updatedAt": _ms(last.sent_at_ns) if last else activity,
        }

    async def _refresh_rows(self, *, strict: bool) -> None:
        """The relay's conversation rows; when it is unreachable, the last ones known (or
        the error, with ``strict``)."""
        try:
            rows = await self.client.relay.conversations()
        except (RelayError, OSError, TimeoutError) as exc:
            if strict:
                raise
            log.info("conversation rows from the relay: %s (using the last known)", exc)
            return
        self._rows = {str(row["topic"]): row for row in rows}

    def _stored(self, conversation_id: str, message_id: str) -> Message:
        self.client.conversation(conversation_id)  # conversation_not_found first
        stored = self.client.store.get_message(conversation_id, message_id)
        if stored is None:
            raise BridgeError("message_not_found", f"no message {message_id} in {conversation_id}")
        return Message.from_record(stored.record)

    async def _conversation_result(self, conversation_id: str) -> JSON:
        return {
            "conversation": await self._conversation_view(self.client.conversation(conversation_id))
        }

    def _message_result(self, message: Message) -> JSON:
        topic = self.client.conversation(message.conversation_id).topic
        return {"message": self._message_view(message, topic)}

    # -- commands -------------------------------------------------------------------------

    async def _hello(self, args: _Args) -> JSON:
        inbox = self.client.inbox_id
        return {
            "inboxId": inbox,
            "installationId": self.client.installation_id,
            "name": self._my_name() or None,
            "link": f"{self.origin}/#dm/{inbox}",
        }

    async def _set_name(self, args: _Args) -> JSON:
        name = args.string("name", allow_empty=True).strip()
        try:
            ct.Profile(name)
        except ct.ContentError as exc:
            raise _invalid("name", str(exc)) from None
        self._store_my_name(name, time.time_ns())
        for conversation in self._conversations():
            if conversation.active:
                await self._send_profile(conversation.id, again=True)
        return {}

    async def _list_conversations(self, args: _Args) -> JSON:
        await self._refresh_rows(strict=False)
        views = [await self._conversation_view(c) for c in self._conversations()]
        views.sort(key=lambda v: (v["updatedAt"], v["id"]), reverse=True)
        return {"conversations": views}

    async def _messages(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        limit = args.integer("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        token = args.optional_string("before")
        before = _decode_token(token) if token is not None else None
        conversation = self.client.conversation(cid)
        page: list[Message] = []
        more = False
        for message in self._history(cid, newest_first=True, before=before):
            if self._classify(message) is None:
                continue
            if len(page) == limit:
                more = True  # one older listed message exists
                break
            page.append(message)
        views = [self._message_view(m, conversation.topic) for m in reversed(page)]
        next_before = None
        if more:
            oldest = page[-1]
            next_before = _encode_token(MessageCursor(oldest.sent_at_ns, oldest.id))
        return {"messages": [v for v in views if v is not None], "nextBefore": next_before}

    async def _send(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        text = args.string("text")
        reply_to = args.optional_string("replyTo")
        try:
            ct.TextCodec().encode(text)
        except (ct.ContentError, TypeError) as exc:
            raise _invalid("text", str(exc)) from None
        body: Any = text
        if reply_to is not None:
            original = self._stored(cid, reply_to)
            body = ct.Reply(reply_to, text, reference_inbox_id=original.sender_inbox_id or None)
        message = await self.client.send(cid, body)
        return self._message_result(message)

    async def _send_attachment(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        filename, mime_type = args.string("filename"), args.string("mimeType")
        encoded = args.string("data", allow_empty=True)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("data", "not valid base64") from None
        for field, name, kind in (
            ("filename", filename, "application/octet-stream"),
            ("mimeType", "file", mime_type),
        ):
            try:
                ct.Attachment(name, kind, b"")
            except ct.ContentError as exc:
                raise _invalid(field, str(exc)) from None
        if len(data) > ct.MAX_REMOTE_ATTACHMENT_BYTES:
            raise _invalid(
                "data", f"{len(data)} bytes, at most {ct.MAX_REMOTE_ATTACHMENT_BYTES} allowed"
            )
        message = await self.client.send_attachment(cid, filename, mime_type, data)
        return self._message_result(message)

    async def _fetch_attachment(self, args: _Args) -> JSON:
        cid, message_id = args.string("conversationId"), args.string("messageId")
        message = self._stored(cid, message_id)
        value = self._value(message)
        if isinstance(value, ct.Reply):
            value = value.content
        if isinstance(value, ct.Attachment):
            attachment = value
        elif isinstance(value, ct.RemoteAttachment):
            ciphertext = await self.client.relay.get_blob(value.url)
            try:
                attachment = ct.decrypt_attachment(ciphertext, value, self.client.provider)
            except ct.AttachmentError as exc:
                raise BridgeError("attachment_invalid", str(exc)) from None
        else:
            raise BridgeError("not_attachment", f"message {message_id} is not an attachment")
        return {
            "filename": attachment.filename,
            "mimeType": attachment.mime_type,
            "data": base64.b64encode(attachment.data).decode("ascii"),
        }

    async def _react(self, args: _Args) -> JSON:
        cid, message_id = args.string("conversationId"), args.string("messageId")
        emoji = args.string("emoji")
        remove = args.boolean("remove", False)
        self._stored(cid, message_id)
        try:
            reaction = ct.Reaction(message_id, "removed" if remove else "added", emoji)
        except ct.ContentError as exc:
            raise _invalid("emoji", str(exc)) from None
        await self.client.send(cid, reaction)
        return {}

    async def _mark_read(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        conversation = self.client.conversation(cid)
        if conversation.active:
            await self._send_receipt(conversation)
        await self._refresh_rows(strict=True)
        for topic in self._topics(conversation):
            row = self._rows.get(topic)
            if row is None:
                continue
            last = int(row["last_sequence"])
            if last > self._read_cursor(topic):
                await self.client.relay.set_read_cursor(topic, last)
                row["read_cursor"] = max(int(row.get("read_cursor", 0)), last)
                row["unread"] = 0
            stored = self.client.store.get(_READ_CURSORS, topic)
            if stored is None or int(stored) < last:
                self.client.store.put(_READ_CURSORS, topic, str(last).encode())
        return {}

    async def _send_receipt(self, conversation: Conversation) -> None:
        """A read receipt, if a message from someone else came since the last one."""
        newest = None
        for scanned, message in enumerate(self._history(conversation.id, newest_first=True)):
            if scanned >= _UNREAD_SCAN_LIMIT:
                break
            if self._counts_as_unread(message):
                newest = [message.sent_at_ns, message.id]
                break
        if newest is None:
            return
        raw = self.client.store.get(_RECEIPTS, conversation.id)
        if raw is not None and json.loads(raw) >= newest:
            return
        receipt = await self.client.send(conversation.id, ct.ReadReceipt())
        if receipt.status == "sent" or self.client.is_queued(receipt):
            self.client.store.put(_RECEIPTS, conversation.id, json.dumps(newest).encode())

    async def _retry(self, args: _Args) -> JSON:
        cid, message_id = args.string("conversationId"), args.string("messageId")
        self._stored(cid, message_id)
        return self._message_result(await self.client.retry(cid, message_id))

    async def _new_dm(self, args: _Args) -> JSON:
        recipient = _recipient(args.string("recipient"))
        if not recipient:
            raise _invalid("recipient", "no inbox id, address or invite link")
        conversation = await self.client.new_dm(recipient)
        await self._send_profile(conversation.id)
        return await self._conversation_result(conversation.id)

    async def _new_group(self, args: _Args) -> JSON:
        name = args.string("name", allow_empty=True).strip()
        members = args.strings("members", allow_empty=True)
        conversation = await self.client.new_group(members, name=name)
        await self._send_profile(conversation.id)
        return await self._conversation_result(conversation.id)

    async def _add_members(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        members = args.strings("members", allow_empty=False)
        await self.client.add_members(cid, members)
        return {}

    async def _remove_members(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        members = args.strings("members", allow_empty=False)
        await self.client.remove_members(cid, members)
        return {}

    async def _rename(self, args: _Args) -> JSON:
        cid = args.string("conversationId")
        await self.client.update_metadata(cid, name=args.string("name", allow_empty=True).strip())
        return {}

    async def _leave(self, args: _Args) -> JSON:
        await self.client.leave(args.string("conversationId"))
        return {}
