"""Names and signed messages of the Veilpost relay protocol (``docs/protocol.md``), shared by
the client and the relay so that both spell them one way.

- Binary values in JSON are standard base64 with padding (RFC 4648 §4); group ids inside
  topic names are unpadded base64url (§5).
- An installation id is derived from the installation's Ed25519 public key.
- What installations sign is domain-separated: a label, then each field as a 4-byte
  big-endian length and its bytes.

Standard library only: this module runs in the browser too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

__all__ = [
    "AUTH_LABEL",
    "GROUP_TOPIC_PREFIX",
    "IDENTITY_RECORD_LABEL",
    "INSTALLATION_ID_LABEL",
    "MAX_GROUP_ID_BYTES",
    "WELCOME_TOPIC_PREFIX",
    "address_binding_text",
    "auth_message",
    "b64decode",
    "b64encode",
    "b64url_encode",
    "group_id_of_topic",
    "group_topic",
    "identity_record_message",
    "installation_id",
    "is_installation_id",
    "signed_message",
    "welcome_topic",
]

INSTALLATION_ID_LABEL = b"veilpost installation id v1"
AUTH_LABEL = b"veilpost relay auth v1"
IDENTITY_RECORD_LABEL = b"veilpost identity record v1"

MAX_GROUP_ID_BYTES = 255
GROUP_TOPIC_PREFIX = "group:"
WELCOME_TOPIC_PREFIX = "welcome:"

_INSTALLATION_ID = re.compile(r"[0-9a-f]{32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def b64encode(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode canonical standard base64; raise ``ValueError`` for anything else (another
    alphabet, missing padding, whitespace, non-zero trailing bits)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return data


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def installation_id(public_key: bytes) -> str:
    """The installation id of an Ed25519 public key: the first 16 bytes of
    SHA-256(``"veilpost installation id v1"`` || public key), in lowercase hex."""
    return hashlib.sha256(INSTALLATION_ID_LABEL + public_key).digest()[:16].hex()


def is_installation_id(value: str) -> bool:
    """Whether ``value`` is spelled like an installation (or inbox) id: 32 lowercase hex."""
    return bool(_INSTALLATION_ID.fullmatch(value))


def signed_message(label: bytes, *fields: bytes) -> bytes:
    """The domain-separated bytes an installation signs: ``label``, then each field as a
    4-byte big-endian length and its bytes."""
    return label + b"".join(struct.pack(">I", len(f)) + f for f in fields)


def auth_message(audience: str, nonce: bytes) -> bytes:
    """What an installation signs to answer a challenge for the relay at ``audience``."""
    return signed_message(AUTH_LABEL, audience.encode("utf-8"), nonce)


def identity_record_message(inbox_id: str, version: int, record: bytes) -> bytes:
    """What an installation signs to publish version ``version`` of its inbox's record."""
    return signed_message(
        IDENTITY_RECORD_LABEL, inbox_id.encode("ascii"), struct.pack(">Q", version), record
    )


def group_topic(group_id: bytes) -> str:
    """The topic name of an MLS group: ``group:`` and the group id in unpadded base64url."""
    return GROUP_TOPIC_PREFIX + b64url_encode(group_id)


def welcome_topic(installation: str) -> str:
    """The topic name of an installation's welcome inbox."""
    return WELCOME_TOPIC_PREFIX + installation


def group_id_of_topic(name: str) -> bytes | None:
    """The group id of a canonical group topic name, or ``None`` if ``name`` is not one
    (another spelling of the same bytes is not canonical)."""
    if not name.startswith(GROUP_TOPIC_PREFIX):
        return None
    encoded = name[len(GROUP_TOPIC_PREFIX) :]
    if not _BASE64URL.fullmatch(encoded) or len(encoded) % 4 == 1:
        return None
    group_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    if b64url_encode(group_id) != encoded or not 0 < len(group_id) <= MAX_GROUP_ID_BYTES:
        return None
    return group_id


def address_binding_text(inbox_id: str, issued_at: int) -> str:
    """The text an Ethereum wallet signs (EIP-191 ``personal_sign``) to bind its address to
    inbox ``inbox_id`` at Unix time ``issued_at``, so that people can reach the inbox by the
    ``0x`` address. The relay checks the signature before it serves the binding, and every
    client checks it again. The time orders a wallet's bindings: the relay keeps an address's
    newest, so an old signature cannot move the address back."""
    return (
        "Veilpost: link my address to the inbox below, so that people can reach it by this"
        f" address.\n\nInbox: {inbox_id}\nIssued at (Unix time): {issued_at}\n\nThis"
        " signature moves no funds and grants no other access."
    )
