"""Joining a group (RFC 9420 §12.4.3): from a Welcome, or from a GroupInfo for an external
Commit.

A joiner trusts nothing it receives until it checked it:

- the ratchet tree (from the GroupInfo's ``ratchet_tree`` extension or handed over out of
  band, §12.4.3.3) must hash to the GroupContext's ``tree_hash``, have valid unmerged-leaf
  lists, distinct parent keys and valid parent hashes, and every leaf must pass leaf node
  validation (§7.3) — :func:`verify_tree`. Leaves already in the tree are not checked against
  the clock (§7.3 makes it optional for received leaves; a long-lived group's leaves outlive
  their key packages);
- the Welcome's GroupInfo must be signed by the leaf it names and confirm the epoch
  (:func:`~veilpost.mls.welcome_processing.open_welcome`); the joiner's leaf must be in the
  tree, and the keys derived from the Welcome's path secret must be the tree's;
- a Welcome that resumes a group (a ``reinit`` or ``branch`` resumption PSK, §11.2, §11.3)
  must match the group it resumes, which the caller passes.

:func:`create_external_commit` is a joiner's Commit from a verified GroupInfo and tree
(§12.4.3.2): an ExternalInit (the ``init_secret`` comes from HPKE to the group's
``external_pub``, §8.3), the joiner's path from the leftmost free leaf, and optionally the
Remove of its own earlier leaf ("resync"). Members process it in
:mod:`veilpost.mls.commit_processing` like any Commit.

What needs the client's other groups (the group id must be new to it, §12.4.3.1) stays with
the client layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from veilpost.codec import decode, encode
from veilpost.crypto import CipherSuite
from veilpost.mls import tree_math
from veilpost.mls.commit import Commit
from veilpost.mls.commit_processing import (
    fresh_leaf_template,
    key_schedule,
    leaf_policy,
    provisional_context,
)
from veilpost.mls.errors import ValidationError
from veilpost.mls.extensions import ExtensionType, ExternalPub, find_extension
from veilpost.mls.framing import FramedContent, MLSMessage, Sender, WireFormat
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.group_state import EpochState, GroupState
from veilpost.mls.key_schedule import new_external_init
from veilpost.mls.message_protection import (
    protect_public_message,
    sign_framed_content,
    with_confirmation_tag,
)
from veilpost.mls.proposal_list import ProposalEntry, apply_proposal_list
from veilpost.mls.proposals import ExternalInit, PreSharedKey, Proposal, ProposalOrRef, Remove
from veilpost.mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity
from veilpost.mls.transcript_hash import interim_transcript_hash
from veilpost.mls.treekem import HpkeKeyPair, TreePrivateKeys, create_update_path
from veilpost.mls.validation import GroupMembers, validate_leaf_node
from veilpost.mls.welcome import Welcome
from veilpost.mls.welcome_processing import open_welcome

__all__ = [
    "ExternalCommit",
    "create_external_commit",
    "ratchet_tree_for",
    "verify_group_info",
    "verify_tree",
    "welcome_state",
]

RatchetTreeInput = bytes | RatchetTree | None
"""A ratchet tree given out of band: the ``ratchet_tree`` extension's data, or a tree."""


def ratchet_tree_for(
    suite: CipherSuite, group_info: GroupInfo, ratchet_tree: RatchetTreeInput
) -> RatchetTree:
    """The tree to join with: ``ratchet_tree`` if given, else the GroupInfo's extension.

    Not yet verified. Raises :class:`ValidationError` (``welcome.ratchet_tree_missing``) when
    there is neither, :class:`~veilpost.codec.DecodeError` for a malformed one.
    """
    if isinstance(ratchet_tree, RatchetTree):
        return ratchet_tree.copy()
    if ratchet_tree is not None:
        return RatchetTree.decode(suite, ratchet_tree)
    extension = find_extension(group_info.extensions, ExtensionType.RATCHET_TREE)
    if extension is None:
        raise ValidationError(
            "the GroupInfo has no ratchet_tree extension and no tree was given out of band",
            check="welcome.ratchet_tree_missing",
            section="12.4.3.3",
        )
    return RatchetTree.decode(suite, extension.extension_data)


