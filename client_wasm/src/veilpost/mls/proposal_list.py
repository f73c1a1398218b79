"""Proposal list validation and application (RFC 9420 §12.1, §12.2, §12.3).

Theory of operation
-------------------

A Commit covers a list of proposals, each by value or by reference, and every proposal has a
sender (a member, an external sender, a new member). The committer and every member that
processes the Commit run the same function, :func:`apply_proposal_list`, on the old epoch's
tree and GroupContext:

1. the list as a whole is checked (§12.2): for a regular Commit no ExternalInit, no Update
   from the committer, no Remove of the committer, one change per leaf, no two Adds of the
   same client, no duplicate PSK, at most one GroupContextExtensions, a ReInit only alone;
   for an external Commit exactly one ExternalInit, at most one Remove, PSKs, nothing else
   and nothing by reference (§12.4.3.2);
2. the proposals are applied to a copy of the tree in the order of §12.3 — GroupContext
   extensions, Updates, Removes, Adds (in list order) — each checked as §12.1 asks on the
   way, with the new extensions in force for what follows them: leaf nodes (§7.3) and key
   packages (§10.1) through :mod:`veilpost.mls.validation`, Removes of non-blank leaves,
   Adds of clients not already members, PSK nonces, usages and availability (§8.4), ReInit
   versions, and extensions that every remaining member supports (§11.1, §13.4);
3. the result, :class:`AppliedProposals`, holds the new tree and extensions, who was added,
   removed and updated, the PSKs with their values, and whether the Commit needs a path.

Every refusal is a :class:`ProposalListError` (a
:class:`~veilpost.mls.errors.ValidationError`) whose ``check`` names the rule
(``proposal_list.*``, ``external_commit.*``, ``proposal.*``, or the ``leaf_node.*`` /
``key_package.*`` check of the validation module) and whose ``index`` is the position of
the offending proposal in the list when one proposal is to blame. A committer uses ``index``
to drop a cached proposal that turned out invalid and try again (§12.4: include the valid
ones); a member processing a Commit just rejects it.

:func:`check_proposal` runs the checks of one proposal on its own, when it arrives (§12.1):
what can already be known invalid is never cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from veilpost.codec import DecodeError, Reader, encode
from veilpost.crypto import CipherSuite
from veilpost.mls.errors import ValidationError
from veilpost.mls.extensions import (
    DEFAULT_EXTENSION_TYPES,
    Extension,
    ExtensionType,
    RequiredCapabilities,
    decode_external_senders,
    find_extension,
)
from veilpost.mls.framing import Sender, SenderType
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import LeafNode, LeafNodeSource
from veilpost.mls.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalType,
    ReInit,
    Remove,
    Update,
)
from veilpost.mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.validation import (
    DEFAULT_LIFETIME_POLICY,
    DEFAULT_PROPOSAL_TYPES,
    CredentialValidator,
    GroupMembers,
    LifetimePolicy,
    validate_key_package,
    validate_leaf_node,
)

__all__ = [
    "PATH_REQUIRED_TYPES",
    "AppliedProposals",
    "LeafPolicy",
    "ProposalEntry",
    "ProposalListError",
    "PskValueLookup",
    "apply_proposal_list",
    "check_proposal",
    "path_required",
]

PATH_REQUIRED_TYPES = frozenset(
    {
        ProposalType.UPDATE,
        ProposalType.REMOVE,
        ProposalType.EXTERNAL_INIT,
        ProposalType.GROUP_CONTEXT_EXTENSIONS,
    }
)
"""Proposal types whose presence makes a Commit's path mandatory (§12.4, §17.4)."""

PskValueLookup = Callable[[PreSharedKeyID], bytes | None]
"""The value of a PSK (external by id; resumption by group and epoch), ``None`` if unknown."""


