"""The wire structures of RFC 9420: the working group's ``messages.json`` round-trips, and
malformed input — truncated, extended, with an unknown selector or non-zero padding, or
random — gives a :class:`DecodeError` and nothing else. Also the signature helpers, against
the ``tree-validation.json`` and ``welcome.json`` vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file
from support import MLS_VECTORS, VECTOR_COUNTS, h, load_json

from veilpost.codec import (
    DecodeError,
    EncodeError,
    Reader,
    Struct,
    Writer,
    decode,
    encode,
    encode_varint,
)
from veilpost.crypto import SUPPORTED_CIPHER_SUITES, CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.commit import Commit
from veilpost.mls.credential import Certificate, Credential
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.extensions import (
    ExternalPub,
    ExternalSender,
    RequiredCapabilities,
    decode_external_senders,
    encode_external_senders,
)
from veilpost.mls.framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    ContentType,
    FramedContent,
    FramedContentAuthData,
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
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from veilpost.mls.nodes import Node, ParentNode, decode_ratchet_tree, encode_ratchet_tree
from veilpost.mls.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalBody,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
)
from veilpost.mls.update_path import HPKECiphertext, UpdatePath, UpdatePathNode
from veilpost.mls.vectors import CHECKERS, VectorMismatch
from veilpost.mls.vectors.messages import FIELDS, WIRE_FORMATS, check_messages
from veilpost.mls.welcome import EncryptedGroupSecrets, GroupSecrets, Welcome

VECTORS = load_json(MLS_VECTORS / "messages.json")
B = TypeVar("B")


def decode_field(name: str, data: bytes) -> Any:
    """Decode a ``messages.json`` field with the type the checker uses, all bytes."""
    read, _ = FIELDS[name]
    reader = Reader(data)
    value = read(reader)
    reader.finish(name)
    return value


def message_body(data: bytes, cls: type[B]) -> B:
    """The body of an encoded MLSMessage, which must be a ``cls``."""
    body = decode(MLSMessage, data).body
    assert isinstance(body, cls)
    return body


@dataclass(frozen=True)
class Sample:
    """One ``messages.json`` case: its bytes and the structures decoded from them."""

    raw: dict[str, bytes]
    welcome: Welcome
    group_info: GroupInfo
    key_package: KeyPackage
    public: dict[ContentType, PublicMessage]
    private: PrivateMessage
    commit: Commit
    update: Update
    group_secrets: GroupSecrets

    @classmethod
    def of(cls, case: dict[str, str]) -> Sample:
        raw = {name: h(value) for name, value in case.items()}
        public = {
            t: message_body(raw[f"public_message_{t.name.lower()}"], PublicMessage)
            for t in ContentType
        }
        return cls(
            raw,
            message_body(raw["mls_welcome"], Welcome),
            message_body(raw["mls_group_info"], GroupInfo),
            message_body(raw["mls_key_package"], KeyPackage),
            public,
            message_body(raw["private_message"], PrivateMessage),
            decode(Commit, raw["commit"]),
            decode(Update, raw["update_proposal"]),
            decode(GroupSecrets, raw["group_secrets"]),
        )


SAMPLES = [Sample.of(case) for case in VECTORS[:2]]
FIRST = SAMPLES[0]


def opaque_size(value: bytes) -> int:
    """Encoded size of ``opaque value<V>``."""
    return len(encode_varint(len(value))) + len(value)


# -- the vectors ---------------------------------------------------------------------------


def test_messages_vectors() -> None:
    assert CHECKERS["messages"] is check_messages
    assert run_vector_file("messages", None) == {None}
    assert VECTOR_COUNTS["mls messages.json"]["passed"] == len(VECTORS) == 300


def test_checker_reports_a_mismatch() -> None:
    case = dict(VECTORS[0])
    case["remove_proposal"] += "00"
    with pytest.raises(VectorMismatch, match="remove_proposal does not decode: 1 trailing bytes"):
        check_messages(case, CryptoProvider("pure"))


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_truncation_and_any_trailing_byte_is_a_decode_error(name: str) -> None:
    for sample in SAMPLES:
        data = sample.raw[name]
        for cut in range(len(data)):
            with pytest.raises(DecodeError):
                decode_field(name, data[:cut])
        with pytest.raises(DecodeError, match="1 trailing bytes"):
            decode_field(name, data + b"\x00")


# -- unknown selectors: each names the field that failed, and where -----------------------

HEADER = 4  # MLSMessage.version and MLSMessage.wire_format


def _content_type_offset(message: PublicMessage) -> int:
    content = message.content
    return (
        HEADER
        + opaque_size(content.group_id)
        + 8  # epoch
        + len(encode(content.sender))
        + opaque_size(content.authenticated_data)
    )


def _proposals_vector_sizes(commit: Commit) -> tuple[int, int]:
    """(size of the length prefix, size of the whole vector) of a commit's proposals."""
    length = sum(len(encode(p)) for p in commit.proposals)
    prefix = len(encode_varint(length))
    return prefix, prefix + length


