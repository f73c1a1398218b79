"""Attacks on the group layer that a security review found, one test each (RFC 9420 §9.2,
§12.1.8, §12.2, §12.4, §16.8).

Each test mounts the attack through the public API where it can, or forges the message the
way a malicious member, an outsider or the relay would, and checks that it is refused with
the rule that refuses it, or that the secret it went after is no longer there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from group_network import Network
from support import BACKENDS

from veilpost.codec import DecodeError, decode, encode
from veilpost.crypto import CipherSuite
from veilpost.mls.commit import Commit
from veilpost.mls.commit_processing import protect, sign
from veilpost.mls.credential import Credential
from veilpost.mls.errors import MlsError, ProtocolError, UsageError, ValidationError
from veilpost.mls.events import ApplicationMessage, ProposalReceived, StagedCommit
from veilpost.mls.extensions import (
    Extension,
    ExtensionType,
    ExternalSender,
    encode_external_senders,
)
from veilpost.mls.framing import (
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from veilpost.mls.group import Group
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.group_state import GroupState
from veilpost.mls.message_protection import (
    protect_public_message,
    sign_framed_content,
    with_confirmation_tag,
)
from veilpost.mls.proposals import Add, ExternalInit, Proposal, ProposalOrRef, Remove
from veilpost.mls.secret_tree import RatchetType, SecretTree, SecretTreeError
from veilpost.mls.signing_identity import SigningIdentity, make_key_package
from veilpost.mls.update_path import UpdatePath

FAST = BACKENDS[0]


def make_net(**config: object) -> Network:
    """alice, bob, carol, dave at epoch 1, with handshakes in the clear for forging."""
    network = Network.on(
        FAST,
        seed=b"security",
        handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE,
        **config,  # type: ignore[arg-type]
    )
    network.create("alice")
    network.add("alice", ["bob", "carol", "dave"])
    return network


@pytest.fixture
def net() -> Network:
    return make_net()


def refused(group: Group, message: bytes) -> Exception:
    """Process ``message``, which must fail and leave ``group``'s saved state as it was."""
    before = group.to_bytes()
    with pytest.raises((MlsError, DecodeError)) as info:
        group.process(message)
    assert group.to_bytes() == before
    return info.value


def check_of(error: Exception) -> str | None:
    return getattr(error, "check", None)


def forged_commit(committer: Group, commit: Commit) -> bytes:
    """``commit`` signed by ``committer`` with a zero confirmation tag (the checks before the
    tag must stop it)."""
    state: GroupState = committer._state
    content = FramedContent(
        committer.group_id, committer.epoch, Sender.member(committer.own_leaf_index), b"", commit
    )
    authenticated = sign(state, content, WireFormat.MLS_PUBLIC_MESSAGE)
    return protect(state, committer.config, with_confirmation_tag(authenticated, b"\0" * 32))


def update_path_of(committer: Group, **commit: object) -> UpdatePath:
    """The UpdatePath of a genuine Commit of ``committer``, which is then discarded."""
    output = committer.commit(update=True, **commit)  # type: ignore[arg-type]
    committer.discard_pending_commit()
    body = decode(MLSMessage, output.commit).body
    assert isinstance(body, PublicMessage) and isinstance(body.content.body, Commit)
    path = body.content.body.path
    assert path is not None
    return path


def resigned_leaf_path(committer: Group, path: UpdatePath, **changes: object) -> UpdatePath:
    """``path`` with its leaf changed and signed again by ``committer``."""
    leaf = replace(path.leaf_node, signature=b"", **changes)  # type: ignore[arg-type]
    signed = leaf.sign(
        committer.cipher_suite,
        committer.signer.signature_private_key,
        committer.group_id,
        committer.own_leaf_index,
    )
    return replace(path, leaf_node=signed)


def new_member_proposal(net: Network, group: Group, name: str) -> bytes:
    """A client outside the group proposes adding itself: all it needs is the group id and
    epoch, which every message header shows (§12.1.8)."""
    bundle = make_key_package(net.suite, net.identity(name), now=1_750_000_000)
    content = FramedContent(
        group.group_id,
        group.epoch,
        Sender.new_member_proposal(),
        b"",
        Proposal(Add(bundle.key_package)),
    )
    authenticated = sign_framed_content(
        net.suite, bundle.signer.signature_private_key, WireFormat.MLS_PUBLIC_MESSAGE, content
    )
    return encode(MLSMessage(PublicMessage(authenticated.content, authenticated.auth, None)))