class ProposalListError(ValidationError):
    """A proposal list breaks a rule of §12.1/§12.2; ``index`` is the guilty proposal's
    position in the list, ``None`` when the list as a whole is at fault."""

    def __init__(
        self, message: str, *, check: str, section: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(message, check=check, section=section)
        self.index = index


@dataclass(frozen=True)
class ProposalEntry:
    """One proposal of a Commit's list: the proposal, who proposed it, and its reference
    (``None`` when the Commit carries it by value)."""

    proposal: Proposal
    sender: Sender
    ref: bytes | None = None


@dataclass(frozen=True)
class LeafPolicy:
    """What leaf node and key package validation needs from the application (§5.3.1, §7.3)."""

    now: int | None = None
    lifetime_policy: LifetimePolicy = DEFAULT_LIFETIME_POLICY
    credential_validator: CredentialValidator | None = None


@dataclass
class AppliedProposals:
    """The outcome of applying a valid proposal list to the old epoch's tree and context."""

    tree: RatchetTree
    """The new tree, before any UpdatePath."""
    extensions: list[Extension]
    """The new GroupContext extensions."""
    extensions_changed: bool
    added: list[tuple[int, KeyPackage]]
    """New members: leaf index and key package, in list order."""
    removed: list[tuple[int, LeafNode]]
    """Removed members: leaf index and the leaf node they had."""
    updated: list[tuple[int, LeafNode]]
    """Members whose Update was applied: leaf index and new leaf node."""
    psks: list[tuple[PreSharedKeyID, bytes]]
    """PSK ids with their values, in list order (for ``psk_secret``, §8.4)."""
    reinit: ReInit | None
    external_init: ExternalInit | None
    path_required: bool


def _error(message: str, check: str, section: str, index: int | None = None) -> ProposalListError:
    return ProposalListError(message, check=check, section=section, index=index)


@contextmanager
def _blame(index: int) -> Iterator[None]:
    """Attribute a validation error raised inside the block to proposal ``index``."""
    try:
        yield
    except ProposalListError as exc:
        if exc.index is None:
            exc.index = index
        raise
    except ValidationError as exc:
        # exc's message already names its section; keep it without repeating it.
        error = ProposalListError(f"proposal {index}: {exc.args[0]}", check=exc.check, index=index)
        error.section = exc.section
        raise error from exc


def path_required(proposals: Sequence[Proposal]) -> bool:
    """Whether a Commit covering ``proposals`` must carry a path (§12.4): always when empty."""
    return not proposals or any(p.proposal_type in PATH_REQUIRED_TYPES for p in proposals)


# -- the list as a whole (§12.2) ---------------------------------------------------------------


def _check_regular_list(entries: Sequence[ProposalEntry], committer: int) -> None:
    changed_leaves: dict[int, int] = {}
    add_keys: dict[bytes, int] = {}
    psk_ids: dict[bytes, int] = {}
    gce_at: int | None = None
    reinit_at: int | None = None
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, ExternalInit):
            raise _error(
                "an ExternalInit proposal belongs in an external Commit only",
                "proposal_list.external_init",
                "12.2",
                i,
            )
        if isinstance(body, Update | Remove):
            if isinstance(body, Update):
                if entry.sender.sender_type != SenderType.MEMBER:
                    raise _error(
                        f"an Update from a {entry.sender.sender_type.name.lower()} sender",
                        "proposal_list.update_sender",
                        "12.1.2",
                        i,
                    )
                leaf = entry.sender.index
                if leaf == committer:
                    raise _error(
                        f"an Update proposed by the committer (leaf {leaf}): its path updates it",
                        "proposal_list.update_by_committer",
                        "12.2",
                        i,
                    )
            else:
                leaf = body.removed
                if leaf == committer:
                    raise _error(
                        f"a Remove of the committer (leaf {leaf})",
                        "proposal_list.remove_committer",
                        "12.2",
                        i,
                    )
            if leaf in changed_leaves:
                raise _error(
                    f"proposals {changed_leaves[leaf]} and {i} both update or remove leaf {leaf}",
                    "proposal_list.duplicate_leaf_change",
                    "12.2",
                    i,
                )
            changed_leaves[leaf] = i
        elif isinstance(body, Add):
            key = body.key_package.leaf_node.signature_key
            if key in add_keys:
                raise _error(
                    f"proposals {add_keys[key]} and {i} add the same client (signature key"
                    f" {key[:8].hex()}…)",
                    "proposal_list.duplicate_add",
                    "12.2",
                    i,
                )
            add_keys[key] = i
        elif isinstance(body, PreSharedKey):
            psk_id = encode(body.psk)
            if psk_id in psk_ids:
                raise _error(
                    f"proposals {psk_ids[psk_id]} and {i} inject the same PreSharedKeyID",
                    "proposal_list.duplicate_psk",
                    "12.2",
                    i,
                )
            psk_ids[psk_id] = i
        elif isinstance(body, GroupContextExtensions):
            if gce_at is not None:
                raise _error(
                    f"proposals {gce_at} and {i} are both GroupContextExtensions",
                    "proposal_list.multiple_group_context_extensions",
                    "12.2",
                    i,
                )
            gce_at = i
        elif isinstance(body, ReInit):
            reinit_at = i
    if reinit_at is not None and len(entries) > 1:
        raise _error(
            f"a ReInit (proposal {reinit_at}) with {len(entries) - 1} other proposal(s)",
            "proposal_list.reinit_not_alone",
            "12.2",
            reinit_at,
        )


