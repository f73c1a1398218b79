"""What the relay stores: the directory (inboxes, installations, identity records, key
packages, address bindings), the delivery service (topics, envelopes, commit slots,
memberships, blobs) and authentication (challenges, tokens, rate buckets).

What is deliberately *not* here (``DESIGN.md``, "What the operator can see"): an envelope has
no sender and no IP address, and nothing stores plaintext. The relay keeps what delivery needs:
which installation is subscribed to which topic, and the cleartext MLS framing header (wire
format, epoch, content type) and padded size of each envelope.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Inbox(models.Model):
    """The account that owns installations. Its id is the id of its first installation."""

    id = models.CharField(primary_key=True, max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        return self.id


class Installation(models.Model):
    """One browser profile or agent process: an Ed25519 key, also its MLS leaf signature key.

    ``id`` is derived from ``public_key`` (``webapp.relay.identifiers.installation_id``).
    """

    id = models.CharField(primary_key=True, max_length=32)
    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="installations")
    public_key = models.BinaryField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)
    # The installation of the same inbox that admitted this one; None for an inbox's first.
    admitted_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.id

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class IdentityRecord(models.Model):
    """One version of an inbox's signed identity record: opaque to the relay, which only checks
    that an installation of the inbox signed it (clients verify the record itself)."""

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="identity_records")
    version = models.PositiveBigIntegerField()
    record = models.BinaryField()
    signature = models.BinaryField(max_length=64)
    signed_by = models.ForeignKey(Installation, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["inbox", "version"], name="identity_record_version")
        ]


class KeyPackage(models.Model):
    """An MLS key package (an encoded ``MLSMessage``) that an installation uploaded.

    A regular key package is handed out once (``claimed_at`` set); a last-resort one is handed
    out whenever the regular ones are gone, and stays.
    """

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="key_packages"
    )
    key_package = models.BinaryField()
    last_resort = models.BooleanField(default=False)
    uploaded_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["installation", "last_resort", "claimed_at", "id"],
                name="key_package_claim",
            )
        ]


class AddressBinding(models.Model):
    """An Ethereum address bound to an inbox by the wallet's EIP-191 signature of
    ``veilpost.protocol.address_binding_text(inbox, issued_at)``. Public: anyone may look it up, and
    clients verify the signature themselves. An address names one inbox at a time; an inbox
    may have several addresses."""

    address = models.CharField(primary_key=True, max_length=42)  # EIP-55 checksummed "0x..."
    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="address_bindings")
    signature = models.BinaryField(max_length=65)  # r || s || v
    issued_at = models.BigIntegerField()  # Unix time in the signed text: orders rebindings
    bound_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.address


class TopicKind(models.TextChoices):
    GROUP = "group", "MLS group"
    WELCOME = "welcome", "welcome inbox"


class Topic(models.Model):
    """A delivery topic: one per MLS group, and one welcome inbox per installation.

    ``last_sequence`` is the sequence number of the newest envelope: sequences run 1, 2, 3...
    with no gap. ``pruned_through`` is the highest sequence that retention has deleted.
    """

    name = models.CharField(max_length=400, unique=True)
    kind = models.CharField(max_length=16, choices=TopicKind.choices)
    group_id = models.BinaryField(null=True, blank=True)
    owner = models.OneToOneField(
        Installation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="welcome_topic",
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_sequence = models.PositiveBigIntegerField(default=0)
    last_activity_at = models.DateTimeField(default=timezone.now)
    pruned_through = models.PositiveBigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["last_activity_at", "id"], name="topic_activity")]

    def __str__(self) -> str:
        return self.name


class Envelope(models.Model):
    """An opaque MLS message on a topic, with the cleartext header fields the relay checked.

    No sender and no IP address, by design. ``client_id`` is the publisher's idempotency key.
    """

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="envelopes")
    sequence = models.PositiveBigIntegerField()
    client_id = models.CharField(max_length=64)
    wire_format = models.PositiveSmallIntegerField()
    epoch = models.PositiveBigIntegerField(null=True, blank=True)
    content_type = models.PositiveSmallIntegerField(null=True, blank=True)
    payload = models.BinaryField()
    size = models.PositiveIntegerField()  # the padded size: the payload's length in bytes
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["topic", "sequence"], name="envelope_sequence"),
            models.UniqueConstraint(fields=["topic", "client_id"], name="envelope_client_id"),
        ]
        indexes = [models.Index(fields=["created_at"], name="envelope_created")]


class GroupEpochCommit(models.Model):
    """The one commit accepted for an epoch of a group: the database enforces "at most one".

    Kept when retention deletes the envelope, so that a stale commit stays refused.
    """

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="commits")
    epoch = models.PositiveBigIntegerField()
    sequence = models.PositiveBigIntegerField()
    envelope = models.OneToOneField(
        Envelope, null=True, blank=True, on_delete=models.SET_NULL, related_name="commit"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["topic", "epoch"], name="one_commit_per_epoch")
        ]


class Membership(models.Model):
    """An installation's place in a topic: in its conversation list, with its read cursor.

    Created when the installation subscribes or publishes to a group (or joins it over REST),
    and for its own welcome inbox when it registers.
    """

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="memberships"
    )
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="memberships")
    read_cursor = models.PositiveBigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["installation", "topic"], name="one_membership")
        ]


class Blob(models.Model):
    """An opaque attachment (ciphertext: the relay cannot read it), named by the lowercase hex
    SHA-256 of its bytes. Stored once however often it is uploaded; ``uploaded_by`` (the first
    uploader) is charged for it in the blob quota."""

    id = models.CharField(primary_key=True, max_length=64)
    data = models.BinaryField()
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.SET_NULL, related_name="blobs"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="blob_created"),
            models.Index(fields=["uploaded_by", "size"], name="blob_quota"),
        ]


class AuthChallenge(models.Model):
    """A single-use nonce for challenge–response authentication."""

    nonce = models.CharField(max_length=64, unique=True)  # hex of 32 random bytes
    audience = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    public_key = models.BinaryField(max_length=32, null=True, blank=True)  # who used it

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="challenge_expiry")]


class AuthToken(models.Model):
    """A short-lived REST bearer token; only its SHA-256 digest is stored."""

    digest = models.CharField(max_length=64, unique=True)
    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="auth_tokens"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="token_expiry")]


class RateBucket(models.Model):
    """A token bucket of one installation for one action, shared by every relay node."""

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="rate_buckets"
    )
    action = models.CharField(max_length=32)
    tokens = models.FloatField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["installation", "action"], name="one_bucket")
        ]
