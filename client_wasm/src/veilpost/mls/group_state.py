"""A member's group state (RFC 9420 §8, §9, §12), and its saved form.

Theory of operation
-------------------

:class:`GroupState` is everything a :class:`~veilpost.mls.group.Group` remembers:

- :class:`EpochState`, the current epoch: the GroupContext, the ratchet tree, this member's
  tree private keys, the epoch secrets (§8) but ``encryption_secret`` (deleted once the
  secret tree is built from it, §9.2), the secret tree (§9) with its ratchets, the interim
  transcript hash and the confirmation tag of the Commit that began the epoch. Once this
  member is removed it keeps no secret of its last epoch, just the public GroupContext and
  tree (:meth:`EpochState.forget_secrets`);
- :class:`PastEpoch` for each of the last few epochs: just what decrypting a late
  application message needs (GroupContext, tree, sender-data secret, and the application
  ratchets of the other members, :meth:`~veilpost.mls.secret_tree.SecretTree.retire`);
- the ``resumption_psk`` of recent epochs (§8.6), the proposals cached this epoch (§12.3),
  the pending Commit (§14: not in force until the delivery service accepts it), a ReInit the
  group ended with, whether this member was removed, and digests of its own recent messages.

Saved form: :func:`encode_group_state` writes ``MAGIC`` (``b"VPMLSGRP"``), a ``uint16``
format version (:data:`STATE_VERSION`), the fields in the TLS presentation language of
:mod:`veilpost.codec`, and a SHA-256 digest of everything before it, so that a corrupted
file is refused rather than loaded with a wrong secret (the digest is no protection against
tampering: the state holds private keys, store it encrypted and authenticated).
:func:`decode_group_state` raises :class:`~veilpost.codec.DecodeError` for anything malformed
or corrupted and :class:`GroupStateVersionError` for a version it does not read; loaded keys
are checked against the loaded tree, and the parts against each other (own leaf, signer,
secret tree sizes). The format is not a wire format and may change between
versions (each change bumps :data:`STATE_VERSION`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from veilpost.codec import DecodeError, Reader, Writer, decode, encode
from veilpost.crypto import CipherSuite, CryptoError, CryptoProvider, UnsupportedError
from veilpost.mls.credential import Credential
from veilpost.mls.errors import MlsError, ProtocolError, UsageError
from veilpost.mls.events import Member, StagedCommit
from veilpost.mls.extensions import Extension
from veilpost.mls.framing import AuthenticatedContent, ContentType, Sender
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_schedule import EpochSecrets
from veilpost.mls.proposals import Proposal, ReInit
from veilpost.mls.psk import PreSharedKeyID
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.secret_tree import RatchetWindow, SecretTree
from veilpost.mls.signing_identity import SigningIdentity
from veilpost.mls.transcript_hash import interim_transcript_hash as compute_interim_transcript_hash
from veilpost.mls.treekem import TreePrivateKeys

__all__ = [
    "MAGIC",
    "STATE_VERSION",
    "CachedProposal",
    "EpochState",
    "GroupState",
    "GroupStateVersionError",
    "OwnRecord",
    "PastEpoch",
    "PendingCommit",
    "decode_group_state",
    "encode_group_state",
]

MAGIC = b"VPMLSGRP"
STATE_VERSION = 2
"""Version 2 saves no ``encryption_secret`` (§9.2); version 1 (never released) is not read."""

_DIGEST_SIZE = 32

OWN_MESSAGES_KEPT = 256
"""How many of its own recent messages a member recognises when they are echoed back."""


class GroupStateVersionError(MlsError):
    """Saved group state of a format version this library does not read."""


@dataclass(eq=False)
class EpochState:
    """The current epoch as one member sees it."""

    context: GroupContext
    tree: RatchetTree
    private_keys: TreePrivateKeys
    secrets: EpochSecrets
    secret_tree: SecretTree
    interim_transcript_hash: bytes
    confirmation_tag: bytes

    @classmethod
    def begin(
        cls,
        *,
        context: GroupContext,
        tree: RatchetTree,
        private_keys: TreePrivateKeys,
        secrets: EpochSecrets,
        window: RatchetWindow,
        confirmation_tag: bytes,
        interim_transcript_hash: bytes | None = None,
    ) -> EpochState:
        """A new epoch: its secret tree is built from ``encryption_secret``, which is then
        deleted (§9.2). The interim transcript hash follows from the context's confirmed
        transcript hash and the confirmation tag (§8.2) unless given (a joiner gets it from
        the Welcome)."""
        if interim_transcript_hash is None:
            interim_transcript_hash = compute_interim_transcript_hash(
                secrets.suite, context.confirmed_transcript_hash, confirmation_tag
            )
        secret_tree = SecretTree(
            secrets.suite,
            secrets.encryption_secret,
            tree.n_leaves,
            own_leaf=private_keys.leaf_index,
            window=window,
        )
        return cls(
            context,
            tree,
            private_keys,
            secrets.without_encryption_secret(),
            secret_tree,
            interim_transcript_hash,
            confirmation_tag,
        )

    def forget_secrets(self) -> EpochState:
        """This epoch without any secret: what a removed member keeps of its last epoch
        (§12.4.2), the GroupContext and the tree. Late messages use its :class:`PastEpoch`."""
        suite = self.secrets.suite
        erased = EpochSecrets(suite=suite, **dict.fromkeys(_ALL_SECRET_FIELDS, b""))
        secret_tree = SecretTree(suite, b"", self.tree.n_leaves)
        secret_tree.retire(())
        return EpochState(
            self.context,
            self.tree,
            TreePrivateKeys(self.own_leaf),
            erased,
            secret_tree,
            self.interim_transcript_hash,
            self.confirmation_tag,
        )

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def own_leaf(self) -> int:
        return self.private_keys.leaf_index


@dataclass(eq=False)
class PastEpoch:
    """What a late application message of an earlier epoch needs (§15.3)."""

    context: GroupContext
    tree: RatchetTree
    sender_data_secret: bytes
    secret_tree: SecretTree

    @classmethod
    def of(cls, state: EpochState) -> PastEpoch:
        """What ``state``, now over, keeps: its secret tree is retired in place to the
        application ratchets of the other members (this member's own messages are recognised
        by digest, and handshake messages of a past epoch are refused)."""
        others = [leaf for leaf, _ in state.tree.leaves() if leaf != state.own_leaf]
        state.secret_tree.retire(others)
        return cls(state.context, state.tree, state.secrets.sender_data_secret, state.secret_tree)


@dataclass(frozen=True)
class CachedProposal:
    """A proposal received (or sent) this epoch, kept by reference (§12.3)."""

    ref: bytes
    authenticated: AuthenticatedContent

    @property
    def proposal(self) -> Proposal:
        body = self.authenticated.content.body
        assert isinstance(body, Proposal)
        return body

    @property
    def sender(self) -> Sender:
        return self.authenticated.content.sender


@dataclass(eq=False)
class PendingCommit:
    """A Commit this member made and sent, not yet known to be accepted (§14)."""

    message: bytes
    staged: StagedCommit
    welcome: bytes | None
    group_info: bytes
    signer: SigningIdentity | None = None
    """The committer's new signing identity, when the Commit's path rotates it."""


@dataclass(frozen=True)
class OwnRecord:
    """A message this member sent: its kind, epoch and (proposals) reference."""

    content_type: ContentType
    epoch: int
    ref: bytes | None = None


@dataclass(eq=False)
class GroupState:
    """Everything a member keeps about one group; see the module documentation."""

    suite: CipherSuite
    signer: SigningIdentity
    current: EpochState
    past_epochs: list[PastEpoch] = field(default_factory=list)
    resumption_psks: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    proposals: dict[bytes, CachedProposal] = field(default_factory=dict)
    pending: PendingCommit | None = None
    reinit: ReInit | None = None
    removed: bool = False
    own_messages: dict[bytes, OwnRecord] = field(default_factory=dict)
    update_keys: dict[bytes, bytes] = field(default_factory=dict)
    """Leaf private keys of this member's Update proposals this epoch, by public key."""

    def remember_own(self, digest: bytes, record: OwnRecord) -> None:
        """Note one of this member's messages, forgetting the oldest beyond the limit."""
        self.own_messages[digest] = record
        while len(self.own_messages) > OWN_MESSAGES_KEPT:
            del self.own_messages[next(iter(self.own_messages))]