def _check_external_list(entries: Sequence[ProposalEntry]) -> None:
    external_inits = removes = 0
    for i, entry in enumerate(entries):
        if entry.ref is not None:
            raise _error(
                f"an external Commit covers proposal {i} by reference",
                "external_commit.proposal_by_reference",
                "12.4.3.2",
                i,
            )
        body = entry.proposal.body
        if isinstance(body, ExternalInit):
            external_inits += 1
        elif isinstance(body, Remove):
            removes += 1
        elif not isinstance(body, PreSharedKey):
            raise _error(
                f"an external Commit may not cover a {entry.proposal.proposal_type.name.lower()}"
                " proposal",
                "external_commit.proposal_type",
                "12.2",
                i,
            )
    if external_inits != 1:
        raise _error(
            f"an external Commit covers {external_inits} ExternalInit proposals, not exactly one",
            "external_commit.external_init_count",
            "12.2",
        )
    if removes > 1:
        raise _error(
            f"an external Commit covers {removes} Remove proposals, at most one is allowed",
            "external_commit.remove_count",
            "12.2",
        )


# -- single proposals (§12.1) ------------------------------------------------------------------


def _check_psk(suite: CipherSuite, psk: PreSharedKeyID, allow_special: bool = False) -> None:
    if len(psk.psk_nonce) != suite.kdf_size:
        raise ValidationError(
            f"psk_nonce of {len(psk.psk_nonce)} bytes, not KDF.Nh = {suite.kdf_size}",
            check="proposal.psk.nonce_length",
            section="12.1.4",
        )
    if (
        psk.psktype is PSKType.RESUMPTION
        and psk.usage != ResumptionPSKUsage.APPLICATION
        and not allow_special
    ):
        raise ValidationError(
            f"a PreSharedKey proposal with a resumption PSK of usage {psk.usage.name.lower()}"
            " (only reinitialization and branching inject those, through a Welcome)",
            check="proposal.psk.usage",
            section="12.1.4",
        )


def _check_reinit(context: GroupContext, reinit: ReInit) -> None:
    if reinit.version < context.version:
        raise ValidationError(
            f"ReInit to protocol version {reinit.version}, lower than the group's"
            f" {context.version}",
            check="proposal.reinit.version",
            section="12.1.5",
        )


def _check_extension_list(extensions: Sequence[Extension]) -> None:
    """A GroupContextExtensions list: no duplicates, known payloads well formed (§13.4)."""
    seen: set[int] = set()
    for extension in extensions:
        if extension.extension_type in seen:
            raise ValidationError(
                f"two extensions of type 0x{extension.extension_type:04x}",
                check="proposal.group_context_extensions.duplicate_extension",
                section="13.4",
            )
        seen.add(extension.extension_type)
        try:
            if extension.extension_type == ExtensionType.REQUIRED_CAPABILITIES:
                reader = Reader(extension.extension_data)
                RequiredCapabilities.decode(reader)
                reader.finish("required_capabilities")
            elif extension.extension_type == ExtensionType.EXTERNAL_SENDERS:
                decode_external_senders(extension.extension_data)
        except DecodeError as exc:
            raise ValidationError(
                f"malformed extension 0x{extension.extension_type:04x}: {exc}",
                check="proposal.group_context_extensions.malformed",
                section="13.4",
            ) from exc


