"""Checker for the ``passive-client-*.json`` files: a member that only follows (README
"Passive Client Scenarios").

The client joins from ``welcome`` with ``key_package`` and its private keys (and the case's
external PSKs), using ``ratchet_tree`` when the Welcome does not carry the tree, and must
reach ``initial_epoch_authenticator``. Then, for each epoch, it processes the proposals and
the commit through :meth:`~veilpost.mls.group.Group.process`, merges the staged commit, and
must reach that epoch's ``epoch_authenticator``.

These key packages were made long ago with long lifetimes, so the checker's
:class:`~veilpost.mls.group_config.GroupConfig` has no clock and no lifetime cap; every other
check runs as it does for any member.
"""

from __future__ import annotations

from veilpost.codec import DecodeError, decode
from veilpost.crypto import CryptoProvider
from veilpost.mls.errors import ProtocolError
from veilpost.mls.events import ProposalReceived, StagedCommit
from veilpost.mls.framing import MLSMessage
from veilpost.mls.group import Group
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity
from veilpost.mls.validation import LifetimePolicy
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


@checker("passive-client")
def check_passive_client(case: Case, provider: CryptoProvider) -> None:
    """Join from the case's Welcome, then follow every epoch's proposals and commit."""
    suite = suite_for(case, provider)
    try:
        key_package = decode(MLSMessage, h(case["key_package"])).body
    except DecodeError as exc:
        raise VectorMismatch(f"key_package does not decode: {exc}") from exc
    if not isinstance(key_package, KeyPackage):
        raise VectorMismatch("key_package is not a KeyPackage")
    leaf = key_package.leaf_node
    signature_priv = h(case["signature_priv"])
    init_priv = h(case["init_priv"])
    encryption_priv = h(case["encryption_priv"])
    backend = provider.backend
    expect(suite.signature_public_key(signature_priv), leaf.signature_key, "signature key")
    expect(backend.x25519_public_key(init_priv), key_package.init_key, "init key")
    expect(backend.x25519_public_key(encryption_priv), leaf.encryption_key, "encryption key")
    signer = SigningIdentity(leaf.credential, signature_priv, leaf.signature_key, leaf.capabilities)
    bundle = KeyPackageBundle(key_package, init_priv, encryption_priv, signer)
    psks = {h(p["psk_id"]): h(p["psk"]) for p in case.get("external_psks", [])}
    config = GroupConfig(
        clock=None, lifetime_policy=LifetimePolicy(max_lifetime=None), external_psks=psks
    )
    tree = case.get("ratchet_tree")
    try:
        group = Group.join_from_welcome(
            h(case["welcome"]),
            bundle,
            ratchet_tree=None if tree is None else h(tree),
            provider=provider,
            config=config,
        )
    except (ProtocolError, DecodeError) as exc:
        raise VectorMismatch(f"joining: {getattr(exc, 'check', 'decode')}: {exc}") from exc
    expect(group.epoch_authenticator, h(case["initial_epoch_authenticator"]), "initial epoch")
    for number, epoch in enumerate(case["epochs"]):
        try:
            for proposal in epoch["proposals"]:
                event = group.process(h(proposal))
                if not isinstance(event, ProposalReceived):
                    raise VectorMismatch(f"epoch {number}: a proposal gave {event!r}")
            staged = group.process(h(epoch["commit"]))
        except (ProtocolError, DecodeError) as exc:
            check = getattr(exc, "check", "decode")
            raise VectorMismatch(f"epoch {number}: {check}: {exc}") from exc
        if not isinstance(staged, StagedCommit):
            raise VectorMismatch(f"epoch {number}: the commit gave {staged!r}")
        group.merge_staged_commit(staged)
        expect(group.epoch_authenticator, h(epoch["epoch_authenticator"]), f"epoch {number}")
