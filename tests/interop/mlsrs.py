"""A byte-level adapter over mls-rs (AWS's Rust MLS implementation) for the interop tests.

mls-rs comes from the PyPI package ``agentvault-mls-rs-uniffi`` (import name
``mls_rs_uniffi``): UniFFI bindings of mls-rs 0.55 / mls-rs-uniffi 0.13, patched to expose
``Message.to_bytes``/``from_bytes`` and ``Group.export_secret``. :class:`MlsRsMember` hides
every UniFFI object behind plain ``bytes`` and ``int``: what goes in and comes out is RFC 9420
wire bytes (``MLSMessage`` encodings, and the ``ratchet_tree`` extension's data for trees), so
a test can pass messages between mls-rs and Veilpost exactly as a delivery service would.

This module deliberately imports nothing from ``veilpost``: the peer must stay independent of
the implementation under test. See ``README.md`` beside it for what mls-rs puts on the wire.

Fixed by the bindings, not by this adapter:

- cipher suite 1 (``MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519``) only, Basic credentials
  whose identity is the ``identity`` given here; mls-rs refuses two members with the same
  identity (or signature or HPKE key) in one group;
- handshake messages (commits, proposals) are PublicMessage, application messages
  PrivateMessage; the bindings offer no way to encrypt handshake messages;
- a commit is applied by its sender at once by default (:meth:`MlsRsMember.add_members` and
  the other commit methods return it already merged). With ``apply=False`` it stays pending:
  the sender applies it later by processing its own commit bytes, or drops it by processing
  another member's commit for the same epoch (as when the delivery service orders that one
  first); a peer's commit is applied by :meth:`MlsRsMember.process`;
- a member never processes its own application messages (mls-rs refuses them); its own
  proposals are already in its proposal cache and need not be processed.

If ``mls_rs_uniffi`` cannot be imported, this module still imports: :data:`IMPORT_ERROR`
holds the reason and :func:`require_mlsrs` skips (or, under ``CI``, fails) the calling test
module.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

IMPORT_ERROR: str | None = None
"""Why ``mls_rs_uniffi`` cannot be imported, or ``None`` when it can."""

_mls: Any = None
"""The ``mls_rs_uniffi`` module (untyped UniFFI bindings), or ``None``."""
try:
    import mls_rs_uniffi
except ImportError as exc:  # pragma: no cover - depends on the environment
    IMPORT_ERROR = f"mls_rs_uniffi (PyPI: agentvault-mls-rs-uniffi) cannot be imported: {exc}"
else:
    _mls = mls_rs_uniffi

__all__ = [
    "CIPHER_SUITE",
    "IMPORT_ERROR",
    "CommitResult",
    "GroupContextInfo",
    "MlsRsError",
    "MlsRsMember",
    "Received",
    "require_available",
    "require_mlsrs",
]

CIPHER_SUITE = 0x0001
"""The only suite the bindings support: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519."""

_SNAPSHOT_VERSION = 1
_STATE_MAGIC = b"mlsrs-state/1"

T = TypeVar("T")


def require_mlsrs() -> None:
    """Call at the top of a test module: skip it when mls-rs is missing, fail it under ``CI``.

    The skip names the reason; with the ``CI`` environment variable set, a missing mls-rs is a
    collection error (so a CI run cannot pass by silently skipping the interop tests).
    """
    if IMPORT_ERROR is None:
        return
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {IMPORT_ERROR}", pytrace=False)
    pytest.skip(IMPORT_ERROR, allow_module_level=True)


class MlsRsError(Exception):
    """mls-rs refused an operation; the message is mls-rs's own (e.g. ``"A mls-rs error
    occurred: message from self can't be processed"``)."""


