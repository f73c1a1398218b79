"""Message protection (RFC 9420 §6): the working group's ``message-protection.json`` on every
backend, round trips of every content type, one test per rule that a received message can
break, and a fuzz test: random, mutated and re-encrypted messages give only typed errors.

The group is four leaves in epoch 7; leaf 2 is blank. Members at leaves 1 and 3 send, leaf 0
receives. Messages that break a rule are encrypted and tagged here, by the RFC's formulas
rather than by the code under test, so that each test breaks exactly one thing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file
from support import MLS_VECTORS, h, load_json

from veilpost.codec import DecodeError, Writer, decode, encode
from veilpost.crypto import (
    AeadAuthenticationError,
    CipherSuite,
    CryptoBackend,
    CryptoProvider,
    get_backend,
)
from veilpost.mls.commit import Commit
from veilpost.mls.credential import Credential
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.extensions import (
    Extension,
    ExtensionType,
    ExternalSender,
    encode_external_senders,
)
from veilpost.mls.framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    ContentBody,
    ContentType,
    FramedContent,
    FramedContentTBS,
    MLSMessage,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
    WireFormat,
)
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.key_schedule import membership_tag
from veilpost.mls.message_protection import (
    no_padding,
    pad_to_multiple,
    protect_private_message,
    protect_public_message,
    sign_framed_content,
    unprotect_private_message,
    unprotect_public_message,
    verify_framed_content,
    with_confirmation_tag,
)
from veilpost.mls.proposals import Add, Proposal, Remove, Update
from veilpost.mls.secret_tree import (
    GenerationReusedError,
    RatchetKey,
    RatchetType,
    SecretTree,
    sender_data_key_and_nonce,
)
from veilpost.mls.update_path import UpdatePath
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.message_protection import check_message_protection

N_LEAVES = 4
BLANK_LEAF = 2
SENDER = 1
APPLICATION = b"hello, group"
PROPOSAL = Proposal(Remove(3))
COMMIT = Commit()


def test_message_protection_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["message-protection"] is check_message_protection
    assert {1, 3} <= run_vector_file("message-protection", backend)


@functools.cache
def _signature_key_pair(backend_name: str, seed: int) -> tuple[bytes, bytes]:
    suite = CipherSuite(1, CryptoProvider(backend_name))
    private_key = bytes([seed]) * 32
    return private_key, suite.signature_public_key(private_key)


@dataclass
class Epoch:
    """Epoch 7 of a four-leaf group, its keys, and its members' signature key pairs."""

    suite: CipherSuite
    context: GroupContext
    membership_key: bytes = b"\x4d" * 32
    sender_data_secret: bytes = b"\x5d" * 32
    encryption_secret: bytes = b"\x65" * 32

    @classmethod
    def make(cls, backend: CryptoBackend, **context_changes: Any) -> Epoch:
        context = GroupContext(
            cipher_suite=1,
            group_id=b"veilpost group",
            epoch=7,
            tree_hash=b"\x74" * 32,
            confirmed_transcript_hash=b"\x63" * 32,
        )
        return cls(CipherSuite(1, CryptoProvider(backend)), replace(context, **context_changes))

    def key_pair(self, leaf: int) -> tuple[bytes, bytes]:
        return _signature_key_pair(self.suite.provider.backend.name, 0x10 + leaf)

    def signature_key(self, leaf: int) -> bytes | None:
        if leaf == BLANK_LEAF or not 0 <= leaf < N_LEAVES:
            return None
        return self.key_pair(leaf)[1]

    def tree(self, own_leaf: int | None = 0) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, N_LEAVES, own_leaf=own_leaf)

    def content(
        self, body: ContentBody, sender: Sender | None = None, authenticated_data: bytes = b""
    ) -> FramedContent:
        return FramedContent(
            self.context.group_id,
            self.context.epoch,
            sender or Sender.member(SENDER),
            authenticated_data,
            body,
        )

    def sign(
        self,
        content: FramedContent,
        wire_format: WireFormat,
        signature_private_key: bytes | None = None,
    ) -> AuthenticatedContent:
        key = signature_private_key or self.key_pair(content.sender.index)[0]
        signed = sign_framed_content(self.suite, key, wire_format, content, self.context)
        if content.content_type == ContentType.COMMIT:
            signed = with_confirmation_tag(signed, b"\xc7" * 32)
        return signed

    def send_private(
        self,
        body: ContentBody,
        *,
        sender: int = SENDER,
        tree: SecretTree | None = None,
        authenticated_data: bytes = b"",
        padding: Callable[[int], int] | None = None,
    ) -> PrivateMessage:
        content = self.content(body, Sender.member(sender), authenticated_data)
        signed = self.sign(content, WireFormat.MLS_PRIVATE_MESSAGE)
        extra = {} if padding is None else {"padding": padding}
        return protect_private_message(
            self.suite,
            signed,
            secret_tree=tree or self.tree(own_leaf=sender),
            sender_data_secret=self.sender_data_secret,
            **extra,
        )

    def receive_private(
        self, message: PrivateMessage, tree: SecretTree | None = None
    ) -> AuthenticatedContent:
        return unprotect_private_message(
            self.suite,
            message,
            group_context=self.context,
            secret_tree=tree or self.tree(),
            sender_data_secret=self.sender_data_secret,
            member_signature_key=self.signature_key,
        )

    def send_public(self, body: ContentBody, sender: Sender | None = None) -> PublicMessage:
        signed = self.sign(self.content(body, sender), WireFormat.MLS_PUBLIC_MESSAGE)
        return protect_public_message(
            self.suite, signed, group_context=self.context, membership_key=self.membership_key
        )

    def receive_public(self, message: PublicMessage) -> AuthenticatedContent:
        return unprotect_public_message(
            self.suite,
            message,
            group_context=self.context,
            membership_key=self.membership_key,
            member_signature_key=self.signature_key,
        )

    def membership_tag(self, message: PublicMessage) -> bytes:
        """``MAC(membership_key, AuthenticatedContentTBM)`` of a member's message, by hand."""
        tbs = FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, message.content, self.context)
        tbm = AuthenticatedContentTBM(tbs, message.auth)
        return membership_tag(self.suite, self.membership_key, encode(tbm))

    def seal(
        self,
        plaintext: bytes,
        *,
        content_type: ContentType = ContentType.APPLICATION,
        leaf: int = SENDER,
        ratchet: RatchetType | None = None,
        reuse_guard: bytes = b"\x01\x02\x03\x04",
        sender_data: bytes | None = None,
    ) -> PrivateMessage:
        """A PrivateMessage encrypting ``plaintext`` as §6.3 says, whatever the plaintext is:
        the next key of ``leaf``'s ``ratchet`` from a fresh sender tree."""
        if ratchet is None:
            application = content_type == ContentType.APPLICATION
            ratchet = RatchetType.APPLICATION if application else RatchetType.HANDSHAKE
        sender_leaf = leaf if 0 <= leaf < N_LEAVES else SENDER
        key = self.tree(own_leaf=sender_leaf).next_encryption_key(ratchet)
        group_id, epoch = self.context.group_id, self.context.epoch
        ciphertext = self.suite.aead_seal(
            key.key,
            _xor_guard(key, reuse_guard),
            encode(PrivateContentAAD(group_id, epoch, content_type, b"")),
            plaintext,
        )
        if sender_data is None:
            sender_data = encode(SenderData(leaf, key.generation, reuse_guard))
        sd_key, sd_nonce = sender_data_key_and_nonce(
            self.suite, self.sender_data_secret, ciphertext
        )
        encrypted_sender_data = self.suite.aead_seal(
            sd_key, sd_nonce, encode(SenderDataAAD(group_id, epoch, content_type)), sender_data
        )
        return PrivateMessage(group_id, epoch, content_type, b"", encrypted_sender_data, ciphertext)

    def plaintext(self, body: ContentBody, sender: int = SENDER) -> bytes:
        """The encoded PrivateMessageContent (no padding) of a correctly signed ``body``."""
        signed = self.sign(
            self.content(body, Sender.member(sender)), WireFormat.MLS_PRIVATE_MESSAGE
        )
        writer = Writer()
        PrivateMessageContent(body, signed.auth).encode(writer)
        return writer.getvalue()


