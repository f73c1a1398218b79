"""Creating and processing Commits (RFC 9420 §12.4.1, §12.4.2).

Theory of operation
-------------------

Both sides of a Commit compute the same next epoch from the same inputs::

    old epoch: tree, GroupContext, interim transcript hash, init_secret
        │  proposal list (by value and by reference)         §12.2, §12.3
        ▼  apply_proposal_list → new tree, new extensions
        │  UpdatePath (committer: create; others: check, merge, decrypt)   §7.5
        ▼  provisional GroupContext (epoch + 1, new tree hash, old confirmed hash)
        │  the signed FramedContent → confirmed transcript hash          §8.2
        ▼  GroupContext of the new epoch
        │  init_secret (or the ExternalInit's), commit_secret, psk_secret → epoch secrets  §8
        ▼  confirmation_tag = MAC(confirmation_key, confirmed hash): set or checked  §6.1

:func:`create_commit` is the committer's half. It never changes the group's state except for
spending one handshake ratchet key: it returns a :class:`~veilpost.mls.group_state.PendingCommit`
holding the message, the Welcome, the new GroupInfo and the next epoch, which the group keeps
until the delivery service accepts the Commit (§14). Cached proposals that turn out invalid are
left out (the committer SHOULD include the valid ones, §12.4), preferring Removes over Updates
and the latest Update for one leaf (§12.2).

:func:`stage_commit` is everybody else's half: it takes the authenticated Commit (already
unprotected and signature-checked, :mod:`veilpost.mls.message_protection`) and returns a
:class:`~veilpost.mls.events.StagedCommit` with the next epoch's state, checking on the way
every rule of §12.4.2: known proposal references, a valid proposal list, a path when one is
required, a valid committer leaf (§7.3, source ``commit``), a well-formed path, and the
confirmation tag. A member the Commit removes runs every check but the last two (the path
secret is not encrypted to it, so it cannot compute the confirmation tag): its staged commit
says it was removed and carries no state. An external Commit may remove only an old leaf of
the joiner (§12.2, :func:`_check_resync`).

External Commits (§12.4.3.2) are made in :mod:`veilpost.mls.joining`; they are processed
here like any other.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Sequence
from dataclasses import replace

from veilpost.codec import encode
from veilpost.crypto import CipherSuite
from veilpost.mls.builders import GREASE_VALUES, grease_value, with_grease
from veilpost.mls.commit import Commit
from veilpost.mls.errors import ProtocolError, ValidationError
from veilpost.mls.events import Member, StagedCommit
from veilpost.mls.extensions import Extension, ExtensionType, ExternalPub
from veilpost.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    MLSMessage,
    MLSMessageBody,
    Sender,
    SenderType,
    WireFormat,
)
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.group_state import CachedProposal, EpochState, GroupState, PendingCommit
from veilpost.mls.key_schedule import (
    EpochSecrets,
    derive_epoch_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    external_init_secret,
    zero_secret,
)
from veilpost.mls.leaf_node import LeafNode, LeafNodeSource
from veilpost.mls.message_protection import (
    protect_private_message,
    protect_public_message,
    sign_framed_content,
    with_confirmation_tag,
)
from veilpost.mls.proposal_list import (
    AppliedProposals,
    LeafPolicy,
    ProposalEntry,
    ProposalListError,
    apply_proposal_list,
)
from veilpost.mls.proposals import (
    Add,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
)
from veilpost.mls.psk import PreSharedKeyID, PSKType, psk_secret
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.signing_identity import SigningIdentity
from veilpost.mls.transcript_hash import confirmed_transcript_hash
from veilpost.mls.treekem import (
    HpkeKeyPair,
    apply_update_path,
    create_update_path,
    merge_update_path,
)
from veilpost.mls.validation import GroupMembers, validate_leaf_node
from veilpost.mls.welcome_processing import seal_welcome

__all__ = [
    "create_commit",
    "fresh_leaf_template",
    "key_schedule",
    "leaf_policy",
    "make_group_info",
    "member_signature_key",
    "message_digest",
    "protect",
    "provisional_context",
    "psk_value",
    "sign",
    "stage_commit",
]


# -- helpers shared with the group ---------------------------------------------------------------


def leaf_policy(config: GroupConfig) -> LeafPolicy:
    """The leaf and key package validation policy of ``config``, at the current time."""
    return LeafPolicy(config.now(), config.lifetime_policy, config.credential_validator)


def member_signature_key(tree: RatchetTree, leaf_index: int) -> bytes | None:
    """The signature key of the member at ``leaf_index``, ``None`` if blank or outside."""
    if not 0 <= leaf_index < tree.n_leaves:
        return None
    leaf = tree.leaf(leaf_index)
    return None if leaf is None else leaf.signature_key


def message_digest(state: GroupState, message: bytes) -> bytes:
    """A short digest that recognises this member's own messages when they come back."""
    return state.suite.hash(message)[:16]


