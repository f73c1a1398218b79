"""Creating groups (RFC 9420 §11): a new one-member group, and the groups that resume an old
one by reinitialization (§11.2) or branching (§11.3).

A new group starts at epoch 0 with the creator alone: its leaf, an empty confirmed transcript
hash, and an epoch secret drawn at random; the interim transcript hash follows from the
confirmation tag over the empty hash (§11). A resumed group is a new group whose first Commit
adds the chosen members and injects the old group's ``resumption_psk`` with usage ``reinit``
or ``branch`` (§8.6), which only such a Commit may carry; its Welcome leads the members to
epoch 1, and they check the link with the old group when they join
(:mod:`veilpost.mls.joining`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from veilpost.crypto import CipherSuite, UnsupportedError
from veilpost.mls.builders import default_lifetime, new_leaf_node
from veilpost.mls.commit_processing import create_commit, leaf_policy
from veilpost.mls.errors import UsageError
from veilpost.mls.extensions import Extension
from veilpost.mls.framing import Sender
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_state import EpochState, GroupState, PendingCommit
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.key_schedule import derive_epoch_secrets
from veilpost.mls.proposal_list import check_proposal
from veilpost.mls.proposals import Add, GroupContextExtensions, PreSharedKey, Proposal
from veilpost.mls.psk import ResumptionPSKUsage, resumption_psk_id
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.signing_identity import SigningIdentity
from veilpost.mls.treekem import HpkeKeyPair, TreePrivateKeys

__all__ = ["create_group_state", "resumed_group_state"]


def create_group_state(
    suite: CipherSuite,
    signer: SigningIdentity,
    config: GroupConfig,
    *,
    group_id: bytes | None = None,
    extensions: Iterable[Extension] = (),
    now: int | None = None,
) -> GroupState:
    """The state of a new one-member group at epoch 0 (§11).

    ``group_id`` defaults to ``KDF.Nh`` random bytes. The creator's leaf has a key package
    lifetime starting at ``now`` (default: the config's clock, else 0). The extensions must
    be supported by the creator's leaf (§11.1, §13.4).
    """
    if group_id is None:
        group_id = suite.random_bytes(suite.kdf_size)
    if now is None:
        now = config.now() or 0
    leaf, encryption_private_key = new_leaf_node(
        suite,
        signer.credential,
        signer.signature_private_key,
        lifetime=default_lifetime(now),
        capabilities=signer.capabilities,
        extensions=signer.leaf_extensions,
    )
    tree = RatchetTree.create(suite, leaf)
    context = GroupContext(int(suite.id), group_id, 0, tree.tree_hash(), b"", list(extensions))
    if context.extensions:
        check_proposal(
            suite,
            context,
            tree,
            Proposal(GroupContextExtensions(context.extensions)),
            Sender.member(0),
            leaf_policy(config),
        )
    secrets = derive_epoch_secrets(suite, suite.random_bytes(suite.kdf_size))
    tag = secrets.confirmation_tag(b"")
    epoch = EpochState.begin(
        context=context,
        tree=tree,
        private_keys=TreePrivateKeys.for_leaf(
            0, HpkeKeyPair(encryption_private_key, leaf.encryption_key)
        ),
        secrets=secrets,
        window=config.ratchet_window,
        confirmation_tag=tag,
    )
    return GroupState(
        suite=suite,
        signer=signer,
        current=epoch,
        resumption_psks={(group_id, 0): secrets.resumption_psk},
    )


def resumed_group_state(
    old: GroupState,
    config: GroupConfig,
    usage: ResumptionPSKUsage,
    key_packages: Sequence[KeyPackage],
    *,
    signer: SigningIdentity,
    cipher_suite: int,
    group_id: bytes | None,
    extensions: Iterable[Extension],
) -> tuple[GroupState, PendingCommit]:
    """A new group resuming ``old`` (§11.2, §11.3) and its first Commit, still pending.

    The Commit adds ``key_packages`` and injects ``old``'s current ``resumption_psk`` with
    ``usage``; the caller merges it (nobody else processes it: members join by its Welcome).
    """
    try:
        suite = CipherSuite(cipher_suite, old.suite.provider)
    except UnsupportedError as exc:
        raise UsageError(str(exc)) from exc
    state = create_group_state(suite, signer, config, group_id=group_id, extensions=extensions)
    old_context = old.current.context
    key = (old_context.group_id, old_context.epoch)
    psk = resumption_psk_id(suite, usage, *key)
    state.resumption_psks[key] = old.resumption_psks[key]
    try:
        pending = create_commit(
            state,
            config,
            by_value=[Proposal(Add(kp)) for kp in key_packages] + [Proposal(PreSharedKey(psk))],
            include_cached=False,
            allow_special_psks=True,
        )
    finally:
        del state.resumption_psks[key]
    return state, pending