def _xor_guard(key: RatchetKey, reuse_guard: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(key.nonce[:4], reuse_guard, strict=True)) + key.nonce[4:]


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture
def epoch(backend: CryptoBackend) -> Epoch:
    return Epoch.make(backend)


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [APPLICATION, PROPOSAL, COMMIT], ids=["application", "proposal", "commit"]
)
def test_private_messages_of_every_content_type_round_trip(epoch: Epoch, body: ContentBody) -> None:
    message = epoch.send_private(body, authenticated_data=b"visible to the relay")
    assert message.content_type == epoch.content(body).content_type
    assert message.authenticated_data == b"visible to the relay"
    wire = decode(MLSMessage, encode(MLSMessage(message))).body
    assert isinstance(wire, PrivateMessage)
    received = epoch.receive_private(wire)
    assert received.wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    assert received.content == epoch.content(body, authenticated_data=b"visible to the relay")
    if body is COMMIT:
        assert received.auth.confirmation_tag == b"\xc7" * 32


@pytest.mark.parametrize("body", [PROPOSAL, COMMIT], ids=["proposal", "commit"])
def test_public_handshake_messages_round_trip(epoch: Epoch, body: ContentBody) -> None:
    message = epoch.send_public(body)
    assert message.membership_tag == epoch.membership_tag(message)
    wire = decode(MLSMessage, encode(MLSMessage(message))).body
    assert isinstance(wire, PublicMessage)
    received = epoch.receive_public(wire)
    assert (received.wire_format, received.content) == (
        WireFormat.MLS_PUBLIC_MESSAGE,
        epoch.content(body),
    )


