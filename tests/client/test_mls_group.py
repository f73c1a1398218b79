"""The group state machine (RFC 9420 §11, §12, §14, §15) through :class:`Group`'s public API.

Whole groups run through :class:`group_network.Network`, an in-memory relay: creation, adds by
Welcome, application messages in every direction, updates, removes, proposals by reference,
concurrent commits, external joins, PSKs, GroupContext extensions, external senders,
reinitialization and branching, late messages, saved state. Every member must end each epoch
with the same epoch authenticator and exported secret. Then one test per rule of §12.2 and
§12.4.2 that a Commit can break, and a fuzz test of :meth:`Group.process`.

The lifecycle test runs on every backend; the others on the fastest one available (native on
CPython with ``cryptography``, pure inside Pyodide), with deterministic randomness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from group_network import NOW, Network, member_config, provider_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BACKENDS

from veilpost.codec import DecodeError, Reader, Writer, decode, encode
from veilpost.crypto import CipherSuite, CryptoBackend
from veilpost.mls import errors
from veilpost.mls.commit import Commit
from veilpost.mls.commit_processing import protect, sign
from veilpost.mls.errors import MlsError, UsageError, ValidationError
from veilpost.mls.events import ApplicationMessage, OwnMessage, ProposalReceived, StagedCommit
from veilpost.mls.extensions import (
    Extension,
    ExtensionType,
    ExternalSender,
    RequiredCapabilities,
    encode_external_senders,
)
from veilpost.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    MLSMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from veilpost.mls.group import Group
from veilpost.mls.group_state import GroupStateVersionError
from veilpost.mls.message_protection import (
    protect_public_message,
    sign_framed_content,
    with_confirmation_tag,
)
from veilpost.mls.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
)
from veilpost.mls.psk import ResumptionPSKUsage
from veilpost.mls.secret_tree import RatchetType, RatchetWindow, SecretTree
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity, make_key_package

FAST = BACKENDS[0]


def check(exc_info: pytest.ExceptionInfo[ValidationError], name: str) -> None:
    assert exc_info.value.check == name, (exc_info.value.check, str(exc_info.value))


@pytest.fixture
def net() -> Network:
    """alice (creator), bob, carol, dave: four members at epoch 1."""
    network = Network.on(FAST)
    network.create("alice")
    network.add("alice", ["bob", "carol", "dave"])
    network.check_agreement()
    return network


# -- whole groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite_id", [1, 3])
def test_group_lifecycle(backend: CryptoBackend, suite_id: int) -> None:
    net = Network.on(backend, seed=b"lifecycle", suite_id=suite_id)
    alice = net.create("alice")
    assert (alice.epoch, alice.own_leaf_index, list(alice.members)) == (0, 0, [0])
    net.add("alice", ["bob", "carol", "dave"])
    epochs = {net.check_agreement()}
    assert alice.epoch == 1 and len(alice.members) == 4
    for name in net.names():
        net.send(name, f"hello from {name}".encode())

    net.commit("bob", update=True)  # an empty commit with a path: bob's leaf is fresh
    epochs.add(net.check_agreement())
    net.send("carol", b"after bob's update")

    removed_leaf = net.members["dave"].own_leaf_index
    output = net.commit("carol", remove=[removed_leaf])
    assert output.welcome is None
    dave = net.members["dave"]
    assert dave.removed and not dave.is_active
    del net.members["dave"]
    epochs.add(net.check_agreement())
    assert removed_leaf not in net.members["alice"].members

    secret = net.members["alice"].encrypt(b"dave must not read this")
    with pytest.raises(MlsError):
        dave.process(secret)
    with pytest.raises(UsageError):
        dave.encrypt(b"nor write")
    net.deliver("alice", secret)
    assert len(epochs) == 3


def test_add_many_then_everyone_talks() -> None:
    net = Network.on(FAST, seed=b"many")
    net.create("m0")
    net.add("m0", [f"m{i}" for i in range(1, 9)])
    net.add("m5", [f"m{i}" for i in range(9, 13)])
    net.check_agreement()
    for name in ["m0", "m3", "m8", "m12"]:
        net.send(name, name.encode())
    net.commit("m12", update=True)
    net.check_agreement()


def test_welcome_without_ratchet_tree(net: Network) -> None:
    erin = net.key_package("erin")
    output = net.members["alice"].commit(add=[erin.key_package], ratchet_tree_in_welcome=False)
    net.publish_commit("alice", output)
    assert output.welcome is not None
    with pytest.raises(ValidationError) as info:
        Group.join_from_welcome(output.welcome, erin, provider=net.provider)
    check(info, "welcome.ratchet_tree_missing")
    tree = net.members["alice"].ratchet_tree()
    net.members["erin"] = Group.join_from_welcome(
        output.welcome, erin, ratchet_tree=tree, provider=net.provider, config=net.config
    )
    net.check_agreement()
    net.send("erin", b"joined with a tree from elsewhere")


def test_proposals_by_reference_from_several_members(net: Network) -> None:
    erin = net.key_package("erin")
    carol_leaf = net.members["carol"].own_leaf_index
    refs = net.propose("bob", net.members["bob"].propose_add(erin.key_package))
    refs += net.propose("dave", net.members["dave"].propose_remove(carol_leaf))
    refs += net.propose("carol", net.members["carol"].propose_update())  # loses to the Remove
    refs += net.propose("bob", net.members["bob"].propose_update())
    alice = net.members["alice"]
    assert set(alice.cached_proposal_refs) == set(refs)
    output = alice.commit()
    events = net.publish_commit("alice", output, [("erin", erin)])
    staged = events["bob"]
    assert isinstance(staged, StagedCommit)
    assert [m.credential.identity for m in staged.added] == [b"erin"]
    assert [m.leaf_index for m in staged.removed] == [carol_leaf]
    assert [m.leaf_index for m in staged.updated] == [net.members["bob"].own_leaf_index]
    del net.members["carol"]
    net.check_agreement()
    net.send("bob", b"my leaf key came from my Update proposal")
    net.send("erin", b"hi")


def test_concurrent_commits_one_wins(net: Network) -> None:
    bob, carol = net.members["bob"], net.members["carol"]
    bob_output = bob.commit(update=True)
    carol_output = carol.commit(extensions=[])
    assert bob.pending_commit is not None
    # The relay accepts bob's; carol's is refused, so she processes bob's and retries.
    events = net.deliver("bob", bob_output.commit)
    assert isinstance(events["carol"], StagedCommit)
    assert carol.pending_commit is None  # merging bob's commit dropped hers
    assert bob.merge_pending_commit().own
    net.check_agreement()
    with pytest.raises(ValidationError) as info:
        net.members["alice"].process(carol_output.commit)
    check(info, "message.epoch")
    net.commit("carol", update=True)
    net.check_agreement()


def test_discard_pending_commit(net: Network) -> None:
    alice = net.members["alice"]
    output = alice.commit(remove=[1])
    with pytest.raises(UsageError):
        alice.commit(update=True)
    alice.discard_pending_commit()
    assert alice.pending_commit is None and alice.epoch == 1
    with pytest.raises(UsageError):
        alice.merge_pending_commit()
    net.send("alice", b"still in epoch 1")
    # Had it been published, it would still be a valid commit of epoch 1 (never merged here).
    assert isinstance(net.members["bob"].process(output.commit), StagedCommit)
    assert net.members["bob"].epoch == 1


def test_own_messages_echoed_back(net: Network) -> None:
    alice = net.members["alice"]
    proposal = alice.propose_remove(3)
    echo = alice.process(proposal)
    assert isinstance(echo, OwnMessage) and echo.ref == alice.cached_proposal_refs[0]
    message = alice.encrypt(b"x")
    assert alice.process(message) == OwnMessage(ContentType.APPLICATION, 1)
    output = alice.commit()
    staged = alice.process(output.commit)  # the echo of the pending commit merges it
    assert isinstance(staged, StagedCommit) and staged.own and alice.epoch == 2
    assert isinstance(alice.process(output.commit), OwnMessage)


def test_public_message_handshakes() -> None:
    net = Network.on(FAST, seed=b"public", handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE)
    net.create("alice")
    output = net.add("alice", ["bob", "carol"])
    assert decode(MLSMessage, output.commit).wire_format == WireFormat.MLS_PUBLIC_MESSAGE
    net.propose("bob", net.members["bob"].propose_update())
    net.commit("carol")
    net.check_agreement()
    net.send("bob", b"application data is always private")


def test_late_application_messages(net: Network) -> None:
    late = [net.members["bob"].encrypt(b"sent in epoch 1")]
    net.commit("alice", update=True)
    late.append(net.members["bob"].encrypt(b"sent in epoch 2"))
    net.commit("carol", update=True)
    carol = net.members["carol"]
    first = carol.process(late[0])
    assert isinstance(first, ApplicationMessage) and first.epoch == 1
    with pytest.raises(errors.ProtocolError):  # its key was used and deleted
        carol.process(late[0])
    for _ in range(3):
        net.commit("dave", update=True)
    with pytest.raises(ValidationError) as info:
        carol.process(late[1])  # epoch 2 is more than three epochs back now
    check(info, "message.epoch")


@pytest.fixture
def open_net() -> Network:
    """Like ``net``, with members who accept external Commits."""
    network = Network.on(FAST, accept_external_commits=True)
    network.create("alice")
    network.add("alice", ["bob", "carol", "dave"])
    return network


def test_external_join_and_resync(open_net: Network) -> None:
    net = open_net
    alice = net.members["alice"]
    erin, commit = Group.join_by_external_commit(
        alice.group_info(), net.identity("erin"), provider=net.provider, config=net.config
    )
    events = net.deliver("erin", commit)
    assert all(isinstance(e, StagedCommit) and e.external for e in events.values())
    net.members["erin"] = erin
    net.check_agreement()
    net.send("erin", b"I let myself in")
    assert isinstance(erin.process(commit), OwnMessage)

    # erin lost her state: she rejoins and removes her old leaf in the same commit.
    old_leaf = erin.own_leaf_index
    erin2, commit = Group.join_by_external_commit(
        net.members["bob"].group_info(),
        net.identity("erin"),
        provider=net.provider,
        config=net.config,
        remove_prior=old_leaf,
    )
    del net.members["erin"]
    events = net.deliver("erin", commit)
    assert [m.leaf_index for m in events["bob"].removed] == [old_leaf]  # type: ignore[union-attr]
    net.members["erin"] = erin2
    net.check_agreement()


def test_external_join_with_the_tree_out_of_band(open_net: Network) -> None:
    net = open_net
    bob = net.members["bob"]
    group_info = bob.group_info(with_ratchet_tree=False)
    with pytest.raises(ValidationError) as info:
        Group.join_by_external_commit(group_info, net.identity("erin"), provider=net.provider)
    check(info, "welcome.ratchet_tree_missing")
    erin, commit = Group.join_by_external_commit(
        group_info, net.identity("erin"), ratchet_tree=bob.ratchet_tree(), provider=net.provider
    )
    net.deliver("erin", commit)
    net.members["erin"] = erin
    net.check_agreement()


def test_new_member_proposal(net: Network) -> None:
    """A client outside the group proposes adding itself (§12.1.8); a member commits it."""
    for group in net.members.values():
        group.config = member_config(accept_new_member_proposals=True)
    alice = net.members["alice"]
    erin = net.key_package("erin")
    content = FramedContent(
        alice.group_id,
        alice.epoch,
        Sender.new_member_proposal(),
        b"",
        Proposal(Add(erin.key_package)),
    )
    authenticated = sign_framed_content(
        net.suite, erin.signer.signature_private_key, WireFormat.MLS_PUBLIC_MESSAGE, content
    )
    message = encode(
        MLSMessage(
            protect_public_message(net.suite, authenticated, group_context=alice.group_context)
        )
    )
    refs = net.propose("erin", message)
    output = net.members["carol"].commit(include_proposals=refs)  # the application approves
    net.publish_commit("carol", output, [("erin", erin)])
    net.check_agreement()
    refusing = net.members["bob"]
    refusing.config = member_config(accept_new_member_proposals=False)
    content = replace(
        content, epoch=refusing.epoch, body=Proposal(Add(net.key_package("fay").key_package))
    )
    authenticated = sign_framed_content(
        net.suite, net.identity("fay").signature_private_key, WireFormat.MLS_PUBLIC_MESSAGE, content
    )
    message = encode(
        MLSMessage(
            protect_public_message(net.suite, authenticated, group_context=refusing.group_context)
        )
    )
    with pytest.raises(ValidationError) as info:
        refusing.process(message)
    check(info, "policy.new_member_proposal")


def test_external_commits_can_be_refused() -> None:
    net = Network.on(FAST, seed=b"closed", accept_external_commits=False)
    net.create("alice")
    net.add("alice", ["bob"])
    _, commit = Group.join_by_external_commit(
        net.members["alice"].group_info(external_pub=True),
        net.identity("mallory"),
        provider=net.provider,
    )
    with pytest.raises(ValidationError) as info:
        net.members["bob"].process(commit)
    check(info, "policy.external_commit")
    with pytest.raises(ValidationError) as info:
        Group.join_by_external_commit(
            net.members["alice"].group_info(external_pub=False),
            net.identity("mallory"),
            provider=net.provider,
        )
    check(info, "external_commit.no_external_pub")


def test_external_psk() -> None:
    psks = {b"shared psk": b"\x42" * 32}
    net = Network.on(FAST, seed=b"psk", external_psks=psks)
    net.create("alice")
    net.add("alice", ["bob", "carol"])
    net.propose("bob", net.members["bob"].propose_psk(b"shared psk"))
    output = net.commit("carol")  # covers bob's PSK proposal by reference
    assert len(output.staged.psks) == 1
    net.check_agreement()
    net.commit("alice", psks=[b"shared psk"])
    net.check_agreement()
    # A new member added with the PSK needs it too.
    dave = net.key_package("dave")
    output = net.members["bob"].commit(add=[dave.key_package], psks=[b"shared psk"])
    net.publish_commit("bob", output)
    with pytest.raises(ValidationError) as info:
        Group.join_from_welcome(output.welcome or b"", dave, provider=net.provider)
    check(info, "welcome.psk_missing")
    net.members["dave"] = Group.join_from_welcome(
        output.welcome or b"", dave, provider=net.provider, config=net.config
    )
    net.check_agreement()


def test_psk_unavailable_to_a_member(net: Network) -> None:
    alice = net.members["alice"]
    alice.config = member_config(external_psks={b"only alice": b"\x01" * 32})
    output = alice.commit(psks=[b"only alice"])
    with pytest.raises(ValidationError) as info:
        net.members["bob"].process(output.commit)
    check(info, "commit.psk_unavailable")


def test_resumption_psk(net: Network) -> None:
    alice = net.members["alice"]
    first_epoch = alice.epoch
    net.commit("bob", update=True)
    net.commit("alice", psks=[alice.resumption_psk(first_epoch)])
    net.check_agreement()
    net.propose("carol", net.members["carol"].propose_psk(net.members["carol"].resumption_psk()))
    net.commit("dave")
    net.check_agreement()
    net.commit("dave", update=True)  # epoch 5: epochs 1 to 5 are kept
    with pytest.raises(UsageError):
        alice.resumption_psk(0)


def test_group_context_extensions_and_external_senders(net: Network) -> None:
    suite = net.suite
    operator = SigningIdentity.generate(suite, b"operator")
    senders = [ExternalSender(operator.signature_key, operator.credential)]
    extension = Extension(ExtensionType.EXTERNAL_SENDERS, encode_external_senders(senders))
    net.propose("bob", net.members["bob"].propose_group_context_extensions([extension]))
    output = net.commit("carol")
    assert output.staged.extensions == (extension,)
    net.check_agreement()
    assert net.members["dave"].extensions == [extension]

    # The operator, outside the group, proposes removing carol; dave commits it.
    group = net.members["dave"]
    carol_leaf = net.members["carol"].own_leaf_index
    content = FramedContent(
        group.group_id, group.epoch, Sender.external(0), b"", Proposal(Remove(carol_leaf))
    )
    authenticated = sign_framed_content(
        suite, operator.signature_private_key, WireFormat.MLS_PUBLIC_MESSAGE, content
    )
    message = encode(
        MLSMessage(protect_public_message(suite, authenticated, group_context=group.group_context))
    )
    events = net.deliver("operator", message)
    assert {e.sender for e in events.values() if isinstance(e, ProposalReceived)} == {
        Sender.external(0)
    }
    refs = {e.ref for e in events.values() if isinstance(e, ProposalReceived)}
    net.commit("dave", include_proposals=refs)  # the application approves it
    del net.members["carol"]
    net.check_agreement()


def test_required_capabilities_keep_out_clients_without_them(net: Network) -> None:
    required = RequiredCapabilities(extension_types=[0xF0F0])
    extension = Extension(ExtensionType.REQUIRED_CAPABILITIES, encode(required))
    with pytest.raises(ValidationError) as info:
        net.members["alice"].commit(extensions=[extension])
    check(info, "proposal.group_context_extensions.required_capabilities")


def test_reinit_and_branch(net: Network) -> None:
    old_suite_id = int(net.suite.id)
    alice = net.members["alice"]
    net.propose("bob", net.members["bob"].propose_reinit(cipher_suite=3, group_id=b"group v2"))
    output = net.commit("alice")
    assert output.staged.reinit is not None and output.staged.reinit.cipher_suite == 3
    net.check_agreement()
    for group in net.members.values():
        assert group.pending_reinit == output.staged.reinit and not group.is_active
    with pytest.raises(UsageError):
        alice.encrypt(b"the old group is closed")

    suite3 = CipherSuite(3, provider_for(FAST, b"suite 3"))
    bundles = {
        name: make_key_package(suite3, net.identity(name), now=NOW)
        for name in ["bob", "carol", "dave"]
    }
    new_alice, new_output = alice.reinitialize([b.key_package for b in bundles.values()])
    assert (new_alice.group_id, new_alice.epoch, int(new_alice.cipher_suite.id)) == (
        b"group v2",
        1,
        3,
    )
    assert new_output.welcome is not None
    v2 = Network(suite3, net.config, {"alice": new_alice}, net.identities)
    for name, bundle in bundles.items():
        with pytest.raises(ValidationError):  # without the old group the PSK is unknown
            Group.join_from_welcome(new_output.welcome, bundle, provider=suite3.provider)
        v2.members[name] = Group.join_from_welcome(
            new_output.welcome,
            bundle,
            provider=suite3.provider,
            config=net.config,
            previous_group=net.members[name],
        )
    v2.check_agreement()
    v2.send("dave", b"in the new group")

    # A branch of v2 with only bob, linked by a branch PSK.
    bob_kp = make_key_package(suite3, net.identity("bob"), now=NOW)
    branch, branch_output = v2.members["alice"].branch([bob_kp.key_package])
    bob_branch = Group.join_from_welcome(
        branch_output.welcome or b"",
        bob_kp,
        provider=suite3.provider,
        config=net.config,
        previous_group=v2.members["bob"],
    )
    assert bob_branch.epoch_authenticator == branch.epoch_authenticator
    assert old_suite_id == 1


def test_credential_rotation_through_a_commit(net: Network) -> None:
    new_bob = SigningIdentity.generate(net.suite, b"bob, new key")
    output = net.commit("bob", update=new_bob)
    assert output.staged.has_path
    net.check_agreement()
    bob = net.members["bob"]
    assert bob.signer == new_bob
    assert net.members["alice"].members[bob.own_leaf_index].signature_key == new_bob.signature_key
    net.send("bob", b"signed with my new key")


def test_saved_state_keeps_working(net: Network) -> None:
    net.propose("bob", net.members["bob"].propose_update())
    carol = net.members["carol"]
    output = carol.commit(remove=[net.members["dave"].own_leaf_index])
    for name in ["alice", "bob", "carol"]:
        saved = net.members[name].to_bytes()
        net.members[name] = Group.from_bytes(saved, net.provider, config=net.config)
        assert net.members[name].to_bytes() == saved
    carol = net.members["carol"]
    assert carol.pending_commit is not None
    assert carol.pending_commit.commit == output.commit
    net.publish_commit("carol", output)
    del net.members["dave"]
    net.check_agreement()
    net.send("bob", b"after a reload")
    late = net.members["alice"].encrypt(b"late")
    net.commit("bob", update=True)
    net.members["carol"] = Group.from_bytes(net.members["carol"].to_bytes(), net.provider)
    event = net.members["carol"].process(late)
    assert isinstance(event, ApplicationMessage) and event.data == b"late"


def test_saved_state_refuses_garbage(net: Network) -> None:
    saved = net.members["bob"].to_bytes()
    with pytest.raises(DecodeError):
        Group.from_bytes(b"not a group", net.provider)
    with pytest.raises(DecodeError):
        Group.from_bytes(saved[:-1], net.provider)
    with pytest.raises(DecodeError):
        Group.from_bytes(saved + b"\x00", net.provider)
    corrupted = bytearray(saved)
    corrupted[len(saved) // 2] ^= 1
    with pytest.raises(DecodeError, match="corrupted"):
        Group.from_bytes(bytes(corrupted), net.provider)
    with pytest.raises(GroupStateVersionError, match="version 3"):
        Group.from_bytes(saved[:8] + b"\x00\x03" + saved[10:], net.provider)


def test_secret_tree_state_round_trip() -> None:
    """A secret tree saved mid-epoch gives the same keys, retained ones included."""
    suite = CipherSuite(1, provider_for(FAST, b"secret tree"))
    application = RatchetType.APPLICATION
    tree = SecretTree(suite, b"\x11" * 32, 8, own_leaf=2, window=RatchetWindow(4, 50))
    tree.next_encryption_key(application)
    with tree.decryption_key(5, application, 7):
        pass  # leaf 5's generations 4..6 stay retained for out-of-order messages
    writer = Writer()
    tree.encode(writer)
    loaded = SecretTree.decode(Reader(writer.getvalue()), suite)
    assert loaded.stored_node_secrets() == tree.stored_node_secrets()
    assert loaded.derived_leaves() == tree.derived_leaves()
    assert loaded.ratchet(5, application).retained_generations == (4, 5, 6)
    with tree.decryption_key(5, application, 5) as a, loaded.decryption_key(5, application, 5) as b:
        assert a == b
    with tree.decryption_key(1, application, 0) as a, loaded.decryption_key(1, application, 0) as b:
        assert a == b
    assert tree.next_encryption_key(application) == loaded.next_encryption_key(application)
    with pytest.raises(DecodeError):
        SecretTree.decode(Reader(writer.getvalue()[:-1]), suite)


def test_key_package_bundle_round_trip(net: Network) -> None:
    bundle = net.key_package("erin")
    assert KeyPackageBundle.from_bytes(bundle.to_bytes()) == bundle
    assert (
        KeyPackageBundle.from_message(
            bundle.to_message(),
            bundle.init_private_key,
            bundle.encryption_private_key,
            bundle.signer,
        )
        == bundle
    )
    with pytest.raises(DecodeError):
        KeyPackageBundle.from_bytes(bundle.to_bytes()[:-3])


def test_wrong_inputs_are_usage_errors(net: Network) -> None:
    alice = net.members["alice"]
    with pytest.raises(UsageError):
        alice.process(alice.group_info())
    with pytest.raises(UsageError):
        Group.join_from_welcome(alice.group_info(), net.key_package("x"), provider=net.provider)
    with pytest.raises(UsageError):
        alice.commit(remove=[1], reinit=ReInit(b"g", 1, 1))
    with pytest.raises(UsageError):
        alice.merge_staged_commit(StagedCommit(alice.group_id, 7, Sender.member(1), 1))


# -- one rule each: proposal lists (§12.2) and commits (§12.4.2) ---------------------------------


def forged_commit(
    group: Group,
    proposals: list[Proposal | bytes],
    *,
    path_from: Group | None = None,
    tag: bytes = bytes(32),
) -> bytes:
    """A Commit from ``group``'s member as a PublicMessage, built without any of the
    committer's checks: signed and membership-tagged correctly, with ``tag`` as its
    confirmation tag. ``path_from`` borrows the path of a real commit of that group."""
    state = group._state
    path = None
    if path_from is not None:
        pending = path_from.commit(update=True)
        path_from.discard_pending_commit()
        path = _public_commit(path_from, pending.commit).path
    content = FramedContent(
        group.group_id,
        group.epoch,
        Sender.member(group.own_leaf_index),
        b"",
        Commit([ProposalOrRef(p) for p in proposals], path),
    )
    authenticated = with_confirmation_tag(sign(state, content, WireFormat.MLS_PUBLIC_MESSAGE), tag)
    return protect(state, group.config, authenticated)


def _public_commit(group: Group, message: bytes) -> Commit:
    body = decode(MLSMessage, message).body
    assert isinstance(body, PublicMessage) and isinstance(body.content.body, Commit)
    return body.content.body


@pytest.fixture
def public_net() -> Network:
    network = Network.on(
        FAST,
        seed=b"rules",
        handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE,
        accept_external_commits=True,
    )
    network.create("alice")
    network.add("alice", ["bob", "carol", "dave"])
    return network


def rejected(
    net: Network, message: bytes, receiver: str = "bob"
) -> pytest.ExceptionInfo[ValidationError]:
    with pytest.raises(ValidationError) as info:
        net.members[receiver].process(message)
    return info


def _cached_update(net: Network, name: str) -> bytes:
    """``name`` proposes an Update; return its reference as alice cached it."""
    net.propose(name, net.members[name].propose_update())
    return net.members["alice"].cached_proposal_refs[-1]


def _resumption_psk(net: Network, **changes: object) -> Proposal:
    return Proposal(PreSharedKey(replace(net.members["alice"].resumption_psk(), **changes)))  # type: ignore[arg-type]


def _add(net: Network, name: str) -> Proposal:
    return Proposal(Add(net.key_package(name).key_package))


ProposalsFor = Callable[[Network], list[Proposal | bytes]]

# Each case breaks exactly one rule of §12.1/§12.2/§12.4.2 in a Commit from alice (leaf 0);
# ``True`` gives the Commit a valid path, for rules checked after the path requirement.
ONE_RULE_BROKEN: dict[str, tuple[ProposalsFor, bool]] = {
    "proposal_list.duplicate_add": (lambda net: [_add(net, "erin")] * 2, False),
    "proposal_list.add_existing_member": (lambda net: [_add(net, "carol")], False),
    "proposal_list.update_by_committer": (lambda net: [_cached_update(net, "alice")], True),
    "proposal_list.remove_committer": (lambda net: [Proposal(Remove(0))], True),
    "proposal.remove.blank_leaf": (lambda net: [Proposal(Remove(9))], True),
    "proposal_list.duplicate_leaf_change": (
        lambda net: [_cached_update(net, "carol"), Proposal(Remove(2))],
        True,
    ),
    "proposal_list.duplicate_psk": (
        lambda net: [_resumption_psk(net, psk_nonce=bytes(32))] * 2,
        False,
    ),
    "proposal_list.multiple_group_context_extensions": (
        lambda net: [Proposal(GroupContextExtensions([]))] * 2,
        True,
    ),
    "proposal_list.reinit_not_alone": (
        lambda net: [Proposal(ReInit(b"new", 1, 1)), _resumption_psk(net)],
        False,
    ),
    "proposal_list.external_init": (lambda net: [Proposal(ExternalInit(bytes(32)))], True),
    "proposal.psk.nonce_length": (lambda net: [_resumption_psk(net, psk_nonce=b"short")], False),
    "proposal.psk.usage": (
        lambda net: [_resumption_psk(net, usage=ResumptionPSKUsage.REINIT)],
        False,
    ),
    "proposal.reinit.version": (lambda net: [Proposal(ReInit(b"new", 0, 1))], False),
    "proposal.group_context_extensions.unsupported": (
        lambda net: [Proposal(GroupContextExtensions([Extension(0xF0F0, b"")]))],
        True,
    ),
    "key_package.signature": (
        lambda net: [
            Proposal(Add(replace(net.key_package("erin").key_package, signature=bytes(64))))
        ],
        False,
    ),
    "commit.unknown_proposal_ref": (lambda net: [b"\x07" * 32], False),
    "commit.path_required": (lambda net: [Proposal(Remove(3))], False),
}


@pytest.mark.parametrize("rule", sorted(ONE_RULE_BROKEN))
def test_commit_breaking_one_rule_is_rejected(public_net: Network, rule: str) -> None:
    proposals_for, with_path = ONE_RULE_BROKEN[rule]
    alice = public_net.members["alice"]
    message = forged_commit(
        alice, proposals_for(public_net), path_from=alice if with_path else None
    )
    check(rejected(public_net, message), rule)


def test_forged_commits_reach_the_last_check(public_net: Network) -> None:
    """The harness itself breaks no rule before the confirmation tag (which it cannot make)."""
    alice = public_net.members["alice"]
    check(
        rejected(public_net, forged_commit(alice, [], path_from=alice)), "commit.confirmation_tag"
    )
    check(rejected(public_net, forged_commit(alice, [])), "commit.path_required")


def test_rule_confirmation_tag(public_net: Network) -> None:
    alice = public_net.members["alice"]
    output = alice.commit(update=True)
    body = decode(MLSMessage, output.commit).body
    assert isinstance(body, PublicMessage)
    bad = AuthenticatedContent(
        WireFormat.MLS_PUBLIC_MESSAGE,
        body.content,
        replace(body.auth, confirmation_tag=bytes(32)),
    )
    message = encode(
        MLSMessage(
            protect_public_message(
                alice.cipher_suite,
                bad,
                group_context=alice.group_context,
                membership_key=alice._state.current.secrets.membership_key,
            )
        )
    )
    check(rejected(public_net, message), "commit.confirmation_tag")
    assert isinstance(public_net.members["bob"].process(output.commit), StagedCommit)


def test_rule_commit_for_the_wrong_epoch(public_net: Network) -> None:
    stale = public_net.members["carol"].commit(update=True)
    public_net.commit("alice", update=True)
    check(rejected(public_net, stale.commit), "message.epoch")


def test_rule_commit_for_another_group(public_net: Network) -> None:
    other = Network.on(FAST, seed=b"other group")
    other.create("zed")
    output = other.members["zed"].commit(update=True)
    check(rejected(public_net, output.commit), "message.group_id")


def test_rule_external_commit_lists(public_net: Network) -> None:
    alice = public_net.members["alice"]
    _, message = Group.join_by_external_commit(
        alice.group_info(), public_net.identity("erin"), provider=public_net.provider
    )
    body = decode(MLSMessage, message).body
    assert isinstance(body, PublicMessage) and isinstance(body.content.body, Commit)
    commit = body.content.body
    erin = public_net.identity("erin")

    def resigned(proposals: list[ProposalOrRef]) -> bytes:
        content = replace(body.content, body=replace(commit, proposals=proposals))
        authenticated = sign_framed_content(
            public_net.suite,
            erin.signature_private_key,
            WireFormat.MLS_PUBLIC_MESSAGE,
            content,
            alice.group_context,
        )
        return encode(
            MLSMessage(
                PublicMessage(content, replace(authenticated.auth, confirmation_tag=bytes(32)))
            )
        )

    init = commit.proposals[0]
    check(rejected(public_net, resigned([])), "external_commit.external_init_count")
    check(rejected(public_net, resigned([init, init])), "external_commit.external_init_count")
    check(
        rejected(public_net, resigned([init, ProposalOrRef(b"\x01" * 32)])),
        "external_commit.proposal_by_reference",
    )
    check(
        rejected(public_net, resigned([init, ProposalOrRef(Proposal(GroupContextExtensions([])))])),
        "external_commit.proposal_type",
    )
    two_removes = [init, ProposalOrRef(Proposal(Remove(1))), ProposalOrRef(Proposal(Remove(2)))]
    check(rejected(public_net, resigned(two_removes)), "external_commit.remove_count")


def test_rule_proposals_checked_on_arrival(public_net: Network) -> None:
    alice = public_net.members["alice"]
    with pytest.raises(ValidationError) as info:
        alice.propose_remove(12)
    check(info, "proposal.remove.blank_leaf")
    content = FramedContent(
        alice.group_id, alice.epoch, Sender.member(0), b"", Proposal(ExternalInit(bytes(32)))
    )
    message = protect(
        alice._state, alice.config, sign(alice._state, content, WireFormat.MLS_PUBLIC_MESSAGE)
    )
    check(rejected(public_net, message), "proposal.external_init.standalone")
    assert not public_net.members["bob"].cached_proposal_refs


def test_committer_leaves_out_invalid_cached_proposals(public_net: Network) -> None:
    """A cached Add of a client that becomes a member meanwhile is dropped, not fatal."""
    alice, bob = public_net.members["alice"], public_net.members["bob"]
    carol_again = public_net.key_package("carol").key_package
    public_net.propose("bob", bob.propose_add(carol_again))  # valid alone; carol is a member
    output = alice.commit()
    assert output.staged.added == ()
    public_net.publish_commit("alice", output)
    public_net.check_agreement()


# -- fuzzing process() -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_material() -> tuple[Group, list[bytes], bytes]:
    """alice's group, messages of every kind to mutate, and a probe message never mutated."""
    net = Network.on(FAST, seed=b"fuzz", accept_external_commits=True)
    net.create("alice")
    net.add("alice", ["bob", "carol"])
    bob, carol = net.members["bob"], net.members["carol"]
    samples = [
        bob.encrypt(b"application"),
        bob.propose_update(),
        carol.commit(update=True).commit,
        Group.join_by_external_commit(
            net.members["alice"].group_info(), net.identity("erin"), provider=net.provider
        )[1],
    ]
    public = Network.on(FAST, seed=b"fuzz", handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE)
    public.create("alice")
    public.add("alice", ["bob"])
    samples.append(public.members["bob"].commit(remove=[0]).commit)
    return net.members["alice"], samples, bob.encrypt(b"probe")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_process_fuzz(fuzz_material: tuple[Group, list[bytes], bytes], data: st.DataObject) -> None:
    group, samples, probe = fuzz_material
    receiver = Group.from_bytes(group.to_bytes(), group.cipher_suite.provider)
    kind = data.draw(st.sampled_from(["random", "flip", "truncate", "splice"]))
    if kind == "random":
        message = data.draw(st.binary(max_size=300))
    else:
        sample = bytearray(data.draw(st.sampled_from(samples)))
        if kind == "flip":
            for _ in range(data.draw(st.integers(1, 4))):
                i = data.draw(st.integers(0, len(sample) - 1))
                sample[i] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del sample[data.draw(st.integers(0, len(sample) - 1)) :]
        else:
            i = data.draw(st.integers(0, len(sample)))
            sample[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        message = bytes(sample)
    with contextlib.suppress(DecodeError, MlsError):
        receiver.process(message)
    # Whatever happened, the group still works.
    event = receiver.process(probe)
    assert isinstance(event, ApplicationMessage) and event.data == b"probe"