# -- encoding ------------------------------------------------------------------------------------

_SECRET_FIELDS = (
    "sender_data_secret",
    "exporter_secret",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
    "epoch_authenticator",
    "init_secret",
)
"""The epoch secrets saved: all but ``encryption_secret``, which is deleted (§9.2)."""

_ALL_SECRET_FIELDS = ("encryption_secret", *_SECRET_FIELDS)


def _encode_secrets(writer: Writer, secrets: EpochSecrets) -> None:
    for name in _SECRET_FIELDS:
        writer.opaque(getattr(secrets, name))


def _decode_secrets(reader: Reader, suite: CipherSuite) -> EpochSecrets:
    values = {name: reader.opaque(f"EpochSecrets.{name}") for name in _SECRET_FIELDS}
    return EpochSecrets(suite=suite, encryption_secret=b"", **values)


def _encode_tree(writer: Writer, tree: RatchetTree) -> None:
    writer.opaque(tree.encode())


def _decode_tree(reader: Reader, suite: CipherSuite) -> RatchetTree:
    data = reader.opaque("ratchet tree")
    try:
        return RatchetTree.decode(suite, data)
    except ProtocolError as exc:
        raise DecodeError(f"saved ratchet tree is malformed: {exc}") from exc


def _encode_epoch(writer: Writer, state: EpochState) -> None:
    state.context.encode(writer)
    _encode_tree(writer, state.tree)
    state.private_keys.encode(writer)
    _encode_secrets(writer, state.secrets)
    state.secret_tree.encode(writer)
    writer.opaque(state.interim_transcript_hash)
    writer.opaque(state.confirmation_tag)