_LEAF = FIRST.key_package.leaf_node
_UPDATE_LEAF = FIRST.update.leaf_node
_TREE_PREFIX = 1 << (FIRST.raw["ratchet_tree"][0] >> 6)  # size of the vector's length
assert FIRST.commit.proposals and FIRST.commit.path is not None
assert FIRST.raw["ratchet_tree"][_TREE_PREFIX] == 1  # the first node (leaf 0) is present
assert FIRST.group_secrets.path_secret is not None

SELECTORS = [
    # vector field, field named in the error, offset, width, bad values
    ("mls_welcome", "MLSMessage.wire_format", 2, 2, [0, 6, 0xF000]),
    (
        "public_message_commit",
        "Sender.sender_type",
        HEADER + opaque_size(FIRST.public[ContentType.COMMIT].content.group_id) + 8,
        1,
        [0, 5, 255],
    ),
    (
        "public_message_application",
        "FramedContent.content_type",
        _content_type_offset(FIRST.public[ContentType.APPLICATION]),
        1,
        [0, 4, 255],
    ),
    (
        "private_message",
        "PrivateMessage.content_type",
        HEADER + opaque_size(FIRST.private.group_id) + 8,
        1,
        [0, 4],
    ),
    (
        "public_message_proposal",
        "Proposal.proposal_type",
        _content_type_offset(FIRST.public[ContentType.PROPOSAL]) + 1,
        2,
        [0, 8, 0x0A0A],
    ),
    (
        "mls_key_package",
        "Credential.credential_type",
        HEADER
        + 4  # KeyPackage.version, KeyPackage.cipher_suite
        + opaque_size(FIRST.key_package.init_key)
        + opaque_size(_LEAF.encryption_key)
        + opaque_size(_LEAF.signature_key),
        2,
        [0, 3, 0x0A0A],
    ),
    ("ratchet_tree", "Node.node_type", _TREE_PREFIX + 1, 1, [0, 3]),
    ("pre_shared_key_proposal", "psktype", 0, 1, [0, 3]),
    (
        "update_proposal",
        "LeafNode.leaf_node_source",
        opaque_size(_UPDATE_LEAF.encryption_key)
        + opaque_size(_UPDATE_LEAF.signature_key)
        + len(encode(_UPDATE_LEAF.credential))
        + len(encode(_UPDATE_LEAF.capabilities)),
        1,
        [0, 4],
    ),
    ("commit", "ProposalOrRef.type", _proposals_vector_sizes(FIRST.commit)[0], 1, [0, 3]),
]


@pytest.mark.parametrize(
    ("name", "field", "offset", "width", "values"), SELECTORS, ids=[s[1] for s in SELECTORS]
)
def test_unknown_selector_is_a_decode_error_naming_the_field(
    name: str, field: str, offset: int, width: int, values: list[int]
) -> None:
    data = bytearray(FIRST.raw[name])
    for value in values:
        data[offset : offset + width] = value.to_bytes(width, "big")
        with pytest.raises(DecodeError) as excinfo:
            decode_field(name, bytes(data))
        message = str(excinfo.value)
        assert field in message and f" {value}" in message and f"offset {offset}" in message