def test_messages_from_several_members_out_of_order(epoch: Epoch) -> None:
    tree_1, tree_3 = epoch.tree(own_leaf=1), epoch.tree(own_leaf=3)
    sent = [
        (1, epoch.send_private(b"one-0", sender=1, tree=tree_1)),
        (3, epoch.send_private(b"three-0", sender=3, tree=tree_3)),
        (1, epoch.send_private(b"one-1", sender=1, tree=tree_1)),
        (1, epoch.send_private(PROPOSAL, sender=1, tree=tree_1)),
        (3, epoch.send_private(b"three-1", sender=3, tree=tree_3)),
    ]
    receiver = epoch.tree()
    for leaf, message in reversed(sent):
        received = epoch.receive_private(message, receiver)
        assert received.content.sender == Sender.member(leaf)
    assert receiver.ratchet(1, RatchetType.APPLICATION).next_generation == 2
    assert receiver.ratchet(1, RatchetType.HANDSHAKE).next_generation == 1


def test_the_reuse_guard_is_xored_into_the_nonce(backend: CryptoBackend) -> None:
    guard = b"\xa1\xb2\xc3\xd4"
    provider = CryptoProvider(backend, random=lambda n: (guard * n)[:n])
    epoch = Epoch(CipherSuite(1, provider), Epoch.make(backend).context)
    message = epoch.send_private(APPLICATION, padding=no_padding)
    key = epoch.tree(own_leaf=SENDER).next_encryption_key(RatchetType.APPLICATION)
    aad = encode(PrivateContentAAD(message.group_id, message.epoch, message.content_type, b""))
    plaintext = epoch.suite.aead_open(key.key, _xor_guard(key, guard), aad, message.ciphertext)
    assert plaintext == epoch.plaintext(APPLICATION)
    with pytest.raises(AeadAuthenticationError):
        epoch.suite.aead_open(key.key, key.nonce, aad, message.ciphertext)