def _decode_epoch(reader: Reader, suite: CipherSuite) -> EpochState:
    context = GroupContext.decode(reader)
    tree = _decode_tree(reader, suite)
    private_keys = TreePrivateKeys.decode(reader)
    secrets = _decode_secrets(reader, suite)
    secret_tree = SecretTree.decode(reader, suite)
    state = EpochState(
        context,
        tree,
        private_keys,
        secrets,
        secret_tree,
        reader.opaque("EpochState.interim_transcript_hash"),
        reader.opaque("EpochState.confirmation_tag"),
    )
    try:
        private_keys.verify(suite, tree)
    except MlsError as exc:
        raise DecodeError(f"saved epoch {context.epoch} is inconsistent: {exc}") from exc
    if context.tree_hash != tree.tree_hash():
        raise DecodeError(f"saved epoch {context.epoch}: the tree does not match its tree hash")
    if secret_tree.n_leaves != tree.n_leaves:
        raise DecodeError(f"saved epoch {context.epoch}: the secret tree has the wrong size")
    own = private_keys.leaf_index
    if own >= tree.n_leaves or tree.leaf(own) is None:
        raise DecodeError(f"saved epoch {context.epoch}: own leaf {own} is not in the tree")
    if secret_tree.own_leaf is not None and secret_tree.own_leaf != own:
        raise DecodeError(
            f"saved epoch {context.epoch}: the secret tree's own leaf {secret_tree.own_leaf}"
            f" is not the member's leaf {own}"
        )
    return state


def _encode_past(writer: Writer, past: PastEpoch) -> None:
    past.context.encode(writer)
    _encode_tree(writer, past.tree)
    writer.opaque(past.sender_data_secret)
    past.secret_tree.encode(writer)


def _decode_past(reader: Reader, suite: CipherSuite) -> PastEpoch:
    past = PastEpoch(
        GroupContext.decode(reader),
        _decode_tree(reader, suite),
        reader.opaque("PastEpoch.sender_data_secret"),
        SecretTree.decode(reader, suite),
    )
    if past.secret_tree.n_leaves != past.tree.n_leaves or past.secret_tree.own_leaf is not None:
        raise DecodeError(f"saved past epoch {past.context.epoch}: malformed secret tree")
    return past


def _check_consistency(state: GroupState) -> None:
    """The parts of a loaded state agree with each other (DecodeError otherwise)."""
    current = state.current
    own = current.own_leaf
    leaf = current.tree.leaf(own)
    assert leaf is not None  # _decode_epoch checked it
    if leaf.signature_key != state.signer.signature_key:
        raise DecodeError(f"saved group state: the signer's key is not the one of own leaf {own}")
    if not state.removed and (
        current.secret_tree.own_leaf != own or current.private_keys.key_pair(2 * own) is None
    ):
        raise DecodeError(f"saved group state: no secret tree or private key for own leaf {own}")
    epochs = [past.context.epoch for past in state.past_epochs]
    newest = current.epoch if state.removed else current.epoch - 1  # removed: its last epoch
    if epochs != sorted(set(epochs)) or any(e > newest for e in epochs):
        raise DecodeError(f"saved group state: past epochs {epochs} at epoch {current.epoch}")
    if any(p.context.group_id != current.context.group_id for p in state.past_epochs):
        raise DecodeError("saved group state: a past epoch of another group")
    pending = state.pending
    if pending is not None and (
        pending.staged.state is None
        or pending.staged.state.own_leaf != own
        or pending.staged.epoch != current.epoch + 1
    ):
        raise DecodeError("saved group state: the pending Commit does not follow this epoch")