@pytest.mark.parametrize(
    ("name", "field", "offset"),
    [
        ("commit", "Commit.path", _proposals_vector_sizes(FIRST.commit)[1]),
        (
            "group_secrets",
            "GroupSecrets.path_secret",
            opaque_size(FIRST.group_secrets.joiner_secret),
        ),
    ],
)
def test_invalid_presence_octet_is_a_decode_error_naming_the_field(
    name: str, field: str, offset: int
) -> None:
    data = bytearray(FIRST.raw[name])
    assert data[offset] == 1
    for value in (2, 255):
        data[offset] = value
        with pytest.raises(
            DecodeError, match=rf"invalid presence octet {value} in {field} at offset {offset}"
        ):
            decode_field(name, bytes(data))


def test_only_mls10_messages_decode() -> None:
    data = bytearray(FIRST.raw["mls_key_package"])
    data[0:2] = b"\x00\x02"
    with pytest.raises(DecodeError, match=r"MLSMessage\.version 2 at offset 0"):
        decode(MLSMessage, bytes(data))


# -- padding of PrivateMessageContent (§6.3.1) ---------------------------------------------


def _private_content() -> PrivateMessageContent:
    message = FIRST.public[ContentType.COMMIT]
    return PrivateMessageContent(message.content.body, message.auth, padding=6)


def encode_plaintext(content: PrivateMessageContent) -> bytes:
    """Encode a PrivateMessageContent (not a standalone struct: its decoding needs a type)."""
    writer = Writer()
    content.encode(writer)
    return writer.getvalue()


def test_private_message_content_round_trips_with_its_padding() -> None:
    content = _private_content()
    data = encode_plaintext(content)
    assert data.endswith(bytes(6))
    assert PrivateMessageContent.decode(Reader(data), ContentType.COMMIT) == content
    # Cutting into the padding leaves a shorter padding; cutting into the auth data fails.
    unpadded = len(data) - 6
    for cut in range(len(data)):
        if cut >= unpadded:
            decoded = PrivateMessageContent.decode(Reader(data[:cut]), ContentType.COMMIT)
            assert decoded == replace(content, padding=cut - unpadded)
        else:
            with pytest.raises(DecodeError):
                PrivateMessageContent.decode(Reader(data[:cut]), ContentType.COMMIT)


@pytest.mark.parametrize("position", [0, 3, 5])
def test_non_zero_padding_is_a_decode_error(position: int) -> None:
    data = bytearray(encode_plaintext(_private_content()))
    at = len(data) - 6 + position
    data[at] = 0x01
    with pytest.raises(
        DecodeError, match=rf"non-zero byte 0x01 in PrivateMessageContent\.padding at offset {at}"
    ):
        PrivateMessageContent.decode(Reader(bytes(data)), ContentType.COMMIT)


# -- every decoder sees random and mutated input -------------------------------------------

Codec = tuple[Callable[[bytes], Any], Callable[[Any], bytes]]


def _struct(cls: type[Struct]) -> Codec:
    return (lambda data: decode(cls, data)), encode


def _with_content_type(cls: Any, content_type: ContentType) -> Codec:
    def decode_all(data: bytes) -> Any:
        reader = Reader(data)
        value = cls.decode(reader, content_type)
        reader.finish(cls.__name__)
        return value

    def encode_one(value: Any) -> bytes:
        writer = Writer()
        if cls is FramedContentAuthData:
            value.encode(writer, content_type)
        else:
            value.encode(writer)
        return writer.getvalue()

    return decode_all, encode_one


