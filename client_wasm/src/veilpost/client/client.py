"""The messaging client: one installation's conversations, on top of :mod:`veilpost.mls`.

A :class:`Client` owns an installation key, an encrypted :class:`~veilpost.client.storage.Store`
and a :class:`~veilpost.client.relay.RelayPort`. It performs no I/O of its own: every network
call goes through the port, so the same code runs in an asyncio agent and in the browser's
crypto worker.

Theory of operation
-------------------

*Conversations.* Every conversation is an MLS group holding every installation of every member
inbox. A DM is a group whose metadata (:mod:`veilpost.client.policy`) names its two inboxes; its
conversation id is ``dm:<peer inbox>``. If both sides create a DM at once, each ends up in both
groups; both pick the one with the smaller group id to send on and show the messages of both
under one conversation, so there is exactly one DM per pair. A group's id is ``group:<hex>``.

*Sync engine.* Envelopes are processed per topic in relay order: the cursor of a topic is the
last sequence processed, an envelope at or below it is a duplicate and skipped, one beyond
``cursor + 1`` means a gap, filled from the relay's history first. Each envelope is processed
and its effects (group state, cursor, stored message) saved in one store transaction, so a
crash loses nothing and repeats nothing. An envelope that cannot be processed is recorded with
its reason (:meth:`Client.failures`) and the cursor moves on: it never blocks the rest.

*Commits* are sent as intents: the client makes the Commit, publishes it, and merges it when
the relay accepts; when the relay answers ``epoch_conflict`` the client drops it, processes the
winning Commit, and plans the intent again on the new epoch (an add of members already added is
then nothing to do). Welcomes go out only after the relay accepted the Commit.

*Trust.* A member is trusted only if its inbox's identity record, verified by this client
(:func:`~veilpost.client.identity.verify_record_chain`), lists its signature key. MLS
validation asks for records it lacks by raising :class:`~veilpost.client.errors.IdentityNeeded`;
the client fetches and verifies them, then processes the message again (a failed MLS
``process`` changes nothing). Every Commit is checked against the group's permission policy
(:func:`~veilpost.client.policy.check_commit`) before it is merged — and before this client
sends its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from veilpost.codec import DecodeError, decode
from veilpost.crypto import CipherSuite, CryptoProvider, get_provider
from veilpost.crypto.ethereum import address_of_private_key as ethereum_address_of
from veilpost.crypto.ethereum import checksum_address
from veilpost.mls import (
    ApplicationMessage,
    CommitOutput,
    Group,
    GroupConfig,
    KeyPackageBundle,
    MlsError,
    OwnMessage,
    ProposalReceived,
    SigningIdentity,
    StagedCommit,
    make_key_package,
)
from veilpost.mls.builders import default_capabilities
from veilpost.mls.framing import MLSMessage, SenderType
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.proposals import Remove
from veilpost.mls.validation import CredentialRejected
from veilpost.mls.welcome import Welcome
from veilpost.protocol import group_id_of_topic, group_topic, installation_id, welcome_topic

from . import content as content_types
from .errors import (
    ClientError,
    ConversationNotFound,
    EpochConflict,
    IdentityError,
    IdentityNeeded,
    NotAMember,
    PermissionDenied,
    RelayError,
    UnknownRecipient,
)
from .identity import (
    AddressBinding,
    IdentityRecord,
    InstallationKey,
    SignedRecord,
    credential_for,
    inbox_of_credential,
    verify_record_chain,
)
from .policy import (
    METADATA_EXTENSION,
    ConversationKind,
    GroupMetadata,
    Role,
    check_commit,
    metadata_of,
)
from .relay import Envelope, RelayPort
from .storage import Store

__all__ = ["Client", "ClientEvent", "Conversation", "Message"]

log = logging.getLogger("veilpost.client")

CIPHER_SUITE = 0x0001
KEY_PACKAGE_BATCH = 20
KEY_PACKAGE_LOW_WATER = 10
LAST_RESORT_ROTATION_SECONDS = 7 * 24 * 3600
RETIRED_KEY_GRACE_SECONDS = 14 * 24 * 3600
MAX_COMMIT_ATTEMPTS = 8
_TRANSIENT = frozenset({"relay_unavailable", "unavailable", "rate_limited", "internal_error"})


def _is_transient(exc: BaseException) -> bool:
    """Whether a failure may pass by itself (retry later) rather than being a refusal."""
    if not isinstance(exc, RelayError):
        return isinstance(exc, OSError | TimeoutError)
    return exc.code in _TRANSIENT or (exc.status is not None and exc.status >= 500)


MAX_IDENTITY_FETCHES = 256  # per envelope: a Welcome into a group of that many inboxes

_GROUPS = "groups"  # group id hex -> Group.to_bytes()
_GROUP_INFO = "group_info"  # group id hex -> JSON: conversation id, joined epoch, leaving, ...
_CURSORS = "cursors"  # topic -> last processed sequence
_RECORDS = "identity"  # inbox id -> verified IdentityRecord bytes
_KEY_PACKAGES = "key_packages"  # ref hex -> JSON {bundle, created, last_resort, retired}
_FAILURES = "failures"  # "topic#sequence" -> JSON {reason, check}
_SETTINGS = "settings"  # "inbox_id": the inbox this installation belongs to, pinned at start
EXPECTED_INBOX = "expected_inbox"  # set before the first start by a device joining an inbox
_UNHANDLED = "unhandled"  # "conversation|message id" of messages not yet handled (agents)
_OUTBOX = "outbox"  # "topic|id" -> JSON {topic, id, payload, conversation, message}


def stored_installation_key(store: Store) -> InstallationKey:
    """The installation key kept in ``store`` (a profile's own key), made and kept on first
    use. It never leaves the store's encryption."""
    saved = store.get(_SETTINGS, "installation_key")
    if saved is not None:
        return InstallationKey(saved)
    key = InstallationKey.generate()
    store.put(_SETTINGS, "installation_key", key.private_key)
    return key


def message_id_of(payload: bytes) -> str:
    """A message's id: the first 16 bytes of SHA-256 of its MLS message, in hex. Sender and
    receivers compute the same id (it doubles as the publish id)."""
    return hashlib.sha256(payload).digest()[:16].hex()


@dataclass
class Message:
    """A message of a conversation, as stored and shown."""

    id: str
    conversation_id: str
    sender_inbox_id: str
    sender_installation_id: str
    sent_at_ns: int
    content_type: str
    encoded: bytes = field(repr=False)
    status: str  # "sending", "sent", "failed" (own messages) or "received"
    sequence: int | None = None
    error: str | None = None
    payload: bytes | None = field(default=None, repr=False)  # kept until the relay stored it
    topic: str | None = None  # the group topic an own message went to
    _decoded: Any = field(default=None, repr=False, compare=False)

    @property
    def decoded(self) -> content_types.DecodedContent:
        """The content decoded by the standard codecs (unknown types keep their fallback)."""
        if self._decoded is None:
            self._decoded = content_types.default_registry().decode_bytes(self.encoded)
        return self._decoded  # type: ignore[no-any-return]

    @property
    def content(self) -> Any:
        """The content value (``str`` for text); ``None`` for a type this client does not know."""
        return self.decoded.value

    @property
    def text(self) -> str:
        """Text to show: the text itself, or the content's fallback."""
        return self.decoded.display_text or f"[{self.content_type}]"

    def to_record(self) -> bytes:
        data = {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "sender_inbox_id": self.sender_inbox_id,
            "sender_installation_id": self.sender_installation_id,
            "sent_at_ns": self.sent_at_ns,
            "content_type": self.content_type,
            "encoded": self.encoded.hex(),
            "status": self.status,
            "sequence": self.sequence,
            "error": self.error,
            "payload": None if self.payload is None else self.payload.hex(),
            "topic": self.topic,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, record: bytes) -> Message:
        data = json.loads(record)
        return cls(
            id=data["id"],
            conversation_id=data["conversation_id"],
            sender_inbox_id=data["sender_inbox_id"],
            sender_installation_id=data["sender_installation_id"],
            sent_at_ns=data["sent_at_ns"],
            content_type=data["content_type"],
            encoded=bytes.fromhex(data["encoded"]),
            status=data["status"],
            sequence=data["sequence"],
            error=data["error"],
            payload=None if data["payload"] is None else bytes.fromhex(data["payload"]),
            topic=data.get("topic"),
        )


@dataclass(frozen=True)
class Conversation:
    """A conversation as this installation sees it."""

    id: str
    kind: ConversationKind
    topic: str
    name: str
    description: str
    members: tuple[str, ...]  # inbox ids
    admins: tuple[str, ...]
    super_admins: tuple[str, ...]
    active: bool
    peer_inbox_id: str | None = None
    epoch: int = 0

    def role_of(self, inbox_id: str) -> Role:
        if inbox_id in self.super_admins:
            return Role.SUPER_ADMIN
        return Role.ADMIN if inbox_id in self.admins else Role.MEMBER


@dataclass(frozen=True)
class ClientEvent:
    """What happened: ``kind`` is ``message`` (a new message, own messages included),
    ``conversation`` (joined a new conversation), ``updated`` (members or metadata changed),
    ``removed`` (this installation left or was removed) or ``failed`` (an envelope could not
    be processed; ``reason`` says why)."""

    kind: str
    conversation_id: str
    message: Message | None = None
    reason: str | None = None


@dataclass
class _GroupInfo:
    """What the client keeps about one of its MLS groups beside the MLS state."""

    conversation_id: str
    joined_epoch: int
    # This epoch's departures: inbox -> leaves it proposed removing of its own, and the refs
    # (hex) of those proposals with their inbox.
    leaving: dict[str, list[int]] = field(default_factory=dict)
    departures: list[tuple[str, str]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> _GroupInfo:
        raw = json.loads(data)
        raw["departures"] = [tuple(d) for d in raw.get("departures", [])]
        return cls(**raw)


def _now_ns() -> int:
    return time.time_ns()


class Client:
    """One installation's messaging client; see the module documentation.

    Build one with a connected :class:`~veilpost.client.relay.RelayPort`, call :meth:`start`,
    then feed it the relay's envelopes with :meth:`run` (or :meth:`process_envelope`); what
    happens comes out of :attr:`events`, after it is saved. With ``track_unhandled``, messages
    from others are also listed in :meth:`unhandled` until :meth:`mark_handled`.
    """

    def __init__(
        self,
        key: InstallationKey,
        inbox_id: str,
        store: Store,
        relay: RelayPort,
        *,
        provider: CryptoProvider | None = None,
        track_unhandled: bool = False,
    ) -> None:
        self.key = key
        self.inbox_id = inbox_id
        self.store = store
        self.relay = relay
        self.provider = provider or key.provider or get_provider()
        self.suite = CipherSuite(CIPHER_SUITE, self.provider)
        self.registry = content_types.default_registry()
        capabilities = default_capabilities()
        capabilities.extensions.append(METADATA_EXTENSION)
        self.signer = SigningIdentity.from_private_key(
            self.suite, credential_for(inbox_id), key.private_key, capabilities=capabilities
        )
        self.events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._dm_locks: dict[str, asyncio.Lock] = {}  # conversation id -> its creation
        self._groups: dict[bytes, Group] = {}
        self._info: dict[bytes, _GroupInfo] = {}
        self._records: dict[str, IdentityRecord] = {}
        self._fresh: set[str] = set()
        # While set, credential checks note unknown inboxes here instead of raising at the
        # first: one pass finds every record a Welcome or Commit needs.
        self._missing: set[str] | None = None
        self._cursors: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._held: list[ClientEvent] | None = None
        self.track_unhandled = track_unhandled
        self._load()

    # -- state ------------------------------------------------------------------------------

    @property
    def installation_id(self) -> str:
        return self.key.installation_id

    @property
    def welcome_topic(self) -> str:
        return welcome_topic(self.installation_id)

    def _config(self) -> GroupConfig:
        return GroupConfig(
            credential_validator=self._validate_credential,
            clock=lambda: int(time.time()),
        )

    def _load(self) -> None:
        config = self._config()
        for key, value in self.store.items(_GROUPS):
            group_id = bytes.fromhex(key)
            self._groups[group_id] = Group.from_bytes(value, provider=self.provider, config=config)
        for key, value in self.store.items(_GROUP_INFO):
            self._info[bytes.fromhex(key)] = _GroupInfo.from_bytes(value)
        for key, value in self.store.items(_RECORDS):
            self._records[key] = IdentityRecord.from_bytes(value)
        for key, value in self.store.items(_CURSORS):
            self._cursors[key] = int(value)

    def _save_group(self, group: Group) -> None:
        gid = group.group_id.hex()
        self.store.put(_GROUPS, gid, group.to_bytes())
        self.store.put(_GROUP_INFO, gid, self._info[group.group_id].to_bytes())

    def _set_cursor(self, topic: str, sequence: int) -> None:
        self._cursors[topic] = sequence
        self.store.put(_CURSORS, topic, str(sequence).encode())

    def cursor(self, topic: str) -> int:
        return self._cursors.get(topic, 0)

    def topics(self) -> dict[str, int]:
        """Every topic this installation follows, with its cursor."""
        topics = {self.welcome_topic: self.cursor(self.welcome_topic)}
        for group_id, group in self._groups.items():
            if not group.removed:
                topic = group_topic(group_id)
                topics[topic] = self.cursor(topic)
        return topics

    # -- identity ---------------------------------------------------------------------------

    def _validate_credential(self, credential: Any, signature_key: bytes, predecessor: Any) -> None:
        try:
            inbox = inbox_of_credential(credential)
            if predecessor is not None and inbox_of_credential(predecessor) != inbox:
                raise CredentialRejected("a member's leaf may not change inbox")
        except IdentityError as exc:
            raise CredentialRejected(str(exc)) from None
        record = self._records.get(inbox)
        if record is not None and record.lists(signature_key):
            return
        if inbox in self._fresh:
            raise CredentialRejected(
                f"installation {installation_id(signature_key)} is not in the verified"
                f" identity record of inbox {inbox}"
            )
        if self._missing is not None:
            self._missing.add(inbox)
            return
        raise IdentityNeeded(inbox)

    def _check_missing(self) -> None:
        """After a collecting pass: ask for every record it found missing (nothing is kept)."""
        if self._missing:
            raise IdentityNeeded(*sorted(self._missing))

    async def identity(self, inbox_id: str, *, refresh: bool = False) -> IdentityRecord:
        """The verified identity record of ``inbox_id`` (fetched and verified when unknown,
        or when ``refresh``: only newer versions are fetched)."""
        cached = self._records.get(inbox_id)
        if cached is not None and not refresh:
            return cached
        try:
            newest = SignedRecord(*await self.relay.identity_record(inbox_id, None))
        except RelayError as exc:
            if exc.code in ("unknown_inbox", "invalid_installation_id"):
                raise UnknownRecipient(f"inbox {inbox_id} is not known to the relay") from None
            if exc.code == "unknown_identity_record":
                raise IdentityError(f"inbox {inbox_id} has published no identity record") from None
            raise
        start = 1 if cached is None else cached.version + 1
        versions = []
        for version in range(start, newest.version):  # usually none: most inboxes have one
            versions.append(SignedRecord(*await self.relay.identity_record(inbox_id, version)))
        if newest.version >= start:
            versions.append(newest)
        verified = (
            verify_record_chain(inbox_id, versions, cached, provider=self.provider)
            if versions
            else cached
        )
        assert verified is not None
        self._records[inbox_id] = verified
        self.store.put(_RECORDS, inbox_id, verified.to_bytes())
        self._fresh.add(inbox_id)
        return verified

    async def _publish_record(self, record: IdentityRecord) -> None:
        data = record.to_bytes()
        from veilpost.protocol import identity_record_message

        signature = self.key.sign(identity_record_message(self.inbox_id, record.version, data))
        await self.relay.put_identity_record(self.inbox_id, record.version, data, signature)
        self._records[self.inbox_id] = record
        self.store.put(_RECORDS, self.inbox_id, data)

    async def _key_packages_soon(self) -> None:
        try:
            await self.ensure_key_packages()
        except (ClientError, RelayError, OSError) as exc:
            log.warning("uploading key packages: %s (tried again at the next start)", exc)

    def _pin_inbox(self) -> None:
        """Refuse an inbox the relay assigns that this installation did not expect: its own id
        (a new inbox), the one it was told to join (``expect_inbox``), or the one it had."""
        pinned = self.store.get(_SETTINGS, "inbox_id")
        expected = (
            pinned
            or self.store.get(_SETTINGS, EXPECTED_INBOX)
            or self.installation_id.encode("ascii")
        ).decode("ascii")
        if self.inbox_id != expected:
            raise IdentityError(
                f"the relay says this installation belongs to inbox {self.inbox_id}, but it"
                f" belongs to inbox {expected}; refusing (a relay cannot move an installation)"
            )
        if pinned is None:
            self.store.put(_SETTINGS, "inbox_id", expected.encode("ascii"))

    @staticmethod
    def expect_inbox(store: Store, inbox_id: str) -> None:
        """Before a new device's first start: it joins ``inbox_id`` (admitted by a device of
        that inbox) instead of making a new inbox."""
        if store.get(_SETTINGS, "inbox_id") is not None:
            raise ClientError("this profile already belongs to an inbox")
        store.put(_SETTINGS, EXPECTED_INBOX, inbox_id.encode("ascii"))

    async def _ensure_identity_record(self) -> None:
        try:
            await self.relay.identity_record(self.inbox_id, None)
            published = True
        except RelayError as exc:
            if exc.code != "unknown_identity_record":
                raise
            published = False
        if not published:
            if self.inbox_id != self.installation_id:
                raise IdentityError(
                    "this installation belongs to an inbox without an identity record;"
                    " the inbox's first installation publishes it"
                )
            await self._publish_record(IdentityRecord.genesis(self.key))
            return
        record = await self.identity(self.inbox_id, refresh=True)
        if not record.lists(self.key.public_key):
            raise IdentityError(
                f"the identity record of inbox {self.inbox_id} does not list this installation"
                " (it was revoked, or not yet admitted by another installation)"
            )

    async def bind_address(self, wallet_private_key: bytes) -> str:
        """Bind an Ethereum address (the wallet key's) to this inbox: sign the binding with the
        wallet (EIP-191), put it in a new identity record version and register it at the relay.
        Returns the checksummed address."""
        current = await self.identity(self.inbox_id, refresh=True)
        address = ethereum_address_of(wallet_private_key)
        binding = next((b for b in current.addresses if b.address == address), None)
        if binding is None:
            binding = AddressBinding.create(wallet_private_key, self.inbox_id, int(time.time()))
            await self._publish_record(current.successor(bind=[binding]))
        await self.relay.bind_address(binding.address, binding.signature, binding.issued_at)
        return binding.address

    async def admit_installation(self, public_key: bytes) -> None:
        """Admit another device's key into this inbox: register it at the relay and list it in
        a new identity record version. Once that device has started (published its key
        packages), :meth:`sync_installations` adds it to every conversation."""
        await self.relay.add_installation(public_key)
        current = await self.identity(self.inbox_id, refresh=True)
        if not current.lists(public_key):
            await self._publish_record(current.successor(add=[public_key]))

    def missing_from(self, public_key: bytes) -> list[str]:
        """The active conversations whose group lacks the installation ``public_key``."""
        missing = []
        for group_id, group in self._groups.items():
            if group.is_active and all(
                m.signature_key != public_key for m in group.members.values()
            ):
                missing.append(self._info[group_id].conversation_id)
        return missing

    async def resolve(self, recipient: str) -> str:
        """The inbox id of an inbox id or ``0x`` address; the address binding is verified in
        the inbox's identity record, not taken from the relay's word."""
        recipient = recipient.strip()
        if recipient.lower().startswith("0x"):
            try:
                address = checksum_address(recipient)
            except ValueError as exc:
                raise UnknownRecipient(f"{recipient!r} is not an Ethereum address: {exc}") from None
            found = await self.relay.lookup_address(address)
            if found is None:
                raise UnknownRecipient(f"no inbox is bound to address {address}")
            inbox, signature, issued_at = found
            record = await self.identity(inbox, refresh=True)
            if AddressBinding(address, signature, issued_at) not in record.addresses:
                raise IdentityError(
                    f"the relay says {address} is inbox {inbox}, but that inbox's verified"
                    " identity record does not hold that binding"
                )
            return inbox
        inbox = recipient.lower()
        await self.identity(inbox)
        return inbox

    # -- start-up ---------------------------------------------------------------------------

    async def start(self, *, key_packages_in_background: bool = False) -> None:
        """Publish the identity record (first start), top up key packages and subscribe to
        every topic after its cursor. With ``key_packages_in_background`` the key packages
        are made and uploaded after this returns (the browser: making twenty in pure Python
        takes a moment, and nothing the user sees waits for them)."""
        self._pin_inbox()
        await self._ensure_identity_record()
        if key_packages_in_background:
            self._spawn(self._key_packages_soon())
        else:
            await self.ensure_key_packages()
        await self.relay.subscribe(self.topics())
        await self._resume_pending_commits()
        await self.flush_outbox()
        try:  # devices of this inbox admitted since (once they have connected)
            await self.sync_installations(own_only=True)
        except (ClientError, RelayError) as exc:
            log.warning("adding this inbox's new devices to its conversations: %s", exc)

    async def _resume_pending_commits(self) -> None:
        """A Commit made before a crash, not known to be accepted: publish it again (the same
        id, so the relay stores it once) and merge it, or drop it if it lost its epoch."""
        for group_id, group in list(self._groups.items()):
            if group.pending_commit is not None and group.is_active:
                try:
                    await self._resolve_pending(group_id)
                except RelayError as exc:
                    log.warning("a pending commit of %s: %s", group_id.hex(), exc)

    def _pending(self, group_id: bytes, commit: bytes) -> Group | None:
        """The group, if its pending Commit is still ``commit``. (Always look the group up
        again after an await: a failed envelope reloads it from the store as a new object.)"""
        group = self._groups[group_id]
        pending = group.pending_commit
        return group if pending is not None and pending.commit == commit else None

    def _drop_pending(self, group_id: bytes, commit: bytes) -> None:
        group = self._pending(group_id, commit)
        if group is not None:
            group.discard_pending_commit()
            self._save_group_now(group)

    async def _resolve_pending(self, group_id: bytes) -> None:
        """Publish a pending Commit again (same id: stored once) and merge it, or drop it if
        the relay refuses it (then catch up with the Commit that won)."""
        pending = self._groups[group_id].pending_commit
        if pending is None:
            return
        topic = group_topic(group_id)
        try:
            await self.relay.publish(topic, message_id_of(pending.commit), pending.commit)
        except RelayError as exc:
            if _is_transient(exc):
                raise
            async with self._lock:
                self._drop_pending(group_id, pending.commit)
            await self.catch_up(topic)
            return
        async with self._lock:
            group = self._pending(group_id, pending.commit)
            if group is not None:
                self._merge_own_commit(group, pending)
        await self.flush_outbox()

    def _outbox_put(
        self,
        topic: str,
        publish_id: str,
        payload: bytes,
        *,
        conversation: str | None = None,
    ) -> None:
        entry = {
            "topic": topic,
            "id": publish_id,
            "payload": payload.hex(),
            "conversation": conversation,
        }
        self.store.put(_OUTBOX, f"{topic}|{publish_id}", json.dumps(entry).encode())

    def is_queued(self, message: Message) -> bool:
        """Whether an own message waits in the outbox (sent again automatically)."""
        return bool(message.topic) and (
            self.store.get(_OUTBOX, f"{message.topic}|{message.id}") is not None
        )

    async def flush_outbox(self) -> int:
        """Publish what was stored to be sent but is not known to be (Welcomes after their
        Commit, messages interrupted by a crash or a lost connection). Returns how many went
        out; what the relay refuses for good is marked failed and dropped from the outbox."""
        sent = 0
        for key, raw in self.store.items(_OUTBOX):
            entry = json.loads(raw)
            conversation = entry["conversation"]
            if conversation is not None:
                stored = self.store.get_message(conversation, entry["id"])
                if stored is None or Message.from_record(stored.record).status == "sent":
                    self.store.delete(_OUTBOX, key)
                    continue
                await self._publish_message(Message.from_record(stored.record), entry["topic"])
                sent += 1
                continue
            try:
                await self.relay.publish(
                    entry["topic"], entry["id"], bytes.fromhex(entry["payload"])
                )
            except RelayError as exc:
                if _is_transient(exc):
                    continue
                log.warning("the relay refused %s for good: %s", key, exc)
            self.store.delete(_OUTBOX, key)
            sent += 1
        return sent

    async def ensure_key_packages(self, *, now: int | None = None) -> int:
        """Keep the relay stocked: top the batch up to :data:`KEY_PACKAGE_BATCH` when fewer than
        :data:`KEY_PACKAGE_LOW_WATER` remain, rotate the last-resort package every
        :data:`LAST_RESORT_ROTATION_SECONDS`, and delete retired last-resort private keys after
        a grace period. Returns how many packages were uploaded."""
        now = int(time.time()) if now is None else now
        remaining, has_last_resort = await self.relay.key_package_count()
        uploads: list[tuple[bytes, bool]] = []
        with self.store.transaction():
            if remaining < KEY_PACKAGE_LOW_WATER:
                for _ in range(KEY_PACKAGE_BATCH - remaining):
                    uploads.append((self._new_key_package(now, last_resort=False), False))
            current = [
                (ref, meta)
                for ref, meta in self._key_package_meta()
                if meta["last_resort"] and meta.get("retired") is None
            ]
            rotate = not has_last_resort or not current
            if current and now - current[0][1]["created"] >= LAST_RESORT_ROTATION_SECONDS:
                rotate = True
            if rotate:
                for ref, meta in current:
                    meta["retired"] = now
                    self.store.put(_KEY_PACKAGES, ref, json.dumps(meta).encode())
                uploads.append((self._new_key_package(now, last_resort=True), True))
            for ref, meta in self._key_package_meta():
                retired = meta.get("retired")
                if retired is not None and now - retired >= RETIRED_KEY_GRACE_SECONDS:
                    self.store.delete(_KEY_PACKAGES, ref)
        for start in range(0, len(uploads), 100):
            await self.relay.upload_key_packages(uploads[start : start + 100])
        return len(uploads)

    def _key_package_meta(self) -> list[tuple[str, dict[str, Any]]]:
        return [(ref, json.loads(value)) for ref, value in self.store.items(_KEY_PACKAGES)]

    def _new_key_package(self, now: int, *, last_resort: bool) -> bytes:
        bundle = make_key_package(self.suite, self.signer, now=now)
        meta = {"bundle": bundle.to_bytes().hex(), "created": now, "last_resort": last_resort}
        self.store.put(_KEY_PACKAGES, bundle.ref(self.suite).hex(), json.dumps(meta).encode())
        return bundle.to_message()

    # -- conversations ----------------------------------------------------------------------

    def _conversation_groups(self, conversation_id: str) -> list[Group]:
        return [
            self._groups[gid]
            for gid, info in self._info.items()
            if info.conversation_id == conversation_id and gid in self._groups
        ]

    def conversation_topics(self, conversation_id: str) -> list[str]:
        """Every group topic of a conversation (a DM made twice by both sides has two)."""
        return [group_topic(g.group_id) for g in self._conversation_groups(conversation_id)]

    def _canonical(self, conversation_id: str) -> Group:
        """The group a conversation sends on: for a DM made twice, the active group with
        the smaller id."""
        groups = self._conversation_groups(conversation_id)
        if not groups:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        active = [g for g in groups if g.is_active and self._well_formed(g)]
        if not active:
            raise NotAMember(f"this installation is no longer a member of {conversation_id}")
        return min(active, key=lambda g: g.group_id)

    def _well_formed(self, group: Group) -> bool:
        """A DM group holds exactly its two inboxes (a group made by a third party claiming
        to be the DM is never sent on)."""
        metadata = metadata_of(group.extensions)
        if metadata is None or metadata.kind != ConversationKind.DM:
            return True
        return set(self._member_inboxes(group)) == set(metadata.dm_inboxes)

    def _metadata(self, group: Group) -> GroupMetadata:
        metadata = metadata_of(group.extensions)
        if metadata is None:
            raise ClientError(f"group {group.group_id.hex()} has no Veilpost metadata")
        return metadata

    def _member_inboxes(self, group: Group) -> list[str]:
        seen: dict[str, None] = {}
        for member in group.members.values():
            seen[inbox_of_credential(member.credential)] = None
        return list(seen)

    def conversation(self, conversation_id: str) -> Conversation:
        """The conversation ``conversation_id`` (``dm:<inbox>`` or ``group:<hex>``)."""
        groups = self._conversation_groups(conversation_id)
        if not groups:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        active = [g for g in groups if g.is_active]
        group = min(active or groups, key=lambda g: g.group_id)
        metadata = self._metadata(group)
        peer = None
        if metadata.kind == ConversationKind.DM:
            peer = next((i for i in metadata.dm_inboxes if i != self.inbox_id), self.inbox_id)
        return Conversation(
            id=conversation_id,
            kind=metadata.kind,
            topic=group_topic(group.group_id),
            name=metadata.name,
            description=metadata.description,
            members=tuple(self._member_inboxes(group)) if group.is_active else (),
            admins=metadata.admins,
            super_admins=metadata.super_admins,
            active=bool(active),
            peer_inbox_id=peer,
            epoch=group.epoch,
        )

    def conversations(self) -> list[Conversation]:
        """Every conversation of this installation (active or not)."""
        ids = dict.fromkeys(info.conversation_id for info in self._info.values())
        return [self.conversation(cid) for cid in ids]

    def group(self, conversation_id: str) -> Group:
        """The MLS group a conversation sends on (for tests and tools)."""
        return self._canonical(conversation_id)

    async def new_dm(self, recipient: str) -> Conversation:
        """The DM with ``recipient`` (an inbox id or ``0x`` address), created if needed."""
        peer = await self.resolve(recipient)
        if peer == self.inbox_id:
            raise UnknownRecipient("a DM is with another inbox")
        conversation_id = f"dm:{peer}"
        # Two calls at once for one peer make one DM: the second waits and finds it.
        async with self._dm_locks.setdefault(conversation_id, asyncio.Lock()):
            if self._conversation_groups(conversation_id):
                return self.conversation(conversation_id)
            metadata = GroupMetadata.dm(self.inbox_id, peer)
            await self._create_group(conversation_id, metadata, [peer])
        return self.conversation(conversation_id)

    async def new_group(
        self, members: Iterable[str] = (), *, name: str = "", description: str = ""
    ) -> Conversation:
        """A new group with this inbox (as super admin) and ``members`` (inbox ids or
        addresses)."""
        inboxes = [await self.resolve(m) for m in members]
        metadata = GroupMetadata.group(self.inbox_id, name=name, description=description)
        group_id = self.provider.random_bytes(16)
        conversation_id = f"group:{group_id.hex()}"
        await self._create_group(conversation_id, metadata, inboxes, group_id=group_id)
        return self.conversation(conversation_id)

    async def _create_group(
        self,
        conversation_id: str,
        metadata: GroupMetadata,
        inboxes: list[str],
        *,
        group_id: bytes | None = None,
    ) -> None:
        group_id = group_id or self.provider.random_bytes(16)
        async with self._lock:
            group = Group.create(
                self.suite,
                self.signer,
                group_id=group_id,
                extensions=[metadata.to_extension()],
                config=self._config(),
            )
            self._groups[group_id] = group
            self._info[group_id] = _GroupInfo(conversation_id, joined_epoch=0)
            with self.store.transaction():
                self._save_group(group)
        topic = group_topic(group_id)
        try:
            await self.relay.subscribe({topic: self.cursor(topic)})
            await self._add_inboxes(group_id, [*inboxes, self.inbox_id])
        except BaseException:
            # A DM or group nobody could be added to is not kept: asking again starts over.
            if self._groups[group_id].epoch == 0:
                async with self._lock:
                    self._forget_group(group_id)
            raise
        if metadata.kind == ConversationKind.GROUP:
            self._emit(ClientEvent("conversation", conversation_id))

    async def add_members(self, conversation_id: str, members: Iterable[str]) -> None:
        """Add inboxes (ids or addresses) with all their installations."""
        inboxes = [await self.resolve(m) for m in members]
        await self._add_inboxes(self._canonical(conversation_id).group_id, inboxes)

    async def sync_installations(self, *, own_only: bool = False) -> None:
        """Add the installations of member inboxes that a group lacks (new devices that have
        connected once, so that they have key packages), in every active conversation: of
        this inbox only with ``own_only``, else of every member inbox."""
        for group_id, group in list(self._groups.items()):
            if group.is_active:
                inboxes = [self.inbox_id] if own_only else self._member_inboxes(group)
                await self._add_inboxes(group_id, inboxes, refresh=True)

    async def _add_inboxes(
        self, group_id: bytes, inboxes: list[str], *, refresh: bool = False
    ) -> None:
        for inbox in inboxes:
            await self.identity(inbox, refresh=refresh)
        claimed: dict[str, bytes] = {}

        async def plan(group: Group) -> dict[str, Any] | None:
            present = {m.signature_key for m in group.members.values()}
            wanted = []
            for inbox in inboxes:
                record = self._records[inbox]
                for key in record.installations:
                    if key in present:
                        continue
                    iid = installation_id(key)
                    if iid not in claimed:
                        await self._claim(inbox, claimed)
                    if iid in claimed:
                        wanted.append(claimed[iid])
            if not wanted:
                return None
            return {"add": wanted}

        await self._commit(group_id, plan)

    async def _claim(self, inbox: str, claimed: dict[str, bytes]) -> None:
        rows = await self.relay.claim_key_packages(inbox)
        record = self._records[inbox]
        for row in rows:
            if row.key_package is None:
                continue
            try:
                body = decode(MLSMessage, row.key_package).body
            except DecodeError:
                log.warning("installation %s published an invalid key package", row.installation_id)
                continue
            if not isinstance(body, KeyPackage) or not record.lists(body.leaf_node.signature_key):
                continue
            try:
                if inbox_of_credential(body.leaf_node.credential) != inbox:
                    continue  # a key package of another inbox: never added as this one
            except IdentityError:
                continue
            claimed[row.installation_id] = row.key_package
        if inbox != self.inbox_id and not any(
            installation_id(k) in claimed for k in record.installations
        ):
            raise UnknownRecipient(f"inbox {inbox} has no installation with a key package to add")

    async def remove_members(self, conversation_id: str, members: Iterable[str]) -> None:
        """Remove inboxes (ids or addresses) with all their installations."""
        inboxes = {await self.resolve(m) for m in members}

        async def plan(group: Group) -> dict[str, Any] | None:
            leaves = [
                leaf
                for leaf, m in group.members.items()
                if inbox_of_credential(m.credential) in inboxes
            ]
            return {"remove": leaves} if leaves else None

        await self._commit(self._canonical(conversation_id).group_id, plan)

    async def update_metadata(
        self, conversation_id: str, *, name: str | None = None, description: str | None = None
    ) -> None:
        """Rename the group or change its description (inside the group, encrypted)."""

        async def plan(group: Group) -> dict[str, Any] | None:
            metadata = self._metadata(group)
            new = replace(
                metadata,
                name=metadata.name if name is None else name,
                description=metadata.description if description is None else description,
            )
            return None if new == metadata else {"extensions": self._extensions_with(group, new)}

        await self._commit(self._canonical(conversation_id).group_id, plan)

    async def set_role(self, conversation_id: str, inbox_id: str, role: Role) -> None:
        """Make a member inbox a member, admin or super admin (super admins only)."""

        async def plan(group: Group) -> dict[str, Any] | None:
            metadata = self._metadata(group)
            new = metadata.with_role(inbox_id, role)
            return None if new == metadata else {"extensions": self._extensions_with(group, new)}

        await self._commit(self._canonical(conversation_id).group_id, plan)

    async def self_update(self, conversation_id: str) -> None:
        """Refresh this installation's leaf keys (post-compromise security)."""

        async def plan(group: Group) -> dict[str, Any] | None:
            return {"update": True}

        await self._commit(self._canonical(conversation_id).group_id, plan)

    def _extensions_with(self, group: Group, metadata: GroupMetadata) -> list[Any]:
        others = [e for e in group.extensions if e.extension_type != METADATA_EXTENSION]
        return [*others, metadata.to_extension()]

    async def leave(self, conversation_id: str) -> None:
        """Leave a group: propose the removal of this inbox's installations; another member
        commits it (RFC 9420 forbids committing one's own removal)."""
        group = self._canonical(conversation_id)
        if self._metadata(group).kind == ConversationKind.DM:
            raise PermissionDenied("a DM cannot be left")
        async with self._lock:
            group = self._canonical(conversation_id)
            proposals = []
            for leaf, member in group.members.items():
                if inbox_of_credential(member.credential) == self.inbox_id:
                    proposals.append(group.propose_remove(leaf))
            topic = group_topic(group.group_id)
            with self.store.transaction():
                self._save_group(group)
                for proposal in proposals:
                    self._outbox_put(topic, message_id_of(proposal), proposal)
        await self.flush_outbox()

    def _forget_group(self, group_id: bytes) -> None:
        with self.store.transaction():
            self.store.delete(_GROUPS, group_id.hex())
            self.store.delete(_GROUP_INFO, group_id.hex())
        self._groups.pop(group_id, None)
        self._info.pop(group_id, None)

    def _save_group_now(self, group: Group) -> None:
        with self.store.transaction():
            self._save_group(group)

    # -- commits as intents -------------------------------------------------------------------

    async def _commit(
        self,
        group_id: bytes,
        plan: Callable[[Group], Awaitable[dict[str, Any] | None]],
    ) -> StagedCommit | None:
        """Make, check, publish and merge a Commit planned by ``plan`` (re-planned on the new
        epoch after an ``epoch_conflict``). ``plan`` returns ``Group.commit`` arguments, or
        ``None`` when there is nothing (left) to do."""
        topic = group_topic(group_id)
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            group = self._groups[group_id]
            if not group.is_active:
                raise NotAMember(f"this installation is not a member of group {group_id.hex()}")
            if group.pending_commit is not None:  # an earlier attempt was interrupted
                await self._resolve_pending(group_id)
                continue
            planned = (group, group.epoch)
            args = await plan(group)
            if args is None:
                return None
            # Others' proposals go in only when named (departures): never by default.
            args.setdefault("include_proposals", False)
            async with self._lock:
                group = self._groups[group_id]
                epoch = group.epoch
                if (group, epoch) != planned or group.pending_commit is not None:
                    continue  # the group moved while planning (leaf indices may differ)
                output = group.commit(**args)
                try:
                    check_commit(
                        output.staged,
                        members=group.members,
                        metadata=self._metadata(group),
                        leaving=self._leaving(group),
                        is_listed=self._is_listed,
                        extensions=group.extensions,
                    )
                except PermissionDenied:
                    group.discard_pending_commit()
                    raise
                self._save_group_now(group)
            try:
                await self.relay.publish(topic, message_id_of(output.commit), output.commit)
            except EpochConflict:
                async with self._lock:
                    self._drop_pending(group_id, output.commit)
                await self.catch_up(topic)
                continue
            except RelayError as exc:
                if not _is_transient(exc):  # refused for good: drop it
                    async with self._lock:
                        self._drop_pending(group_id, output.commit)
                raise
            # Anything else (a lost connection, a cancelled task) leaves the Commit pending: the
            # relay may have stored it. Its echo merges it; else the next commit or start-up
            # publishes it again under the same id.
            async with self._lock:
                current = self._pending(group_id, output.commit)
                if current is not None:
                    self._merge_own_commit(current, output)
                elif output.welcome is not None:
                    # The echo merged it first; the Welcomes still have to go out.
                    with self.store.transaction():
                        self._queue_welcomes(output)
            await self.flush_outbox()
            return output.staged
        raise ClientError(
            f"gave up committing to group {group_id.hex()} after {MAX_COMMIT_ATTEMPTS}"
            " epoch conflicts"
        )

    def _merge_own_commit(self, group: Group, output: CommitOutput) -> None:
        """Enter the epoch of this member's accepted Commit, and queue its Welcomes, in one
        transaction (the lock is held)."""
        before, metadata_before = dict(group.members), self._metadata(group)
        group.merge_pending_commit()
        with self.store.transaction():
            self._after_commit_sync(
                group, output.staged, before, metadata_before, message_id_of(output.commit), None
            )
            self._save_group(group)
            self._queue_welcomes(output)

    def _queue_welcomes(self, output: CommitOutput) -> None:
        if output.welcome is None:
            return
        for member in output.staged.added:
            target = welcome_topic(installation_id(member.signature_key))
            self._outbox_put(target, message_id_of(output.welcome), output.welcome)

    def _is_listed(self, inbox: str, key: bytes) -> bool:
        record = self._records.get(inbox)
        return record is None or record.lists(key)

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self, conversation_id: str, content: Any, *, content_type: Any = None
    ) -> Message:
        """Encrypt and send ``content`` (``str`` for text, or a content value such as
        :class:`~veilpost.client.content.Reply`); return the stored message, whose ``status``
        is ``sent`` or ``failed`` (then :meth:`retry` it)."""
        encoded = self.registry.encode(content, content_type)
        data = content_types.pad(encoded.to_bytes())
        async with self._lock:
            group = self._canonical(conversation_id)
            payload = group.encrypt(data)
            message = Message(
                id=message_id_of(payload),
                conversation_id=conversation_id,
                sender_inbox_id=self.inbox_id,
                sender_installation_id=self.installation_id,
                sent_at_ns=_now_ns(),
                content_type=str(encoded.type),
                encoded=encoded.to_bytes(),
                status="sending",
                payload=payload,
                topic=group_topic(group.group_id),
            )
            topic = group_topic(group.group_id)
            with self.store.transaction():
                self._save_group(group)
                self.store.add_message(
                    conversation_id,
                    message.id,
                    sent_at_ns=message.sent_at_ns,
                    sequence=None,
                    record=message.to_record(),
                )
                self._outbox_put(topic, message.id, payload, conversation=conversation_id)
        return await self._publish_message(message, topic)

    async def send_attachment(
        self, conversation_id: str, filename: str, mime_type: str, data: bytes
    ) -> Message:
        """Send a file: inline (in the MLS message) up to
        :data:`~veilpost.client.content.MAX_INLINE_ATTACHMENT_BYTES`; larger files are
        encrypted with a fresh key, uploaded as a blob the relay cannot read, and sent as a
        :class:`~veilpost.client.content.RemoteAttachment` carrying that key."""
        attachment = content_types.Attachment(filename, mime_type, data)
        if len(data) <= content_types.MAX_INLINE_ATTACHMENT_BYTES:
            return await self.send(conversation_id, attachment)
        ciphertext, keys = content_types.encrypt_attachment(attachment, self.provider)
        blob_id = await self.relay.put_blob(ciphertext)
        remote = keys.remote_attachment(blob_id, filename=filename, mime_type=mime_type)
        return await self.send(conversation_id, remote)

    async def fetch_attachment(self, message: Message) -> content_types.Attachment:
        """The file of an attachment message (downloaded and decrypted when remote)."""
        value = message.content
        if isinstance(value, content_types.Attachment):
            return value
        if not isinstance(value, content_types.RemoteAttachment):
            raise ClientError(f"message {message.id} is not an attachment", code="not_attachment")
        ciphertext = await self.relay.get_blob(value.url)
        return content_types.decrypt_attachment(ciphertext, value, self.provider)

    async def retry(self, conversation_id: str, message_id: str) -> Message:
        """Publish a failed message again (the same ciphertext: still readable for a few
        epochs; the relay stores it once however often it is published)."""
        stored = self.store.get_message(conversation_id, message_id)
        if stored is None:
            raise KeyError(f"no message {message_id} in {conversation_id}")
        message = Message.from_record(stored.record)
        if message.status == "sent" or message.payload is None:
            return message
        topic = message.topic or group_topic(self._canonical(conversation_id).group_id)
        return await self._publish_message(message, topic)

    async def _publish_message(self, message: Message, topic: str) -> Message:
        """Publish a stored message; it stays in the outbox (sent again by
        :meth:`flush_outbox`) while the failure is transient."""
        transient = False
        try:
            sequence = await self.relay.publish(topic, message.id, message.payload or b"")
        except (TimeoutError, RelayError, OSError) as exc:
            code = getattr(exc, "code", None)
            transient = _is_transient(exc)
            message.status = "failed"
            message.error = code or str(exc) or type(exc).__name__
        else:
            message.status, message.sequence, message.error, message.payload = (
                "sent",
                sequence,
                None,
                None,
            )
        with self.store.transaction():
            stored = self.store.get_message(message.conversation_id, message.id)
            # (The echo may have been processed first and marked it sent already.)
            if stored is not None and Message.from_record(stored.record).status != "sent":
                self.store.update_message(message.conversation_id, message.id, message.to_record())
            if not transient:
                self.store.delete(_OUTBOX, f"{topic}|{message.id}")
        self._emit(ClientEvent("message", message.conversation_id, message))
        return message

    # -- history --------------------------------------------------------------------------------

    def messages(
        self,
        conversation_id: str,
        *,
        limit: int = 50,
        newest_first: bool = True,
        before: Any = None,
        after: Any = None,
    ) -> list[Message]:
        """A page of a conversation's stored messages; pass the last one's ``cursor`` (see
        :meth:`message_cursor`) as ``before`` (newest first) or ``after`` (oldest first)."""
        rows = self.store.messages(
            conversation_id, limit=limit, newest_first=newest_first, before=before, after=after
        )
        return [Message.from_record(row.record) for row in rows]

    def message_cursor(self, conversation_id: str, message_id: str) -> Any:
        stored = self.store.get_message(conversation_id, message_id)
        if stored is None:
            raise KeyError(message_id)
        return stored.cursor

    def failures(self) -> list[tuple[str, dict[str, Any]]]:
        """Envelopes that could not be processed, with the reason."""
        return [(key, json.loads(value)) for key, value in self.store.items(_FAILURES)]

    # -- receiving ------------------------------------------------------------------------------

    def _emit(self, event: ClientEvent) -> None:
        if self._held is not None:
            self._held.append(event)  # told once the envelope's transaction committed
        else:
            self.events.put_nowait(event)

    def unhandled(self) -> list[Message]:
        """Messages from others stored but not yet marked handled (with ``track_unhandled``):
        an agent hands them to its handlers again after a crash."""
        messages = []
        for key, _ in self.store.items(_UNHANDLED):
            conversation, _, message_id = key.rpartition("|")
            stored = self.store.get_message(conversation, message_id)
            if stored is None:
                self.store.delete(_UNHANDLED, key)
            else:
                messages.append(Message.from_record(stored.record))
        return sorted(messages, key=lambda m: (m.sent_at_ns, m.id))

    def mark_handled(self, message: Message) -> None:
        """Record that the application handled ``message`` (see :meth:`unhandled`)."""
        self.store.delete(_UNHANDLED, f"{message.conversation_id}|{message.id}")

    async def run(self, *, idle_seconds: float = 10.0) -> None:
        """Process delivered envelopes forever (until cancelled). An envelope whose processing
        fails for a passing reason (the relay unreachable for a record or history) is tried
        again with backoff, never skipped. After ``idle_seconds`` without envelopes, what the
        outbox holds (and interrupted commits) is sent again."""
        while True:
            try:
                # (asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the envelope does, and this loop never ends.)
                async with asyncio.timeout(idle_seconds):
                    envelope = await self.relay.next_envelope()
            except TimeoutError:
                await self._retry_outgoing()
                continue
            delay = 0.5
            while True:
                try:
                    await self.process_envelope(envelope)
                    break
                except (RelayError, OSError, TimeoutError) as exc:
                    if not _is_transient(exc):
                        raise
                    log.warning(
                        "processing %s#%d: %s; retrying", envelope.topic, envelope.sequence, exc
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

    async def _retry_outgoing(self) -> None:
        """Send again what is waiting in the outbox and interrupted commits (e.g. after the
        relay was unreachable for longer than a publish waits)."""
        try:
            if self.store.items(_OUTBOX):
                await self.flush_outbox()
            await self._resume_pending_commits()
        except (RelayError, OSError, TimeoutError) as exc:
            log.info("outgoing messages wait for the relay: %s", exc)

    async def sync(self) -> None:
        """Catch up every followed topic from the relay's history, including the groups that
        Welcomes found on the way bring in (for tools that read state right after starting)."""
        done: set[str] = set()
        while True:
            pending = [t for t in self.topics() if t not in done]
            if not pending:
                return
            for topic in pending:
                await self.catch_up(topic)
                done.add(topic)

    async def catch_up(self, topic: str) -> None:
        """Process a topic's stored envelopes after its cursor (from the relay's history)."""
        while True:
            try:
                envelopes, more = await self.relay.history(topic, self.cursor(topic))
            except RelayError as exc:
                if exc.code != "not_a_member" or topic not in self.topics():
                    raise
                # A group joined here whose subscription (which makes this installation a
                # member at the relay) has not reached the relay yet, or never did (the
                # process ended first): subscribe now, then read.
                await self.relay.subscribe({topic: self.cursor(topic)})
                envelopes, more = await self.relay.history(topic, self.cursor(topic))
            for envelope in envelopes:
                await self.process_envelope(envelope, fill_gaps=False)
            if not more:
                return

    async def process_envelope(self, envelope: Envelope, *, fill_gaps: bool = True) -> None:
        """Process one envelope in relay order (duplicates skipped, gaps filled first)."""
        cursor = self.cursor(envelope.topic)
        if envelope.sequence <= cursor:
            return
        if envelope.sequence > cursor + 1 and fill_gaps:
            await self.catch_up(envelope.topic)
            if envelope.sequence <= self.cursor(envelope.topic):
                return
        for attempt in range(MAX_IDENTITY_FETCHES):
            try:
                async with self._lock:
                    if envelope.sequence <= self.cursor(envelope.topic):
                        return
                    self._missing = set() if attempt == 0 else None
                    try:
                        await self._process_locked(envelope)
                    finally:
                        self._missing = None
                break
            except IdentityNeeded as need:
                # MLS may have spent a ratchet key before it asked: go back to the saved state.
                async with self._lock:
                    self._reload_group(envelope.topic)
                try:
                    for inbox in need.inbox_ids:
                        await self.identity(inbox, refresh=True)
                except (ClientError, RelayError) as exc:
                    if _is_transient(exc):
                        raise  # not this envelope's fault: it is tried again, not skipped
                    await self._record_failure(envelope, f"identity of {inbox}: {exc}")
                    break
        else:
            await self._record_failure(envelope, "member identities kept changing")
        await self.relay.received({envelope.topic: envelope.sequence})
        self._fresh.clear()

    async def _record_failure(self, envelope: Envelope, reason: str) -> None:
        async with self._lock:
            if envelope.sequence <= self.cursor(envelope.topic):
                return
            with self.store.transaction():
                self._fail(envelope, reason, None)
                self._set_cursor(envelope.topic, envelope.sequence)

    def _fail(self, envelope: Envelope, reason: str, check: str | None) -> None:
        log.warning("envelope %s#%d: %s", envelope.topic, envelope.sequence, reason)
        record = {"reason": reason, "check": check, "epoch": envelope.epoch}
        self.store.put(
            _FAILURES, f"{envelope.topic}#{envelope.sequence}", json.dumps(record).encode()
        )
        conversation = None
        group_id = group_id_of_topic(envelope.topic)
        if group_id is not None and group_id in self._info:
            conversation = self._info[group_id].conversation_id
        self._emit(ClientEvent("failed", conversation or envelope.topic, reason=reason))

    async def _process_locked(self, envelope: Envelope) -> None:
        """Process one envelope and save its effects in one transaction (the lock is held)."""
        self._held = []
        try:
            with self.store.transaction():
                try:
                    if envelope.topic == self.welcome_topic:
                        self._process_welcome(envelope)
                    else:
                        self._process_group_message(envelope)
                except IdentityNeeded:
                    raise
                except (MlsError, DecodeError, ClientError, content_types.ContentError) as exc:
                    check = getattr(exc, "check", None)
                    self._fail(envelope, f"{type(exc).__name__}: {exc}", check)
                    self._reload_group(envelope.topic)
                self._set_cursor(envelope.topic, envelope.sequence)
            held = self._held
        finally:
            self._held = None
        for event in held:
            self.events.put_nowait(event)

    def _reload_group(self, topic: str) -> None:
        """After a failure, make sure the in-memory group is the saved one."""
        group_id = group_id_of_topic(topic)
        if group_id is None:
            return
        saved = self.store.get(_GROUPS, group_id.hex())
        if saved is not None:
            self._groups[group_id] = Group.from_bytes(
                saved, provider=self.provider, config=self._config()
            )

    def _process_welcome(self, envelope: Envelope) -> None:
        body = decode(MLSMessage, envelope.payload).body
        if not isinstance(body, Welcome):
            raise ClientError("the welcome inbox carried something other than a Welcome")
        bundle, ref, meta = None, None, None
        for secrets in body.secrets:
            raw = self.store.get(_KEY_PACKAGES, secrets.new_member.hex())
            if raw is not None:
                meta = json.loads(raw)
                bundle = KeyPackageBundle.from_bytes(bytes.fromhex(meta["bundle"]))
                ref = secrets.new_member.hex()
                break
        if bundle is None or ref is None or meta is None:
            raise ClientError("no key package of this installation opens this Welcome")
        group = Group.join_from_welcome(
            envelope.payload, bundle, provider=self.provider, config=self._config()
        )
        self._check_missing()
        if group.group_id in self._groups and self._groups[group.group_id].is_active:
            return  # a repeated Welcome
        metadata = self._metadata(group)
        if metadata.kind == ConversationKind.DM:
            if self.inbox_id not in metadata.dm_inboxes:
                raise ClientError("a DM Welcome for a pair without this inbox")
            if set(self._member_inboxes(group)) != set(metadata.dm_inboxes):
                raise ClientError(
                    "a DM Welcome whose group holds other inboxes than its pair: refused"
                )
            peer = next((i for i in metadata.dm_inboxes if i != self.inbox_id), self.inbox_id)
            conversation_id = f"dm:{peer}"
        else:
            conversation_id = f"group:{group.group_id.hex()}"
        new_conversation = not self._conversation_groups(conversation_id)
        self._groups[group.group_id] = group
        self._info[group.group_id] = _GroupInfo(conversation_id, joined_epoch=group.epoch)
        self._save_group(group)
        if not meta["last_resort"]:
            self.store.delete(_KEY_PACKAGES, ref)
        topic = group_topic(group.group_id)
        self._spawn(self.relay.subscribe({topic: self.cursor(topic)}))
        if new_conversation:
            self._emit(ClientEvent("conversation", conversation_id))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _process_group_message(self, envelope: Envelope) -> None:
        group_id = group_id_of_topic(envelope.topic)
        if group_id is None or group_id not in self._groups:
            raise ClientError(f"an envelope for topic {envelope.topic}, not one of ours")
        group = self._groups[group_id]
        info = self._info[group_id]
        epoch = envelope.epoch
        if epoch is not None and epoch < info.joined_epoch:
            return  # sent before this installation joined: not for it
        if group.removed and envelope.content_type != "application":
            return
        if (
            envelope.content_type in ("commit", "proposal")
            and epoch is not None
            and epoch < group.epoch
        ):
            return  # an old epoch's handshake (e.g. a commit that lost its race)
        # Only this member's own pending Commit is merged by process() itself: what the group
        # looked like before it must be taken first. Any other Commit changes nothing until
        # it is merged below, so application messages pay for none of this.
        pending = group.pending_commit
        own_before = None if pending is None else (dict(group.members), self._metadata(group))
        event = group.process(envelope.payload)
        self._check_missing()
        if isinstance(event, ApplicationMessage):
            self._store_received(envelope, group, event)
        elif isinstance(event, OwnMessage):
            self._mark_own_sent(envelope, info.conversation_id)
        elif isinstance(event, ProposalReceived):
            self._note_proposal(group, info, event)
            self._save_group(group)
        elif isinstance(event, StagedCommit):
            if event.own:  # our pending Commit, echoed before its ack: merged already
                assert pending is not None and own_before is not None
                before, metadata_before = own_before
                if pending.staged is event:
                    self._queue_welcomes(pending)
                    self._spawn(self.flush_outbox())
            else:
                before, metadata_before = dict(group.members), self._metadata(group)
                try:
                    check_commit(
                        event,
                        members=before,
                        metadata=metadata_before,
                        leaving=self._leaving(group),
                        is_listed=self._is_listed,
                        extensions=list(group.extensions),
                    )
                except PermissionDenied as exc:
                    self._fail(envelope, f"commit refused: {exc}", getattr(exc, "check", None))
                    self._reload_group(envelope.topic)
                    return
                group.merge_staged_commit(event)
            self._after_commit_sync(
                group,
                event,
                before,
                metadata_before,
                message_id_of(envelope.payload),
                envelope.sequence,
            )
            self._save_group(group)

    def _store_received(self, envelope: Envelope, group: Group, event: ApplicationMessage) -> None:
        info = self._info[group.group_id]
        sender_inbox = inbox_of_credential(event.credential)
        member = group.members.get(event.sender)
        # A late message of an earlier epoch: the leaf may hold someone else by now.
        same = member is not None and member.credential == event.credential
        sender_installation = installation_id(member.signature_key) if same and member else ""
        encoded = content_types.EncodedContent.from_bytes(content_types.unpad(event.data))
        message = Message(
            id=message_id_of(envelope.payload),
            conversation_id=info.conversation_id,
            sender_inbox_id=sender_inbox,
            sender_installation_id=sender_installation,
            sent_at_ns=_now_ns(),
            content_type=str(encoded.type),
            encoded=encoded.to_bytes(),
            status="received" if sender_inbox != self.inbox_id else "sent",
            sequence=envelope.sequence,
        )
        self._save_group(group)
        if self.store.add_message(
            info.conversation_id,
            message.id,
            sent_at_ns=message.sent_at_ns,
            sequence=envelope.sequence,
            record=message.to_record(),
        ):
            if self.track_unhandled and sender_inbox != self.inbox_id:
                self.store.put(_UNHANDLED, f"{info.conversation_id}|{message.id}", b"")
            self._emit(ClientEvent("message", info.conversation_id, message))

    def _mark_own_sent(self, envelope: Envelope, conversation_id: str) -> None:
        stored = self.store.get_message(conversation_id, message_id_of(envelope.payload))
        if stored is None:
            return
        self.store.delete(_OUTBOX, f"{envelope.topic}|{message_id_of(envelope.payload)}")
        message = Message.from_record(stored.record)
        if message.status != "sent":
            message.status, message.sequence, message.payload, message.error = (
                "sent",
                envelope.sequence,
                None,
                None,
            )
            self.store.update_message(conversation_id, message.id, message.to_record())

    def _note_proposal(self, group: Group, info: _GroupInfo, event: ProposalReceived) -> None:
        proposal = event.proposal.body
        if not isinstance(proposal, Remove) or event.sender.sender_type != SenderType.MEMBER:
            return
        proposer = group.members.get(event.sender.index)
        target = group.members.get(proposal.removed)
        if proposer is None or target is None:
            return
        inbox = inbox_of_credential(proposer.credential)
        if inbox_of_credential(target.credential) != inbox:
            return  # a departure removes installations of the proposer's own inbox
        leaves = info.leaving.setdefault(inbox, [])
        if proposal.removed not in leaves:
            leaves.append(proposal.removed)
        info.departures.append((event.ref.hex(), inbox))
        leaving = self._leaving(group)
        if inbox == self.inbox_id or inbox not in leaving:
            return  # (a departure is committed once it covers all of the inbox's devices)
        # The lowest remaining leaf commits the departure (any member may; one suffices).
        staying = sorted(
            leaf
            for leaf, m in group.members.items()
            if inbox_of_credential(m.credential) not in leaving
        )
        if staying and group.members[staying[0]].signature_key == self.signer.signature_key:
            self._spawn(self._commit_leave(group.group_id))

    def _leaving(self, group: Group) -> list[str]:
        """The inboxes that asked to leave this epoch: their installations proposed removing
        every installation of their inbox (the policy lets anyone commit that)."""
        info = self._info[group.group_id]
        leaving = []
        for inbox, proposed in info.leaving.items():
            leaves = {
                leaf
                for leaf, m in group.members.items()
                if inbox_of_credential(m.credential) == inbox
            }
            if leaves and leaves <= set(proposed):
                leaving.append(inbox)
        return leaving

    async def _commit_leave(self, group_id: bytes) -> None:
        async def plan(group: Group) -> dict[str, Any] | None:
            cached = {ref.hex() for ref in group.cached_proposal_refs}
            leaving = set(self._leaving(group))
            refs = [
                bytes.fromhex(ref)
                for ref, inbox in self._info[group_id].departures
                if ref in cached and inbox in leaving
            ]
            return {"include_proposals": refs} if refs else None

        try:
            await self._commit(group_id, plan)
        except (ClientError, MlsError) as exc:
            log.warning("committing a departure in %s failed: %s", group_id.hex(), exc)

    def _after_commit_sync(
        self,
        group: Group,
        staged: StagedCommit,
        before: dict[int, Any],
        metadata_before: GroupMetadata,
        message_id: str,
        sequence: int | None,
    ) -> None:
        info = self._info[group.group_id]
        info.leaving.clear()
        info.departures.clear()
        if staged.self_removed or group.removed:
            self._emit(ClientEvent("removed", info.conversation_id))
            return
        added = sorted(
            {inbox_of_credential(m.credential) for m in staged.added}
            - {inbox_of_credential(m.credential) for m in before.values()}
        )
        after_inboxes = {inbox_of_credential(m.credential) for m in group.members.values()}
        removed = sorted(
            {inbox_of_credential(m.credential) for m in staged.removed} - after_inboxes
        )
        metadata = self._metadata(group)
        changes = []
        for name, attribute in (("group_name", "name"), ("description", "description")):
            old, new = getattr(metadata_before, attribute), getattr(metadata, attribute)
            if old != new:
                changes.append(content_types.MetadataChange(name, old or None, new or None))
        if not (added or removed or changes):
            if (metadata.admins, metadata.super_admins, metadata.policy) != (
                metadata_before.admins,
                metadata_before.super_admins,
                metadata_before.policy,
            ):
                self._emit(ClientEvent("updated", info.conversation_id))  # roles changed
            return
        committer = before.get(staged.committer_leaf) or group.members.get(staged.committer_leaf)
        initiator = inbox_of_credential(committer.credential) if committer else ""
        notice = content_types.GroupUpdated(
            initiated_by_inbox_id=initiator,
            added_inboxes=tuple(added),
            removed_inboxes=tuple(removed),
            metadata_changes=tuple(changes),
        )
        encoded = self.registry.encode(notice)
        message = Message(
            id=message_id,
            conversation_id=info.conversation_id,
            sender_inbox_id=initiator,
            sender_installation_id="",
            sent_at_ns=_now_ns(),
            content_type=str(encoded.type),
            encoded=encoded.to_bytes(),
            status="received",
            sequence=sequence,
        )
        if self.store.add_message(
            info.conversation_id,
            message.id,
            sent_at_ns=message.sent_at_ns,
            sequence=message.sequence,
            record=message.to_record(),
        ):
            self._emit(ClientEvent("updated", info.conversation_id, message))