def _encode_members(writer: Writer, members: tuple[Member, ...]) -> None:
    writer.uint32(len(members))
    for member in members:
        writer.uint32(member.leaf_index)
        member.credential.encode(writer)
        writer.opaque(member.signature_key)


def _decode_members(reader: Reader) -> tuple[Member, ...]:
    return tuple(
        Member(
            reader.uint32("Member.leaf_index"),
            Credential.decode(reader),
            reader.opaque("Member.signature_key"),
        )
        for _ in range(reader.uint32("member count"))
    )


def _flags(*values: bool) -> int:
    return sum(1 << i for i, value in enumerate(values) if value)


def _encode_staged(writer: Writer, staged: StagedCommit) -> None:
    writer.opaque(staged.group_id)
    writer.uint64(staged.epoch)
    staged.committer.encode(writer)
    writer.uint32(staged.committer_leaf)
    _encode_members(writer, staged.added)
    _encode_members(writer, staged.removed)
    _encode_members(writer, staged.updated)
    writer.struct_vector(staged.psks)
    writer.optional(staged.extensions, lambda w, extensions: w.struct_vector(extensions))
    writer.optional_struct(staged.reinit)
    writer.uint8(_flags(staged.has_path, staged.external, staged.self_removed, staged.own))
    writer.optional(staged.state, _encode_epoch)


def _decode_staged(reader: Reader, suite: CipherSuite) -> StagedCommit:
    group_id = reader.opaque("StagedCommit.group_id")
    epoch = reader.uint64("StagedCommit.epoch")
    committer = Sender.decode(reader)
    committer_leaf = reader.uint32("StagedCommit.committer_leaf")
    added = _decode_members(reader)
    removed = _decode_members(reader)
    updated = _decode_members(reader)
    psks = tuple(reader.vector(PreSharedKeyID.decode, "StagedCommit.psks"))
    extensions = reader.optional(
        lambda r: tuple(r.vector(Extension.decode, "StagedCommit.extensions")), "extensions"
    )
    reinit = reader.optional(ReInit.decode, "StagedCommit.reinit")
    flags = reader.uint8("StagedCommit.flags")
    state = reader.optional(lambda r: _decode_epoch(r, suite), "StagedCommit.state")
    return StagedCommit(
        group_id=group_id,
        epoch=epoch,
        committer=committer,
        committer_leaf=committer_leaf,
        added=added,
        removed=removed,
        updated=updated,
        psks=psks,
        extensions=extensions,
        reinit=reinit,
        has_path=bool(flags & 1),
        external=bool(flags & 2),
        self_removed=bool(flags & 4),
        own=bool(flags & 8),
        state=state,
    )


def _encode_pending(writer: Writer, pending: PendingCommit) -> None:
    writer.opaque(pending.message)
    _encode_staged(writer, pending.staged)
    writer.optional(pending.welcome, Writer.opaque)
    writer.opaque(pending.group_info)
    writer.optional_struct(pending.signer)


def _decode_pending(reader: Reader, suite: CipherSuite) -> PendingCommit:
    return PendingCommit(
        reader.opaque("PendingCommit.message"),
        _decode_staged(reader, suite),
        reader.optional(lambda r: r.opaque("PendingCommit.welcome"), "welcome"),
        reader.opaque("PendingCommit.group_info"),
        reader.optional(SigningIdentity.decode, "PendingCommit.signer"),
    )