def verify_tree(
    suite: CipherSuite, tree: RatchetTree, context: GroupContext, config: GroupConfig
) -> None:
    """Check a received tree against the GroupContext it claims (§12.4.3.1)."""
    if tree.tree_hash() != context.tree_hash:
        raise ValidationError(
            f"the ratchet tree hashes to {tree.tree_hash().hex()}, not the GroupContext's"
            f" tree_hash {context.tree_hash.hex()}",
            check="ratchet_tree.tree_hash",
            section="12.4.3.1",
        )
    tree.verify_unmerged_leaves()
    tree.verify_distinct_parent_keys()
    tree.verify_parent_hashes()
    members = GroupMembers(dict(tree.leaves()))
    for leaf_index, leaf in tree.leaves():
        try:
            validate_leaf_node(
                leaf,
                suite,
                group_context=context,
                expected_source=None,
                members=members,
                now=None,
                credential_validator=config.credential_validator,
                leaf_index=leaf_index,
                lifetime_policy=config.lifetime_policy,
            )
        except ValidationError as exc:
            error = ValidationError(f"leaf {leaf_index}: {exc.args[0]}", check=exc.check)
            error.section = exc.section
            raise error from exc


def verify_group_info(suite: CipherSuite, group_info: GroupInfo, tree: RatchetTree) -> None:
    """Check a GroupInfo's signature under its signer leaf's key in ``tree`` (§12.4.3)."""
    signer = group_info.signer
    leaf = tree.leaf(signer) if signer < tree.n_leaves else None
    if leaf is None:
        raise ValidationError(
            f"GroupInfo signer leaf {signer} is blank or outside the tree",
            check="group_info.signer",
            section="12.4.3.1",
        )
    group_info.verify_signature(suite, leaf.signature_key)


def _check_resumption(
    psks: list[PreSharedKeyID], context: GroupContext, previous: GroupState | None
) -> None:
    """§12.4.3.1: a Welcome resuming a group by ``reinit`` or ``branch`` must match it."""
    for psk in psks:
        if psk.psktype is not PSKType.RESUMPTION or psk.usage == ResumptionPSKUsage.APPLICATION:
            continue
        assert previous is not None  # the PSK resolved, so its group was given
        old = previous.current.context
        if psk.usage == ResumptionPSKUsage.REINIT:
            reinit = previous.reinit
            matches = reinit is not None and (
                reinit.group_id,
                reinit.version,
                reinit.cipher_suite,
                list(reinit.extensions),
            ) == (context.group_id, context.version, context.cipher_suite, context.extensions)
            if not matches or psk.psk_epoch != old.epoch:
                raise ValidationError(
                    "the Welcome resumes a group by reinit, but that group's last Commit did not"
                    " cover a ReInit with this group's id, version, cipher suite and extensions",
                    check="welcome.reinit_mismatch",
                    section="12.4.3.1",
                )
        elif (context.version, context.cipher_suite) != (old.version, old.cipher_suite):
            raise ValidationError(
                "the Welcome branches a group with another version or cipher suite",
                check="welcome.branch_mismatch",
                section="12.4.3.1",
            )


def welcome_state(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    suite: CipherSuite,
    config: GroupConfig,
    *,
    ratchet_tree: RatchetTreeInput = None,
    previous: GroupState | None = None,
) -> GroupState:
    """Join by ``welcome`` with ``bundle`` (§12.4.3.1): the new member's group state.

    ``previous`` is the state of the group a ``reinit``/``branch`` Welcome resumes (its
    resumption PSKs are looked up there). Raises
    :class:`~veilpost.mls.errors.ProtocolError` naming the failed check, or
    :class:`~veilpost.codec.DecodeError` for malformed contents.
    """
    key_package = bundle.key_package
    trees: list[RatchetTree] = []

    def signer_key(group_info: GroupInfo) -> bytes | None:
        tree = ratchet_tree_for(suite, group_info, ratchet_tree)
        trees.append(tree)
        signer = group_info.signer
        leaf = tree.leaf(signer) if signer < tree.n_leaves else None
        return None if leaf is None else leaf.signature_key

    def psk_lookup(psk: PreSharedKeyID) -> bytes | None:
        if psk.psktype is PSKType.EXTERNAL:
            return config.external_psk(psk.psk_id)
        if previous is None:
            return None
        return previous.resumption_psks.get((psk.psk_group_id, psk.psk_epoch))

    opened = open_welcome(
        suite,
        welcome,
        key_package,
        bundle.init_private_key,
        signer_signature_key=signer_key,
        psk_lookup=psk_lookup,
    )
    tree = trees[-1]
    group_info = opened.group_info
    context = group_info.group_context
    verify_tree(suite, tree, context, config)
    own = tree.leaf_index_of(key_package.leaf_node)
    if own is None:
        raise ValidationError(
            "the joiner's key package leaf is not in the ratchet tree",
            check="welcome.own_leaf_missing",
            section="12.4.3.1",
        )
    keys = TreePrivateKeys.for_leaf(
        own, HpkeKeyPair(bundle.encryption_private_key, key_package.leaf_node.encryption_key)
    )
    path_secret = opened.group_secrets.path_secret
    if path_secret is not None:
        if group_info.signer == own:
            raise ValidationError(
                "the Welcome's GroupInfo names the joiner itself as signer",
                check="group_info.signer",
                section="12.4.3.1",
            )
        ancestor = tree_math.common_ancestor(2 * own, 2 * group_info.signer, tree.n_leaves)
        keys = keys.with_path_secret(suite, tree, ancestor, path_secret.path_secret)
    keys.verify(suite, tree)
    _check_resumption(opened.group_secrets.psks, context, previous)
    epoch = EpochState.begin(
        context=context,
        tree=tree,
        private_keys=keys,
        secrets=opened.epoch_secrets,
        window=config.ratchet_window,
        interim_transcript_hash=opened.interim_transcript_hash,
        confirmation_tag=group_info.confirmation_tag,
    )
    return GroupState(
        suite=suite,
        signer=bundle.signer,
        current=epoch,
        resumption_psks={(context.group_id, context.epoch): opened.epoch_secrets.resumption_psk},
    )