TYPES: dict[str, Codec] = {
    cls.__name__: _struct(cls)
    for cls in (
        MLSMessage,
        PublicMessage,
        PrivateMessage,
        FramedContent,
        AuthenticatedContent,
        FramedContentTBS,
        AuthenticatedContentTBM,
        Sender,
        SenderData,
        SenderDataAAD,
        PrivateContentAAD,
        Welcome,
        EncryptedGroupSecrets,
        GroupSecrets,
        GroupInfo,
        KeyPackage,
        LeafNode,
        Credential,
        Capabilities,
        ParentNode,
        Node,
        UpdatePath,
        UpdatePathNode,
        HPKECiphertext,
        Proposal,
        ProposalOrRef,
        Add,
        Update,
        Remove,
        PreSharedKey,
        ReInit,
        ExternalInit,
        GroupContextExtensions,
        Commit,
        RequiredCapabilities,
        ExternalPub,
        ExternalSender,
    )
}
TYPES["ratchet_tree"] = (decode_ratchet_tree, encode_ratchet_tree)
TYPES["external_senders"] = (decode_external_senders, encode_external_senders)
for _content_type in ContentType:
    _kind = _content_type.name.lower()
    TYPES[f"PrivateMessageContent[{_kind}]"] = _with_content_type(
        PrivateMessageContent, _content_type
    )
    TYPES[f"FramedContentAuthData[{_kind}]"] = _with_content_type(
        FramedContentAuthData, _content_type
    )


@cache
def seeds() -> dict[str, list[bytes]]:
    """Valid encodings of each type, taken from (or built from) the first vector cases."""
    found: dict[str, list[bytes]] = {name: [] for name in TYPES}

    def add(name: str, *values: Any) -> None:
        found[name] += [TYPES[name][1](value) for value in values]

    # The trees of messages.json hold only leaves: add one with blanks, parent nodes and
    # unmerged leaves.
    tree_data = h(load_json(MLS_VECTORS / "tree-validation.json")[13]["tree"])
    found["ratchet_tree"].append(tree_data)
    for node in decode_ratchet_tree(tree_data):
        if node is not None and isinstance(node.body, ParentNode):
            add("Node", node)
            add("ParentNode", node.body)

    for sample in SAMPLES:
        found["ratchet_tree"].append(sample.raw["ratchet_tree"])
        found["MLSMessage"] += [sample.raw[name] for name in WIRE_FORMATS]
        welcome, key_package, commit = sample.welcome, sample.key_package, sample.commit
        add("Welcome", welcome)
        add("EncryptedGroupSecrets", *welcome.secrets)
        add("HPKECiphertext", *(s.encrypted_group_secrets for s in welcome.secrets))
        add("GroupSecrets", sample.group_secrets)
        add("GroupInfo", sample.group_info)
        add("KeyPackage", key_package)
        nodes = [node for node in decode_ratchet_tree(sample.raw["ratchet_tree"]) if node]
        add("Node", *nodes)
        assert commit.path is not None
        leaves = [n.body for n in nodes if isinstance(n.body, LeafNode)]
        leaves += [key_package.leaf_node, sample.update.leaf_node, commit.path.leaf_node]
        add("LeafNode", *leaves)
        add("Credential", *(leaf.credential for leaf in leaves), Credential.x509([b"ee", b"ca"]))
        add("Capabilities", *(leaf.capabilities for leaf in leaves))
        add("UpdatePath", commit.path)
        add("UpdatePathNode", *commit.path.nodes)
        add("HPKECiphertext", *(c for n in commit.path.nodes for c in n.encrypted_path_secret))
        bodies: list[ProposalBody] = [
            decode(Add, sample.raw["add_proposal"]),
            sample.update,
            decode(Remove, sample.raw["remove_proposal"]),
            decode(PreSharedKey, sample.raw["pre_shared_key_proposal"]),
            decode(ReInit, sample.raw["re_init_proposal"]),
            decode(ExternalInit, sample.raw["external_init_proposal"]),
            decode(GroupContextExtensions, sample.raw["group_context_extensions_proposal"]),
        ]
        for body in bodies:
            add(type(body).__name__, body)
        proposals = [Proposal(body) for body in bodies]
        add("Proposal", *proposals)
        by_value = [ProposalOrRef(p) for p in proposals]
        add("ProposalOrRef", *commit.proposals, *by_value)
        add("Commit", commit, Commit(by_value))

        publics = list(sample.public.values())
        add("PublicMessage", *publics)
        add("FramedContent", *(p.content for p in publics))
        add("Sender", publics[0].content.sender, Sender.external(2), Sender.new_member_commit())
        add(
            "AuthenticatedContent",
            *(
                AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, p.content, p.auth)
                for p in publics
            ),
        )
        context = sample.group_info.group_context
        for p in publics:
            tbs = FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, p.content, context)
            add("FramedContentTBS", tbs)
            add("AuthenticatedContentTBM", AuthenticatedContentTBM(tbs, p.auth))
            kind = p.content.content_type.name.lower()
            add(f"PrivateMessageContent[{kind}]", PrivateMessageContent(p.content.body, p.auth, 3))
            add(f"FramedContentAuthData[{kind}]", p.auth)

        private = sample.private
        add("PrivateMessage", private)
        add("SenderData", SenderData(3, 70000, b"\x00\x01\x02\x03"))
        add("SenderDataAAD", SenderDataAAD(private.group_id, private.epoch, private.content_type))
        add(
            "PrivateContentAAD",
            PrivateContentAAD(private.group_id, private.epoch, private.content_type, b"aad"),
        )
        add("RequiredCapabilities", RequiredCapabilities([0x000A, 0x0A0A], [0x0008], [1, 2]))
        add("ExternalPub", ExternalPub(key_package.init_key))
        senders = [ExternalSender(leaf.signature_key, leaf.credential) for leaf in leaves[:2]]
        add("ExternalSender", *senders)
        add("external_senders", senders, [])
    return found