def test_padding_policies_set_the_ciphertext_size(epoch: Epoch) -> None:
    unpadded = len(epoch.plaintext(APPLICATION))
    tag = 16
    plain = epoch.send_private(APPLICATION, padding=no_padding)
    assert len(plain.ciphertext) == unpadded + tag
    default = epoch.send_private(APPLICATION)
    assert len(default.ciphertext) - tag == -(-unpadded // 32) * 32
    big = epoch.send_private(APPLICATION, padding=pad_to_multiple(1024))
    assert len(big.ciphertext) == 1024 + tag
    for message in (plain, default, big):
        assert epoch.receive_private(message).content.body == APPLICATION
    with pytest.raises(UsageError, match="at least 1 byte"):
        pad_to_multiple(0)
    with pytest.raises(UsageError, match="-3 bytes of padding"):
        epoch.send_private(APPLICATION, padding=lambda length: -3)


def test_external_and_new_member_senders_are_verified_with_their_own_keys(
    backend: CryptoBackend,
) -> None:
    external_priv, external_pub = _signature_key_pair(backend.name, 0x40)
    joiner_priv, joiner_pub = _signature_key_pair(backend.name, 0x41)
    credential = Credential.basic(b"moderator bot")
    extension = Extension(
        ExtensionType.EXTERNAL_SENDERS,
        encode_external_senders([ExternalSender(external_pub, credential)]),
    )
    epoch = Epoch.make(backend, extensions=[extension])
    leaf = replace(_sample_key_package().leaf_node, signature_key=joiner_pub)
    key_package = replace(_sample_key_package(), leaf_node=leaf)
    add = Proposal(Add(key_package))
    external_commit = Commit(path=UpdatePath(leaf))
    cases: list[tuple[Sender, ContentBody, bytes]] = [
        (Sender.external(0), PROPOSAL, external_priv),
        (Sender.new_member_proposal(), add, joiner_priv),
        (Sender.new_member_commit(), external_commit, joiner_priv),
    ]
    for sender, body, private_key in cases:
        signed = epoch.sign(epoch.content(body, sender), WireFormat.MLS_PUBLIC_MESSAGE, private_key)
        message = protect_public_message(epoch.suite, signed, group_context=epoch.context)
        assert message.membership_tag is None
        assert epoch.receive_public(message).content == signed.content
        forged = epoch.sign(
            epoch.content(body, sender), WireFormat.MLS_PUBLIC_MESSAGE, epoch.key_pair(1)[0]
        )
        with pytest.raises(ValidationError) as excinfo:
            epoch.receive_public(
                protect_public_message(epoch.suite, forged, group_context=epoch.context)
            )
        assert excinfo.value.check == "framed_content.signature"


@functools.cache
def _sample_key_package() -> KeyPackage:
    case = load_json(MLS_VECTORS / "welcome.json")[0]
    key_package = decode(MLSMessage, h(case["key_package"])).body
    assert isinstance(key_package, KeyPackage)
    return key_package


# -- one broken rule each: PublicMessage --------------------------------------------------------


def test_a_tampered_membership_tag_is_refused(epoch: Epoch) -> None:
    message = epoch.send_public(PROPOSAL)
    assert message.membership_tag is not None
    tampered = replace(message, membership_tag=_flip(message.membership_tag, 31))
    with pytest.raises(ValidationError, match=r"membership_tag .* \(RFC 9420 §6\.2\)") as excinfo:
        epoch.receive_public(tampered)
    assert excinfo.value.check == "public_message.membership_tag"
    other_key = replace(epoch, membership_key=b"\x00" * 32)
    with pytest.raises(ValidationError) as excinfo:
        other_key.receive_public(message)
    assert excinfo.value.check == "public_message.membership_tag"


def test_a_tampered_public_signature_is_refused(epoch: Epoch) -> None:
    message = epoch.send_public(PROPOSAL)
    auth = replace(message.auth, signature=_flip(message.auth.signature, 0))
    tampered = replace(message, auth=auth)
    tampered = replace(tampered, membership_tag=epoch.membership_tag(tampered))
    with pytest.raises(ValidationError, match=r"member leaf 1 does not verify") as excinfo:
        epoch.receive_public(tampered)
    assert (excinfo.value.check, excinfo.value.section) == ("framed_content.signature", "6.1")


def test_a_signature_by_another_member_is_refused(epoch: Epoch) -> None:
    signed = epoch.sign(
        epoch.content(PROPOSAL), WireFormat.MLS_PUBLIC_MESSAGE, epoch.key_pair(3)[0]
    )
    message = protect_public_message(
        epoch.suite, signed, group_context=epoch.context, membership_key=epoch.membership_key
    )
    with pytest.raises(ValidationError) as excinfo:
        epoch.receive_public(message)
    assert excinfo.value.check == "framed_content.signature"


def test_content_signed_for_private_is_not_valid_in_public(epoch: Epoch) -> None:
    signed = epoch.sign(epoch.content(PROPOSAL), WireFormat.MLS_PRIVATE_MESSAGE)
    with pytest.raises(UsageError, match="signature covers the wire format"):
        protect_public_message(
            epoch.suite, signed, group_context=epoch.context, membership_key=epoch.membership_key
        )
    message = PublicMessage(signed.content, signed.auth, b"")
    message = replace(message, membership_tag=epoch.membership_tag(message))
    with pytest.raises(ValidationError) as excinfo:
        epoch.receive_public(message)
    assert excinfo.value.check == "framed_content.signature"


@pytest.mark.parametrize(
    ("change", "check"),
    [({"epoch": 8}, "message.epoch"), ({"group_id": b"another group"}, "message.group_id")],
    ids=["epoch", "group_id"],
)
def test_public_messages_of_another_epoch_or_group_are_refused(
    epoch: Epoch, change: dict[str, Any], check: str
) -> None:
    message = epoch.send_public(PROPOSAL)
    receiver = replace(epoch, context=replace(epoch.context, **change))
    with pytest.raises(ValidationError) as excinfo:
        receiver.receive_public(message)
    assert excinfo.value.check == check


def test_application_data_is_never_a_public_message(epoch: Epoch) -> None:
    signed = epoch.sign(epoch.content(APPLICATION), WireFormat.MLS_PUBLIC_MESSAGE)
    with pytest.raises(UsageError, match="must be sent as PrivateMessage"):
        protect_public_message(
            epoch.suite, signed, group_context=epoch.context, membership_key=epoch.membership_key
        )
    # Built by hand, with a valid tag and signature, it is still refused on receipt.
    message = PublicMessage(signed.content, signed.auth, b"")
    message = replace(message, membership_tag=epoch.membership_tag(message))
    with pytest.raises(ValidationError, match=r"must be encrypted \(RFC 9420 §6\)") as excinfo:
        epoch.receive_public(message)
    assert excinfo.value.check == "public_message.application"


@pytest.mark.parametrize(
    ("sender", "body", "message"),
    [
        (Sender.external(0), COMMIT, "external sender may send only proposals"),
        (Sender.external(0), Proposal(Update(_sample_key_package().leaf_node)), "update proposal"),
        (Sender.new_member_commit(), PROPOSAL, "new_member_commit sender may send only a commit"),
        (Sender.new_member_proposal(), PROPOSAL, "only an Add, not a remove proposal"),
        (Sender.new_member_commit(), COMMIT, "external commit must have an update path"),
        (Sender.external(0), PROPOSAL, "no external_senders extension"),
    ],
    ids=[
        "external-commit",
        "external-update",
        "nmc-proposal",
        "nmp-remove",
        "nmc-no-path",
        "no-ext",
    ],
)
def test_senders_may_send_only_their_content_types(
    epoch: Epoch, sender: Sender, body: ContentBody, message: str
) -> None:
    signed = epoch.sign(epoch.content(body, sender), WireFormat.MLS_PUBLIC_MESSAGE, b"\x01" * 32)
    public = protect_public_message(epoch.suite, signed, group_context=epoch.context)
    with pytest.raises(ValidationError, match=message) as excinfo:
        epoch.receive_public(public)
    assert excinfo.value.check == "framed_content.sender"


def test_a_member_sender_at_a_blank_leaf_is_refused(epoch: Epoch) -> None:
    signed = epoch.sign(
        epoch.content(PROPOSAL, Sender.member(BLANK_LEAF)),
        WireFormat.MLS_PUBLIC_MESSAGE,
        b"\x02" * 32,
    )
    message = protect_public_message(
        epoch.suite, signed, group_context=epoch.context, membership_key=epoch.membership_key
    )
    with pytest.raises(ValidationError, match="leaf 2 is blank") as excinfo:
        epoch.receive_public(message)
    assert excinfo.value.check == "framed_content.sender"


# -- one broken rule each: PrivateMessage -------------------------------------------------------


def test_a_tampered_private_signature_is_refused_and_keeps_the_key(epoch: Epoch) -> None:
    forged = epoch.seal(epoch.plaintext(APPLICATION, sender=3))  # leaf 3 signed, leaf 1 named
    receiver = epoch.tree()
    with pytest.raises(ValidationError, match="member leaf 1 does not verify") as excinfo:
        epoch.receive_private(forged, receiver)
    assert excinfo.value.check == "framed_content.signature"
    # The forgery used generation 0 of leaf 1; the genuine message there still decrypts.
    genuine = epoch.send_private(APPLICATION)
    assert epoch.receive_private(genuine, receiver).content.body == APPLICATION


@pytest.mark.parametrize(
    ("change", "check"),
    [({"epoch": 8}, "message.epoch"), ({"group_id": b"another group"}, "message.group_id")],
    ids=["epoch", "group_id"],
)
def test_private_messages_of_another_epoch_or_group_are_refused(
    epoch: Epoch, change: dict[str, Any], check: str
) -> None:
    message = epoch.send_private(APPLICATION)
    receiver = replace(epoch, context=replace(epoch.context, **change))
    with pytest.raises(ValidationError) as excinfo:
        receiver.receive_private(message)
    assert excinfo.value.check == check
    # Relabelled to the receiver's group and epoch, the AAD no longer matches.
    relabelled = replace(message, **change)
    with pytest.raises(ProtocolError) as relabelled_error:
        receiver.receive_private(relabelled)
    assert relabelled_error.value.check == "private_message.sender_data"


def test_tampered_sender_data_is_refused(epoch: Epoch) -> None:
    message = epoch.send_private(APPLICATION)
    tampered = replace(message, encrypted_sender_data=_flip(message.encrypted_sender_data, 2))
    with pytest.raises(ProtocolError, match=r"RFC 9420 §6\.3\.2") as excinfo:
        epoch.receive_private(tampered)
    assert excinfo.value.check == "private_message.sender_data"
    # The sender-data key comes from the first KDF.Nh bytes of the ciphertext.
    resampled = replace(message, ciphertext=_flip(message.ciphertext, 0))
    with pytest.raises(ProtocolError) as excinfo:
        epoch.receive_private(resampled)
    assert excinfo.value.check == "private_message.sender_data"
    wrong_secret = replace(epoch, sender_data_secret=b"\x00" * 32)
    with pytest.raises(ProtocolError) as excinfo:
        wrong_secret.receive_private(message)
    assert excinfo.value.check == "private_message.sender_data"


def test_malformed_sender_data_is_refused(epoch: Epoch) -> None:
    message = epoch.seal(epoch.plaintext(APPLICATION), sender_data=b"\x00" * 11)
    with pytest.raises(ProtocolError, match="SenderData is malformed") as excinfo:
        epoch.receive_private(message)
    assert excinfo.value.check == "private_message.sender_data"


@pytest.mark.parametrize(
    ("leaf", "why"), [(4, "outside the tree of 4"), (0xFFFFFFFF, "outside"), (BLANK_LEAF, "blank")]
)
def test_a_sender_leaf_out_of_range_or_blank_is_refused(epoch: Epoch, leaf: int, why: str) -> None:
    message = epoch.seal(epoch.plaintext(APPLICATION), leaf=leaf)
    with pytest.raises(ValidationError, match=why) as excinfo:
        epoch.receive_private(message)
    assert (excinfo.value.check, excinfo.value.section) == (
        "private_message.sender_leaf_index",
        "6.3.2",
    )


def test_tampered_ciphertext_is_refused_and_keeps_the_key(epoch: Epoch) -> None:
    message = epoch.send_private(APPLICATION)
    tampered = replace(message, ciphertext=_flip(message.ciphertext, len(message.ciphertext) - 1))
    receiver = epoch.tree()
    with pytest.raises(
        ProtocolError, match="application generation 0, does not decrypt"
    ) as excinfo:
        epoch.receive_private(tampered, receiver)
    assert excinfo.value.check == "private_message.aead"
    assert epoch.receive_private(message, receiver).content.body == APPLICATION


def test_non_zero_padding_is_refused_even_when_encrypted_correctly(epoch: Epoch) -> None:
    plaintext = epoch.plaintext(APPLICATION)
    assert epoch.receive_private(epoch.seal(plaintext + bytes(20))).content.body == APPLICATION
    message = epoch.seal(plaintext + b"\x00\x00\x00\x80" + bytes(16))
    receiver = epoch.tree()
    padding_error = r"non-zero byte 0x80 .* \(RFC 9420 §6\.3\.1\)"
    with pytest.raises(ProtocolError, match=padding_error) as excinfo:
        epoch.receive_private(message, receiver)
    assert excinfo.value.check == "private_message.padding"
    assert epoch.receive_private(epoch.seal(plaintext), receiver).content.body == APPLICATION


def test_malformed_content_inside_a_correct_encryption_is_refused(epoch: Epoch) -> None:
    # A proposal-typed message whose plaintext is an application body.
    message = epoch.seal(epoch.plaintext(APPLICATION), content_type=ContentType.PROPOSAL)
    with pytest.raises(ProtocolError, match="PrivateMessageContent is malformed") as excinfo:
        epoch.receive_private(message)
    assert excinfo.value.check == "private_message.content"


def test_a_replayed_message_is_refused(epoch: Epoch) -> None:
    message = epoch.send_private(APPLICATION)
    receiver = epoch.tree()
    epoch.receive_private(message, receiver)
    with pytest.raises(GenerationReusedError, match=r"generation 0 .* already used") as excinfo:
        epoch.receive_private(message, receiver)
    assert excinfo.value.check == "secret_tree.generation_reused"


def test_a_changed_content_type_is_refused(epoch: Epoch) -> None:
    message = epoch.send_private(APPLICATION)
    relabelled = replace(message, content_type=ContentType.PROPOSAL)
    with pytest.raises(ProtocolError) as excinfo:
        epoch.receive_private(relabelled)
    assert excinfo.value.check == "private_message.sender_data"
    # Application content encrypted with the handshake ratchet does not open as application.
    wrong_ratchet = epoch.seal(epoch.plaintext(APPLICATION), ratchet=RatchetType.HANDSHAKE)
    with pytest.raises(ProtocolError) as excinfo:
        epoch.receive_private(wrong_ratchet)
    assert excinfo.value.check == "private_message.aead"


def test_misuse_of_the_sending_side_is_a_usage_error(epoch: Epoch) -> None:
    signed = epoch.sign(epoch.content(APPLICATION), WireFormat.MLS_PRIVATE_MESSAGE)
    with pytest.raises(UsageError, match="belongs to leaf 3"):
        protect_private_message(
            epoch.suite, signed, secret_tree=epoch.tree(own_leaf=3), sender_data_secret=b""
        )
    public = epoch.sign(epoch.content(APPLICATION), WireFormat.MLS_PUBLIC_MESSAGE)
    with pytest.raises(UsageError, match="signature covers the wire format"):
        protect_private_message(
            epoch.suite, public, secret_tree=epoch.tree(own_leaf=1), sender_data_secret=b""
        )
    unconfirmed = sign_framed_content(
        epoch.suite,
        b"\x01" * 32,
        WireFormat.MLS_PRIVATE_MESSAGE,
        epoch.content(COMMIT),
        epoch.context,
    )
    with pytest.raises(UsageError, match="needs its confirmation tag"):
        protect_private_message(
            epoch.suite, unconfirmed, secret_tree=epoch.tree(own_leaf=1), sender_data_secret=b""
        )
    with pytest.raises(UsageError, match="signs over the group context"):
        sign_framed_content(
            epoch.suite, b"\x01" * 32, WireFormat.MLS_PUBLIC_MESSAGE, epoch.content(PROPOSAL)
        )
    with pytest.raises(UsageError, match="not those of group_context"):
        sign_framed_content(
            epoch.suite,
            b"\x01" * 32,
            WireFormat.MLS_PUBLIC_MESSAGE,
            replace(epoch.content(PROPOSAL), epoch=6),
            epoch.context,
        )
    with pytest.raises(UsageError, match="only a commit"):
        with_confirmation_tag(public, b"")


def test_verify_framed_content_checks_the_group_context(epoch: Epoch) -> None:
    signed = epoch.sign(epoch.content(PROPOSAL), WireFormat.MLS_PUBLIC_MESSAGE)
    public_key = epoch.signature_key(SENDER)
    assert public_key is not None
    verify_framed_content(epoch.suite, public_key, signed, epoch.context)
    other = replace(epoch.context, tree_hash=b"\x00" * 32)
    with pytest.raises(ValidationError) as excinfo:
        verify_framed_content(epoch.suite, public_key, signed, other)
    assert excinfo.value.check == "framed_content.signature"


# -- fuzzing -----------------------------------------------------------------------------------


@functools.cache
def _fuzz_epoch() -> Epoch:
    return Epoch.make(get_backend())


@functools.cache
def _fuzz_seeds() -> tuple[bytes, ...]:
    epoch = _fuzz_epoch()
    seeds = [encode(MLSMessage(epoch.send_public(body))) for body in (PROPOSAL, COMMIT)]
    seeds += [
        encode(MLSMessage(epoch.send_private(body, padding=pad_to_multiple(8))))
        for body in (APPLICATION, PROPOSAL, COMMIT)
    ]
    return tuple(seeds)


@st.composite
def _mutated(draw: st.DrawFn, seeds: Callable[[], tuple[bytes, ...]]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at]
    return bytes(data)


@st.composite
def _content_plaintexts(draw: st.DrawFn) -> tuple[ContentType, bytes]:
    """A mutated PrivateMessageContent, for encryption under the right key."""
    epoch = _fuzz_epoch()
    bodies: list[ContentBody] = [APPLICATION, PROPOSAL, COMMIT]
    body = draw(st.sampled_from(bodies))
    content_type = draw(st.sampled_from(list(ContentType)))
    plaintext = bytearray(epoch.plaintext(body) + bytes(draw(st.integers(0, 8))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(plaintext) - 1))
        plaintext[at] ^= draw(st.integers(1, 255))
    return content_type, bytes(plaintext)


def _unprotect(epoch: Epoch, message: PublicMessage | PrivateMessage) -> None:
    """Unprotect, accepting success or a typed protocol error, nothing else."""
    try:
        if isinstance(message, PublicMessage):
            epoch.receive_public(message)
        else:
            epoch.receive_private(message)
    except ProtocolError as exc:
        assert exc.check


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), _mutated(_fuzz_seeds)))
def test_random_and_mutated_messages_give_only_typed_errors(data: bytes) -> None:
    try:
        message = decode(MLSMessage, data).body
    except DecodeError:
        return
    if isinstance(message, PublicMessage | PrivateMessage):
        _unprotect(_fuzz_epoch(), message)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_fuzz_seeds))
