"""The MLS group state machine (RFC 9420 §11, §12, §14, §15): the library's public API.

Theory of operation
-------------------

A :class:`Group` is one member's view of one group. It performs no I/O: every method takes
bytes or values and returns bytes or events, and the application carries the bytes to and from
the delivery service. The states, and what moves between them::

    Group.create ──────┐   join_from_welcome ───┐   join_by_external_commit ──┐
                       ▼                         ▼                             ▼
                ┌─────────────────────────── active, epoch n ◄──────────────────────┐
                │ encrypt(data) → PrivateMessage                                     │
                │ propose_*() → proposal message (cached by reference, §12.3)        │
                │ process(msg) → ApplicationMessage | ProposalReceived | OwnMessage  │
                │ process(commit) → StagedCommit ── merge_staged_commit ─────────────┤
                │ commit() → CommitOutput, *pending* (§14: the DS may refuse it)     │
                │     ├─ merge_pending_commit(), or the commit echoed to process() ──┘
                │     └─ discard_pending_commit() (lost the race: process the winner)
                ▼
        removed (a Commit removed us)    reinit (a Commit covered a ReInit: send nothing,
        late messages of recent           wait for the new group's Welcome, or make it
        epochs still decrypt              with reinitialize(), §11.2)

A Commit never changes the group until it is merged: :meth:`commit` returns the messages and
keeps the next epoch aside (only one handshake ratchet key is spent), and :meth:`process`
returns a :class:`~veilpost.mls.events.StagedCommit` that holds the next epoch until
:meth:`merge_staged_commit`. Merging forgets the proposal cache and keeps, of the last epochs
(``GroupConfig.max_past_epochs``), only the other members' application ratchets, so that late
application messages decrypt. A removed member keeps nothing else: no tree private key, no
epoch secret (:meth:`export_secret` and the like raise
:class:`~veilpost.mls.errors.UsageError`).

Who joins is the application's decision (§12.1.8, §12.4): proposals from outside the group
(``new_member_proposal``, ``external`` senders) are refused by default
(``GroupConfig.accept_new_member_proposals``), and when accepted are committed only if the
application names them in ``commit(include_proposals=[ref, ...])``; external Commits are
refused unless ``GroupConfig.accept_external_commits``, and may then remove only the joiner's
own old leaf (§12.2). See :mod:`veilpost.mls.group_config`.

Errors: malformed bytes raise :class:`~veilpost.codec.DecodeError` only; a message that
breaks a rule raises a :class:`~veilpost.mls.errors.ProtocolError` (mostly
:class:`~veilpost.mls.errors.ValidationError`) whose ``check`` names the rule; calling a
method in the wrong state raises :class:`~veilpost.mls.errors.UsageError`. A failed
:meth:`process` leaves the group's state as it was, saved form included: a ratchet key is
consumed, and a sender's ratchets derived, only once a PrivateMessage fully verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from veilpost.codec import DecodeError, decode, encode
from veilpost.crypto import CipherSuite, CryptoProvider, UnsupportedError
from veilpost.mls.builders import new_leaf_node
from veilpost.mls.commit import Commit
from veilpost.mls.commit_processing import (
    create_commit,
    leaf_policy,
    make_group_info,
    message_digest,
    protect,
    sign,
)
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.events import (
    CommitOutput,
    Event,
    Member,
    OwnMessage,
    StagedCommit,
)
from veilpost.mls.extensions import Extension
from veilpost.mls.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_context import MLS10, GroupContext
from veilpost.mls.group_creation import create_group_state, resumed_group_state
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.group_state import (
    CachedProposal,
    GroupState,
    OwnRecord,
    PastEpoch,
    decode_group_state,
    encode_group_state,
)
from veilpost.mls.joining import (
    RatchetTreeInput,
    create_external_commit,
    ratchet_tree_for,
    verify_group_info,
    verify_tree,
    welcome_state,
)
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import LeafNodeSource
from veilpost.mls.message_processing import process_message
from veilpost.mls.proposal_list import check_proposal
from veilpost.mls.proposals import (
    Add,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from veilpost.mls.psk import (
    PreSharedKeyID,
    ResumptionPSKUsage,
    external_psk_id,
    resumption_psk_id,
)
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity
from veilpost.mls.welcome import Welcome

__all__ = ["Group", "KeyPackageInput", "PskInput"]

KeyPackageInput = KeyPackage | KeyPackageBundle | bytes
"""A key package to add: the struct, a bundle, or an ``MLSMessage`` carrying one."""

PskInput = PreSharedKeyID | bytes
"""A PSK to inject: a full ``PreSharedKeyID``, or the ``psk_id`` of an external PSK (a fresh
nonce is drawn)."""


def _suite(suite: CipherSuite | int, provider: CryptoProvider | None) -> CipherSuite:
    if isinstance(suite, CipherSuite):
        return suite
    return CipherSuite(suite, provider)


def _decode_message(data: bytes) -> MLSMessage:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError(f"an MLS message is bytes, not {type(data).__name__}")
    return decode(MLSMessage, bytes(data))


class Group:
    """One member's state of one MLS group; see the module documentation.

    Make one with :meth:`create`, :meth:`join_from_welcome`,
    :meth:`join_by_external_commit` or :meth:`from_bytes`.
    """

    __slots__ = ("_state", "config")

    def __init__(self, state: GroupState, config: GroupConfig | None = None) -> None:
        self._state = state
        self.config = config or GroupConfig()

    def __repr__(self) -> str:
        status = "removed" if self._state.removed else "reinit" if self._state.reinit else "active"
        return (
            f"Group(id={self.group_id.hex()[:16]}, epoch={self.epoch},"
            f" leaf={self.own_leaf_index}, members={len(self.members)}, {status})"
        )

    # -- making a group --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        suite: CipherSuite | int,
        signer: SigningIdentity,
        *,
        group_id: bytes | None = None,
        extensions: Iterable[Extension] = (),
        provider: CryptoProvider | None = None,
        config: GroupConfig | None = None,
        now: int | None = None,
    ) -> Group:
        """A new one-member group at epoch 0 (§11).

        ``suite`` is a :class:`~veilpost.crypto.CipherSuite` or a suite id (then
        ``provider`` chooses the backend). ``group_id`` defaults to ``KDF.Nh`` random bytes;
        ``extensions`` become the GroupContext extensions. The creator's leaf gets a key
        package lifetime starting at ``now`` (default: the config's clock, else 0).
        """
        config = config or GroupConfig()
        state = create_group_state(
            _suite(suite, provider),
            signer,
            config,
            group_id=group_id,
            extensions=extensions,
            now=now,
        )
        return cls(state, config)

    @classmethod
    def join_from_welcome(
        cls,
        welcome: bytes,
        key_package_bundle: KeyPackageBundle,
        *,
        ratchet_tree: RatchetTreeInput = None,
        provider: CryptoProvider | None = None,
        config: GroupConfig | None = None,
        previous_group: Group | None = None,
    ) -> Group:
        """Join by a Welcome (an ``MLSMessage``) addressed to ``key_package_bundle`` (§12.4.3.1).

        The tree comes from the GroupInfo's ``ratchet_tree`` extension unless ``ratchet_tree``
        (the extension's data, or a :class:`RatchetTree`) is given out of band; it is fully
        verified either way. ``previous_group`` is the group a reinit or branch Welcome
        resumes (§11.2, §11.3). The caller checks that the group id is new to it.
        """
        config = config or GroupConfig()
        body = _decode_message(welcome).body
        if not isinstance(body, Welcome):
            raise UsageError(f"join_from_welcome takes a Welcome, not a {type(body).__name__}")
        try:
            suite = CipherSuite(key_package_bundle.key_package.cipher_suite, provider)
        except UnsupportedError as exc:
            raise UsageError(f"the key package's cipher suite: {exc}") from exc
        state = welcome_state(
            body,
            key_package_bundle,
            suite,
            config,
            ratchet_tree=ratchet_tree,
            previous=None if previous_group is None else previous_group._state,
        )
        return cls(state, config)

    @classmethod
    def join_by_external_commit(
        cls,
        group_info: bytes,
        signer: SigningIdentity,
        *,
        ratchet_tree: RatchetTreeInput = None,
        provider: CryptoProvider | None = None,
        config: GroupConfig | None = None,
        remove_prior: int | None = None,
        psks: Sequence[bytes] = (),
        authenticated_data: bytes = b"",
    ) -> tuple[Group, bytes]:
        """Join by an external Commit (§12.4.3.2) from a GroupInfo with ``external_pub``.

        Returns the group, already in the new epoch, and the Commit to send. If the
        delivery service refuses the Commit, drop the group and try again with a newer
        GroupInfo. ``remove_prior`` removes the joiner's own earlier leaf (a "resync");
        ``psks`` are ids of external PSKs (in ``config.external_psks``) to inject.
        """
        config = config or GroupConfig()
        body = _decode_message(group_info).body
        if not isinstance(body, GroupInfo):
            raise UsageError(
                f"join_by_external_commit takes a GroupInfo, not a {type(body).__name__}"
            )
        try:
            suite = CipherSuite(body.group_context.cipher_suite, provider)
        except UnsupportedError as exc:
            raise ValidationError(
                f"the GroupInfo's group uses an unsupported cipher suite: {exc}",
                check="group_info.cipher_suite",
                section="12.4.3.2",
            ) from exc
        tree = ratchet_tree_for(suite, body, ratchet_tree)
        verify_group_info(suite, body, tree)
        verify_tree(suite, tree, body.group_context, config)
        result = create_external_commit(
            body,
            tree,
            signer,
            config,
            remove_prior=remove_prior,
            external_psks=[external_psk_id(suite, psk_id) for psk_id in psks],
            authenticated_data=authenticated_data,
        )
        epoch = result.epoch
        state = GroupState(
            suite=suite,
            signer=signer,
            current=epoch,
            resumption_psks={(epoch.context.group_id, epoch.epoch): epoch.secrets.resumption_psk},
        )
        state.remember_own(
            message_digest(state, result.message),
            OwnRecord(ContentType.COMMIT, body.group_context.epoch),
        )
        return cls(state, config), result.message

    # -- saved state -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The group state, private keys included, in a versioned binary format (store it
        encrypted). :meth:`from_bytes` loads it."""
        return encode_group_state(self._state)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        provider: CryptoProvider | None = None,
        *,
        config: GroupConfig | None = None,
    ) -> Group:
        """Load a group saved by :meth:`to_bytes`. Malformed data raises
        :class:`~veilpost.codec.DecodeError`; a newer format version
        :class:`~veilpost.mls.group_state.GroupStateVersionError`."""
        return cls(decode_group_state(data, provider or CryptoProvider()), config)

    # -- what the group is -----------------------------------------------------------------------

    @property
    def cipher_suite(self) -> CipherSuite:
        """The group's cipher suite, bound to this member's crypto provider."""
        return self._state.suite

    @property
    def group_id(self) -> bytes:
        return self._state.current.context.group_id

    @property
    def epoch(self) -> int:
        """The current epoch (for a removed member: the last epoch it was in)."""
        return self._state.current.epoch

    @property
    def group_context(self) -> GroupContext:
        return self._state.current.context

    @property
    def extensions(self) -> list[Extension]:
        """The GroupContext extensions in force."""
        return list(self._state.current.context.extensions)

    @property
    def own_leaf_index(self) -> int:
        return self._state.current.own_leaf

    @property
    def signer(self) -> SigningIdentity:
        """This member's signing identity."""
        return self._state.signer

    @property
    def epoch_authenticator(self) -> bytes:
        """The epoch authenticator (§8.7): equal for every member in the same epoch."""
        self._require_member()
        return self._state.current.secrets.epoch_authenticator

    @property
    def members(self) -> dict[int, Member]:
        """The members by leaf index."""
        return {i: Member.of(i, leaf) for i, leaf in self._state.current.tree.leaves()}

    @property
    def is_active(self) -> bool:
        """Whether this member can still send: not removed, and no ReInit pending."""
        return not self._state.removed and self._state.reinit is None

    @property
    def removed(self) -> bool:
        """Whether a Commit removed this member from the group."""
        return self._state.removed

    @property
    def pending_reinit(self) -> ReInit | None:
        """The ReInit the group ended with (§11.2), if a Commit covered one."""
        return self._state.reinit

    @property
    def pending_commit(self) -> CommitOutput | None:
        """This member's Commit awaiting the delivery service's verdict, if any."""
        pending = self._state.pending
        if pending is None:
            return None
        return CommitOutput(pending.message, pending.welcome, pending.group_info, pending.staged)

    @property
    def cached_proposal_refs(self) -> list[bytes]:
        """The references of the proposals cached this epoch, in arrival order."""
        return list(self._state.proposals)

    def ratchet_tree(self) -> bytes:
        """The tree as a ``ratchet_tree`` extension's data, for out-of-band distribution."""
        return self._state.current.tree.encode()

    def export_secret(self, label: str | bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of the current epoch (§8.5)."""
        self._require_member()
        return self._state.current.secrets.export(label, context, length)

    def group_info(
        self, *, with_ratchet_tree: bool = True, external_pub: bool | None = None
    ) -> bytes:
        """A signed GroupInfo of the current epoch as an ``MLSMessage`` (§12.4.3). With the
        ``external_pub`` extension (default: when ``config.accept_external_commits``) others
        can join by an external Commit."""
        self._require_member()
        if external_pub is None:
            external_pub = self.config.accept_external_commits
        state = self._state
        info = make_group_info(
            state,
            state.current,
            state.signer,
            ratchet_tree=with_ratchet_tree,
            external_pub=external_pub,
        )
        return encode(MLSMessage(info))

    def resumption_psk(
        self, epoch: int | None = None, usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    ) -> PreSharedKeyID:
        """A ``PreSharedKeyID`` naming this group's ``resumption_psk`` of ``epoch`` (default:
        the current one), with a fresh nonce (§8.6). The epoch must be among those kept."""
        self._require_member()
        epoch = self.epoch if epoch is None else epoch
        if (self.group_id, epoch) not in self._state.resumption_psks:
            kept = sorted(e for g, e in self._state.resumption_psks if g == self.group_id)
            raise UsageError(f"no resumption PSK kept for epoch {epoch} (kept: {kept})")
        return resumption_psk_id(self._state.suite, usage, self.group_id, epoch)

    # -- sending ---------------------------------------------------------------------------------

    def _require_member(self) -> None:
        if self._state.removed:
            raise UsageError(
                "this member was removed from the group: it keeps no secret of it any more"
            )

    def _require_active(self) -> None:
        if self._state.removed:
            raise UsageError("this member was removed from the group: it can no longer send")
        if self._state.reinit is not None:
            raise UsageError(
                "a Commit covered a ReInit: the group sends nothing more (§11.2); use the new group"
            )

    def _content(self, body: bytes | Proposal | Commit, authenticated_data: bytes) -> FramedContent:
        current = self._state.current
        return FramedContent(
            current.context.group_id,
            current.epoch,
            Sender.member(current.own_leaf),
            authenticated_data,
            body,
        )

    def encrypt(self, data: bytes, authenticated_data: bytes = b"") -> bytes:
        """Encrypt application ``data`` as a PrivateMessage of the current epoch (§15).

        ``authenticated_data`` travels in the clear, authenticated. §12.4 asks a member that
        has received proposals this epoch to commit them before it sends application data;
        this is left to the caller (see :attr:`cached_proposal_refs`), which knows whether a
        Commit of its own would be accepted now.
        """
        self._require_active()
        state = self._state
        authenticated = sign(
            state, self._content(bytes(data), authenticated_data), WireFormat.MLS_PRIVATE_MESSAGE
        )
        message = protect(state, self.config, authenticated)
        state.remember_own(
            message_digest(state, message), OwnRecord(ContentType.APPLICATION, self.epoch)
        )
        return message

    def _propose(self, proposal: Proposal, authenticated_data: bytes) -> bytes:
        self._require_active()
        state = self._state
        current = state.current
        check_proposal(
            state.suite,
            current.context,
            current.tree,
            proposal,
            Sender.member(current.own_leaf),
            leaf_policy(self.config),
        )
        authenticated = sign(
            state, self._content(proposal, authenticated_data), self.config.handshake_wire_format
        )
        ref = state.suite.make_proposal_ref(encode(authenticated))
        message = protect(state, self.config, authenticated)
        state.proposals[ref] = CachedProposal(ref, authenticated)
        state.remember_own(
            message_digest(state, message), OwnRecord(ContentType.PROPOSAL, self.epoch, ref)
        )
        return message

    def propose_add(
        self, key_package: KeyPackageInput, *, authenticated_data: bytes = b""
    ) -> bytes:
        """Propose adding the client of ``key_package`` (§12.1.1)."""
        return self._propose(Proposal(Add(_key_package(key_package))), authenticated_data)

    def propose_remove(self, leaf_index: int, *, authenticated_data: bytes = b"") -> bytes:
        """Propose removing the member at ``leaf_index`` (§12.1.3)."""
        return self._propose(Proposal(Remove(leaf_index)), authenticated_data)

    def propose_update(self, *, authenticated_data: bytes = b"") -> bytes:
        """Propose a fresh encryption key for this member's leaf (§12.1.2); another member's
        Commit applies it (a member's own Commit updates its leaf through the path)."""
        self._require_active()
        state = self._state
        signer = state.signer
        leaf, private_key = new_leaf_node(
            state.suite,
            signer.credential,
            signer.signature_private_key,
            source=LeafNodeSource.UPDATE,
            group_id=self.group_id,
            leaf_index=self.own_leaf_index,
            capabilities=signer.capabilities,
            extensions=signer.leaf_extensions,
        )
        message = self._propose(Proposal(Update(leaf)), authenticated_data)
        state.update_keys[leaf.encryption_key] = private_key
        return message

    def propose_psk(self, psk: PskInput, *, authenticated_data: bytes = b"") -> bytes:
        """Propose injecting a PSK into the next epoch (§12.1.4)."""
        return self._propose(Proposal(PreSharedKey(self._psk_id(psk))), authenticated_data)

    def propose_group_context_extensions(
        self, extensions: Iterable[Extension], *, authenticated_data: bytes = b""
    ) -> bytes:
        """Propose replacing the GroupContext extensions with ``extensions`` (§12.1.7)."""
        return self._propose(Proposal(GroupContextExtensions(list(extensions))), authenticated_data)

    def propose_reinit(
        self,
        *,
        group_id: bytes | None = None,
        cipher_suite: int | None = None,
        extensions: Iterable[Extension] | None = None,
        version: int = MLS10,
        authenticated_data: bytes = b"",
    ) -> bytes:
        """Propose reinitializing the group with new parameters (§12.1.5, §11.2); unset
        parameters keep the current ones, except the group id (fresh random by default)."""
        return self._propose(
            Proposal(self._reinit(group_id, cipher_suite, extensions, version)),
            authenticated_data,
        )

    def _reinit(
        self,
        group_id: bytes | None,
        cipher_suite: int | None,
        extensions: Iterable[Extension] | None,
        version: int,
    ) -> ReInit:
        suite = self._state.suite
        return ReInit(
            group_id=group_id or suite.random_bytes(suite.kdf_size),
            version=version,
            cipher_suite=int(suite.id) if cipher_suite is None else cipher_suite,
            extensions=self.extensions if extensions is None else list(extensions),
        )

    def _psk_id(self, psk: PskInput) -> PreSharedKeyID:
        if isinstance(psk, PreSharedKeyID):
            return psk
        return external_psk_id(self._state.suite, psk)

    def clear_proposals(self) -> None:
        """Forget the proposals cached this epoch (they would otherwise go in the next
        Commit of this member)."""
        self._state.proposals.clear()

    # -- committing (§12.4.1) --------------------------------------------------------------------

    def commit(
        self,
        *,
        add: Iterable[KeyPackageInput] = (),
        remove: Iterable[int] = (),
        update: bool | SigningIdentity = False,
        psks: Iterable[PskInput] = (),
        extensions: Iterable[Extension] | None = None,
        reinit: ReInit | None = None,
        force_path: bool = False,
        include_proposals: bool | Iterable[bytes] = True,
        ratchet_tree_in_welcome: bool | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        """Make a Commit and keep it pending until :meth:`merge_pending_commit` (§12.4.1, §14).

        It covers by reference the proposals cached this epoch that members sent (unless
        ``include_proposals`` is false; invalid ones are left out) and, by value, Adds of
        ``add``, Removes of the
        leaves in ``remove``, PSKs of ``psks``, a GroupContextExtensions of ``extensions``
        and a ``reinit`` (which goes alone). The path is included when the proposals require
        it (§12.4), when nothing is proposed, with ``force_path``, or with ``update``: true
        refreshes this member's leaf, a :class:`SigningIdentity` also rotates its
        credential and signature key. The Welcome for new members carries the ratchet tree
        unless ``ratchet_tree_in_welcome`` (default: the config's) is false.

        Proposals from outside the group (``new_member_proposal`` and ``external`` senders,
        §12.1.8) are never covered on their own: admitting a client is the application's
        decision (§12.4). To commit some, pass ``include_proposals`` as the references (see
        :attr:`cached_proposal_refs`, :class:`~veilpost.mls.events.ProposalReceived`) of
        exactly the cached proposals to cover, members' ones included.
        """
        self._require_active()
        if self._state.pending is not None:
            raise UsageError(
                "a Commit is already pending: merge_pending_commit() or discard_pending_commit()"
            )
        include: bool | frozenset[bytes] = (
            include_proposals
            if isinstance(include_proposals, bool)
            else frozenset(bytes(ref) for ref in include_proposals)
        )
        if not isinstance(include, bool):
            unknown = include - self._state.proposals.keys()
            if unknown:
                raise UsageError(
                    f"include_proposals names proposals not cached this epoch:"
                    f" {sorted(ref.hex() for ref in unknown)}"
                )
        by_value: list[Proposal] = [Proposal(Add(_key_package(kp))) for kp in add]
        by_value += [Proposal(Remove(leaf)) for leaf in remove]
        by_value += [Proposal(PreSharedKey(self._psk_id(psk))) for psk in psks]
        if extensions is not None:
            by_value.append(Proposal(GroupContextExtensions(list(extensions))))
        if reinit is not None:
            if by_value:
                raise UsageError("a ReInit is committed alone (§12.2)")
            by_value = [Proposal(reinit)]
        pending = create_commit(
            self._state,
            self.config,
            by_value=by_value,
            include_cached=include if reinit is None else False,
            force_path=force_path or update is True,
            new_signer=update if isinstance(update, SigningIdentity) else None,
            authenticated_data=authenticated_data,
            ratchet_tree_in_welcome=ratchet_tree_in_welcome,
        )
        self._state.pending = pending
        return CommitOutput(pending.message, pending.welcome, pending.group_info, pending.staged)

    def merge_pending_commit(self) -> StagedCommit:
        """Enter the epoch of this member's pending Commit (the delivery service accepted it)."""
        pending = self._state.pending
        if pending is None:
            raise UsageError("there is no pending Commit to merge")
        old_epoch = self.epoch
        if pending.signer is not None:
            self._state.signer = pending.signer
        self._enter(pending.staged)
        self._state.remember_own(
            message_digest(self._state, pending.message), OwnRecord(ContentType.COMMIT, old_epoch)
        )
        return pending.staged

    def discard_pending_commit(self) -> None:
        """Drop the pending Commit (the delivery service refused it): process the Commit that
        won, then commit again if still needed."""
        if self._state.pending is None:
            raise UsageError("there is no pending Commit to discard")
        self._state.pending = None

    def merge_staged_commit(self, staged: StagedCommit) -> None:
        """Enter the epoch of a Commit that :meth:`process` staged. A pending Commit of this
        member for the same epoch lost the race and is dropped."""
        state = self._state
        if staged.own and state.pending is not None and staged is state.pending.staged:
            self.merge_pending_commit()
            return
        if state.removed or staged.group_id != self.group_id or staged.epoch != self.epoch + 1:
            raise UsageError(
                f"this staged Commit leads to epoch {staged.epoch} of group"
                f" {staged.group_id.hex()[:16]}, but the group is at epoch {self.epoch}"
                f"{' and this member was removed' if state.removed else ''}"
            )
        if staged.own:
            raise UsageError("this member's own Commit is merged with merge_pending_commit()")
        state.pending = None
        self._enter(staged)

    def _enter(self, staged: StagedCommit) -> None:
        """Make ``staged`` the current epoch, keeping what late messages need."""
        state = self._state
        old = state.current
        if self.config.max_past_epochs:
            state.past_epochs.append(PastEpoch.of(old))
            del state.past_epochs[: -self.config.max_past_epochs]
        state.proposals.clear()
        state.update_keys.clear()
        state.pending = None
        if staged.self_removed or staged.state is None:
            # §12.4.2: keep nothing but what late application messages need (the PastEpoch).
            state.removed = True
            state.current = old.forget_secrets()
            state.resumption_psks.clear()
            return
        state.current = staged.state
        key = (staged.group_id, staged.epoch)
        state.resumption_psks[key] = staged.state.secrets.resumption_psk
        while len(state.resumption_psks) > self.config.max_resumption_psks:
            del state.resumption_psks[next(iter(state.resumption_psks))]
        if staged.reinit is not None:
            state.reinit = staged.reinit

    # -- receiving -------------------------------------------------------------------------------

    def process(self, message: bytes) -> Event:
        """Process one PublicMessage or PrivateMessage (an ``MLSMessage``) of this group.

        Returns an :class:`~veilpost.mls.events.ApplicationMessage`,
        :class:`~veilpost.mls.events.ProposalReceived` (now cached),
        :class:`~veilpost.mls.events.StagedCommit` (merge it with
        :meth:`merge_staged_commit`; this member's own pending Commit is merged right away)
        or :class:`~veilpost.mls.events.OwnMessage` (an echo of this member's own message).
        Application messages of the last ``config.max_past_epochs`` epochs still decrypt.
        """
        mls = _decode_message(message)
        body = mls.body
        if not isinstance(body, PublicMessage | PrivateMessage):
            raise UsageError(
                f"process() takes PublicMessage and PrivateMessage, not a {type(body).__name__}"
            )
        state = self._state
        pending = state.pending
        if pending is not None and bytes(message) == pending.message:
            staged = pending.staged
            self.merge_pending_commit()
            return staged
        own = state.own_messages.get(message_digest(state, bytes(message)))
        if own is not None:
            return OwnMessage(own.content_type, own.epoch, own.ref)

        return process_message(state, self.config, body)

    # -- reinitialization and branching (§11.2, §11.3) -------------------------------------------

    def reinitialize(
        self,
        key_packages: Iterable[KeyPackageInput],
        *,
        signer: SigningIdentity | None = None,
    ) -> tuple[Group, CommitOutput]:
        """Create the group that replaces this one after a ReInit (§11.2).

        ``key_packages`` are the other members' key packages for the new group's cipher
        suite. Returns the new group (at epoch 1) and its first Commit, whose Welcome the new
        members open with ``Group.join_from_welcome(..., previous_group=<old group>)``.
        """
        reinit = self._state.reinit
        if reinit is None:
            raise UsageError("no ReInit pending: commit a ReInit proposal first")
        if reinit.version != MLS10:
            raise UsageError(f"protocol version {reinit.version} is not supported")
        return self._resume(
            ResumptionPSKUsage.REINIT,
            key_packages,
            signer=signer,
            cipher_suite=reinit.cipher_suite,
            group_id=reinit.group_id,
            extensions=reinit.extensions,
        )

    def branch(
        self,
        key_packages: Iterable[KeyPackageInput],
        *,
        group_id: bytes | None = None,
        signer: SigningIdentity | None = None,
    ) -> tuple[Group, CommitOutput]:
        """Create a subgroup of some of this group's members (§11.3), linked by a ``branch``
        resumption PSK; joiners pass this group as ``previous_group``."""
        self._require_active()
        return self._resume(
            ResumptionPSKUsage.BRANCH,
            key_packages,
            signer=signer,
            cipher_suite=int(self._state.suite.id),
            group_id=group_id,
            extensions=self.extensions,
        )

    def _resume(
        self,
        usage: ResumptionPSKUsage,
        key_packages: Iterable[KeyPackageInput],
        *,
        signer: SigningIdentity | None,
        cipher_suite: int,
        group_id: bytes | None,
        extensions: Iterable[Extension],
    ) -> tuple[Group, CommitOutput]:
        state, pending = resumed_group_state(
            self._state,
            self.config,
            usage,
            [_key_package(kp) for kp in key_packages],
            signer=signer or self._state.signer,
            cipher_suite=cipher_suite,
            group_id=group_id,
            extensions=extensions,
        )
        state.pending = pending
        new = Group(state, self.config)
        new.merge_pending_commit()
        output = CommitOutput(pending.message, pending.welcome, pending.group_info, pending.staged)
        return new, output


def _key_package(value: KeyPackageInput) -> KeyPackage:
    if isinstance(value, KeyPackage):
        return value
    if isinstance(value, KeyPackageBundle):
        return value.key_package
    body = _decode_message(value).body
    if not isinstance(body, KeyPackage):
        raise DecodeError(f"expected an mls_key_package message, got {type(body).__name__}")
    return body