def test_every_type_has_seeds_that_round_trip() -> None:
    for name, (decode_one, encode_one) in TYPES.items():
        assert seeds()[name], name
        for seed in seeds()[name]:
            assert encode_one(decode_one(seed)) == seed, name


@pytest.mark.parametrize(
    "name", sorted(n for n in TYPES if not n.startswith("PrivateMessageContent"))
)
def test_every_truncation_of_every_type_is_a_decode_error(name: str) -> None:
    decode_one, _ = TYPES[name]
    for seed in seeds()[name][:3]:
        for cut in range(len(seed)):
            with pytest.raises(DecodeError):
                decode_one(seed[:cut])


MUTATION_BYTES = (0x00, 0x01, 0x02, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF)


@st.composite
def mutated(draw: st.DrawFn, valid: list[bytes]) -> bytes:
    """A seed with a few byte flips, overwrites, insertions, deletions or a truncation."""
    data = bytearray(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "insert":
            data.insert(at, draw(st.sampled_from(MUTATION_BYTES)))
        elif not data:
            continue
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from(MUTATION_BYTES))
        elif op == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TYPES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoders_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    decode_one, encode_one = TYPES[name]
    blob = data.draw(st.one_of(st.binary(max_size=64), mutated(seeds()[name])), label="input")
    try:
        value = decode_one(blob)
    except DecodeError:
        return
    assert encode_one(value) == blob


# -- encoders refuse values whose selector and fields disagree ------------------------------


_COMMIT_MESSAGE = FIRST.public[ContentType.COMMIT]
_APPLICATION_MESSAGE = FIRST.public[ContentType.APPLICATION]
assert _UPDATE_LEAF.leaf_node_source is LeafNodeSource.UPDATE

INCONSISTENT: list[tuple[Struct, str]] = [
    (replace(_COMMIT_MESSAGE, auth=FramedContentAuthData(b"sig")), "confirmation_tag goes with"),
    (
        replace(_APPLICATION_MESSAGE, auth=FramedContentAuthData(b"sig", b"tag")),
        "confirmation_tag goes with",
    ),
    (replace(_APPLICATION_MESSAGE, membership_tag=None), "membership_tag goes with"),
    (replace(_UPDATE_LEAF, lifetime=Lifetime(0, 1)), "a lifetime goes with"),
    (replace(_UPDATE_LEAF, leaf_node_source=LeafNodeSource.COMMIT), "a parent_hash goes with"),
    (replace(Sender.new_member_proposal(), index=4), "new_member_proposal Sender has no index"),
    (
        FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, _APPLICATION_MESSAGE.content, None),
        "the group context goes with",
    ),
    (replace(Credential.basic(b"alice"), certificates=[Certificate(b"c")]), "no certificates"),
]