def psk_value(state: GroupState, config: GroupConfig, psk: PreSharedKeyID) -> bytes | None:
    """The value of a PSK: an external one from the configured store, a resumption one from
    this group's recent epochs (§8.4, §8.6)."""
    if psk.psktype is PSKType.EXTERNAL:
        return config.external_psk(psk.psk_id)
    return state.resumption_psks.get((psk.psk_group_id, psk.psk_epoch))


def sign(
    state: GroupState, content: FramedContent, wire_format: WireFormat
) -> AuthenticatedContent:
    """Sign ``content`` of this member for ``wire_format`` over the current GroupContext."""
    return sign_framed_content(
        state.suite,
        state.signer.signature_private_key,
        wire_format,
        content,
        state.current.context,
    )


def protect(state: GroupState, config: GroupConfig, authenticated: AuthenticatedContent) -> bytes:
    """Protect signed content with the current epoch's keys; return the MLSMessage bytes."""
    current = state.current
    body: MLSMessageBody
    if authenticated.wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        body = protect_public_message(
            state.suite,
            authenticated,
            group_context=current.context,
            membership_key=current.secrets.membership_key,
        )
    else:
        body = protect_private_message(
            state.suite,
            authenticated,
            secret_tree=current.secret_tree,
            sender_data_secret=current.secrets.sender_data_secret,
            padding=config.padding,
        )
    return encode(MLSMessage(body))


def make_group_info(
    state: GroupState,
    epoch: EpochState,
    signer: SigningIdentity,
    *,
    ratchet_tree: bool,
    external_pub: bool,
) -> GroupInfo:
    """A signed GroupInfo of ``epoch`` from this member (§12.4.3), with the ``external_pub``
    (§12.4.3.2) and ``ratchet_tree`` (§12.4.3.3) extensions as asked, and a GREASE one."""
    suite = state.suite
    extensions: list[Extension] = []
    if ratchet_tree:
        extensions.append(Extension(ExtensionType.RATCHET_TREE, epoch.tree.encode()))
    if external_pub:
        data = encode(ExternalPub(epoch.secrets.external_pub))
        extensions.append(Extension(ExtensionType.EXTERNAL_PUB, data))
    extensions.append(Extension(grease_value(suite), b""))  # §13.5
    unsigned = GroupInfo(epoch.context, extensions, epoch.confirmation_tag, epoch.own_leaf)
    return unsigned.sign(suite, signer.signature_private_key)