# -- §12.1.8, §12.4: who joins is the application's decision ---------------------------------


def test_new_member_proposals_are_refused_by_default(net: Network) -> None:
    message = new_member_proposal(net, net.members["bob"], "relay")
    error = refused(net.members["bob"], message)
    assert check_of(error) == "policy.new_member_proposal"


def test_proposals_from_outside_are_committed_only_when_approved() -> None:
    """The relay's new_member_proposal, cached by every member that accepts them, is not
    covered by a routine Commit; it is once the application names it."""
    net = make_net(accept_new_member_proposals=True)
    carol = net.members["carol"]
    refs = net.propose("relay", new_member_proposal(net, carol, "relay"))
    assert refs and refs[0] in carol.cached_proposal_refs

    routine = carol.commit(update=True)
    assert routine.staged.added == () and routine.welcome is None
    carol.discard_pending_commit()

    with pytest.raises(UsageError):
        carol.commit(include_proposals=[b"\x07" * 32])
    approved = carol.commit(include_proposals=refs[:1])
    assert [m.credential.identity for m in approved.staged.added] == [b"relay"]


def test_external_sender_proposals_are_committed_only_when_approved(net: Network) -> None:
    operator = SigningIdentity.generate(net.suite, b"operator")
    senders = [ExternalSender(operator.signature_key, operator.credential)]
    extension = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(senders))
    net.commit("alice", extensions=[extension])
    dave = net.members["dave"]
    content = FramedContent(dave.group_id, dave.epoch, Sender.external(0), b"", Proposal(Remove(1)))
    authenticated = sign_framed_content(
        net.suite, operator.signature_private_key, WireFormat.MLS_PUBLIC_MESSAGE, content
    )
    message = encode(
        MLSMessage(
            protect_public_message(net.suite, authenticated, group_context=dave.group_context)
        )
    )
    event = dave.process(message)
    assert isinstance(event, ProposalReceived)
    assert dave.commit(update=True).staged.removed == ()
    dave.discard_pending_commit()
    assert [m.leaf_index for m in dave.commit(include_proposals=[event.ref]).staged.removed] == [1]


def test_external_joins_are_closed_by_default(net: Network) -> None:
    """Without ``accept_external_commits`` no GroupInfo offers ``external_pub``, and a
    GroupInfo that does (from a member who allows it) still cannot get anyone in."""
    alice = net.members["alice"]
    with pytest.raises(ValidationError) as info:
        Group.join_by_external_commit(alice.group_info(), net.identity("x"), provider=net.provider)
    assert info.value.check == "external_commit.no_external_pub"
    output = alice.commit(update=True)
    with pytest.raises(ValidationError):
        Group.join_by_external_commit(output.group_info, net.identity("x"), provider=net.provider)
    alice.discard_pending_commit()
    _, message = Group.join_by_external_commit(
        alice.group_info(external_pub=True), net.identity("x"), provider=net.provider
    )
    assert check_of(refused(net.members["bob"], message)) == "policy.external_commit"


# -- §12.2: an external Commit removes only the joiner's own old leaf ------------------------


def test_external_commit_cannot_remove_another_member() -> None:
    net = make_net(accept_external_commits=True)
    _, message = Group.join_by_external_commit(
        net.members["carol"].group_info(),
        net.identity("mallory"),
        provider=net.provider,
        config=net.config,
        remove_prior=1,  # bob's leaf
    )
    for name in ("alice", "bob", "carol", "dave"):
        error = refused(net.members[name], message)
        assert check_of(error) == "external_commit.remove_other_member", name


