"""Challenge–response authentication with an installation's Ed25519 key, and REST tokens.

1. The relay issues a challenge: 32 random bytes, bound to the relay's *audience* (the host
   name clients connect to), valid ``VEILPOST_CHALLENGE_SECONDS``, usable once.
2. The client signs ``auth_message(audience, nonce)`` (``webapp.relay.identifiers``) with its
   installation key and sends its public key and the signature.
3. The relay consumes the challenge first (a failed answer burns it too), then checks the
   signature. A key it has never seen becomes the first installation of a new inbox; a key
   that another installation admitted authenticates as that installation.

The audience stops a malicious relay from replaying an answer to the real one; single use and
expiry stop replays at the same relay. REST challenges are stored (any node may see the
answer); a WebSocket's challenges live in its connection only (:class:`ChallengeBook`): an
answer is accepted only on the socket that was sent the challenge, once, before it expires, so
no other socket or node can use it and the database is not involved.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from veilpost.crypto import get_backend

from .errors import AuthenticationFailed, Forbidden, InvalidInput
from .identifiers import auth_message, check_public_key, installation_id, welcome_topic
from .models import AuthChallenge, AuthToken, Inbox, Installation, Membership, Topic, TopicKind

NONCE_BYTES = 32


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    audience: str
    expires_at: datetime


@dataclass(frozen=True)
class Token:
    token: str
    expires_at: datetime


def audience_for_host(host: str | None) -> str:
    """The audience clients must sign for a request that came with Host header ``host``.

    ``VEILPOST_AUTH_AUDIENCE`` when set; otherwise the Host header, lowercased, which must be
    one of ``ALLOWED_HOSTS``.
    """
    if settings.VEILPOST_AUTH_AUDIENCE:
        return str(settings.VEILPOST_AUTH_AUDIENCE)
    host = (host or "").strip().lower()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        raise InvalidInput("invalid_host", f"Host {host[:100]!r} is not a host this relay serves")
    return host


def _now() -> datetime:
    return timezone.now()


def new_challenge(audience: str) -> Challenge:
    """A fresh challenge for ``audience``, valid ``VEILPOST_CHALLENGE_SECONDS`` from now."""
    expires_at = _now() + timedelta(seconds=settings.VEILPOST_CHALLENGE_SECONDS)
    return Challenge(secrets.token_bytes(NONCE_BYTES), audience, expires_at)


class ChallengeBook:
    """The challenges one WebSocket connection was sent, in memory: single use, expiring."""

    def __init__(self) -> None:
        self.issued: dict[bytes, Challenge] = {}
        self.used: set[bytes] = set()

    def issue(self, audience: str) -> Challenge:
        challenge = new_challenge(audience)
        self.issued[challenge.nonce] = challenge
        return challenge

    def consume(self, nonce: bytes) -> Challenge:
        """Burn the challenge with ``nonce`` (a failed answer burns it too), or raise why it
        cannot be used."""
        if nonce in self.used:
            raise AuthenticationFailed("challenge_used", "the challenge was already answered")
        challenge = self.issued.pop(nonce, None)
        if challenge is None:
            raise AuthenticationFailed(
                "unknown_challenge", "this connection was not sent that challenge"
            )
        self.used.add(nonce)
        if challenge.expires_at <= _now():
            raise AuthenticationFailed(
                "challenge_expired", f"the challenge expired at {challenge.expires_at.isoformat()}"
            )
        return challenge

    def clear(self) -> None:
        self.issued.clear()
        self.used.clear()


def issue_challenge(audience: str) -> Challenge:
    """A stored challenge (REST): any node can take its answer."""
    challenge = new_challenge(audience)
    AuthChallenge.objects.create(
        nonce=challenge.nonce.hex(), audience=audience, expires_at=challenge.expires_at
    )
    return challenge


def _consume_challenge(nonce: bytes, audience: str, public_key: bytes) -> None:
    """Mark the challenge used, or raise naming why it cannot be used."""
    now = timezone.now()
    used = AuthChallenge.objects.filter(
        nonce=nonce.hex(), audience=audience, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now, public_key=public_key)
    if used:
        return
    challenge = AuthChallenge.objects.filter(nonce=nonce.hex()).first()
    if challenge is None:
        raise AuthenticationFailed("unknown_challenge", "this relay issued no such challenge")
    if challenge.used_at is not None:
        raise AuthenticationFailed("challenge_used", "the challenge was already answered")
    if challenge.audience != audience:
        raise AuthenticationFailed(
            "wrong_audience",
            f"the challenge was issued for {challenge.audience!r}, not {audience!r}",
        )
    raise AuthenticationFailed(
        "challenge_expired", f"the challenge expired at {challenge.expires_at.isoformat()}"
    )


def authenticate(nonce: bytes, public_key: bytes, signature: bytes, audience: str) -> Installation:
    """Check an answer to a stored (REST) challenge; return the installation (registered if
    new)."""
    check_public_key(public_key)
    _consume_challenge(nonce, audience, public_key)
    return _installation_for_answer(nonce, public_key, signature, audience)


def authenticate_key(
    nonce: bytes, public_key: bytes, signature: bytes, audience: str
) -> Installation:
    """Check the signature of an answer to a challenge the caller has already consumed;
    return the installation (registered if new)."""
    check_public_key(public_key)
    return _installation_for_answer(nonce, public_key, signature, audience)


def _installation_for_answer(
    nonce: bytes, public_key: bytes, signature: bytes, audience: str
) -> Installation:
    if not get_backend().ed25519_verify(public_key, auth_message(audience, nonce), signature):
        raise AuthenticationFailed(
            "bad_signature",
            f"the signature does not verify under public key {public_key.hex()}",
        )
    installation = Installation.objects.filter(pk=installation_id(public_key)).first()
    if installation is None:
        installation = register_first_installation(public_key)
    if installation.revoked:
        raise Forbidden("installation_revoked", f"installation {installation.pk} is revoked")
    return installation


def create_installation(
    public_key: bytes, inbox: Inbox, admitted_by: Installation | None = None
) -> Installation:
    """Store an installation with its welcome inbox topic (and its membership in it)."""
    installation = Installation.objects.create(
        id=installation_id(public_key),
        inbox=inbox,
        public_key=public_key,
        admitted_by=admitted_by,
    )
    topic = Topic.objects.create(
        name=welcome_topic(installation.pk), kind=TopicKind.WELCOME, owner=installation
    )
    Membership.objects.create(installation=installation, topic=topic)
    return installation


def register_first_installation(public_key: bytes) -> Installation:
    """A new inbox whose id is the installation's id, with that installation in it."""
    try:
        with transaction.atomic():
            inbox = Inbox.objects.create(id=installation_id(public_key))
            return create_installation(public_key, inbox)
    except IntegrityError:  # registered meanwhile by a concurrent first authentication
        return Installation.objects.get(pk=installation_id(public_key))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(installation: Installation) -> Token:
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(seconds=settings.VEILPOST_TOKEN_SECONDS)
    AuthToken.objects.create(
        digest=_digest(token), installation=installation, expires_at=expires_at
    )
    return Token(token, expires_at)


def installation_for_token(token: str) -> Installation:
    """The installation a bearer token belongs to, or ``AuthenticationFailed``."""
    record = AuthToken.objects.select_related("installation").filter(digest=_digest(token)).first()
    if record is None:
        raise AuthenticationFailed("invalid_token", "the bearer token is not valid")
    if record.expires_at <= timezone.now():
        raise AuthenticationFailed(
            "token_expired", f"the bearer token expired at {record.expires_at.isoformat()}"
        )
    if record.installation.revoked:
        raise Forbidden("installation_revoked", f"installation {record.installation.pk} is revoked")
    return record.installation