@pytest.mark.parametrize(("value", "message"), INCONSISTENT, ids=[m for _, m in INCONSISTENT])
def test_encoders_refuse_values_whose_selector_and_fields_disagree(
    value: Struct, message: str
) -> None:
    with pytest.raises(EncodeError, match=message):
        encode(value)


# -- signatures and references ---------------------------------------------------------------


def test_leaf_node_signatures_of_tree_validation_vectors(backend: CryptoBackend) -> None:
    counts = VECTOR_COUNTS[f"mls tree-validation.json leaf signatures [{backend.name}]"]
    provider = CryptoProvider(backend)
    for case in load_json(MLS_VECTORS / "tree-validation.json"):
        tree_data = h(case["tree"])
        tree = decode_ratchet_tree(tree_data)
        assert encode_ratchet_tree(tree) == tree_data
        if case["cipher_suite"] not in SUPPORTED_CIPHER_SUITES:
            counts["skipped (suite not implemented)"] += 1
            continue
        suite = CipherSuite(case["cipher_suite"], provider)
        group_id = h(case["group_id"])
        leaves = [
            (i // 2, n.body) for i, n in enumerate(tree) if n and isinstance(n.body, LeafNode)
        ]
        for leaf_index, leaf in leaves:
            leaf.verify_signature(suite, group_id, leaf_index)
            counts["leaves verified"] += 1
        # A commit leaf's signature binds it to its group and its position (§7.2).
        leaf_index, leaf = next(
            (i, leaf) for i, leaf in leaves if leaf.leaf_node_source is LeafNodeSource.COMMIT
        )
        for wrong_group_id, wrong_index in (
            (group_id + b"!", leaf_index),
            (group_id, leaf_index + 1),
        ):
            with pytest.raises(ValidationError) as excinfo:
                leaf.verify_signature(suite, wrong_group_id, wrong_index)
            assert excinfo.value.check == "leaf_node.signature"
    assert counts["leaves verified"] == 322


def test_key_package_ref_and_signature_of_welcome_vectors(backend: CryptoBackend) -> None:
    counts = VECTOR_COUNTS[f"mls welcome.json key packages [{backend.name}]"]
    provider = CryptoProvider(backend)
    for case in load_json(MLS_VECTORS / "welcome.json"):
        if case["cipher_suite"] not in SUPPORTED_CIPHER_SUITES:
            counts["skipped (suite not implemented)"] += 1
            continue
        suite = CipherSuite(case["cipher_suite"], provider)
        key_package = message_body(h(case["key_package"]), KeyPackage)
        welcome = message_body(h(case["welcome"]), Welcome)
        assert key_package.ref(suite) in [s.new_member for s in welcome.secrets]
        key_package.verify_signature(suite)
        key_package.leaf_node.verify_signature(suite)
        counts["passed"] += 1
    assert counts["passed"] == 2


def test_sign_then_verify_and_tampering_is_detected(backend: CryptoBackend) -> None:
    suite = CipherSuite(1, CryptoProvider(backend))
    private_key, public_key = suite.signature_key_pair()
    group_info, key_package = FIRST.group_info, FIRST.key_package
    leaf = replace(
        key_package.leaf_node,
        signature_key=public_key,
        leaf_node_source=LeafNodeSource.UPDATE,
        lifetime=None,
    ).sign(suite, private_key, b"group", 5)
    leaf.verify_signature(suite, b"group", 5)
    with pytest.raises(ValidationError) as excinfo:
        leaf.verify_signature(suite, b"other group", 5)
    assert excinfo.value.check == "leaf_node.signature"
    with pytest.raises(UsageError, match="needs the group id and the leaf index"):
        leaf.verify_signature(suite)

    signed = replace(key_package, leaf_node=leaf).sign(suite, private_key)
    signed.verify_signature(suite)
    with pytest.raises(ValidationError) as excinfo:
        replace(signed, init_key=signed.init_key[::-1]).verify_signature(suite)
    assert excinfo.value.check == "key_package.signature"

    info = group_info.sign(suite, private_key)
    info.verify_signature(suite, public_key)
    with pytest.raises(ValidationError) as excinfo:
        replace(info, signer=info.signer + 1).verify_signature(suite, public_key)
    assert excinfo.value.check == "group_info.signature"
