"""REST endpoints of the relay app, mounted under /api/v1/ by ``webapp.api``.

Views only translate: JSON and base64 in, a service call, a schema out. The services raise
``RelayError``s, which ``webapp.api`` answers as JSON with their status and code.
"""

from __future__ import annotations

import logging
from typing import cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from ninja import P, QueryEx, Router, Status
from ninja.responses import codes_4xx
from ninja.security import HttpBearer

from webapp import __version__

from . import addresses, auth, blobs, conversations, delivery, directory
from .errors import InvalidInput, TooLarge
from .frames import envelope_fields
from .hub import NODES_GROUP
from .identifiers import b64decode, b64encode, welcome_topic
from .models import AddressBinding, IdentityRecord, Inbox, Installation
from .schemas import (
    AddressBindingIn,
    AddressBindingOut,
    BlobOut,
    ChallengeOut,
    ClaimedKeyPackageOut,
    ClaimOut,
    ConversationOut,
    ConversationPageOut,
    DatabaseHealth,
    EnvelopeOut,
    ErrorOut,
    HealthOut,
    HistoryOut,
    IdentityRecordIn,
    IdentityRecordOut,
    InboxOut,
    InstallationIn,
    InstallationOut,
    JoinIn,
    KeyPackageBatchIn,
    KeyPackageCountOut,
    ReadCursorIn,
    TokenIn,
    TokenOut,
)