def _check_leaf_supports(leaf_index: int, leaf: LeafNode, extensions: Sequence[Extension]) -> None:
    """The member at ``leaf_index`` supports every extension and requirement (§11.1, §12.1.7)."""
    capabilities = leaf.capabilities
    for extension in extensions:
        extension_type = extension.extension_type
        if extension_type not in DEFAULT_EXTENSION_TYPES and (
            extension_type not in capabilities.extensions
        ):
            raise ValidationError(
                f"the member at leaf {leaf_index} does not support extension"
                f" 0x{extension_type:04x}",
                check="proposal.group_context_extensions.unsupported",
                section="13.4",
            )
    required_extension = find_extension(list(extensions), ExtensionType.REQUIRED_CAPABILITIES)
    if required_extension is None:
        return
    reader = Reader(required_extension.extension_data)
    required = RequiredCapabilities.decode(reader)
    for kind, wanted, supported, defaults in (
        ("extension", required.extension_types, capabilities.extensions, DEFAULT_EXTENSION_TYPES),
        ("proposal", required.proposal_types, capabilities.proposals, DEFAULT_PROPOSAL_TYPES),
        ("credential", required.credential_types, capabilities.credentials, frozenset()),
    ):
        missing = [t for t in wanted if t not in defaults and t not in supported]
        if missing:
            raise ValidationError(
                f"the member at leaf {leaf_index} lacks the required {kind} types"
                f" {[f'0x{t:04x}' for t in missing]}",
                check="proposal.group_context_extensions.required_capabilities",
                section="12.1.7",
            )


def _check_update(
    suite: CipherSuite,
    context: GroupContext,
    members: GroupMembers,
    leaf_index: int,
    leaf_node: LeafNode,
    policy: LeafPolicy,
) -> None:
    if members.get(leaf_index) is None:
        raise ValidationError(
            f"an Update from leaf {leaf_index}, which is blank",
            check="proposal.update.blank_leaf",
            section="12.1.2",
        )
    validate_leaf_node(
        leaf_node,
        suite,
        group_context=context,
        expected_source=LeafNodeSource.UPDATE,
        members=members,
        now=policy.now,
        credential_validator=policy.credential_validator,
        leaf_index=leaf_index,
        lifetime_policy=policy.lifetime_policy,
    )


def _check_remove(tree: RatchetTree, removed: int) -> None:
    if not 0 <= removed < tree.n_leaves or tree.leaf(removed) is None:
        raise ValidationError(
            f"a Remove of leaf {removed}, which is not a member (the tree has"
            f" {tree.n_leaves} leaves)",
            check="proposal.remove.blank_leaf",
            section="12.1.3",
        )


def _check_add(
    suite: CipherSuite,
    context: GroupContext,
    members: GroupMembers,
    key_package: KeyPackage,
    policy: LeafPolicy,
) -> None:
    validate_key_package(
        key_package,
        suite,
        group_context=context,
        members=members,
        now=policy.now,
        credential_validator=policy.credential_validator,
        lifetime_policy=policy.lifetime_policy,
    )


def check_proposal(
    suite: CipherSuite,
    context: GroupContext,
    tree: RatchetTree,
    proposal: Proposal,
    sender: Sender,
    policy: LeafPolicy,
) -> None:
    """Check a proposal on its own as it arrives (§12.1), against the current epoch.

    Rules that depend on the rest of a Commit (membership of the leaf an Add's client might
    replace, PSK availability) wait for the Commit. Raises
    :class:`~veilpost.mls.errors.ValidationError`.
    """
    body = proposal.body
    if isinstance(body, Add):
        # Cross-member rules wait for the Commit: a Remove in it may make room.
        _check_add(suite, context, GroupMembers(), body.key_package, policy)
    elif isinstance(body, Update):
        if sender.sender_type != SenderType.MEMBER:
            raise ValidationError(
                f"an Update from a {sender.sender_type.name.lower()} sender",
                check="proposal_list.update_sender",
                section="12.1.2",
            )
        members = GroupMembers(dict(tree.leaves()))
        _check_update(suite, context, members, sender.index, body.leaf_node, policy)
    elif isinstance(body, Remove):
        _check_remove(tree, body.removed)
    elif isinstance(body, PreSharedKey):
        _check_psk(suite, body.psk)
    elif isinstance(body, ReInit):
        _check_reinit(context, body)
    elif isinstance(body, GroupContextExtensions):
        _check_extension_list(body.extensions)
        for leaf_index, leaf in tree.leaves():
            _check_leaf_supports(leaf_index, leaf, body.extensions)
    else:
        raise ValidationError(
            "an ExternalInit proposal is sent only inside an external Commit",
            check="proposal.external_init.standalone",
            section="12.1.6",
        )


