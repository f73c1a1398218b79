"""Content types (``veilpost.client.content``): the EncodedContent wire format and its strict
decoding, the registry and the standard codecs, fallbacks, encrypted remote attachments and
padding. Every decode rule has a test that breaks exactly that rule."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veilpost.client import content as content_module
from veilpost.client.content import (
    ATTACHMENT_SCHEME_AES_128_GCM,
    ATTACHMENT_SCHEME_CHACHA20_POLY1305,
    ATTACHMENT_SCHEMES,
    CONTENT_TYPE_ATTACHMENT,
    CONTENT_TYPE_GROUP_UPDATED,
    CONTENT_TYPE_MARKDOWN,
    CONTENT_TYPE_PROFILE,
    CONTENT_TYPE_REACTION,
    CONTENT_TYPE_READ_RECEIPT,
    CONTENT_TYPE_REMOTE_ATTACHMENT,
    CONTENT_TYPE_REPLY,
    CONTENT_TYPE_TEXT,
    MAX_CONTENT_BYTES,
    MAX_DISPLAY_NAME_BYTES,
    MAX_FALLBACK_BYTES,
    MAX_INLINE_ATTACHMENT_BYTES,
    MAX_PARAMETERS,
    PAD_LINEAR_STEP,
    PAD_MIN_SIZE,
    Attachment,
    AttachmentCodec,
    AttachmentError,
    CodecRegistry,
    ContentDecodeError,
    ContentError,
    ContentTypeId,
    EncodedContent,
    GroupUpdated,
    InvalidContent,
    Markdown,
    MetadataChange,
    Profile,
    Reaction,
    ReadReceipt,
    RemoteAttachment,
    Reply,
    TextCodec,
    UnknownContentType,
    decrypt_attachment,
    default_registry,
    encrypt_attachment,
    pad,
    padded_size,
    unpad,
)
from veilpost.codec import Writer
from veilpost.crypto import CryptoProvider
from veilpost.crypto.backend import Aead, CryptoBackend

REGISTRY = default_registry()
some = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
few = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raises(kind: type[Exception], message: str) -> AbstractContextManager[object]:
    """``pytest.raises`` matching ``message`` literally."""
    return pytest.raises(kind, match=re.escape(message))


# -- content type ids ---------------------------------------------------------------------------

STANDARD_TYPES = [
    CONTENT_TYPE_TEXT,
    CONTENT_TYPE_MARKDOWN,
    CONTENT_TYPE_REPLY,
    CONTENT_TYPE_REACTION,
    CONTENT_TYPE_READ_RECEIPT,
    CONTENT_TYPE_ATTACHMENT,
    CONTENT_TYPE_REMOTE_ATTACHMENT,
    CONTENT_TYPE_GROUP_UPDATED,
    CONTENT_TYPE_PROFILE,
]


def test_standard_type_ids_have_the_documented_text_form() -> None:
    assert [str(t) for t in STANDARD_TYPES] == [
        "veilpost.org/text:1.0",
        "veilpost.org/markdown:1.0",
        "veilpost.org/reply:1.0",
        "veilpost.org/reaction:1.0",
        "veilpost.org/read_receipt:1.0",
        "veilpost.org/attachment:1.0",
        "veilpost.org/remote_attachment:1.0",
        "veilpost.org/group_updated:1.0",
        "veilpost.org/profile:1.0",
    ]
    assert all(ContentTypeId.parse(str(t)) == t for t in STANDARD_TYPES)
    assert all(t in REGISTRY for t in STANDARD_TYPES)


def test_parse_reads_every_part() -> None:
    assert ContentTypeId.parse("example.com/poll-vote_2:3.14") == ContentTypeId(
        "example.com", "poll-vote_2", 3, 14
    )


@pytest.mark.parametrize(
    "text",
    [
        "veilpost.org/text",  # no version
        "veilpost.org/text:1",  # no minor version
        "veilpost.org/text:01.0",  # leading zero: not the canonical form
        "veilpost.org/text:65536.0",  # not a uint16
        "Veilpost.org/text:1.0",  # authority not lowercase
        "veilpost..org/text:1.0",  # empty label
        "-veilpost.org/text:1.0",  # label starts with a hyphen
        "/text:1.0",  # empty authority
        "veilpost.org/te xt:1.0",  # space in the type id
        "veilpost.org/a/b:1.0",  # slash in the type id
        "veilpost.org/:1.0",  # empty type id
    ],
)
def test_parse_rejects_malformed_ids(text: str) -> None:
    with pytest.raises(InvalidContent):
        ContentTypeId.parse(text)


def test_compatibility_is_authority_type_and_major_version() -> None:
    assert CONTENT_TYPE_TEXT.is_compatible_with(ContentTypeId("veilpost.org", "text", 1, 9))
    assert not CONTENT_TYPE_TEXT.is_compatible_with(ContentTypeId("veilpost.org", "text", 2, 0))
    assert not CONTENT_TYPE_TEXT.is_compatible_with(ContentTypeId("example.org", "text", 1, 0))


# -- EncodedContent: round trips ----------------------------------------------------------------

authorities = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
type_ids = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
uint16 = st.integers(min_value=0, max_value=0xFFFF)
content_type_ids = st.builds(ContentTypeId, authorities, type_ids, uint16, uint16)
parameter_dicts = st.dictionaries(
    st.text(min_size=1, max_size=16), st.text(max_size=40), max_size=MAX_PARAMETERS
)
encoded_contents = st.builds(
    lambda type_, params, fallback, body: EncodedContent(
        type=type_, parameters=tuple(params.items()), fallback=fallback, content=body
    ),
    content_type_ids,
    parameter_dicts,
    st.none() | st.text(max_size=60),
    st.binary(max_size=200),
)


@some
@given(encoded_contents)
def test_encoded_content_round_trip(encoded: EncodedContent) -> None:
    data = encoded.to_bytes()
    assert EncodedContent.from_bytes(data) == encoded
    assert EncodedContent.from_bytes(data).to_bytes() == data


def test_parameter_order_does_not_change_the_value_or_its_encoding() -> None:
    forward = EncodedContent(
        type=CONTENT_TYPE_TEXT, parameters=(("a", "1"), ("b", "2")), content=b""
    )
    backward = EncodedContent(
        type=CONTENT_TYPE_TEXT, parameters=(("b", "2"), ("a", "1")), content=b""
    )
    assert forward == backward
    assert forward.to_bytes() == backward.to_bytes()
    assert backward.parameters == (("a", "1"), ("b", "2"))
    assert backward.parameter("b") == "2"
    assert backward.parameter("c") is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parameters": (("a", "1"), ("a", "2"))}, "duplicate parameter name 'a'"),
        ({"parameters": (("", "1"),)}, "parameter name is empty"),
        (
            {"parameters": tuple((f"p{i:02}", "") for i in range(MAX_PARAMETERS + 1))},
            f"{MAX_PARAMETERS + 1} parameters, at most {MAX_PARAMETERS} allowed",
        ),
        ({"fallback": "x" * (MAX_FALLBACK_BYTES + 1)}, "fallback is 4097 bytes"),
        ({"fallback": "\ud800"}, "fallback has a lone surrogate"),
        ({"content": bytes(MAX_CONTENT_BYTES + 1)}, f"content is {MAX_CONTENT_BYTES + 1} bytes"),
    ],
)
def test_encoded_content_refuses_values_that_break_a_rule(
    fields: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {"type": CONTENT_TYPE_TEXT, "content": b"hi"}
    with raises(InvalidContent, message):
        EncodedContent(**{**base, **fields})  # type: ignore[arg-type]


def test_the_limits_themselves_are_allowed() -> None:
    encoded = EncodedContent(
        type=CONTENT_TYPE_TEXT,
        parameters=tuple((f"p{i:02}", "v" * 1024) for i in range(MAX_PARAMETERS)),
        fallback="é" * (MAX_FALLBACK_BYTES // 2),
        content=bytes(MAX_CONTENT_BYTES),
    )
    assert EncodedContent.from_bytes(encoded.to_bytes()) == encoded


# -- EncodedContent: each decode rule, broken one at a time -------------------------------------


def raw_content(
    *,
    authority: bytes = b"veilpost.org",
    type_id: bytes = b"text",
    major: int = 1,
    minor: int = 0,
    parameters: tuple[tuple[bytes, bytes], ...] = ((b"encoding", b"UTF-8"),),
    presence: int | None = None,
    fallback: bytes | None = None,
    body: bytes = b"hi",
) -> bytes:
    """An EncodedContent written field by field, so a test can break any one of them."""
    writer = Writer()
    writer.opaque(authority)
    writer.opaque(type_id)
    writer.uint16(major)
    writer.uint16(minor)

    def write_parameter(inner: Writer, pair: tuple[bytes, bytes]) -> None:
        inner.opaque(pair[0])
        inner.opaque(pair[1])

    writer.vector(parameters, write_parameter)
    writer.uint8(presence if presence is not None else int(fallback is not None))
    if fallback is not None:
        writer.opaque(fallback)
    writer.opaque(body)
    return writer.getvalue()


def test_raw_content_builder_matches_the_encoder() -> None:
    expected = EncodedContent(
        type=CONTENT_TYPE_TEXT, parameters=(("encoding", "UTF-8"),), fallback="fb", content=b"hi"
    )
    assert raw_content(fallback=b"fb") == expected.to_bytes()
    assert EncodedContent.from_bytes(raw_content(fallback=b"fb")) == expected


DECODE_RULES: list[tuple[str, bytes, str]] = [
    ("trailing byte", raw_content() + b"\x00", "1 trailing bytes after EncodedContent"),
    (
        "bad utf-8 authority",
        raw_content(authority=b"veilpost\xff.org"),
        "authority id is not valid",
    ),
    ("bad utf-8 type id", raw_content(type_id=b"te\x80xt"), "type id is not valid UTF-8"),
    (
        "bad utf-8 parameter name",
        raw_content(parameters=((b"enc\xffoding", b"UTF-8"),)),
        "parameter name is not valid UTF-8",
    ),
    (
        "bad utf-8 parameter value",
        raw_content(parameters=((b"encoding", b"\xc3\x28"),)),
        "parameter value is not valid UTF-8",
    ),
    ("bad utf-8 fallback", raw_content(fallback=b"ok \xe2\x82"), "fallback is not valid UTF-8"),
    ("overlong utf-8", raw_content(fallback=b"\xc0\xaf"), "fallback is not valid UTF-8"),
    ("utf-8 surrogate", raw_content(fallback=b"\xed\xa0\x80"), "fallback is not valid UTF-8"),
    ("authority case", raw_content(authority=b"Veilpost.org"), "is not lowercase DNS-style"),
    ("empty authority", raw_content(authority=b""), "is not lowercase DNS-style"),
    ("type id syntax", raw_content(type_id=b"te:xt"), "is not letters, digits"),
    (
        "duplicate parameter",
        raw_content(parameters=((b"a", b"1"), (b"a", b"2"))),
        "duplicate parameter name 'a'",
    ),
    (
        "unsorted parameters",
        raw_content(parameters=((b"b", b"1"), (b"a", b"2"))),
        "parameter 'a' follows 'b': names must ascend",
    ),
    ("empty parameter name", raw_content(parameters=((b"", b"1"),)), "parameter name is empty"),
    (
        "too many parameters",
        raw_content(parameters=tuple((b"p%02d" % i, b"") for i in range(MAX_PARAMETERS + 1))),
        f"{MAX_PARAMETERS + 1} parameters, at most {MAX_PARAMETERS} allowed",
    ),
    ("oversize authority", raw_content(authority=b"a" * 129), "authority id is 129 bytes"),
    ("oversize type id", raw_content(type_id=b"t" * 65), "type id is 65 bytes"),
    (
        "oversize parameter name",
        raw_content(parameters=((b"n" * 65, b""),)),
        "parameter name is 65 bytes",
    ),
    (
        "oversize parameter value",
        raw_content(parameters=((b"n", b"v" * 1025),)),
        "parameter 'n' is 1025 bytes",
    ),
    ("oversize fallback", raw_content(fallback=b"f" * 4097), "fallback is 4097 bytes"),
    (
        "oversize content",
        raw_content(body=bytes(MAX_CONTENT_BYTES + 1)),
        f"content is {MAX_CONTENT_BYTES + 1} bytes",
    ),
    ("presence octet", raw_content(presence=2), "invalid presence octet 2"),
    ("non-minimal length", raw_content(body=b"")[:-1] + b"\x40\x00", "non-minimal varint"),
    ("length past the end", raw_content(body=b"")[:-1] + b"\x05abc", "truncated input"),
]


@pytest.mark.parametrize(
    ("data", "message"), [case[1:] for case in DECODE_RULES], ids=[c[0] for c in DECODE_RULES]
)
def test_decode_rule(data: bytes, message: str) -> None:
    with raises(ContentDecodeError, message):
        EncodedContent.from_bytes(data)


def test_every_truncation_is_refused() -> None:
    data = raw_content(fallback=b"fallback", parameters=((b"a", b"1"), (b"b", b"2")))
    EncodedContent.from_bytes(data)
    for cut in range(len(data)):
        with raises(ContentDecodeError, "truncated input"):
            EncodedContent.from_bytes(data[:cut])


@fuzz
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_content_errors(data: bytes) -> None:
    try:
        encoded = EncodedContent.from_bytes(data)
    except ContentError:
        return
    assert encoded.to_bytes() == data  # what is accepted has exactly this one encoding


@some
@given(encoded_contents, st.data())
def test_mutated_encodings_decode_or_raise_content_errors(
    encoded: EncodedContent, data: st.DataObject
) -> None:
    raw = bytearray(encoded.to_bytes())
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut]), bytes(raw) + b"\x01"):
        try:
            decoded = EncodedContent.from_bytes(candidate)
        except ContentError:
            continue
        assert decoded.to_bytes() == candidate


# -- the standard codecs ------------------------------------------------------------------------

REMOTE = RemoteAttachment(
    url="blob:4f1c2a",
    content_digest="ab" * 32,
    secret=bytes(range(32)),
    salt=bytes(range(32, 64)),
    nonce=bytes(12),
    scheme=ATTACHMENT_SCHEME_AES_128_GCM,
    content_length=12345,
    filename="report.pdf",
    mime_type="application/pdf",
)

ROUND_TRIPS: list[tuple[object, ContentTypeId]] = [
    ("", CONTENT_TYPE_TEXT),
    ("héllo 👋\nsecond line", CONTENT_TYPE_TEXT),
    (Markdown("**bold** and `code`"), CONTENT_TYPE_MARKDOWN),
    (Reply("msg-1", "sounds good"), CONTENT_TYPE_REPLY),
    (Reply("msg-1", Markdown("*yes*"), reference_inbox_id="inbox-7"), CONTENT_TYPE_REPLY),
    (Reply("msg-2", Reaction("msg-1", "added", "🎉")), CONTENT_TYPE_REPLY),
    (Reply("msg-3", Attachment("a.png", "image/png", b"\x89PNG")), CONTENT_TYPE_REPLY),
    (Reaction("msg-1", "added", "👍"), CONTENT_TYPE_REACTION),
    (Reaction("msg-1", "removed", ":thumbsup:", "shortcode"), CONTENT_TYPE_REACTION),
    (Reaction("msg-1", "added", "party-parrot", "custom"), CONTENT_TYPE_REACTION),
    (ReadReceipt(), CONTENT_TYPE_READ_RECEIPT),
    (Attachment("notes.txt", "text/plain", b"line 1\n"), CONTENT_TYPE_ATTACHMENT),
    (Attachment("empty.bin", "application/octet-stream", b""), CONTENT_TYPE_ATTACHMENT),
    (REMOTE, CONTENT_TYPE_REMOTE_ATTACHMENT),
    (dataclasses.replace(REMOTE, filename=None, mime_type=None), CONTENT_TYPE_REMOTE_ATTACHMENT),
    (GroupUpdated("inbox-a"), CONTENT_TYPE_GROUP_UPDATED),
    (Profile("Ada Lovelace 👩‍💻"), CONTENT_TYPE_PROFILE),
    (Profile(""), CONTENT_TYPE_PROFILE),
    (Profile("n" * MAX_DISPLAY_NAME_BYTES), CONTENT_TYPE_PROFILE),
    (
        GroupUpdated(
            "inbox-a",
            added_inboxes=("inbox-b", "inbox-c"),
            removed_inboxes=("inbox-d",),
            metadata_changes=(
                MetadataChange("group_name", "Old", "New"),
                MetadataChange("description", "was set", None),
                MetadataChange("image_url", None, "blob:9"),
            ),
        ),
        CONTENT_TYPE_GROUP_UPDATED,
    ),
]


@pytest.mark.parametrize(("value", "content_type"), ROUND_TRIPS, ids=repr)
def test_standard_codec_round_trip(value: object, content_type: ContentTypeId) -> None:
    encoded = REGISTRY.encode(value)
    assert encoded.type == content_type
    decoded = REGISTRY.decode_bytes(encoded.to_bytes())
    assert decoded.known
    assert decoded.value == value
    assert type(decoded.value) is type(value)


@few
@given(st.text(max_size=200))
def test_text_round_trip_property(text: str) -> None:
    encoded = REGISTRY.encode(text)
    assert encoded.parameters == (("encoding", "UTF-8"),)
    assert encoded.content == text.encode()
    assert REGISTRY.decode_bytes(encoded.to_bytes()).value == text


@few
@given(
    st.builds(
        Reaction,
        st.text(min_size=1, max_size=40),
        st.sampled_from(["added", "removed"]),
        st.text(min_size=1, max_size=20),
        st.sampled_from(["unicode", "shortcode", "custom"]),
    )
)
def test_reaction_round_trip_property(reaction: Reaction) -> None:
    assert REGISTRY.decode(REGISTRY.encode(reaction)).value == reaction


inbox_ids = st.text(min_size=1, max_size=30)
optional_values = st.none() | st.text(max_size=30)


@few
@given(
    st.builds(
        GroupUpdated,
        inbox_ids,
        st.lists(inbox_ids, max_size=5).map(tuple),
        st.lists(inbox_ids, max_size=5).map(tuple),
        st.lists(
            st.builds(
                MetadataChange, st.text(min_size=1, max_size=20), optional_values, optional_values
            ),
            max_size=4,
        ).map(tuple),
    )
)
def test_group_updated_round_trip_property(update: GroupUpdated) -> None:
    decoded = REGISTRY.decode(REGISTRY.encode(update))
    assert decoded.value == update
    assert decoded.fallback is not None


# -- fallbacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fallback"),
    [
        ("plain text", None),
        (ReadReceipt(), None),
        (Profile("Ada"), None),
        (Markdown("# Title"), "# Title"),
        (Reaction("m", "added", "👍"), "Reacted “👍” to an earlier message"),
        (Reaction("m", "removed", "👍"), "Removed “👍” from an earlier message"),
        (Reaction("m", "added", ":tada:", "shortcode"), "Reacted “:tada:” to an earlier message"),
        (Reply("m", "on my way"), "Replied with “on my way” to an earlier message"),
        (Reply("m", Markdown("**ok**")), "Replied with “**ok**” to an earlier message"),
        (Reply("m", Reaction("n", "added", "👍")), "Replied to an earlier message"),
        (Reply("m", ""), "Replied to an earlier message"),
        (Attachment("cat.jpg", "image/jpeg", b"\xff\xd8"), "Sent an attachment: cat.jpg"),
        (REMOTE, "Sent an attachment: report.pdf"),
        (dataclasses.replace(REMOTE, filename=None), "Sent an attachment"),
        (
            GroupUpdated(
                "0123456789abcdef",
                added_inboxes=("b", "c"),
                removed_inboxes=("d",),
                metadata_changes=(
                    MetadataChange("group_name", None, "Team"),
                    MetadataChange("description", "x", None),
                ),
            ),
            "01234567… added 2 members, removed 1 member, changed group_name to “Team”,"
            " cleared description",
        ),
        (GroupUpdated("alice"), "alice updated the group"),
        (GroupUpdated("", added_inboxes=("b",)), "Someone added 1 member"),
    ],
    ids=repr,
)
def test_fallback_text(value: object, fallback: str | None) -> None:
    assert REGISTRY.encode(value).fallback == fallback


def test_long_quotes_are_clipped_in_fallbacks() -> None:
    fallback = REGISTRY.encode(Reply("m", "x" * 500)).fallback
    assert fallback == "Replied with “" + "x" * 79 + "…” to an earlier message"
    markdown = Markdown("y" * (MAX_FALLBACK_BYTES + 10))
    clipped = REGISTRY.encode(markdown).fallback
    assert clipped is not None
    assert clipped.endswith("…")
    assert len(clipped.encode()) <= MAX_FALLBACK_BYTES
    assert REGISTRY.decode(REGISTRY.encode(markdown)).value == markdown


# -- unknown types ------------------------------------------------------------------------------

POLL = ContentTypeId("example.com", "poll", 1, 0)


def test_unknown_type_decodes_to_its_fallback() -> None:
    encoded = EncodedContent(type=POLL, fallback="Poll: lunch at noon?", content=b"\x01\x02")
    decoded = REGISTRY.decode_bytes(encoded.to_bytes())
    assert not decoded.known
    assert decoded.value is None
    assert decoded.type == POLL
    assert decoded.fallback == "Poll: lunch at noon?"
    assert decoded.display_text == "Poll: lunch at noon?"
    assert decoded.encoded == encoded


def test_unknown_type_without_fallback_shows_nothing() -> None:
    decoded = REGISTRY.decode(EncodedContent(type=POLL, content=b""))
    assert not decoded.known
    assert decoded.display_text is None


def test_new_major_version_is_unknown_new_minor_version_is_known() -> None:
    body = {"parameters": (("encoding", "UTF-8"),), "fallback": "hi", "content": b"hi"}
    text_2 = EncodedContent(type=ContentTypeId("veilpost.org", "text", 2, 0), **body)  # type: ignore[arg-type]
    text_1_5 = EncodedContent(type=ContentTypeId("veilpost.org", "text", 1, 5), **body)  # type: ignore[arg-type]
    assert not REGISTRY.decode(text_2).known
    assert REGISTRY.decode(text_2).display_text == "hi"
    assert REGISTRY.decode(text_1_5).known
    assert REGISTRY.decode(text_1_5).value == "hi"


def test_reply_to_unknown_content_keeps_the_encoded_content() -> None:
    inner = EncodedContent(type=POLL, fallback="Poll: lunch?", content=b"\x07")
    reply = REGISTRY.decode(REGISTRY.encode(Reply("m", inner))).value
    assert reply == Reply("m", inner)


def test_display_text_of_known_types() -> None:
    assert REGISTRY.decode(REGISTRY.encode("hello")).display_text == "hello"
    assert REGISTRY.decode(REGISTRY.encode(Markdown("*hi*"))).display_text == "*hi*"
    reaction = Reaction("m", "added", "👍")
    assert REGISTRY.decode(REGISTRY.encode(reaction)).display_text == (
        "Reacted “👍” to an earlier message"
    )
    assert REGISTRY.decode(REGISTRY.encode(ReadReceipt())).display_text is None


# -- the registry -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Poll:
    question: str


class PollCodec:
    content_type = POLL
    value_type = Poll

    def encode(self, value: Poll) -> EncodedContent:
        return EncodedContent(type=POLL, content=value.question.encode())

    def decode(self, encoded: EncodedContent) -> Poll:
        return Poll(encoded.content.decode())

    def fallback(self, value: Poll) -> str | None:
        return f"Poll: {value.question}"


def test_a_third_party_codec_plugs_in() -> None:
    registry = default_registry()
    registry.register(PollCodec())
    encoded = registry.encode(Poll("lunch?"))
    assert encoded.fallback == "Poll: lunch?"  # the registry adds the codec's fallback
    assert registry.decode(encoded).value == Poll("lunch?")
    assert REGISTRY.decode(encoded).display_text == "Poll: lunch?"  # a client without it


def test_encode_picks_the_codec_by_value_type_including_subclasses() -> None:
    class Shout(str):
        pass

    assert REGISTRY.encode(Shout("HEY")).type == CONTENT_TYPE_TEXT
    assert REGISTRY.encode(Markdown("x")).type == CONTENT_TYPE_MARKDOWN


def test_encode_with_explicit_type() -> None:
    assert REGISTRY.encode("x", CONTENT_TYPE_TEXT).type == CONTENT_TYPE_TEXT
    with raises(TypeError, "veilpost.org/markdown:1.0 encodes Markdown values, got str"):
        REGISTRY.encode("x", CONTENT_TYPE_MARKDOWN)
    with raises(UnknownContentType, "no codec registered for example.com/poll:1.0"):
        REGISTRY.encode("x", POLL)


def test_encode_of_an_unregistered_value_type() -> None:
    with raises(UnknownContentType, "no codec registered for values of type float"):
        REGISTRY.encode(3.14)


def test_registering_twice_needs_replace() -> None:
    registry = CodecRegistry([TextCodec()])
    with raises(ContentError, "a codec for veilpost.org/text:1.0 is already registered"):
        registry.register(TextCodec())

    class UpperTextCodec(TextCodec):
        def decode(self, encoded: EncodedContent) -> str:
            return super().decode(encoded).upper()

    registry.register(UpperTextCodec(), replace=True)
    assert registry.decode(registry.encode("hi")).value == "HI"
    assert isinstance(registry.codec_for_value("x"), UpperTextCodec)


def test_the_first_codec_for_a_value_type_stays_its_default() -> None:
    class ShoutCodec(TextCodec):
        content_type = ContentTypeId("example.com", "shout", 1, 0)

    registry = default_registry()
    registry.register(ShoutCodec())
    assert registry.encode("x").type == CONTENT_TYPE_TEXT
    assert registry.encode("x", ShoutCodec.content_type).type == ShoutCodec.content_type


def test_known_type_with_malformed_payload_raises() -> None:
    encoded = EncodedContent(type=CONTENT_TYPE_TEXT, content=b"hi")  # no encoding parameter
    with raises(ContentDecodeError, "needs encoding UTF-8, got None"):
        REGISTRY.decode(encoded)


# -- codec payload rules ------------------------------------------------------------------------


def text_content(body: bytes, encoding: str | None = "UTF-8") -> EncodedContent:
    parameters = () if encoding is None else (("encoding", encoding),)
    return EncodedContent(type=CONTENT_TYPE_TEXT, parameters=parameters, content=body)


def test_text_encoding_parameter_rules() -> None:
    assert REGISTRY.decode(text_content(b"hi", "utf-8")).value == "hi"
    with raises(ContentDecodeError, "needs encoding UTF-8, got 'latin-1'"):
        REGISTRY.decode(text_content(b"hi", "latin-1"))
    with raises(ContentDecodeError, "text is not valid UTF-8 (byte 1)"):
        REGISTRY.decode(text_content(b"h\xffi"))


def test_a_codec_refuses_another_type() -> None:
    with raises(ContentDecodeError, "expected veilpost.org/text:1.0 content"):
        TextCodec().decode(REGISTRY.encode(ReadReceipt()))


def payload(content_type: ContentTypeId, write: Callable[[Writer], None]) -> EncodedContent:
    writer = Writer()
    write(writer)
    return EncodedContent(type=content_type, content=writer.getvalue())


def reply_payload(inner: bytes, reference: bytes = b"m", extra: bytes = b"") -> EncodedContent:
    def write(writer: Writer) -> None:
        writer.opaque(reference)
        writer.uint8(0)
        writer.opaque(inner)
        writer.fixed(extra)

    return payload(CONTENT_TYPE_REPLY, write)


def reaction_payload(action: int, schema: int, emoji: bytes = "👍".encode()) -> EncodedContent:
    def write(writer: Writer) -> None:
        writer.opaque(b"m")
        writer.uint8(action)
        writer.uint8(schema)
        writer.opaque(emoji)

    return payload(CONTENT_TYPE_REACTION, write)


def attachment_payload(name: bytes, mime: bytes, data: bytes) -> EncodedContent:
    def write(writer: Writer) -> None:
        writer.opaque(name)
        writer.opaque(mime)
        writer.opaque(data)

    return payload(CONTENT_TYPE_ATTACHMENT, write)


def profile_payload(name: bytes, extra: bytes = b"") -> EncodedContent:
    def write(writer: Writer) -> None:
        writer.opaque(name)
        writer.fixed(extra)

    return payload(CONTENT_TYPE_PROFILE, write)


def group_update_payload(added: list[bytes]) -> EncodedContent:
    def write(writer: Writer) -> None:
        writer.opaque(b"a")
        writer.vector(added, Writer.opaque)
        writer.vector([], Writer.opaque)
        writer.vector([], Writer.opaque)

    return payload(CONTENT_TYPE_GROUP_UPDATED, write)


def with_content(encoded: EncodedContent, body: bytes) -> EncodedContent:
    return dataclasses.replace(encoded, content=body)


TEXT_BYTES = REGISTRY.encode("hi").to_bytes()
REMOTE_CONTENT = REGISTRY.encode(REMOTE)
REPLY_BYTES = REGISTRY.encode(Reply("m", "hi")).to_bytes()

PAYLOAD_RULES: list[tuple[str, EncodedContent, str]] = [
    ("reply baseline is fine", reply_payload(TEXT_BYTES), ""),
    ("reply in a reply", reply_payload(REPLY_BYTES), "a reply cannot contain a reply"),
    ("reply trailing byte", reply_payload(TEXT_BYTES, extra=b"\x00"), "1 trailing bytes"),
    ("reply empty reference", reply_payload(TEXT_BYTES, reference=b""), "reference is empty"),
    ("reply inner malformed", reply_payload(TEXT_BYTES[:-1]), "truncated input"),
    ("reply inner bad payload", reply_payload(text_content(b"\xff").to_bytes()), "not valid"),
    ("reaction baseline is fine", reaction_payload(1, 1), ""),
    ("reaction action 0", reaction_payload(0, 1), "unknown reaction action code 0"),
    ("reaction action 3", reaction_payload(3, 1), "unknown reaction action code 3"),
    ("reaction schema 0", reaction_payload(1, 0), "unknown reaction schema code 0"),
    ("reaction schema 4", reaction_payload(1, 4), "unknown reaction schema code 4"),
    ("reaction empty", reaction_payload(1, 1, b""), "reaction content is empty"),
    ("reaction oversize", reaction_payload(1, 1, b"x" * 257), "reaction content is 257 bytes"),
    (
        "read receipt with payload",
        EncodedContent(type=CONTENT_TYPE_READ_RECEIPT, content=b"\x00"),
        "read receipt payload must be empty, got 1 bytes",
    ),
    ("attachment baseline is fine", attachment_payload(b"a.txt", b"text/plain", b"x"), ""),
    (
        "inline attachment over the limit",
        attachment_payload(
            b"a.bin", b"application/octet-stream", bytes(MAX_INLINE_ATTACHMENT_BYTES + 1)
        ),
        f"inline attachment data is {MAX_INLINE_ATTACHMENT_BYTES + 1} bytes",
    ),
    (
        "attachment path in name",
        attachment_payload(b"../etc/passwd", b"text/plain", b""),
        "is not a plain file name",
    ),
    (
        "attachment control in name",
        attachment_payload(b"a\nb.txt", b"text/plain", b""),
        "is not a plain file name",
    ),
    ("attachment empty name", attachment_payload(b"", b"text/plain", b""), "file name is empty"),
    (
        "attachment media type",
        attachment_payload(b"a.txt", b"text", b""),
        "'text' is not type/subtype",
    ),
    (
        "remote attachment truncated",
        with_content(REMOTE_CONTENT, REMOTE_CONTENT.content[:-1]),
        "truncated input",
    ),
    (
        "remote attachment space in url",
        with_content(
            REMOTE_CONTENT, REMOTE_CONTENT.content.replace(b"blob:4f1c2a", b"blob 4f1c2a")
        ),
        "has spaces or controls",
    ),
    (
        "remote attachment absent name",
        with_content(REMOTE_CONTENT, REMOTE_CONTENT.content[: -(2 + 10 + 2 + 15)] + b"\x02"),
        "invalid presence octet 2",
    ),
    ("profile baseline is fine", profile_payload("Zoë".encode()), ""),
    ("profile trailing byte", profile_payload(b"Ada", extra=b"\x00"), "1 trailing bytes"),
    ("profile truncated", with_content(profile_payload(b"Ada"), b"\x03Ad"), "truncated input"),
    ("profile empty payload", with_content(profile_payload(b"Ada"), b""), "truncated input"),
    ("profile bad utf-8", profile_payload(b"A\xffa"), "display name is not valid UTF-8"),
    ("profile newline", profile_payload(b"Ada\nEvil"), "control character at index 3"),
    (
        "profile oversize",
        profile_payload(b"n" * (MAX_DISPLAY_NAME_BYTES + 1)),
        f"display name is {MAX_DISPLAY_NAME_BYTES + 1} bytes",
    ),
    ("group update baseline is fine", group_update_payload([b"b"]), ""),
    ("group update empty added inbox", group_update_payload([b""]), "added inboxes[0] is empty"),
    (
        "group update bad utf-8",
        group_update_payload([b"\xff"]),
        "added inbox is not valid UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("encoded", "message"), [case[1:] for case in PAYLOAD_RULES], ids=[c[0] for c in PAYLOAD_RULES]
)
def test_payload_rule(encoded: EncodedContent, message: str) -> None:
    if not message:  # the unbroken payload the next cases break
        assert REGISTRY.decode(encoded).known
        return
    with raises(ContentDecodeError, message):
        REGISTRY.decode(encoded)


def test_deeply_nested_replies_are_refused_without_recursing() -> None:
    inner = TEXT_BYTES
    for _ in range(1000):
        inner = reply_payload(inner).to_bytes()
    with raises(ContentDecodeError, "a reply cannot contain a reply"):
        REGISTRY.decode_bytes(inner)


def test_a_reply_cannot_be_built_around_a_reply() -> None:
    with raises(InvalidContent, "a reply cannot contain a reply"):
        Reply("m", Reply("n", "hi"))
    with raises(InvalidContent, "a reply cannot contain a reply"):
        Reply("m", REGISTRY.encode(Reply("n", "hi")))


@pytest.mark.parametrize(
    ("build", "kind", "message"),
    [
        (lambda: Reaction("m", "exploded", "👍"), InvalidContent, "'exploded' is not added"),  # type: ignore[arg-type]
        (lambda: Reaction("m", "added", "👍", "emoji"), InvalidContent, "'emoji' is not unicode"),  # type: ignore[arg-type]
        (lambda: Reaction("", "added", "👍"), InvalidContent, "reaction reference is empty"),
        (lambda: Attachment("a/b", "text/plain", b""), AttachmentError, "not a plain file name"),
        (lambda: Attachment("..", "text/plain", b""), AttachmentError, "not a plain file name"),
        (lambda: Attachment("a", "text/plain; x=1", b""), AttachmentError, "not type/subtype"),
        (
            lambda: dataclasses.replace(REMOTE, secret=bytes(31)),
            InvalidContent,
            "attachment secret must be 32 bytes, got 31",
        ),
        (
            lambda: dataclasses.replace(REMOTE, salt=bytes(33)),
            InvalidContent,
            "attachment salt must be 32 bytes, got 33",
        ),
        (
            lambda: dataclasses.replace(REMOTE, nonce=bytes(16)),
            InvalidContent,
            "attachment nonce must be 12 bytes, got 16",
        ),
        (
            lambda: dataclasses.replace(REMOTE, content_digest="AB" * 32),
            InvalidContent,
            "is not 64 lowercase hex digits",
        ),
        (lambda: dataclasses.replace(REMOTE, url=""), InvalidContent, "url is empty"),
        (
            lambda: dataclasses.replace(REMOTE, content_length=-1),
            InvalidContent,
            "content length -1 is not a uint64",
        ),
        (lambda: GroupUpdated("i" * 257), InvalidContent, "initiator inbox id is 257 bytes"),
        (lambda: MetadataChange("", None, "x"), InvalidContent, "metadata field is empty"),
        (lambda: Profile("a\u2028b"), InvalidContent, "control character at index 1"),
        (lambda: Profile("tab\there"), InvalidContent, "control character at index 3"),
        (lambda: Profile("\x85"), InvalidContent, "control character at index 0"),
        (lambda: Profile("é" * 129), InvalidContent, "display name is 258 bytes"),
        (lambda: Profile(7), TypeError, "display name must be a str"),  # type: ignore[arg-type]
    ],
)
def test_values_refuse_to_be_built_breaking_a_rule(
    build: Callable[[], object], kind: type[Exception], message: str
) -> None:
    with raises(kind, message):
        build()


@fuzz
@given(st.sampled_from(STANDARD_TYPES), st.binary(max_size=200))
def test_random_payloads_of_known_types_decode_or_raise_decode_errors(
    content_type: ContentTypeId, body: bytes
) -> None:
    encoded = EncodedContent(type=content_type, parameters=(("encoding", "UTF-8"),), content=body)
    try:
        decoded = REGISTRY.decode(encoded)
    except ContentDecodeError:
        return
    assert decoded.known


@fuzz
@given(st.sampled_from([value for value, _ in ROUND_TRIPS]), st.data())
def test_mutated_payloads_decode_or_raise_decode_errors(value: object, data: st.DataObject) -> None:
    encoded = REGISTRY.encode(value)
    body = bytearray(encoded.content)
    if body:
        position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    for candidate in (bytes(body), bytes(body[:cut]), bytes(body) + b"\x00"):
        try:
            REGISTRY.decode(dataclasses.replace(encoded, content=candidate))
        except ContentDecodeError:
            continue


# -- inline and remote attachments --------------------------------------------------------------


def test_inline_attachment_limit_is_exactly_one_mebibyte() -> None:
    assert MAX_INLINE_ATTACHMENT_BYTES == 1 << 20
    largest = Attachment("big.bin", "application/octet-stream", bytes(MAX_INLINE_ATTACHMENT_BYTES))
    assert REGISTRY.decode(REGISTRY.encode(largest)).value == largest
    too_large = dataclasses.replace(largest, data=bytes(MAX_INLINE_ATTACHMENT_BYTES + 1))
    with raises(AttachmentError, "send a RemoteAttachment"):
        REGISTRY.encode(too_large)
    with raises(AttachmentError, "send a RemoteAttachment"):
        AttachmentCodec().encode(too_large)


PHOTO = Attachment("photo.jpg", "image/jpeg", bytes(range(256)) * 9)


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 from the standard library, to check the documented key derivation."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    block, okm = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def attachment_key(remote: RemoteAttachment) -> bytes:
    aead = ATTACHMENT_SCHEMES[remote.scheme]
    info = b"veilpost attachment key " + remote.scheme.encode()
    return hkdf_sha256(remote.salt, remote.secret, info, aead.key_size)


@pytest.mark.parametrize(
    "scheme", [ATTACHMENT_SCHEME_AES_128_GCM, ATTACHMENT_SCHEME_CHACHA20_POLY1305]
)
def test_attachment_encrypt_decrypt_round_trip(backend: CryptoBackend, scheme: str) -> None:
    provider = CryptoProvider(backend)
    ciphertext, keys = encrypt_attachment(PHOTO, provider, scheme=scheme)
    remote = keys.remote_attachment("blob:1", filename=PHOTO.filename, mime_type=PHOTO.mime_type)
    assert remote.content_digest == hashlib.sha256(ciphertext).hexdigest()
    assert remote.content_length == len(ciphertext)
    assert remote.scheme == scheme
    sent = REGISTRY.decode_bytes(REGISTRY.encode(remote).to_bytes()).value
    assert sent == remote
    assert isinstance(sent, RemoteAttachment)
    assert decrypt_attachment(ciphertext, sent, provider) == PHOTO
    assert PHOTO.data not in ciphertext


def test_attachment_ciphertext_follows_the_documented_construction(backend: CryptoBackend) -> None:
    provider = CryptoProvider(backend)
    ciphertext, keys = encrypt_attachment(PHOTO, provider)
    remote = keys.remote_attachment("blob:1")
    plaintext = backend.aead_open(
        Aead.AES_128_GCM,
        attachment_key(remote),
        remote.nonce,
        b"veilpost attachment v1",
        ciphertext,
    )
    writer = Writer()
    PHOTO.encode(writer)
    assert plaintext == pad(writer.getvalue())
    assert len(ciphertext) == padded_size(len(writer.getvalue())) + 16


def test_each_encryption_uses_fresh_key_material(backend: CryptoBackend) -> None:
    provider = CryptoProvider(backend)
    first_ciphertext, first = encrypt_attachment(PHOTO, provider)
    second_ciphertext, second = encrypt_attachment(PHOTO, provider)
    assert first.secret != second.secret
    assert first.salt != second.salt
    assert first.nonce != second.nonce
    assert first_ciphertext != second_ciphertext


@pytest.fixture
def sealed(backend: CryptoBackend) -> tuple[bytes, RemoteAttachment, CryptoProvider]:
    provider = CryptoProvider(backend)
    ciphertext, keys = encrypt_attachment(PHOTO, provider)
    return ciphertext, keys.remote_attachment("blob:1"), provider


def test_tampered_ciphertext_fails_the_digest(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    ciphertext, remote, provider = sealed
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with raises(AttachmentError, "digest mismatch"):
        decrypt_attachment(tampered, remote, provider)


def test_tampered_ciphertext_with_matching_digest_fails_the_tag(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    ciphertext, remote, provider = sealed
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 0x80])
    forged = dataclasses.replace(remote, content_digest=hashlib.sha256(tampered).hexdigest())
    with raises(AttachmentError, "does not authenticate"):
        decrypt_attachment(tampered, forged, provider)


def test_wrong_digest_in_the_message(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    ciphertext, remote, provider = sealed
    with raises(AttachmentError, "digest mismatch"):
        decrypt_attachment(
            ciphertext, dataclasses.replace(remote, content_digest="0" * 64), provider
        )


@pytest.mark.parametrize(
    "change",
    [
        {"secret": bytes(32)},
        {"salt": bytes(32)},
        {"nonce": bytes(12)},
        {"scheme": ATTACHMENT_SCHEME_CHACHA20_POLY1305},
    ],
    ids=["secret", "salt", "nonce", "scheme"],
)
def test_wrong_key_fails_the_tag(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider], change: dict[str, object]
) -> None:
    ciphertext, remote, provider = sealed
    with raises(AttachmentError, "does not authenticate"):
        decrypt_attachment(ciphertext, dataclasses.replace(remote, **change), provider)  # type: ignore[arg-type]


def test_length_and_scheme_are_checked(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    ciphertext, remote, provider = sealed
    with raises(AttachmentError, f"length mismatch: the blob is {len(ciphertext)} bytes"):
        decrypt_attachment(ciphertext, dataclasses.replace(remote, content_length=1), provider)
    with raises(AttachmentError, "unsupported attachment scheme 'rot13'"):
        decrypt_attachment(ciphertext, dataclasses.replace(remote, scheme="rot13"), provider)
    with raises(AttachmentError, "unsupported attachment scheme 'rot13'"):
        encrypt_attachment(PHOTO, provider, scheme="rot13")


def test_a_blob_shorter_than_the_tag_is_an_attachment_error(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    _, remote, provider = sealed
    short = b"abc"
    forged = dataclasses.replace(
        remote, content_digest=hashlib.sha256(short).hexdigest(), content_length=len(short)
    )
    with raises(AttachmentError, "does not authenticate"):
        decrypt_attachment(short, forged, provider)


def test_authentic_but_malformed_plaintext_is_an_attachment_error(backend: CryptoBackend) -> None:
    remote = dataclasses.replace(REMOTE, scheme=ATTACHMENT_SCHEME_AES_128_GCM)
    ciphertext = backend.aead_seal(
        Aead.AES_128_GCM,
        attachment_key(remote),
        remote.nonce,
        b"veilpost attachment v1",
        pad(b"not an attachment struct"),
    )
    remote = dataclasses.replace(
        remote,
        content_digest=hashlib.sha256(ciphertext).hexdigest(),
        content_length=len(ciphertext),
    )
    with raises(AttachmentError, "decrypted attachment is malformed"):
        decrypt_attachment(ciphertext, remote, CryptoProvider(backend))


def test_remote_attachment_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content_module, "MAX_REMOTE_ATTACHMENT_BYTES", 100)
    with raises(AttachmentError, "is 2304 bytes, at most 100 allowed"):
        encrypt_attachment(PHOTO)


def test_secrets_stay_out_of_reprs(
    sealed: tuple[bytes, RemoteAttachment, CryptoProvider],
) -> None:
    _, remote, _ = sealed
    assert remote.secret.hex() not in repr(remote)
    assert repr(remote.secret) not in repr(remote)


# -- padding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "size"),
    [
        (0, 256),
        (252, 256),  # 252 + 4-byte prefix = 256
        (253, 512),
        (508, 512),
        (509, 1024),
        (65532, 65536),
        (65533, 131072),  # past 64 KiB: multiples of 64 KiB
        (131068, 131072),
        (131069, 196608),
        (MAX_INLINE_ATTACHMENT_BYTES, MAX_INLINE_ATTACHMENT_BYTES + PAD_LINEAR_STEP),
    ],
)
def test_padded_size_buckets(length: int, size: int) -> None:
    assert padded_size(length) == size
    assert len(pad(bytes(length))) == size


BUCKETS = [PAD_MIN_SIZE << i for i in range(9)] + [PAD_LINEAR_STEP * k for k in range(2, 40)]


@fuzz
@given(st.integers(min_value=0, max_value=PAD_LINEAR_STEP * 38))
def test_padded_size_is_the_smallest_bucket_that_fits(length: int) -> None:
    size = padded_size(length)
    assert size in BUCKETS
    assert size >= length + 4
    assert all(bucket < length + 4 for bucket in BUCKETS if bucket < size)


@fuzz
@given(st.binary(max_size=2000))
def test_unpad_inverts_pad(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) == padded_size(len(data))
    assert unpad(padded) == data


def test_messages_in_one_bucket_look_alike() -> None:
    assert len(pad(b"ok")) == len(pad(b"a longer sentence, still short" * 5))


@pytest.mark.parametrize(
    ("padded", "message"),
    [
        (b"", "padded content is 0 bytes, shorter than its length prefix"),
        (b"\x00\x00\x00", "padded content is 3 bytes, shorter than its length prefix"),
        (pad(b"abc")[:-1], "padded content is 255 bytes, but 3 bytes of data pad to 256"),
        (pad(b"abc") + b"\x00", "padded content is 257 bytes, but 3 bytes of data pad to 256"),
        (b"\x00\x00\x01\x00" + bytes(252), "padded content is 256 bytes, but 256 bytes of data"),
        (b"\xff\xff\xff\xff" + bytes(252), "but 4294967295 bytes of data pad to"),
        (pad(b"abc")[:-1] + b"\x01", "non-zero padding byte at offset 255"),
        (pad(b"abc")[:7] + b"\x80" + pad(b"abc")[8:], "non-zero padding byte at offset 7"),
    ],
)
def test_bad_padding_is_refused(padded: bytes, message: str) -> None:
    with raises(ContentDecodeError, message):
        unpad(padded)


def test_padded_size_range() -> None:
    with raises(ContentError, "cannot pad -1 bytes"):
        padded_size(-1)
    with raises(ContentError, "cannot pad 4294967296 bytes"):
        padded_size(1 << 32)


@fuzz
@given(st.binary(max_size=600))
def test_random_bytes_unpad_or_raise_content_errors(data: bytes) -> None:
    try:
        unpadded = unpad(data)
    except ContentError:
        return
    assert pad(unpadded) == data


@fuzz
@given(st.binary(max_size=300), st.data())
def test_mutated_padding_unpads_or_raises_content_errors(data: bytes, draw: st.DataObject) -> None:
    padded = bytearray(pad(data))
    position = draw.draw(st.integers(min_value=0, max_value=len(padded) - 1))
    padded[position] ^= draw.draw(st.integers(min_value=1, max_value=255))
    try:
        unpadded = unpad(bytes(padded))
    except ContentDecodeError:
        return
    # A change that survives (a data byte, or a length within the bucket over zero bytes)
    # must show in the result: pad is one-to-one.
    assert unpadded != data
    assert pad(unpadded) == bytes(padded)


# -- profiles -----------------------------------------------------------------------------------


def test_profile_wire_form_and_no_fallback() -> None:
    encoded = REGISTRY.encode(Profile("Ada"))
    assert encoded.type == CONTENT_TYPE_PROFILE
    assert encoded.parameters == ()
    assert encoded.fallback is None
    assert encoded.content == b"\x03Ada"  # one opaque<V>: a one-byte length, then UTF-8
    decoded = REGISTRY.decode_bytes(encoded.to_bytes())
    assert decoded.value == Profile("Ada")
    assert decoded.display_text is None  # never shown as text


def test_a_client_without_the_profile_codec_shows_nothing() -> None:
    older = CodecRegistry([TextCodec()])
    decoded = older.decode_bytes(REGISTRY.encode(Profile("Ada")).to_bytes())
    assert not decoded.known
    assert decoded.display_text is None


@few
@given(st.text(max_size=60).filter(lambda t: not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", t)))
def test_profile_round_trip_property(name: str) -> None:
    try:
        value = Profile(name)
    except InvalidContent:  # a lone surrogate
        return
    assert REGISTRY.decode_bytes(REGISTRY.encode(value).to_bytes()).value == value