logger = logging.getLogger(__name__)


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``, a token from ``POST /auth/token``."""

    def authenticate(self, request: HttpRequest, token: str) -> Installation:
        return auth.installation_for_token(token)


def caller(request: HttpRequest) -> Installation:
    return cast(Installation, request.auth)  # type: ignore[attr-defined]


ERRORS: dict[object, type[ErrorOut]] = {codes_4xx: ErrorOut}

router = Router(tags=["relay"])
auth_router = Router(tags=["authentication"])
directory_router = Router(tags=["directory"], auth=BearerToken())
conversations_router = Router(tags=["conversations"], auth=BearerToken())
blobs_router = Router(tags=["blobs"], auth=BearerToken())


# --- Health ---------------------------------------------------------------------------------


@router.get(
    "/health",
    response={200: HealthOut, 503: HealthOut},
    exclude_none=True,
    summary="Relay health",
)
def health(request: HttpRequest) -> Status[HealthOut]:
    """Report the relay version and whether the database answers a query.

    503 (with the error's class name) when the database cannot be reached.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # a health check reports every failure, it never raises
        logger.warning("health check: database unavailable", exc_info=True)
        database = DatabaseHealth(
            status="error", vendor=connection.vendor, error=type(exc).__name__
        )
        return Status(503, HealthOut(status="error", version=__version__, database=database))
    database = DatabaseHealth(status="ok", vendor=connection.vendor)
    return Status(200, HealthOut(status="ok", version=__version__, database=database))


# --- Authentication -------------------------------------------------------------------------


def _audience(request: HttpRequest) -> str:
    try:
        host = request.get_host()
    except DisallowedHost:
        host = None  # refused below, with the relay's own error code
    return auth.audience_for_host(host)


@auth_router.post("/challenge", response={201: ChallengeOut, **ERRORS}, summary="Get a challenge")
def create_challenge(request: HttpRequest) -> Status[ChallengeOut]:
    """A single-use nonce to sign (with the audience) for ``POST /auth/token``."""
    challenge = auth.issue_challenge(_audience(request))
    return Status(
        201,
        ChallengeOut(
            nonce=b64encode(challenge.nonce),
            audience=challenge.audience,
            expires_at=challenge.expires_at,
        ),
    )


@auth_router.post("/token", response={201: TokenOut, **ERRORS}, summary="Answer a challenge")
def create_token(request: HttpRequest, body: TokenIn) -> Status[TokenOut]:
    """Exchange a signed challenge for a short-lived bearer token. A public key the relay has
    never seen becomes the first installation of a new inbox."""
    installation = auth.authenticate(
        b64decode(body.nonce, "nonce"),
        b64decode(body.public_key, "public_key"),
        b64decode(body.signature, "signature"),
        _audience(request),
    )
    token = auth.issue_token(installation)
    return Status(
        201,
        TokenOut(
            token=token.token,
            expires_at=token.expires_at,
            installation_id=installation.pk,
            inbox_id=installation.inbox_id,
        ),
    )


# --- Installations and inboxes --------------------------------------------------------------


def _installation_out(installation: Installation) -> InstallationOut:
    return InstallationOut(
        installation_id=installation.pk,
        inbox_id=installation.inbox_id,
        public_key=b64encode(bytes(installation.public_key)),
        welcome_topic=welcome_topic(installation.pk),
        created_at=installation.created_at,
        admitted_by=installation.admitted_by_id,
        revoked_at=installation.revoked_at,
    )


def _record_out(record: IdentityRecord) -> IdentityRecordOut:
    return IdentityRecordOut(
        inbox_id=record.inbox_id,
        version=record.version,
        record=b64encode(bytes(record.record)),
        signature=b64encode(bytes(record.signature)),
        signed_by=record.signed_by_id,
        signer_public_key=b64encode(bytes(record.signed_by.public_key)),
        created_at=record.created_at,
    )


@directory_router.get("/installations/me", response={200: InstallationOut, **ERRORS})
def my_installation(request: HttpRequest) -> InstallationOut:
    """The installation this token belongs to."""
    return _installation_out(caller(request))


@directory_router.get("/installations/{installation_id}", response={200: InstallationOut, **ERRORS})
def get_installation(request: HttpRequest, installation_id: str) -> InstallationOut:
    return _installation_out(directory.get_installation(installation_id))


@directory_router.post("/installations", response={201: InstallationOut, **ERRORS})
def admit_installation(request: HttpRequest, body: InstallationIn) -> Status[InstallationOut]:
    """Admit a new device's key to the caller's inbox; that key then authenticates as an
    installation of this inbox instead of starting one of its own."""
    installation = directory.admit_installation(
        caller(request), b64decode(body.public_key, "public_key")
    )
    return Status(201, _installation_out(installation))


@directory_router.delete("/installations/{installation_id}", response={204: None, **ERRORS})
def revoke_installation(request: HttpRequest, installation_id: str) -> Status[None]:
    """Revoke an installation of the caller's inbox: its tokens, key packages and open
    connections end, and it can no longer authenticate."""
    revoked = directory.revoke_installation(caller(request), installation_id)
    layer = get_channel_layer()
    if layer is not None:
        try:
            async_to_sync(layer.group_send)(
                NODES_GROUP, {"type": "relay.revoked", "installation": revoked.pk}
            )
        except Exception:  # the revocation stands; live sockets then end at their next auth
            logger.warning("could not notify the connections of %s", revoked.pk, exc_info=True)
    return Status(204, None)


@directory_router.get("/inboxes/{inbox_id}", response={200: InboxOut, **ERRORS})
def get_inbox(request: HttpRequest, inbox_id: str) -> InboxOut:
    """An inbox's installations, as the relay knows them (clients verify them against the
    inbox's identity record)."""
    inbox: Inbox = directory.get_inbox(inbox_id)
    latest = directory.latest_identity_record(inbox)
    return InboxOut(
        inbox_id=inbox.pk,
        created_at=inbox.created_at,
        installations=[_installation_out(i) for i in directory.inbox_installations(inbox)],
        identity_record_version=None if latest is None else latest.version,
        addresses=addresses.inbox_addresses(inbox),
    )


@directory_router.get(
    "/inboxes/{inbox_id}/identity-record", response={200: IdentityRecordOut, **ERRORS}
)
def get_identity_record(
    request: HttpRequest,
    inbox_id: str,
    version: QueryEx[int | None, P(ge=1, le=directory.MAX_RECORD_VERSION)] = None,
) -> IdentityRecordOut:
    """The latest identity record of an inbox, or version ``?version=``."""
    return _record_out(directory.get_identity_record(inbox_id, version))


@directory_router.put(
    "/inboxes/{inbox_id}/identity-record", response={201: IdentityRecordOut, **ERRORS}
)
def put_identity_record(
    request: HttpRequest, inbox_id: str, body: IdentityRecordIn
) -> Status[IdentityRecordOut]:
    """Publish a new version of the caller's inbox's identity record, signed by the caller."""
    record = directory.publish_identity_record(
        caller(request),
        inbox_id,
        body.version,
        b64decode(body.record, "record"),
        b64decode(body.signature, "signature"),
    )
    return Status(201, _record_out(record))


@directory_router.post("/inboxes/{inbox_id}/key-packages/claim", response={200: ClaimOut, **ERRORS})
def claim_key_packages(request: HttpRequest, inbox_id: str) -> ClaimOut:
    """Claim one key package of each active installation of the inbox (except the caller):
    each is handed out once; when none is left, the installation's last-resort one."""
    claimed = directory.claim_key_packages(caller(request), inbox_id)
    return ClaimOut(
        inbox_id=inbox_id,
        key_packages=[
            ClaimedKeyPackageOut(
                installation_id=c.installation_id,
                key_package=None if c.key_package is None else b64encode(c.key_package),
                last_resort=c.last_resort,
            )
            for c in claimed
        ],
    )


@directory_router.post("/key-packages", response={201: KeyPackageCountOut, **ERRORS})
def upload_key_packages(
    request: HttpRequest, body: KeyPackageBatchIn
) -> Status[KeyPackageCountOut]:
    """Upload a batch of the caller's key packages (all or nothing)."""
    batch = [
        (b64decode(item.key_package, f"key_packages[{index}].key_package"), item.last_resort)
        for index, item in enumerate(body.key_packages)
    ]
    count = directory.upload_key_packages(caller(request), batch)
    return Status(201, KeyPackageCountOut(remaining=count.remaining, last_resort=count.last_resort))


@directory_router.get("/key-packages/count", response={200: KeyPackageCountOut, **ERRORS})
def count_key_packages(request: HttpRequest) -> KeyPackageCountOut:
    """How many of the caller's key packages are left to claim."""
    count = directory.count_key_packages(caller(request))
    return KeyPackageCountOut(remaining=count.remaining, last_resort=count.last_resort)


# --- Address bindings -----------------------------------------------------------------------


def _binding_out(binding: AddressBinding) -> AddressBindingOut:
    return AddressBindingOut(
        address=binding.address,
        inbox_id=binding.inbox_id,
        signature=b64encode(bytes(binding.signature)),
        issued_at=binding.issued_at,
        bound_at=binding.bound_at,
    )


@directory_router.put("/inboxes/{inbox_id}/address", response={201: AddressBindingOut, **ERRORS})
def bind_address(
    request: HttpRequest, inbox_id: str, body: AddressBindingIn
) -> Status[AddressBindingOut]:
    """Bind an Ethereum address to the caller's inbox with the wallet's EIP-191 signature of
    the inbox's address binding text; a binding of the address to another inbox is replaced."""
    binding = addresses.bind_address(
        caller(request),
        inbox_id,
        body.address,
        b64decode(body.signature, "signature"),
        body.issued_at,
    )
    return Status(201, _binding_out(binding))


@directory_router.get("/addresses/{address}", response={200: AddressBindingOut, **ERRORS})
def get_address(request: HttpRequest, address: str) -> AddressBindingOut:
    """The inbox an Ethereum address is bound to, with the wallet's signature to verify."""
    return _binding_out(addresses.get_binding(address))


# --- Blobs ----------------------------------------------------------------------------------

_BINARY = {"type": "string", "format": "binary"}


def _read_blob_body(request: HttpRequest) -> bytes:
    """The raw request body, read from the stream rather than through ``request.body``, whose
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is meant for JSON and far below the blob limit.

    A declared Content-Length over the limit is refused before reading; a body longer than it
    declared is caught by reading one byte past the limit.
    """
    limit = settings.VEILPOST_MAX_BLOB_BYTES
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit():
        blobs.check_blob_size(int(declared))
    try:
        data = request.read(limit + 1)
    except UnreadablePostError:
        raise InvalidInput("bad_request", "the request body could not be read") from None
    if len(data) > limit:
        raise TooLarge(
            "too_large", f"the body is over the blob limit of {limit} bytes", limit=limit
        )
    return data


@blobs_router.post(
    "/blobs",
    response={200: BlobOut, 201: BlobOut, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": _BINARY}},
        }
    },
)
def upload_blob(request: HttpRequest) -> Status[BlobOut]:
    """Store an encrypted attachment: the raw bytes are the body. Its id is the SHA-256 of the
    bytes; uploading bytes the relay already has stores nothing and answers 200."""
    stored = blobs.store_blob(caller(request), _read_blob_body(request))
    return Status(
        201 if stored.created else 200,
        BlobOut(id=stored.id, size=stored.size, created_at=stored.created_at),
    )