def key_schedule(
    suite: CipherSuite,
    *,
    interim_before: bytes,
    authenticated: AuthenticatedContent,
    context_with_tree_hash: GroupContext,
    init_secret: bytes,
    commit_secret: bytes,
    psks: Sequence[tuple[PreSharedKeyID, bytes]],
) -> tuple[GroupContext, bytes, EpochSecrets]:
    """The new epoch's GroupContext (with the confirmed transcript hash over ``authenticated``),
    ``joiner_secret`` and epoch secrets (§8, §8.2)."""
    confirmed = confirmed_transcript_hash(suite, interim_before, authenticated)
    context = replace(context_with_tree_hash, confirmed_transcript_hash=confirmed)
    joiner_secret = derive_joiner_secret(suite, init_secret, commit_secret, context)
    epoch_secret = derive_epoch_secret(suite, joiner_secret, context, psk_secret(suite, psks))
    return context, joiner_secret, derive_epoch_secrets(suite, epoch_secret)


def provisional_context(context: GroupContext, extensions: list[Extension]) -> GroupContext:
    """The next epoch's GroupContext before its tree hash and confirmed transcript hash are
    known: epoch + 1, the new ``extensions``, the old confirmed transcript hash (§12.4.1)."""
    return replace(context, epoch=context.epoch + 1, tree_hash=b"", extensions=extensions)


# -- choosing what a Commit covers (§12.2, §12.4) -------------------------------------------------


def _covers(cached: CachedProposal, include_cached: bool | Collection[bytes]) -> bool:
    """Whether a Commit covers ``cached``: with ``True`` only members' proposals, as those
    from outside the group need the application's approval (§12.1.8, §12.4); with a
    collection of references exactly those."""
    if isinstance(include_cached, bool):
        return include_cached and cached.sender.sender_type == SenderType.MEMBER
    return cached.ref in include_cached


def _select_proposals(
    state: GroupState, by_value: Sequence[Proposal], include_cached: bool | Collection[bytes]
) -> list[ProposalEntry]:
    """The cached proposals a Commit from this member can cover (:func:`_covers`), then
    ``by_value``.

    Applies the committer's preferences of §12.2: the committer's own Updates are left out
    (its path replaces its leaf), a Remove wins over Updates of the same leaf and the latest
    Update over earlier ones, duplicate Adds and PSKs and all but the last
    GroupContextExtensions are dropped (what the caller gives by value wins), and a ReInit
    goes only when nothing else does.
    """
    own = state.current.own_leaf
    own_sender = Sender.member(own)
    values = [ProposalEntry(p, own_sender) for p in by_value]
    cached = [
        ProposalEntry(c.proposal, c.sender, c.ref)
        for c in state.proposals.values()
        if _covers(c, include_cached)
    ]

    leaf_change: dict[int, ProposalEntry] = {}
    add_keys: set[bytes] = set()
    psk_ids: set[bytes] = set()
    value_gce = any(isinstance(e.proposal.body, GroupContextExtensions) for e in values)
    for entry in values:
        body = entry.proposal.body
        if isinstance(body, Remove):
            leaf_change[body.removed] = entry
        elif isinstance(body, Add):
            add_keys.add(body.key_package.leaf_node.signature_key)
        elif isinstance(body, PreSharedKey):
            psk_ids.add(encode(body.psk))

    kept: list[ProposalEntry] = []
    last_gce: ProposalEntry | None = None
    reinits: list[ProposalEntry] = []
    for entry in cached:
        body = entry.proposal.body
        if isinstance(body, Update):
            leaf = entry.sender.index
            if leaf == own:
                continue
            previous = leaf_change.get(leaf)
            if previous is None or isinstance(previous.proposal.body, Update):
                leaf_change[leaf] = entry  # the latest Update, unless a Remove is there
        elif isinstance(body, Remove):
            if body.removed == own:
                continue  # a member cannot commit its own removal
            previous = leaf_change.get(body.removed)
            if previous is None or isinstance(previous.proposal.body, Update):
                leaf_change[body.removed] = entry
        elif isinstance(body, Add):
            key = body.key_package.leaf_node.signature_key
            if key not in add_keys:
                add_keys.add(key)
                kept.append(entry)
        elif isinstance(body, PreSharedKey):
            psk_id = encode(body.psk)
            if psk_id not in psk_ids:
                psk_ids.add(psk_id)
                kept.append(entry)
        elif isinstance(body, GroupContextExtensions):
            if not value_gce:
                last_gce = entry
        elif isinstance(body, ReInit):
            reinits.append(entry)
        # ExternalInit proposals are never cached (they arrive only inside external Commits).

    chosen = {id(e) for e in leaf_change.values()}
    if last_gce is not None:
        chosen.add(id(last_gce))
    kept_ids = {id(e) for e in kept}
    ordered = [e for e in cached if id(e) in chosen or id(e) in kept_ids]
    value_chosen = [
        e
        for e in values
        if not isinstance(e.proposal.body, Remove) or leaf_change.get(e.proposal.body.removed) is e
    ]
    entries = ordered + value_chosen
    if not entries and reinits:
        entries = [reinits[0]]
    return entries