# -- joining by an external Commit (§12.4.3.2) ------------------------------------------------


@dataclass(frozen=True)
class ExternalCommit:
    """A joiner's external Commit and its state in the new epoch."""

    message: bytes
    epoch: EpochState


def create_external_commit(
    group_info: GroupInfo,
    tree: RatchetTree,
    signer: SigningIdentity,
    config: GroupConfig,
    *,
    remove_prior: int | None = None,
    external_psks: Sequence[PreSharedKeyID] = (),
    authenticated_data: bytes = b"",
) -> ExternalCommit:
    """Join the group of a verified ``group_info`` and ``tree`` by an external Commit."""
    suite = tree.suite
    context = group_info.group_context
    extension = find_extension(group_info.extensions, ExtensionType.EXTERNAL_PUB)
    if extension is None:
        raise ValidationError(
            "the GroupInfo has no external_pub extension: the group does not allow external"
            " joins with it",
            check="external_commit.no_external_pub",
            section="12.4.3.2",
        )
    external_pub = decode(ExternalPub, extension.extension_data).external_pub
    kem_output, init_secret = new_external_init(suite, external_pub)
    proposals = [Proposal(ExternalInit(kem_output))]
    if remove_prior is not None:
        proposals.append(Proposal(Remove(remove_prior)))
    proposals.extend(Proposal(PreSharedKey(psk)) for psk in external_psks)
    committer = Sender.new_member_commit()
    entries = [ProposalEntry(p, committer) for p in proposals]

    def external_psk(psk: PreSharedKeyID) -> bytes | None:
        return config.external_psk(psk.psk_id) if psk.psktype is PSKType.EXTERNAL else None

    applied = apply_proposal_list(
        suite,
        context,
        tree,
        entries,
        committer=committer,
        policy=leaf_policy(config),
        psk_value=external_psk,
    )
    new_tree = applied.tree
    template = fresh_leaf_template(suite, signer)
    own = new_tree.add_leaf(template)
    provisional = provisional_context(context, applied.extensions)
    created = create_update_path(
        suite, new_tree, TreePrivateKeys(own), template, signer.signature_private_key, provisional
    )
    commit = Commit([ProposalOrRef(p) for p in proposals], created.update_path)
    content = FramedContent(context.group_id, context.epoch, committer, authenticated_data, commit)
    authenticated = sign_framed_content(
        suite,
        signer.signature_private_key,
        WireFormat.MLS_PUBLIC_MESSAGE,
        content,
        context,
    )
    interim_before = interim_transcript_hash(
        suite, context.confirmed_transcript_hash, group_info.confirmation_tag
    )
    new_context, _, secrets = key_schedule(
        suite,
        interim_before=interim_before,
        authenticated=authenticated,
        context_with_tree_hash=created.group_context,
        init_secret=init_secret,
        commit_secret=created.commit_secret,
        psks=applied.psks,
    )
    tag = secrets.confirmation_tag(new_context.confirmed_transcript_hash)
    authenticated = with_confirmation_tag(authenticated, tag)
    message = protect_public_message(suite, authenticated, group_context=context)
    epoch = EpochState.begin(
        context=new_context,
        tree=new_tree,
        private_keys=created.private_keys,
        secrets=secrets,
        window=config.ratchet_window,
        confirmation_tag=tag,
    )
    return ExternalCommit(encode(MLSMessage(message)), epoch)