@blobs_router.get(
    "/blobs/{blob_id}",
    response=ERRORS,
    openapi_extra={
        "responses": {
            200: {
                "description": "the blob's bytes",
                "content": {"application/octet-stream": {"schema": _BINARY}},
            }
        }
    },
)
def download_blob(request: HttpRequest, blob_id: str) -> HttpResponse:
    """The bytes of a blob, as uploaded (check them against the id: it is their SHA-256)."""
    data = blobs.get_blob(blob_id)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Length"] = str(len(data))
    response["Content-Disposition"] = "attachment"
    # The bytes of an id never change: cacheable for good (by the client only).
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    response["ETag"] = f'"{blob_id}"'
    return response


# --- Conversations and history --------------------------------------------------------------


def _conversation_out(conversation: conversations.Conversation) -> ConversationOut:
    return ConversationOut(
        topic=conversation.topic,
        kind=conversation.kind,  # type: ignore[arg-type]  # a TopicKind value
        created_at=conversation.created_at,
        last_sequence=conversation.last_sequence,
        last_activity_at=conversation.last_activity_at,
        read_cursor=conversation.read_cursor,
        unread=conversation.unread,
    )


@conversations_router.get("/conversations", response={200: ConversationPageOut, **ERRORS})
def list_conversations(
    request: HttpRequest, cursor: str | None = None, limit: QueryEx[int, P(ge=1, le=100)] = 50
) -> ConversationPageOut:
    """The caller's conversations, newest activity first, with unread counts."""
    page, next_cursor = conversations.list_conversations(caller(request), cursor, limit)
    return ConversationPageOut(
        conversations=[_conversation_out(c) for c in page], next_cursor=next_cursor
    )