def _apply_with_fallback(
    state: GroupState,
    config: GroupConfig,
    entries: list[ProposalEntry],
    *,
    allow_special_psks: bool,
) -> tuple[list[ProposalEntry], AppliedProposals]:
    """Apply ``entries``, dropping cached ones that make the list invalid, one at a time."""
    current = state.current
    while True:
        try:
            applied = apply_proposal_list(
                state.suite,
                current.context,
                current.tree,
                entries,
                committer=Sender.member(current.own_leaf),
                policy=leaf_policy(config),
                psk_value=lambda psk: psk_value(state, config, psk),
                allow_special_psks=allow_special_psks,
            )
        except ProposalListError as exc:
            if exc.index is None or entries[exc.index].ref is None:
                raise
            entries = entries[: exc.index] + entries[exc.index + 1 :]
            continue
        return entries, applied


# -- the committer (§12.4.1) ----------------------------------------------------------------------


def _commit_leaf_template(
    state: GroupState, tree: RatchetTree, new_signer: SigningIdentity | None
) -> LeafNode:
    """The committer's next leaf before TreeKEM sets its key, parent hash and signature."""
    current = tree.leaf(state.current.own_leaf)
    assert current is not None
    if new_signer is None:
        return current
    return fresh_leaf_template(state.suite, new_signer)


def fresh_leaf_template(suite: CipherSuite, signer: SigningIdentity) -> LeafNode:
    """A leaf of ``signer`` with GREASE (§13.5), for TreeKEM to key and sign."""
    capabilities = with_grease(signer.capabilities, suite)
    grease_type = next(t for t in capabilities.extensions if t in GREASE_VALUES)
    return LeafNode(
        encryption_key=b"",
        signature_key=signer.signature_key,
        credential=signer.credential,
        capabilities=capabilities,
        leaf_node_source=LeafNodeSource.COMMIT,
        parent_hash=b"",
        extensions=[*signer.leaf_extensions, Extension(grease_type, b"")],
    )