def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a binding call, turning every mls-rs / UniFFI error into :class:`MlsRsError`."""
    assert _mls is not None, IMPORT_ERROR
    try:
        return fn(*args)
    except (_mls.Error, _mls.InternalError) as exc:
        raise MlsRsError(str(exc)) from exc


@dataclass(frozen=True)
class CommitResult:
    """What a commit produced, all as wire bytes.

    ``commit`` is the ``MLSMessage`` (PublicMessage) for the other members; ``welcome`` the
    single ``MLSMessage`` (Welcome) for every member the commit adds (``None`` if it adds
    none); ``ratchet_tree`` the new epoch's tree (``ratchet_tree`` extension data) when the
    member was made with ``ratchet_tree_in_welcome=False`` and the commit adds members.
    """

    commit: bytes
    welcome: bytes | None = None
    ratchet_tree: bytes | None = None


@dataclass(frozen=True)
class Received:
    """The outcome of :meth:`MlsRsMember.process`.

    ``kind`` is ``"application"`` (``data`` is the plaintext), ``"commit"`` (the member moved
    to the next epoch; ``removed`` tells whether the commit removed it, ``applied_proposals``
    how many proposals it applied), or ``"proposal"`` (a proposal by reference, kept until a
    commit). ``"welcome"``, ``"group_info"`` and ``"key_package"`` are mls-rs's answer to
    being handed such a message. mls-rs does not say who sent a message in terms this adapter
    can return (it gives an opaque signing identity), so no sender is reported.
    """

    kind: Literal["application", "commit", "proposal", "welcome", "group_info", "key_package"]
    data: bytes = b""
    removed: bool = False
    applied_proposals: int = 0


@dataclass(frozen=True)
class GroupContextInfo:
    """A member's current GroupContext (RFC 9420 §8.1), read from mls-rs's saved state.

    ``encoded`` is the RFC encoding of the whole ``GroupContext``, byte for byte what mls-rs
    feeds its key schedule; the other fields are parsed from it.
    """

    encoded: bytes
    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: bytes = field(repr=False)
    """The encoded ``extensions<V>`` vector (length prefix included)."""


class _Reader:
    """Just enough of the TLS presentation language to walk a GroupContext."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise MlsRsError(f"mls-rs state truncated at offset {self.offset}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def varint_vector(self) -> bytes:
        """An ``opaque<V>`` including its prefix (RFC 9420 §2.1.2)."""
        start = self.offset
        first = self.uint(1)
        prefix = 1 << (first >> 6)
        if prefix > 4:
            raise MlsRsError(f"invalid varint prefix at offset {start}")
        length = first & 0x3F
        for _ in range(prefix - 1):
            length = (length << 8) | self.uint(1)
        self.take(length)
        return self.data[start : self.offset]

    def opaque(self) -> bytes:
        whole = self.varint_vector()
        return whole[1 << (whole[0] >> 6) :]


def _parse_group_context(snapshot: bytes) -> GroupContextInfo:
    """The GroupContext at the start of an mls-rs ``Snapshot``.

    mls-rs saves ``struct { uint16 version = 1; RawGroupState state; ... } Snapshot`` with
    ``RawGroupState`` starting with the ``GroupContext`` in its RFC encoding.
    """
    reader = _Reader(snapshot)
    version = reader.uint(2)
    if version != _SNAPSHOT_VERSION:
        raise MlsRsError(f"unknown mls-rs snapshot version {version}")
    start = reader.offset
    protocol_version = reader.uint(2)
    if protocol_version != 1:
        raise MlsRsError(f"unexpected protocol version {protocol_version} in mls-rs state")
    cipher_suite = reader.uint(2)
    group_id = reader.opaque()
    epoch = reader.uint(8)
    tree_hash = reader.opaque()
    confirmed_transcript_hash = reader.opaque()
    extensions = reader.varint_vector()
    return GroupContextInfo(
        encoded=snapshot[start : reader.offset],
        cipher_suite=cipher_suite,
        group_id=group_id,
        epoch=epoch,
        tree_hash=tree_hash,
        confirmed_transcript_hash=confirmed_transcript_hash,
        extensions=extensions,
    )