@conversations_router.post("/conversations", response={201: ConversationOut, **ERRORS})
def join_conversation(request: HttpRequest, body: JoinIn) -> Status[ConversationOut]:
    """Add a group topic to the caller's conversations (subscribing does so too)."""
    return Status(
        201, _conversation_out(conversations.join_conversation(caller(request), body.topic))
    )


@conversations_router.delete("/conversations/{topic}", response={204: None, **ERRORS})
def leave_conversation(request: HttpRequest, topic: str) -> Status[None]:
    """Drop a group topic from the caller's conversations."""
    conversations.leave_conversation(caller(request), topic)
    return Status(204, None)


@conversations_router.put(
    "/conversations/{topic}/read-cursor", response={200: ConversationOut, **ERRORS}
)
def set_read_cursor(request: HttpRequest, topic: str, body: ReadCursorIn) -> ConversationOut:
    """Move the caller's read cursor on a topic forward (never back)."""
    return _conversation_out(conversations.set_read_cursor(caller(request), topic, body.sequence))


@conversations_router.get("/topics/{topic}/envelopes", response={200: HistoryOut, **ERRORS})
def topic_history(
    request: HttpRequest,
    topic: str,
    after: int = 0,
    limit: QueryEx[int, P(ge=1, le=500)] = 100,
) -> HistoryOut:
    """Envelopes of a topic after sequence ``after``, oldest first (members only)."""
    page = delivery.history(caller(request), topic, after, limit)
    envelopes = [EnvelopeOut(**envelope_fields(e)) for e in page.envelopes]
    return HistoryOut(
        topic=page.position.name,
        envelopes=envelopes,
        last_sequence=page.position.last_sequence,
        first_sequence=page.position.first_sequence,
        has_more=page.has_more,
        next_after=envelopes[-1].sequence if envelopes else after,
    )


router.add_router("/auth", auth_router)
router.add_router("/", directory_router)
router.add_router("/", conversations_router)
router.add_router("/", blobs_router)