def test_mutated_public_messages_with_a_valid_tag_give_only_typed_errors(data: bytes) -> None:
    """Re-tagging with the membership key lets the mutation reach the deeper checks."""
    epoch = _fuzz_epoch()
    try:
        message = decode(MLSMessage, data).body
    except DecodeError:
        return
    if isinstance(message, PublicMessage) and message.membership_tag is not None:
        _unprotect(epoch, replace(message, membership_tag=epoch.membership_tag(message)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _content_plaintexts(),
    st.one_of(st.none(), st.binary(max_size=16)),
    st.integers(0, 5),
)
def test_mutated_plaintexts_encrypted_correctly_give_only_typed_errors(
    typed_plaintext: tuple[ContentType, bytes], sender_data: bytes | None, leaf: int
) -> None:
    """Encrypting the mutations reaches sender-data, content and padding decoding."""
    epoch = _fuzz_epoch()
    content_type, plaintext = typed_plaintext
    _unprotect(
        epoch, epoch.seal(plaintext, content_type=content_type, leaf=leaf, sender_data=sender_data)
    )


def test_fuzz_seeds_are_valid(epoch: Epoch) -> None:
    fuzz_epoch = _fuzz_epoch()
    for data in _fuzz_seeds():
        message = decode(MLSMessage, data).body
        assert isinstance(message, PublicMessage | PrivateMessage)
        if isinstance(message, PublicMessage):
            fuzz_epoch.receive_public(message)
        else:
            fuzz_epoch.receive_private(message)
