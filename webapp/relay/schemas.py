"""Request and response schemas of the relay's REST API.

Binary values (keys, signatures, records, key packages, payloads) are standard base64 strings,
as on the WebSocket; the views decode them strictly (``invalid_base64`` on anything else).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic import ConfigDict

Status = Literal["ok", "error"]
Base64 = Annotated[str, Field(description="standard base64 (RFC 4648 §4), with padding")]


class DatabaseHealth(Schema):
    status: Status
    vendor: str
    error: str | None = None  # the exception's class name when status is "error"


class HealthOut(Schema):
    status: Status
    version: str
    database: DatabaseHealth


class ErrorOut(Schema):
    """The body of every error answer on /api/v1; some codes add fields (see the protocol)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="machine-readable error code, listed in docs/protocol.md")
    message: str = Field(description="what was checked, and the value that failed it")


# --- Authentication -------------------------------------------------------------------------


class ChallengeOut(Schema):
    nonce: Base64
    audience: str = Field(description="the host name to sign with the nonce")
    expires_at: datetime


class TokenIn(Schema):
    nonce: Annotated[Base64, Field(max_length=64)]
    public_key: Annotated[Base64, Field(max_length=64, description="Ed25519, 32 bytes")]
    signature: Annotated[Base64, Field(max_length=128, description="Ed25519, 64 bytes")]


class TokenOut(Schema):
    token: str = Field(description="send as 'Authorization: Bearer <token>'")
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    installation_id: str
    inbox_id: str


# --- Directory ------------------------------------------------------------------------------


class InstallationIn(Schema):
    public_key: Annotated[Base64, Field(max_length=64, description="Ed25519, 32 bytes")]


class InstallationOut(Schema):
    installation_id: str
    inbox_id: str
    public_key: Base64
    welcome_topic: str
    created_at: datetime
    admitted_by: str | None
    revoked_at: datetime | None


class InboxOut(Schema):
    inbox_id: str
    created_at: datetime
    installations: list[InstallationOut]
    identity_record_version: int | None
    addresses: list[str] = Field(
        description="Ethereum addresses bound to the inbox (EIP-55), oldest binding first"
    )


class AddressBindingIn(Schema):
    address: str = Field(description="'0x' and 40 hex digits (any case; mixed case: EIP-55)")
    signature: Annotated[
        Base64,
        Field(
            max_length=128,
            description="EIP-191 personal_sign of the inbox's address binding text:"
            " r || s || v, 65 bytes",
        ),
    ]
    issued_at: int = Field(
        description="the Unix time in the signed text; above the address's current binding's"
    )


class AddressBindingOut(Schema):
    address: str = Field(description="EIP-55 checksummed")
    inbox_id: str
    signature: Base64 = Field(description="the wallet's signature: r || s || v, 65 bytes")
    issued_at: int = Field(description="the Unix time in the signed binding text")
    bound_at: datetime


class IdentityRecordIn(Schema):
    version: int = Field(description="greater than every earlier version of the inbox's record")
    record: Base64
    signature: Annotated[Base64, Field(max_length=128)]


class IdentityRecordOut(Schema):
    inbox_id: str
    version: int
    record: Base64
    signature: Base64
    signed_by: str = Field(description="the installation whose key made the signature")
    signer_public_key: Base64
    created_at: datetime


class KeyPackageIn(Schema):
    key_package: Base64 = Field(description="an MLSMessage with wire format mls_key_package")
    last_resort: bool = False


class KeyPackageBatchIn(Schema):
    key_packages: list[KeyPackageIn]


class KeyPackageCountOut(Schema):
    remaining: int = Field(description="unclaimed regular key packages")
    last_resort: bool = Field(description="whether a last-resort key package is stored")


class ClaimedKeyPackageOut(Schema):
    installation_id: str
    key_package: Base64 | None = Field(description="null: none left, not even a last resort")
    last_resort: bool


class ClaimOut(Schema):
    inbox_id: str
    key_packages: list[ClaimedKeyPackageOut]


# --- Blobs ----------------------------------------------------------------------------------


class BlobOut(Schema):
    id: str = Field(description="lowercase hex SHA-256 of the blob's bytes")
    size: int = Field(description="bytes")
    created_at: datetime = Field(description="first upload; retention counts from it")


# --- Conversations and history --------------------------------------------------------------


class ConversationOut(Schema):
    topic: str
    kind: Literal["group", "welcome"]
    created_at: datetime
    last_sequence: int
    last_activity_at: datetime
    read_cursor: int
    unread: int


class ConversationPageOut(Schema):
    conversations: list[ConversationOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class JoinIn(Schema):
    topic: str


class ReadCursorIn(Schema):
    sequence: int


class EnvelopeOut(Schema):
    topic: str
    sequence: int
    id: str
    wire_format: str
    epoch: int | None
    content_type: str | None
    size: int
    created_at: datetime
    payload: Base64


class HistoryOut(Schema):
    topic: str
    envelopes: list[EnvelopeOut]
    last_sequence: int
    first_sequence: int = Field(description="the oldest sequence retention kept")
    has_more: bool
    next_after: int = Field(description="pass as ?after= for the next page")
