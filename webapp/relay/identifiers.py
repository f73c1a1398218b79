"""Names and encodings shared by the protocol: base64, installation ids, topic names, and the
domain-separated messages that clients sign.

Binary values in JSON are standard base64 with padding (RFC 4648 §4), and must be canonical:
the relay re-encodes what it decodes and refuses anything that differs, so that one value has
one spelling. Group ids inside topic names use unpadded base64url (§5), safe in URL paths.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
from dataclasses import dataclass

from veilpost.crypto.backend import ed25519_public_key_is_canonical

from .errors import InvalidInput

INSTALLATION_ID_LABEL = b"veilpost installation id v1"
AUTH_LABEL = b"veilpost relay auth v1"
IDENTITY_RECORD_LABEL = b"veilpost identity record v1"

MAX_GROUP_ID_BYTES = 255
GROUP_TOPIC_PREFIX = "group:"
WELCOME_TOPIC_PREFIX = "welcome:"

_INSTALLATION_ID = re.compile(r"[0-9a-f]{32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

# The eight points of small order on Ed25519, canonically encoded. Signatures under such a
# "public key" verify for messages nobody signed ([k]A is one of 8 points), so no installation
# may use one. (Non-canonical encodings are refused separately.)
SMALL_ORDER_POINTS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode canonical standard base64, or raise ``InvalidInput`` naming ``what``."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("invalid_base64", f"{what} is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise InvalidInput("invalid_base64", f"{what} is not canonical base64") from None
    return data


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def installation_id(public_key: bytes) -> str:
    """The installation id of an Ed25519 public key: the first 16 bytes of
    SHA-256(``"veilpost installation id v1"`` || public key), in lowercase hex."""
    return hashlib.sha256(INSTALLATION_ID_LABEL + public_key).digest()[:16].hex()


def check_installation_id(value: str) -> str:
    if not _INSTALLATION_ID.fullmatch(value):
        raise InvalidInput(
            "invalid_installation_id", f"installation id {value[:80]!r} is not 32 lowercase hex"
        )
    return value


def check_public_key(public_key: bytes) -> bytes:
    """Refuse what cannot be an honest installation's Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidInput(
            "invalid_public_key", f"an Ed25519 public key is 32 bytes, not {len(public_key)}"
        )
    if not ed25519_public_key_is_canonical(public_key) or public_key in SMALL_ORDER_POINTS:
        raise InvalidInput(
            "invalid_public_key",
            f"public key {public_key.hex()} is non-canonical or of small order",
        )
    return public_key


def signed_message(label: bytes, *fields: bytes) -> bytes:
    """The domain-separated bytes a client signs: ``label``, then each field as a 4-byte
    big-endian length and its bytes."""
    return label + b"".join(struct.pack(">I", len(f)) + f for f in fields)


def auth_message(audience: str, nonce: bytes) -> bytes:
    """What an installation signs to answer a challenge for the relay at ``audience``."""
    return signed_message(AUTH_LABEL, audience.encode("utf-8"), nonce)


def identity_record_message(inbox_id: str, version: int, record: bytes) -> bytes:
    """What an installation signs to publish version ``version`` of its inbox's record."""
    return signed_message(
        IDENTITY_RECORD_LABEL, inbox_id.encode("ascii"), struct.pack(">Q", version), record
    )


@dataclass(frozen=True)
class TopicName:
    """A parsed topic name: ``group:<base64url group id>`` or ``welcome:<installation id>``."""

    name: str
    kind: str  # a webapp.relay.models.TopicKind value
    group_id: bytes | None = None
    installation_id: str | None = None


def group_topic(group_id: bytes) -> str:
    return GROUP_TOPIC_PREFIX + b64url_encode(group_id)


def welcome_topic(installation: str) -> str:
    return WELCOME_TOPIC_PREFIX + installation


@functools.lru_cache(maxsize=4096)  # every publish names its topic; errors are not cached
def parse_topic(name: str) -> TopicName:
    """Parse a topic name, refusing any spelling but the canonical one."""
    if name.startswith(GROUP_TOPIC_PREFIX):
        encoded = name[len(GROUP_TOPIC_PREFIX) :]
        if _BASE64URL.fullmatch(encoded) and len(encoded) % 4 != 1:
            group_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            if b64url_encode(group_id) == encoded and 0 < len(group_id) <= MAX_GROUP_ID_BYTES:
                return TopicName(name, "group", group_id=group_id)
        raise InvalidInput(
            "invalid_topic",
            f"topic {name[:80]!r}: a group topic is 'group:' and the group id (1 to"
            f" {MAX_GROUP_ID_BYTES} bytes) in unpadded base64url",
        )
    if name.startswith(WELCOME_TOPIC_PREFIX):
        installation = name[len(WELCOME_TOPIC_PREFIX) :]
        if _INSTALLATION_ID.fullmatch(installation):
            return TopicName(name, "welcome", installation_id=installation)
        raise InvalidInput(
            "invalid_topic",
            f"topic {name[:80]!r}: a welcome topic is 'welcome:' and an installation id",
        )
    raise InvalidInput(
        "invalid_topic", f"topic {name[:80]!r} starts with neither 'group:' nor 'welcome:'"
    )