class _MemoryStorage:
    """An in-memory mls-rs ``GroupStateStorage``: the group snapshot and the epoch records.

    Built as a subclass of the UniFFI callback interface at run time (the base class exists
    only when mls-rs is importable); see :func:`_new_storage`.
    """

    def __init__(self) -> None:
        self.states: dict[bytes, bytes] = {}
        self.epochs: dict[bytes, dict[int, bytes]] = {}

    def state(self, group_id: bytes) -> bytes | None:
        return self.states.get(bytes(group_id))

    def epoch(self, group_id: bytes, epoch_id: int) -> bytes | None:
        return self.epochs.get(bytes(group_id), {}).get(int(epoch_id))

    def write(
        self,
        group_id: bytes,
        group_state: bytes,
        epoch_inserts: Sequence[Any],
        epoch_updates: Sequence[Any],
    ) -> None:
        group_id = bytes(group_id)
        self.states[group_id] = bytes(group_state)
        records = self.epochs.setdefault(group_id, {})
        for record in [*epoch_inserts, *epoch_updates]:
            records[int(record.id)] = bytes(record.data)

    def max_epoch_id(self, group_id: bytes) -> int | None:
        records = self.epochs.get(bytes(group_id))
        return max(records) if records else None

    def dump(self, group_id: bytes) -> bytes:
        """The stored state of one group as bytes (see :meth:`MlsRsMember.save_state`)."""
        records = self.epochs.get(group_id, {})
        out = [_lp(group_id), _lp(self.states[group_id]), struct.pack(">I", len(records))]
        for epoch_id in sorted(records):
            out += [struct.pack(">Q", epoch_id), _lp(records[epoch_id])]
        return b"".join(out)

    def load(self, data: bytes, offset: int) -> tuple[bytes, int]:
        """Fill this storage from :meth:`dump` output at ``offset``; return the group id."""
        group_id, offset = _read_lp(data, offset)
        self.states[group_id], offset = _read_lp(data, offset)
        (count,) = struct.unpack_from(">I", data, offset)
        offset += 4
        records = self.epochs.setdefault(group_id, {})
        for _ in range(count):
            (epoch_id,) = struct.unpack_from(">Q", data, offset)
            records[epoch_id], offset = _read_lp(data, offset + 8)
        return group_id, offset