def create_commit(
    state: GroupState,
    config: GroupConfig,
    *,
    by_value: Sequence[Proposal],
    include_cached: bool | Collection[bytes] = True,
    force_path: bool = False,
    new_signer: SigningIdentity | None = None,
    authenticated_data: bytes = b"",
    ratchet_tree_in_welcome: bool | None = None,
    allow_special_psks: bool = False,
) -> PendingCommit:
    """Make a Commit of this member (§12.4.1); the group's state is left as it was.

    ``by_value`` are the caller's own proposals; cached proposals are covered by reference
    as :func:`_covers` says (members' ones, unless ``include_cached`` is false). A path is
    included when required, when ``force_path``, or when ``new_signer`` (a new credential or
    signature key for the committer's leaf) is given. ``allow_special_psks`` admits
    resumption PSKs of usage ``reinit``/``branch`` (only for the first Commit of a
    reinitialized or branched group).
    """
    suite = state.suite
    current = state.current
    own = current.own_leaf
    entries = _select_proposals(state, by_value, include_cached)
    entries, applied = _apply_with_fallback(
        state, config, entries, allow_special_psks=allow_special_psks
    )
    tree = applied.tree
    new_leaves = [leaf for leaf, _ in applied.added]
    provisional = provisional_context(current.context, applied.extensions)
    signer = new_signer or state.signer
    use_path = force_path or new_signer is not None or applied.path_required
    path_secrets = None
    if use_path:
        created = create_update_path(
            suite,
            tree,
            current.private_keys,
            _commit_leaf_template(state, tree, new_signer),
            signer.signature_private_key,
            provisional,
            new_leaves=new_leaves,
        )
        commit_secret = created.commit_secret
        context_with_hash = created.group_context
        private_keys = created.private_keys
        path = created.update_path
        path_secrets = created
    else:
        commit_secret = zero_secret(suite)
        context_with_hash = replace(provisional, tree_hash=tree.tree_hash())
        private_keys = current.private_keys.copy()
        private_keys.prune(tree)
        path = None

    commit = Commit(
        [ProposalOrRef(e.ref if e.ref is not None else e.proposal) for e in entries], path
    )
    content = FramedContent(
        current.context.group_id,
        current.epoch,
        Sender.member(own),
        authenticated_data,
        commit,
    )
    authenticated = sign(state, content, config.handshake_wire_format)
    context, joiner_secret, secrets = key_schedule(
        suite,
        interim_before=current.interim_transcript_hash,
        authenticated=authenticated,
        context_with_tree_hash=context_with_hash,
        init_secret=current.secrets.init_secret,
        commit_secret=commit_secret,
        psks=applied.psks,
    )
    tag = secrets.confirmation_tag(context.confirmed_transcript_hash)
    authenticated = with_confirmation_tag(authenticated, tag)
    message = protect(state, config, authenticated)

    new_epoch = EpochState.begin(
        context=context,
        tree=tree,
        private_keys=private_keys,
        secrets=secrets,
        window=config.ratchet_window,
        confirmation_tag=tag,
    )
    staged = _staged(
        current.context.group_id,
        new_epoch.epoch,
        Sender.member(own),
        own,
        applied,
        has_path=path is not None,
        external=False,
        self_removed=False,
        own=True,
        state=new_epoch,
    )
    group_info = make_group_info(
        state,
        new_epoch,
        signer,
        ratchet_tree=True,
        external_pub=config.accept_external_commits,
    )
    welcome = None
    if applied.added:
        with_tree = (
            config.ratchet_tree_in_welcome
            if ratchet_tree_in_welcome is None
            else ratchet_tree_in_welcome
        )
        welcome_info = make_group_info(
            state, new_epoch, signer, ratchet_tree=with_tree, external_pub=False
        )
        new_members = [
            (
                key_package,
                None if path_secrets is None else path_secrets.path_secret_for(leaf),
            )
            for leaf, key_package in applied.added
        ]
        sealed = seal_welcome(suite, welcome_info, joiner_secret, new_members, psks=applied.psks)
        welcome = encode(MLSMessage(sealed))
    return PendingCommit(
        message=message,
        staged=staged,
        welcome=welcome,
        group_info=encode(MLSMessage(group_info)),
        signer=new_signer,
    )


def _staged(
    group_id: bytes,
    epoch: int,
    committer: Sender,
    committer_leaf: int,
    applied: AppliedProposals,
    *,
    has_path: bool,
    external: bool,
    self_removed: bool,
    own: bool,
    state: EpochState | None,
) -> StagedCommit:
    return StagedCommit(
        group_id=group_id,
        epoch=epoch,
        committer=committer,
        committer_leaf=committer_leaf,
        added=tuple(Member.of(leaf, kp.leaf_node) for leaf, kp in applied.added),
        removed=tuple(Member.of(leaf, node) for leaf, node in applied.removed),
        updated=tuple(Member.of(leaf, node) for leaf, node in applied.updated),
        psks=tuple(psk for psk, _ in applied.psks),
        extensions=tuple(applied.extensions) if applied.extensions_changed else None,
        reinit=applied.reinit,
        has_path=has_path,
        external=external,
        self_removed=self_removed,
        own=own,
        state=state,
    )


