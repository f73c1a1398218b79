"""Authentication and the directory without sockets: challenges, registration, identity
records, key packages (claimed exactly once under concurrency), rate buckets."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from relay_support import Device

from webapp.relay import auth, directory
from webapp.relay.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
)
from webapp.relay.identifiers import (
    SMALL_ORDER_POINTS,
    auth_message,
    identity_record_message,
    installation_id,
    signed_message,
)
from webapp.relay.models import Inbox, Installation, KeyPackage, Membership, Topic
from webapp.relay.ratelimit import spend_token

pytestmark = pytest.mark.django_db
AUDIENCE = "relay.test"


def sign_in(device: Device) -> Installation:
    challenge = auth.issue_challenge(AUDIENCE)
    return auth.authenticate(
        challenge.nonce, device.public_key, device.answer(challenge.nonce, AUDIENCE), AUDIENCE
    )


def test_signed_messages_are_length_prefixed_and_labelled() -> None:
    assert signed_message(b"L", b"ab", b"") == b"L\x00\x00\x00\x02ab\x00\x00\x00\x00"
    assert (
        auth_message("h", b"\x01") == b"veilpost relay auth v1\x00\x00\x00\x01h\x00\x00\x00\x01\x01"
    )
    assert identity_record_message("i", 1, b"r").endswith(
        b"\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01r"
    )


def test_first_authentication_creates_inbox_installation_and_welcome_inbox() -> None:
    device = Device()

    installation = sign_in(device)

    assert installation.pk == installation_id(device.public_key)
    assert Inbox.objects.get().pk == installation.pk
    welcome = Topic.objects.get(kind="welcome")
    assert (welcome.name, welcome.owner_id) == (f"welcome:{installation.pk}", installation.pk)
    assert Membership.objects.filter(installation=installation, topic=welcome).exists()
    assert sign_in(device) == installation  # the same key again: the same installation


def test_challenge_is_consumed_even_by_a_failed_answer() -> None:
    device = Device()
    challenge = auth.issue_challenge(AUDIENCE)
    with pytest.raises(AuthenticationFailed) as caught:
        auth.authenticate(challenge.nonce, device.public_key, bytes(64), AUDIENCE)
    assert caught.value.code == "bad_signature"

    with pytest.raises(AuthenticationFailed) as caught:
        auth.authenticate(
            challenge.nonce, device.public_key, device.answer(challenge.nonce, AUDIENCE), AUDIENCE
        )

    assert caught.value.code == "challenge_used"
    assert not Installation.objects.exists()


def test_expired_challenge() -> None:
    device = Device()
    challenge = auth.issue_challenge(AUDIENCE)
    later = timezone.now() + timedelta(minutes=2)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: later)
        with pytest.raises(AuthenticationFailed) as caught:
            auth.authenticate(
                challenge.nonce,
                device.public_key,
                device.answer(challenge.nonce, AUDIENCE),
                AUDIENCE,
            )

    assert caught.value.code == "challenge_expired"


@pytest.mark.parametrize("key", sorted(SMALL_ORDER_POINTS))
def test_small_order_keys_are_refused(key: bytes) -> None:
    challenge = auth.issue_challenge(AUDIENCE)

    with pytest.raises(InvalidInput) as caught:
        auth.authenticate(challenge.nonce, key, bytes(64), AUDIENCE)

    assert caught.value.code == "invalid_public_key"


def test_small_order_list_holds_exactly_the_torsion_points() -> None:
    # Each listed encoding decodes to a point P with [8]P = identity (checked with the pure
    # backend's own point arithmetic), and there are eight of them: the whole torsion group.
    from veilpost.crypto.pure import ed25519 as pure

    for encoding in SMALL_ORDER_POINTS:
        decoded = pure._decode(encoding)
        assert decoded is not None
        x, y = decoded
        point = (x, y, 1, x * y % pure._P)
        for _ in range(3):
            point = pure._double(point)
        px, py, pz, _ = point
        assert px % pure._P == 0 and (py - pz) % pure._P == 0
    assert len(SMALL_ORDER_POINTS) == 8


def test_audience_for_host(settings: object) -> None:
    assert auth.audience_for_host("LocalHost:8000") == "localhost:8000"
    with pytest.raises(InvalidInput):
        auth.audience_for_host("evil.example")
    with pytest.raises(InvalidInput):
        auth.audience_for_host(None)
    settings.VEILPOST_AUTH_AUDIENCE = "relay.example"  # type: ignore[attr-defined]
    assert auth.audience_for_host("anything") == "relay.example"


def test_token_lifecycle() -> None:
    installation = sign_in(Device())
    token = auth.issue_token(installation)

    assert auth.installation_for_token(token.token) == installation
    with pytest.raises(AuthenticationFailed, match="not valid"):
        auth.installation_for_token(token.token + "x")
    directory.revoke_installation(installation, installation.pk)
    with pytest.raises(AuthenticationFailed):
        auth.installation_for_token(token.token)


def test_revoked_installation_cannot_authenticate() -> None:
    device = Device()
    installation = sign_in(device)
    directory.revoke_installation(installation, installation.pk)

    with pytest.raises(Forbidden) as caught:
        sign_in(device)

    assert caught.value.code == "installation_revoked"


# --- Key packages -----------------------------------------------------------------------------


def test_claim_order_and_last_resort_fallback() -> None:
    bob_device = Device()
    bob, alice = sign_in(bob_device), sign_in(Device())
    packages = [bob_device.key_package() for _ in range(3)]
    directory.upload_key_packages(
        bob, [(packages[0], False), (packages[1], False), (packages[2], True)]
    )

    claimed = [directory.claim_key_packages(alice, bob.pk)[0] for _ in range(3)]

    assert [(c.key_package, c.last_resort) for c in claimed] == [
        (packages[0], False),
        (packages[1], False),
        (packages[2], True),
    ]
    assert directory.count_key_packages(bob) == directory.KeyPackageCount(0, True)


def test_a_new_last_resort_replaces_the_old() -> None:
    device = Device()
    bob = sign_in(device)
    directory.upload_key_packages(bob, [(device.key_package(), True)])
    newer = device.key_package()

    directory.upload_key_packages(bob, [(newer, True)])

    assert [bytes(k) for k in KeyPackage.objects.values_list("key_package", flat=True)] == [newer]


def test_upload_is_all_or_nothing() -> None:
    device = Device()
    bob = sign_in(device)

    with pytest.raises(InvalidInput) as caught:
        directory.upload_key_packages(bob, [(device.key_package(), False), (b"junk", False)])

    assert caught.value.code == "invalid_key_package"
    assert not KeyPackage.objects.exists()


def test_stored_key_packages_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory, "MAX_KEY_PACKAGES_PER_INSTALLATION", 2)
    device = Device()
    bob = sign_in(device)
    directory.upload_key_packages(bob, [(device.key_package(), False)] * 2)

    with pytest.raises(Conflict) as caught:
        directory.upload_key_packages(bob, [(device.key_package(), False)])

    assert caught.value.code == "too_many_key_packages"


def test_claiming_an_unknown_inbox() -> None:
    alice = sign_in(Device())

    with pytest.raises(NotFound):
        directory.claim_key_packages(alice, Device().installation_id)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_hand_out_each_key_package_once(settings: object) -> None:
    settings.VEILPOST_CLAIM_BURST = 100  # type: ignore[attr-defined]
    bob_device = Device()
    bob = sign_in(bob_device)
    regular = [bob_device.key_package() for _ in range(10)]
    last_resort = bob_device.key_package()
    directory.upload_key_packages(bob, [(kp, False) for kp in regular] + [(last_resort, True)])
    claimers = [sign_in(Device()) for _ in range(8)]
    results: list[directory.ClaimedKeyPackage] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim(claimer: Installation) -> None:
        try:
            for _ in range(2):
                (claimed,) = directory.claim_key_packages(claimer, bob.pk)
                with lock:
                    results.append(claimed)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    handed_regular = [r.key_package or b"" for r in results if not r.last_resort]
    assert sorted(handed_regular) == sorted(regular)  # every one, each exactly once
    assert [r.key_package for r in results if r.last_resort] == [last_resort] * 6


# --- Identity records and rate buckets ----------------------------------------------------


def test_identity_record_signed_by_another_inbox_member() -> None:
    laptop_device, phone = Device(), Device()
    laptop = sign_in(laptop_device)
    phone_installation = directory.admit_installation(laptop, phone.public_key)
    record = b"the inbox's installations"

    stored = directory.publish_identity_record(
        phone_installation,
        laptop.pk,
        1,
        record,
        phone.sign(identity_record_message(laptop.pk, 1, record)),
    )

    assert stored.signed_by == phone_installation
    assert directory.get_identity_record(laptop.pk).version == 1


def test_token_bucket_refills() -> None:
    installation = sign_in(Device())
    start = timezone.now()
    for _ in range(2):
        spend_token(installation, "test", rate=1.0, burst=2, now=start)

    with pytest.raises(RateLimited) as caught:
        spend_token(installation, "test", rate=1.0, burst=2, now=start)
    assert caught.value.details["retry_after"] == pytest.approx(1.0)

    spend_token(installation, "test", rate=1.0, burst=2, now=start + timedelta(seconds=1))