def encode_group_state(state: GroupState) -> bytes:
    """The saved form of ``state`` (see the module documentation)."""
    writer = Writer()
    writer.fixed(MAGIC)
    writer.uint16(STATE_VERSION)
    writer.uint16(state.suite.id)
    state.signer.encode(writer)
    _encode_epoch(writer, state.current)
    writer.uint32(len(state.past_epochs))
    for past in state.past_epochs:
        _encode_past(writer, past)
    writer.uint32(len(state.resumption_psks))
    for (group_id, epoch), psk in state.resumption_psks.items():
        writer.opaque(group_id)
        writer.uint64(epoch)
        writer.opaque(psk)
    writer.uint32(len(state.proposals))
    for cached in state.proposals.values():
        writer.opaque(cached.ref)
        writer.opaque(encode(cached.authenticated))
    writer.optional(state.pending, _encode_pending)
    writer.optional_struct(state.reinit)
    writer.uint8(_flags(state.removed))
    writer.uint32(len(state.own_messages))
    for digest, record in state.own_messages.items():
        writer.opaque(digest)
        writer.uint8(record.content_type)
        writer.uint64(record.epoch)
        writer.optional(record.ref, Writer.opaque)
    writer.uint32(len(state.update_keys))
    for public_key, private_key in state.update_keys.items():
        writer.opaque(public_key)
        writer.opaque(private_key)
    content = writer.getvalue()
    return content + hashlib.sha256(content).digest()


def decode_group_state(data: bytes, provider: CryptoProvider) -> GroupState:
    """Load what :func:`encode_group_state` wrote, on ``provider``."""
    data = bytes(data)
    reader = Reader(data)
    if len(data) < len(MAGIC) or reader.fixed(len(MAGIC), "magic") != MAGIC:
        raise DecodeError("not a veilpost group state (bad magic)")
    version = reader.uint16("group state version")
    if version != STATE_VERSION:
        raise GroupStateVersionError(
            f"group state format version {version} is not supported: this veilpost reads"
            f" version {STATE_VERSION} (was the state saved by a newer release?)"
        )
    content, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if len(content) < reader.offset or hashlib.sha256(content).digest() != digest:
        raise DecodeError("saved group state is corrupted (its SHA-256 digest does not match)")
    reader = Reader(content, reader.offset)
    suite_id = reader.uint16("cipher suite")
    try:
        suite = CipherSuite(suite_id, provider)
    except UnsupportedError as exc:
        raise DecodeError(f"saved group state: {exc}") from exc
    try:
        state = _decode_body(reader, suite)
        reader.finish("group state")
    except (UsageError, ValueError, CryptoError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"saved group state is malformed: {exc}") from exc
    return state


def _decode_body(reader: Reader, suite: CipherSuite) -> GroupState:
    signer = SigningIdentity.decode(reader)
    current = _decode_epoch(reader, suite)
    past = [_decode_past(reader, suite) for _ in range(reader.uint32("past epoch count"))]
    resumption: dict[tuple[bytes, int], bytes] = {}
    for _ in range(reader.uint32("resumption psk count")):
        group_id = reader.opaque("resumption psk group id")
        epoch = reader.uint64("resumption psk epoch")
        resumption[(group_id, epoch)] = reader.opaque("resumption psk")
    proposals: dict[bytes, CachedProposal] = {}
    for _ in range(reader.uint32("cached proposal count")):
        ref = reader.opaque("cached proposal ref")
        authenticated = decode(AuthenticatedContent, reader.opaque("cached proposal"))
        if not isinstance(authenticated.content.body, Proposal):
            raise DecodeError("a cached proposal that is not a proposal")
        proposals[ref] = CachedProposal(ref, authenticated)
    pending = reader.optional(lambda r: _decode_pending(r, suite), "pending commit")
    reinit = reader.optional(ReInit.decode, "reinit")
    flags = reader.uint8("group flags")
    own: dict[bytes, OwnRecord] = {}
    for _ in range(reader.uint32("own message count")):
        digest = reader.opaque("own message digest")
        content_type = ContentType(reader.uint8("own message content type"))
        epoch = reader.uint64("own message epoch")
        own_ref = reader.optional(lambda r: r.opaque("own message ref"), "ref")
        own[digest] = OwnRecord(content_type, epoch, own_ref)
    update_keys: dict[bytes, bytes] = {}
    for _ in range(reader.uint32("update key count")):
        public_key = reader.opaque("update public key")
        update_keys[public_key] = reader.opaque("update private key")
    if signer.signature_key != suite.signature_public_key(signer.signature_private_key):
        raise DecodeError("saved signing identity: the private key does not match")
    state = GroupState(
        suite=suite,
        signer=signer,
        current=current,
        past_epochs=past,
        resumption_psks=resumption,
        proposals=proposals,
        pending=pending,
        reinit=reinit,
        removed=bool(flags & 1),
        own_messages=own,
        update_keys=update_keys,
    )
    _check_consistency(state)
    return state