# -- everybody else (§12.4.2) ---------------------------------------------------------------------


def _entries_of(
    state: GroupState, commit: Commit, sender: Sender, external: bool
) -> list[ProposalEntry]:
    entries = []
    for i, item in enumerate(commit.proposals):
        if isinstance(item.body, Proposal):
            entries.append(ProposalEntry(item.body, sender))
            continue
        if external:
            raise ProposalListError(
                f"an external Commit covers proposal {i} by reference",
                check="external_commit.proposal_by_reference",
                section="12.4.3.2",
                index=i,
            )
        cached = state.proposals.get(item.body)
        if cached is None:
            raise ValidationError(
                f"the Commit covers proposal {i} by reference {item.body.hex()}, which this"
                " member has not received in this epoch",
                check="commit.unknown_proposal_ref",
                section="12.4.2",
            )
        entries.append(ProposalEntry(cached.proposal, cached.sender, item.body))
    return entries


def stage_commit(
    state: GroupState, config: GroupConfig, authenticated: AuthenticatedContent
) -> StagedCommit:
    """Check a received Commit of the current epoch (§12.4.2) and compute the next epoch.

    ``authenticated`` comes from unprotecting the message with the current epoch's keys, so
    its signature (and membership tag or AEAD) is verified. Raises
    :class:`~veilpost.mls.errors.ProtocolError` naming the rule that failed.
    """
    suite = state.suite
    current = state.current
    own = current.own_leaf
    content = authenticated.content
    commit = content.body
    assert isinstance(commit, Commit)
    sender = content.sender
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external and not config.accept_external_commits:
        raise ValidationError(
            "an external Commit, and this member's policy refuses external joins",
            check="policy.external_commit",
            section="12.4.3.2",
        )
    if sender.sender_type == SenderType.MEMBER and sender.index == own:
        raise ProtocolError(
            "a Commit from this member's own leaf that is not its pending Commit",
            check="commit.own_unknown",
            section="12.4.2",
        )
    entries = _entries_of(state, commit, sender, external)
    applied = apply_proposal_list(
        suite,
        current.context,
        current.tree,
        entries,
        committer=sender,
        policy=leaf_policy(config),
        psk_value=lambda psk: psk_value(state, config, psk),
    )
    path = commit.path
    if applied.path_required and path is None:
        raise ValidationError(
            "the Commit has no path, but its proposals require one"
            f" ({len(entries)} proposals, types"
            f" {sorted({e.proposal.proposal_type.name.lower() for e in entries})})",
            check="commit.path_required",
            section="12.4",
        )
    tree = applied.tree
    new_leaves = [leaf for leaf, _ in applied.added]
    removed_leaves = {leaf for leaf, _ in applied.removed}
    provisional = provisional_context(current.context, applied.extensions)

    if external:
        committer_leaf = next(
            (i for i in range(tree.n_leaves) if tree.leaf(i) is None), tree.n_leaves
        )
    else:
        committer_leaf = sender.index
    if path is not None:
        replacing = None
        if external and applied.removed:
            replacing = applied.removed[0][1]
            _check_resync(config, path.leaf_node, replacing, applied.removed[0][0])
        validate_leaf_node(
            path.leaf_node,
            suite,
            group_context=provisional,
            expected_source=LeafNodeSource.COMMIT,
            members=GroupMembers(dict(tree.leaves())),
            now=None,  # a commit leaf has no lifetime
            credential_validator=config.credential_validator,
            leaf_index=committer_leaf,
            replacing=replacing,
            lifetime_policy=config.lifetime_policy,
        )
        if external:
            # A stand-in with no key holds the joiner's leaf while its path is merged.
            placed = tree.add_leaf(replace(path.leaf_node, encryption_key=b""))
            assert placed == committer_leaf
    if applied.external_init is not None:
        external_priv, _ = current.secrets.external_key_pair()
        init_secret = external_init_secret(suite, external_priv, applied.external_init.kem_output)
    else:
        init_secret = current.secrets.init_secret

    if own in removed_leaves:
        # §12.4.2: a removed member checks all it can. Only the path secret (not encrypted
        # to it) and hence the confirmation tag are beyond it.
        if path is not None:
            merge_update_path(tree, committer_leaf, path, new_leaves=new_leaves)
        return _staged(
            current.context.group_id,
            current.epoch + 1,
            sender,
            committer_leaf,
            applied,
            has_path=path is not None,
            external=external,
            self_removed=True,
            own=False,
            state=None,
        )

    private_keys = current.private_keys.copy()
    for leaf, node in applied.updated:
        if leaf == own:  # our own Update, committed by someone else: adopt its key
            private = state.update_keys.get(node.encryption_key)
            if private is None:
                raise ProtocolError(
                    "the Commit applies an Update of this member's leaf that it did not send"
                    " (or whose key it no longer has)",
                    check="commit.own_update_unknown",
                    section="12.1.2",
                )
            private_keys.set(2 * own, HpkeKeyPair(private, node.encryption_key))

    if path is not None:
        result = apply_update_path(
            suite, tree, private_keys, committer_leaf, path, provisional, new_leaves=new_leaves
        )
        commit_secret = result.commit_secret
        context_with_hash = result.group_context
        private_keys = result.private_keys
    else:
        commit_secret = zero_secret(suite)
        context_with_hash = replace(provisional, tree_hash=tree.tree_hash())
        private_keys.prune(tree)

    context, _, secrets = key_schedule(
        suite,
        interim_before=current.interim_transcript_hash,
        authenticated=authenticated,
        context_with_tree_hash=context_with_hash,
        init_secret=init_secret,
        commit_secret=commit_secret,
        psks=applied.psks,
    )
    tag = authenticated.auth.confirmation_tag
    assert tag is not None  # a commit's auth data always has one
    expected = secrets.confirmation_tag(context.confirmed_transcript_hash)
    if not hmac.compare_digest(expected, tag):
        raise ValidationError(
            f"confirmation_tag {tag.hex()} of the Commit from"
            f" {_describe(sender)} does not match the new epoch's confirmation key",
            check="commit.confirmation_tag",
            section="12.4.2",
        )
    new_epoch = EpochState.begin(
        context=context,
        tree=tree,
        private_keys=private_keys,
        secrets=secrets,
        window=config.ratchet_window,
        confirmation_tag=tag,
    )
    return _staged(
        current.context.group_id,
        context.epoch,
        sender,
        committer_leaf,
        applied,
        has_path=path is not None,
        external=external,
        self_removed=False,
        own=False,
        state=new_epoch,
    )


def _check_resync(config: GroupConfig, joiner: LeafNode, removed: LeafNode, leaf: int) -> None:
    """§12.2: the Remove of an external Commit removes an old leaf of the joiner itself.

    With a ``credential_validator`` the application decides (it sees the removed leaf's
    credential as the predecessor); without one the credentials must be equal."""
    if config.credential_validator is None and removed.credential != joiner.credential:
        raise ValidationError(
            f"an external Commit removes leaf {leaf}, whose credential (identity"
            f" {removed.credential.identity.hex()[:32]}) is not the joiner's",
            check="external_commit.remove_other_member",
            section="12.2",
        )


def _describe(sender: Sender) -> str:
    if sender.sender_type == SenderType.MEMBER:
        return f"leaf {sender.index}"
    return f"a {sender.sender_type.name.lower()} sender"