# -- applying a list (§12.3) -------------------------------------------------------------------


def apply_proposal_list(
    suite: CipherSuite,
    context: GroupContext,
    tree: RatchetTree,
    entries: Sequence[ProposalEntry],
    *,
    committer: Sender,
    policy: LeafPolicy,
    psk_value: PskValueLookup,
    allow_special_psks: bool = False,
) -> AppliedProposals:
    """Validate ``entries`` (§12.2) and apply them to a copy of ``tree`` (§12.3).

    ``committer`` is ``Sender.member(leaf)`` for a regular Commit and
    ``Sender.new_member_commit()`` for an external one. ``context`` and ``tree`` are the old
    epoch's and are not changed. ``allow_special_psks`` admits resumption PSKs of usage
    ``reinit`` and ``branch``, which only the first Commit of a reinitialized or branched
    group may carry (§11.2, §11.3). Raises :class:`ProposalListError`.
    """
    external = committer.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external:
        _check_external_list(entries)
    else:
        _check_regular_list(entries, committer.index)

    tree = tree.copy()
    members = GroupMembers(dict(tree.leaves()))
    extensions = context.extensions
    extensions_changed = False
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, GroupContextExtensions):
            with _blame(i):
                _check_extension_list(body.extensions)
            extensions = list(body.extensions)
            extensions_changed = True
    new_context = replace(context, extensions=extensions)

    updated: list[tuple[int, LeafNode]] = []
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, Update):
            leaf_index = entry.sender.index
            with _blame(i):
                _check_update(suite, new_context, members, leaf_index, body.leaf_node, policy)
            tree.update_leaf(leaf_index, body.leaf_node)
            members.remove(leaf_index)
            members.add(leaf_index, body.leaf_node)
            updated.append((leaf_index, body.leaf_node))

    removed: list[tuple[int, LeafNode]] = []
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, Remove):
            with _blame(i):
                _check_remove(tree, body.removed)
            old = tree.leaf(body.removed)
            assert old is not None
            removed.append((body.removed, old))
            tree.remove_leaf(body.removed)
            members.remove(body.removed)

    added: list[tuple[int, KeyPackage]] = []
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, Add):
            key_package = body.key_package
            holder = members.signature_key_holder(key_package.leaf_node.signature_key, None)
            if holder is not None:
                raise _error(
                    f"an Add of a client already in the group (the signature key of leaf"
                    f" {holder}), not removed by this Commit",
                    "proposal_list.add_existing_member",
                    "12.2",
                    i,
                )
            with _blame(i):
                _check_add(suite, new_context, members, key_package, policy)
            leaf_index = tree.add_leaf(key_package.leaf_node)
            members.add(leaf_index, key_package.leaf_node)
            added.append((leaf_index, key_package))

    psks: list[tuple[PreSharedKeyID, bytes]] = []
    reinit: ReInit | None = None
    external_init: ExternalInit | None = None
    for i, entry in enumerate(entries):
        body = entry.proposal.body
        if isinstance(body, PreSharedKey):
            with _blame(i):
                _check_psk(suite, body.psk, allow_special_psks)
            value = psk_value(body.psk)
            if value is None:
                raise _error(
                    f"PreSharedKey proposal {i} names a PSK this client does not have",
                    "commit.psk_unavailable",
                    "12.4.2",
                    i,
                )
            psks.append((body.psk, value))
        elif isinstance(body, ExternalInit):
            external_init = body
        elif isinstance(body, ReInit):
            with _blame(i):
                _check_reinit(context, body)
            reinit = body

    if extensions_changed:
        gce_index = next(
            i for i, e in enumerate(entries) if isinstance(e.proposal.body, GroupContextExtensions)
        )
        new_members = {leaf_index for leaf_index, _ in added}
        with _blame(gce_index):
            for leaf_index, leaf in tree.leaves():
                if leaf_index not in new_members:  # Adds were checked against the new context
                    _check_leaf_supports(leaf_index, leaf, extensions)

    return AppliedProposals(
        tree=tree,
        extensions=extensions,
        extensions_changed=extensions_changed,
        added=added,
        removed=removed,
        updated=updated,
        psks=psks,
        reinit=reinit,
        external_init=external_init,
        path_required=path_required([e.proposal for e in entries]),
    )