def test_external_commit_removal_goes_to_the_credential_validator() -> None:
    seen: list[tuple[bytes, bytes | None]] = []

    def validator(credential: Credential, key: bytes, predecessor: Credential | None) -> None:
        seen.append((credential.identity, None if predecessor is None else predecessor.identity))

    net = make_net(accept_external_commits=True, credential_validator=validator)
    _, message = Group.join_by_external_commit(
        net.members["carol"].group_info(),
        net.identity("bob-new-device"),
        provider=net.provider,
        config=net.config,
        remove_prior=1,
    )
    seen.clear()
    event = net.members["alice"].process(message)
    assert isinstance(event, StagedCommit) and [m.leaf_index for m in event.removed] == [1]
    assert (b"bob-new-device", b"bob") in seen


# -- §12.4.2: a Commit that removes this member is checked all the same ----------------------


def test_removed_member_checks_the_path_leaf(net: Network) -> None:
    alice, dave = net.members["alice"], net.members["dave"]
    path = update_path_of(alice, remove=[3])
    garbage = replace(path, leaf_node=replace(path.leaf_node, signature=b"\0" * 64))
    error = refused(
        dave, forged_commit(alice, Commit([ProposalOrRef(Proposal(Remove(3)))], garbage))
    )
    assert check_of(error) == "leaf_node.signature"
    assert not dave.removed


def test_removed_member_checks_the_parent_hash(net: Network) -> None:
    alice, dave = net.members["alice"], net.members["dave"]
    path = update_path_of(alice, remove=[3])
    path = resigned_leaf_path(alice, path, parent_hash=b"\x01" * 32)
    error = refused(dave, forged_commit(alice, Commit([ProposalOrRef(Proposal(Remove(3)))], path)))
    assert check_of(error) == "update_path.parent_hash"


def test_removed_member_decapsulates_external_init() -> None:
    """An external Commit removing dave (the validator allows it) with a garbage ExternalInit:
    dave must refuse it like everyone else instead of believing itself removed."""
    net = make_net(accept_external_commits=True, credential_validator=lambda c, k, p: None)
    dave = net.members["dave"]
    _, genuine = Group.join_by_external_commit(
        dave.group_info(), net.identity("mallory"), provider=net.provider, remove_prior=3
    )
    body = decode(MLSMessage, genuine).body
    assert isinstance(body, PublicMessage) and isinstance(body.content.body, Commit)
    commit = body.content.body
    proposals = [
        ProposalOrRef(Proposal(ExternalInit(b"\0" * 32)))
        if isinstance(p.body, Proposal) and isinstance(p.body.body, ExternalInit)
        else p
        for p in commit.proposals
    ]
    content = replace(body.content, body=replace(commit, proposals=proposals))
    authenticated = sign_framed_content(
        net.suite,
        net.identity("mallory").signature_private_key,
        WireFormat.MLS_PUBLIC_MESSAGE,
        content,
        dave.group_context,
    )
    auth = with_confirmation_tag(authenticated, b"\0" * 32).auth
    forged = encode(MLSMessage(PublicMessage(content, auth, None)))
    error = refused(dave, forged)
    assert isinstance(error, ProtocolError) and error.check == "external_init.kem_output"
    assert not dave.removed


# -- §12.4.2, §16.8: keys within one UpdatePath are distinct ---------------------------------


def test_update_path_repeating_a_key_is_refused(net: Network) -> None:
    alice = net.members["alice"]
    path = update_path_of(alice)
    repeated = resigned_leaf_path(alice, path, encryption_key=path.nodes[0].encryption_key)
    message = forged_commit(alice, Commit([], repeated))
    for name in ("bob", "carol", "dave"):
        error = refused(net.members[name], message)
        assert check_of(error) == "update_path.duplicate_public_key", name


# -- §9.2: encryption_secret is deleted once the secret tree has it --------------------------