def _lp(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _read_lp(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    start = offset + 4
    if start + length > len(data):
        raise MlsRsError("saved mls-rs state is truncated")
    return data[start : start + length], start + length


_storage_class: type[_MemoryStorage] | None = None


def _new_storage() -> _MemoryStorage:
    global _storage_class
    assert _mls is not None, IMPORT_ERROR
    if _storage_class is None:
        _storage_class = type("MemoryStorage", (_MemoryStorage, _mls.GroupStateStorage), {})
    return _storage_class()


class MlsRsMember:
    """One mls-rs client in (at most) one group, driven with wire bytes.

    ``identity`` becomes the Basic credential's identity; a fresh Ed25519 signature key pair
    is made unless ``signature_keys`` gives ``(public_key, secret_key)`` in mls-rs's encoding
    (32-byte public key, 64-byte secret = seed followed by the public key).
    ``ratchet_tree_in_welcome`` (mls-rs's default, True) puts the ``ratchet_tree`` extension
    in the Welcome's GroupInfo; with False the tree comes separately in
    :attr:`CommitResult.ratchet_tree` / :meth:`export_ratchet_tree`.
    """

    def __init__(
        self,
        identity: bytes,
        *,
        ratchet_tree_in_welcome: bool = True,
        signature_keys: tuple[bytes, bytes] | None = None,
    ) -> None:
        require_available()
        assert _mls is not None
        suite = _mls.CipherSuite.CURVE25519_AES128
        if signature_keys is None:
            keypair = _call(_mls.generate_signature_keypair, suite)
        else:
            keypair = _mls.SignatureKeypair(
                cipher_suite=suite,
                public_key=_mls.SignaturePublicKey(bytes=signature_keys[0]),
                secret_key=_mls.SignatureSecretKey(bytes=signature_keys[1]),
            )
        self.identity = bytes(identity)
        self.ratchet_tree_in_welcome = ratchet_tree_in_welcome
        self._keypair = keypair
        self._storage = _new_storage()
        self._client = self._new_client(self.identity)
        self._group: Any = None
        self._context: GroupContextInfo | None = None
        self.removed = False
        """True once a processed commit removed this member from its group."""

    def _new_client(self, identity: bytes, keypair: Any = None) -> Any:
        assert _mls is not None
        config = _mls.ClientConfig(
            group_state_storage=self._storage,
            use_ratchet_tree_extension=self.ratchet_tree_in_welcome,
        )
        return _mls.Client(identity, keypair or self._keypair, config)

    # -- identity and keys --------------------------------------------------------------

    @property
    def signature_public_key(self) -> bytes:
        """The Ed25519 public key in this member's credential (32 bytes)."""
        return bytes(self._keypair.public_key.bytes)

    @property
    def signature_secret_key(self) -> bytes:
        """mls-rs's encoding of the Ed25519 secret key: 32-byte seed then the public key."""
        return bytes(self._keypair.secret_key.bytes)

    def key_package(self) -> bytes:
        """A fresh ``MLSMessage`` (KeyPackage) for this client; its private keys stay in mls-rs
        (in memory: a restored member cannot use key packages made before the restore)."""
        message = _call(self._client.generate_key_package_message)
        return bytes(_call(message.to_bytes))

    # -- joining ------------------------------------------------------------------------

    def create_group(self, group_id: bytes | None = None) -> bytes:
        """Create a group (epoch 0, this member alone at leaf 0); return its group id.

        Without ``group_id`` mls-rs picks a random one.
        """
        self._require_no_group()
        self._group = _call(self._client.create_group, group_id)
        self._changed()
        return self.group_id

    def join(self, welcome: bytes, ratchet_tree: bytes | None = None) -> None:
        """Join from an ``MLSMessage`` (Welcome); ``ratchet_tree`` is the tree (``ratchet_tree``
        extension data) when the Welcome's GroupInfo does not carry it."""
        assert _mls is not None
        self._require_no_group()
        tree = None if ratchet_tree is None else _mls.RatchetTree(bytes=ratchet_tree)
        info = _call(self._client.join_group, tree, self._message(welcome))
        self._group = info.group
        self._changed()

    # -- commits ------------------------------------------------------------------------

    def add_members(self, key_packages: Sequence[bytes], *, apply: bool = True) -> CommitResult:
        """Commit Add proposals (by value) for ``key_packages`` (``MLSMessage`` KeyPackages)
        in one commit and return the commit and the Welcome; ``apply`` as in the module doc.

        mls-rs sends no update path with a commit of Adds only."""
        messages = [self._message(kp) for kp in key_packages]
        return self._commit(apply, self._group_handle().add_members, messages)

    def remove_members(self, identities: Sequence[bytes], *, apply: bool = True) -> CommitResult:
        """Commit Remove proposals (by value) for the members with these Basic credential
        identities (with an update path)."""
        identities_ = self._identities(identities)
        return self._commit(apply, self._group_handle().remove_members, identities_)

    def self_update(self, *, apply: bool = True) -> CommitResult:
        """Commit with an update path and no new proposals (a "full" self-update: new leaf
        HPKE key and path secrets).

        Proposals received by reference since the last commit are committed along with it:
        this is mls-rs's ``commit()`` (an empty commit when there are none).
        """
        return self._commit(apply, self._group_handle().commit)

    commit = self_update
    """Commit whatever proposals were received by reference (the same call as
    :meth:`self_update`, named for that use)."""

    def propose_add(self, key_packages: Sequence[bytes]) -> list[bytes]:
        """Add proposals (PublicMessage), one per key package, to be committed later."""
        messages = [self._message(kp) for kp in key_packages]
        proposals = _call(self._group_handle().propose_add_members, messages)
        return [bytes(_call(p.to_bytes)) for p in proposals]

    def propose_remove(self, identities: Sequence[bytes]) -> list[bytes]:
        """Remove proposals (PublicMessage), one per identity, to be committed later."""
        proposals = _call(self._group_handle().propose_remove_members, self._identities(identities))
        return [bytes(_call(p.to_bytes)) for p in proposals]

    # -- messages -----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """An application message: ``MLSMessage`` (PrivateMessage), empty authenticated data."""
        message = _call(self._group_handle().encrypt_application_message, plaintext)
        return bytes(_call(message.to_bytes))

    def process(self, message: bytes) -> Received:
        """Process a message from another member: decrypt an application message, apply a
        commit (moving to the next epoch), or store a proposal. A member's own commit made
        with ``apply=False`` is applied by processing its bytes here."""
        assert _mls is not None
        received = _call(self._group_handle().process_incoming_message, self._message(message))
        kinds = _mls.ReceivedMessage
        if isinstance(received, kinds.APPLICATION_MESSAGE):
            return Received("application", data=bytes(received.data))
        if isinstance(received, kinds.COMMIT):
            self._changed()
            effect = received.effect
            if isinstance(effect, _mls.CommitEffect.REMOVED):
                self.removed = True
                return Received("commit", removed=True)
            if isinstance(effect, _mls.CommitEffect.NEW_EPOCH):
                return Received("commit", applied_proposals=len(effect.applied_proposals))
            return Received("commit")
        if isinstance(received, kinds.RECEIVED_PROPOSAL):
            return Received("proposal")
        if isinstance(received, kinds.WELCOME):
            return Received("welcome")
        if isinstance(received, kinds.GROUP_INFO):
            return Received("group_info")
        return Received("key_package")

    # -- secrets and state --------------------------------------------------------------

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of the current epoch (RFC 9420 §8.5)."""
        return bytes(_call(self._group_handle().export_secret, label, context, length))

    def export_ratchet_tree(self) -> bytes:
        """The current tree, encoded as the ``ratchet_tree`` extension's data (§12.4.3.3)."""
        return bytes(_call(self._group_handle().export_tree).bytes)

    def group_context(self) -> GroupContextInfo:
        """The current GroupContext (read from mls-rs's saved state, then cached until the
        next epoch change). mls-rs has no accessor for it: this writes the group to the
        member's in-memory storage and parses the snapshot."""
        if self._context is None:
            group = self._group_handle()
            _call(group.write_to_storage)
            self._context = _parse_group_context(self._storage.states[self._group_id()])
        return self._context

    @property
    def group_id(self) -> bytes:
        return self.group_context().group_id

    @property
    def epoch(self) -> int:
        return self.group_context().epoch

    def save_state(self) -> bytes:
        """Everything needed to resume this member's group elsewhere, as bytes.

        That is mls-rs's own saved state (its group snapshot, which holds the secrets, the
        tree and the signing key, and its records of earlier epochs) wrapped with the identity
        and the signature key pair. Key packages not yet used are not included.
        """
        group = self._group_handle()
        _call(group.write_to_storage)
        group_id = self._group_id()
        return b"".join(
            [
                _lp(_STATE_MAGIC),
                _lp(self.identity),
                _lp(self.signature_public_key),
                _lp(self.signature_secret_key),
                bytes([self.ratchet_tree_in_welcome]),
                self._storage.dump(group_id),
            ]
        )

    @classmethod
    def load_state(cls, state: bytes) -> MlsRsMember:
        """A member restored from :meth:`save_state` output: a new mls-rs client and storage,
        the group loaded by mls-rs from the saved snapshot."""
        magic, offset = _read_lp(state, 0)
        if magic != _STATE_MAGIC:
            raise MlsRsError("not a saved mls-rs member state")
        identity, offset = _read_lp(state, offset)
        public_key, offset = _read_lp(state, offset)
        secret_key, offset = _read_lp(state, offset)
        tree_in_welcome = bool(state[offset])
        member = cls(
            identity,
            ratchet_tree_in_welcome=tree_in_welcome,
            signature_keys=(public_key, secret_key),
        )
        group_id, end = member._storage.load(state, offset + 1)
        if end != len(state):
            raise MlsRsError("trailing bytes after the saved mls-rs state")
        member._group = _call(member._client.load_group, group_id)
        member._changed()
        return member

    # -- internals ----------------------------------------------------------------------

    def _group_handle(self) -> Any:
        if self._group is None:
            raise MlsRsError(f"{self.identity!r} is in no group: create or join one first")
        return self._group

    def _require_no_group(self) -> None:
        if self._group is not None:
            raise MlsRsError(f"{self.identity!r} is already in a group; use a new member")

    def _group_id(self) -> bytes:
        (group_id,) = self._storage.states.keys()
        return group_id

    def _changed(self) -> None:
        self._context = None

    @staticmethod
    def _message(data: bytes) -> Any:
        assert _mls is not None
        return _call(_mls.Message.from_bytes, bytes(data))

    def _identities(self, identities: Sequence[bytes]) -> list[Any]:
        # mls-rs removes by identity: it maps a SigningIdentity to its Basic credential's
        # identity and looks that up in the group. The bindings cannot build a SigningIdentity
        # from bytes, so take one from a throwaway client with the same credential identity
        # (its signature key plays no part in the lookup).
        assert _mls is not None
        return [
            _call(self._new_client(bytes(identity)).signing_identity) for identity in identities
        ]

    def _commit(self, apply: bool, method: Callable[..., Any], *args: Any) -> CommitResult:
        output = _call(method, *args)
        commit = output.commit_message
        if apply:
            # mls-rs keeps its own commit pending until it processes it.
            _call(self._group_handle().process_incoming_message, commit)
            self._changed()
        welcome = output.welcome_message
        tree = output.ratchet_tree
        return CommitResult(
            commit=bytes(_call(commit.to_bytes)),
            welcome=None if welcome is None else bytes(_call(welcome.to_bytes)),
            ratchet_tree=None if tree is None else bytes(tree.bytes),
        )


def require_available() -> None:
    """Raise :class:`MlsRsError` when mls-rs cannot be imported (for non-test callers, such as
    the benchmark; tests use :func:`require_mlsrs`)."""
    if IMPORT_ERROR is not None:
        raise MlsRsError(IMPORT_ERROR)
