"""The relay's checks of protocol names and encodings: canonical base64, installation ids,
Ed25519 public keys and topic names, each refused with the protocol's error code.

The names themselves (installation ids, topic names, the signed messages) are defined once, in
:mod:`veilpost.protocol`, which clients use too; they are re-exported here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from veilpost import protocol
from veilpost.crypto.backend import ed25519_public_key_is_canonical
from veilpost.protocol import (
    GROUP_TOPIC_PREFIX,
    MAX_GROUP_ID_BYTES,
    WELCOME_TOPIC_PREFIX,
    auth_message,
    b64encode,
    b64url_encode,
    group_topic,
    identity_record_message,
    installation_id,
    is_installation_id,
    signed_message,
    welcome_topic,
)

from .errors import InvalidInput

__all__ = [
    "SMALL_ORDER_POINTS",
    "TopicName",
    "auth_message",
    "b64decode",
    "b64encode",
    "b64url_encode",
    "check_installation_id",
    "check_public_key",
    "group_topic",
    "identity_record_message",
    "installation_id",
    "parse_topic",
    "signed_message",
    "welcome_topic",
]

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


def b64decode(text: str, what: str) -> bytes:
    """Decode canonical standard base64, or raise ``InvalidInput`` naming ``what``."""
    try:
        return protocol.b64decode(text)
    except ValueError as exc:
        raise InvalidInput("invalid_base64", f"{what} is {exc}") from None


def check_installation_id(value: str) -> str:
    if not is_installation_id(value):
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


@dataclass(frozen=True)
class TopicName:
    """A parsed topic name: ``group:<base64url group id>`` or ``welcome:<installation id>``."""

    name: str
    kind: str  # a webapp.relay.models.TopicKind value
    group_id: bytes | None = None
    installation_id: str | None = None


@functools.lru_cache(maxsize=4096)  # every publish names its topic; errors are not cached
def parse_topic(name: str) -> TopicName:
    """Parse a topic name, refusing any spelling but the canonical one."""
    if name.startswith(GROUP_TOPIC_PREFIX):
        group_id = protocol.group_id_of_topic(name)
        if group_id is not None:
            return TopicName(name, "group", group_id=group_id)
        raise InvalidInput(
            "invalid_topic",
            f"topic {name[:80]!r}: a group topic is 'group:' and the group id (1 to"
            f" {MAX_GROUP_ID_BYTES} bytes) in unpadded base64url",
        )
    if name.startswith(WELCOME_TOPIC_PREFIX):
        installation = name[len(WELCOME_TOPIC_PREFIX) :]
        if is_installation_id(installation):
            return TopicName(name, "welcome", installation_id=installation)
        raise InvalidInput(
            "invalid_topic",
            f"topic {name[:80]!r}: a welcome topic is 'welcome:' and an installation id",
        )
    raise InvalidInput(
        "invalid_topic", f"topic {name[:80]!r} starts with neither 'group:' nor 'welcome:'"
    )