@pytest.fixture
def encryption_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every ``encryption_secret`` a secret tree is built from, while the test runs."""
    roots: list[bytes] = []
    real_init = SecretTree.__init__

    def spy(self: SecretTree, suite: CipherSuite, secret: bytes, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        if secret:
            roots.append(secret)
        real_init(self, suite, secret, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SecretTree, "__init__", spy)
    yield roots


def test_encryption_secret_is_neither_kept_nor_saved(
    net: Network, encryption_secrets: list[bytes]
) -> None:
    """Once a message split the secret tree's root (which is ``encryption_secret``), no copy
    of it is left: a stolen state cannot re-derive keys already used and deleted."""
    net.commit("bob", update=True)
    net.send("carol", b"splits the root")
    assert encryption_secrets
    for group in net.members.values():
        saved = group.to_bytes()
        assert not any(secret in saved for secret in encryption_secrets)
        assert group._state.current.secrets.encryption_secret == b""


# -- §12.4.2: a removed member keeps only what late messages need ----------------------------


def test_removed_member_keeps_no_epoch_secret(net: Network) -> None:
    dave = net.members["dave"]
    late = net.members["bob"].encrypt(b"sent before the commit")
    last = dave._state.current
    secrets = [
        last.secrets.init_secret,
        last.secrets.exporter_secret,
        last.secrets.external_secret,
        last.secrets.resumption_psk,
        *(pair.private_key for _, pair in last.private_keys),
    ]
    net.commit("alice", remove=[3])
    assert dave.removed
    saved = dave.to_bytes()
    assert not any(secret in saved for secret in secrets)
    for use in (
        lambda: dave.export_secret("x", b"", 16),
        lambda: dave.epoch_authenticator,
        lambda: dave.resumption_psk(),
        lambda: dave.group_info(),
    ):
        with pytest.raises(UsageError):
            use()
    reloaded = Group.from_bytes(saved, net.provider, config=net.config)
    event = reloaded.process(late)
    assert isinstance(event, ApplicationMessage) and event.data == b"sent before the commit"


# -- §9.2, §15.3: past epochs keep only the other members' application ratchets -------------


def test_past_epoch_keeps_only_other_members_application_ratchets(net: Network) -> None:
    carol = net.members["carol"]
    late = {name: net.members[name].encrypt(name.encode()) for name in ("alice", "bob", "dave")}
    net.commit("alice", update=True)
    past = carol._state.past_epochs[-1].secret_tree
    assert past.stored_node_secrets() == frozenset()
    assert past.derived_leaves() == {0, 1, 3}
    with pytest.raises(SecretTreeError):
        past.ratchet(1, RatchetType.HANDSHAKE)
    with pytest.raises(SecretTreeError):
        past.ratchet(carol.own_leaf_index, RatchetType.APPLICATION)
    with pytest.raises(UsageError):
        past.next_encryption_key(RatchetType.APPLICATION)
    for name, message in late.items():
        event = carol.process(message)
        assert isinstance(event, ApplicationMessage) and event.data == name.encode()


# -- saved state: its parts must agree ------------------------------------------------------


def _tampered(group: Group, change: Callable[[GroupState], None]) -> bytes:
    copy = Group.from_bytes(group.to_bytes(), group.cipher_suite.provider, config=group.config)
    change(copy._state)
    return copy.to_bytes()


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s.current.private_keys, "leaf_index", 1),
        lambda s: setattr(s.current.secret_tree, "own_leaf", 2),
        lambda s: setattr(s, "signer", SigningIdentity.generate(s.suite, b"someone else")),
        lambda s: s.past_epochs.append(s.past_epochs[-1]),
    ],
    ids=["own leaf", "secret tree own leaf", "signer", "past epochs"],
)
def test_saved_state_parts_must_agree(net: Network, change: Callable[[GroupState], None]) -> None:
    alice = net.members["alice"]
    net.commit("bob", update=True)
    with pytest.raises(DecodeError):
        Group.from_bytes(_tampered(alice, change), net.provider, config=net.config)


# -- a failed process() leaves the group as it was ------------------------------------------


def test_failed_private_message_leaves_the_saved_state_unchanged() -> None:
    net = Network.on(FAST, seed=b"security")
    net.create("alice")
    net.add("alice", ["bob", "carol"])
    body = decode(MLSMessage, net.members["bob"].encrypt(b"x")).body
    assert isinstance(body, PrivateMessage)
    tampered = encode(MLSMessage(replace(body, authenticated_data=b"tampered")))
    refused(net.members["carol"], tampered)  # bob's ratchets are not derived by the failure
    event = net.members["carol"].process(encode(MLSMessage(body)))
    assert isinstance(event, ApplicationMessage)


def test_default_config_lets_no_outsider_in() -> None:
    config = GroupConfig()
    assert not config.accept_new_member_proposals and not config.accept_external_commits
