"""Group commit: ``delivery.publish_batch`` gives each request of a batch the outcome it would
have had published alone, in order, and one bad request never spoils the others."""

from __future__ import annotations

import pytest
from relay_support import Device, commit, private_message, welcome

from webapp.relay import auth, delivery
from webapp.relay.delivery import Published, PublishRequest
from webapp.relay.errors import RelayError
from webapp.relay.identifiers import group_topic
from webapp.relay.models import Envelope, GroupEpochCommit, Installation, Membership, Topic

pytestmark = pytest.mark.django_db

GROUP = b"batch-group"
TOPIC = group_topic(GROUP)
OTHER = b"other-group"


@pytest.fixture
def alice() -> Installation:
    return auth.register_first_installation(Device().public_key)


def request(
    installation: Installation, client_id: str, payload: bytes, topic: str = TOPIC
) -> PublishRequest:
    return delivery.prepare_publish(installation, topic, client_id, payload)


def _where(published: Published) -> tuple[str, int, bool]:
    return published.envelope.topic, published.envelope.sequence, published.duplicate


def summary(outcomes: list[Published | RelayError]) -> list[object]:
    return [
        o.code
        if isinstance(o, RelayError)
        else (o.envelope.topic, o.envelope.sequence, o.duplicate)
        for o in outcomes
    ]


def test_a_batch_gets_consecutive_sequences_per_topic(alice: Installation) -> None:
    outcomes = delivery.publish_batch(
        [
            request(alice, "a", private_message(GROUP)),
            request(alice, "b", private_message(OTHER), topic=group_topic(OTHER)),
            request(alice, "c", private_message(GROUP)),
        ]
    )

    assert summary(outcomes) == [
        (TOPIC, 1, False),
        (group_topic(OTHER), 1, False),
        (TOPIC, 2, False),
    ]
    assert Topic.objects.get(name=TOPIC).last_sequence == 2
    stored = Envelope.objects.filter(topic__name=TOPIC).order_by("sequence")
    assert [e.client_id for e in stored] == ["a", "c"]
    assert bytes(stored[0].payload) == private_message(GROUP)
    assert Membership.objects.filter(installation=alice, topic__name=TOPIC).count() == 1


def test_failures_inside_a_batch_change_nothing_and_spoil_nothing(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "old", private_message(GROUP, ciphertext=b"old"))
    outcomes = delivery.publish_batch(
        [
            request(alice, "old", private_message(GROUP, ciphertext=b"other")),  # id reused
            request(alice, "c1", commit(GROUP, 3)),
            request(alice, "c2", commit(GROUP, 3, b"rival")),  # same epoch, same batch
            request(alice, "w", welcome(), topic="welcome:" + "0" * 32),  # unknown inbox
            request(alice, "ok", private_message(GROUP)),
        ]
    )

    assert summary(outcomes) == [
        "id_reused",
        (TOPIC, 2, False),
        "epoch_conflict",
        "unknown_topic",
        (TOPIC, 3, False),
    ]
    assert list(GroupEpochCommit.objects.values_list("epoch", "sequence")) == [(3, 2)]
    commit_row = GroupEpochCommit.objects.get()
    assert commit_row.envelope is not None and commit_row.envelope.client_id == "c1"
    assert Topic.objects.get(name=TOPIC).last_sequence == 3


def test_a_retry_inside_the_same_batch_is_a_duplicate(alice: Installation) -> None:
    payload = private_message(GROUP)
    outcomes = delivery.publish_batch([request(alice, "x", payload), request(alice, "x", payload)])

    assert summary(outcomes) == [(TOPIC, 1, False), (TOPIC, 1, True)]
    assert Envelope.objects.count() == 1


def test_rate_limit_inside_a_batch_charges_only_what_was_stored(
    alice: Installation, settings: object
) -> None:
    settings.VEILPOST_PUBLISH_RATE = 0.001  # type: ignore[attr-defined]
    settings.VEILPOST_PUBLISH_BURST = 2  # type: ignore[attr-defined]
    outcomes = delivery.publish_batch(
        [
            request(alice, "c1", commit(GROUP, 1)),
            request(alice, "c2", commit(GROUP, 1, b"rival")),  # refused: not charged
            request(alice, "m1", private_message(GROUP)),
            request(alice, "m2", private_message(GROUP)),  # the third token: refused
        ]
    )

    assert summary(outcomes) == [
        (TOPIC, 1, False),
        "epoch_conflict",
        (TOPIC, 2, False),
        "rate_limited",
    ]
    assert Envelope.objects.count() == 2


def test_a_database_failure_of_the_batch_falls_back_to_one_at_a_time(
    alice: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = delivery._publish_in_transaction
    calls: list[int] = []

    def fail_on_batches(requests: list[PublishRequest]) -> list[Published | RelayError]:
        calls.append(len(requests))
        if len(requests) > 1:
            from django.db import IntegrityError

            raise IntegrityError("simulated race")
        return real(requests)

    monkeypatch.setattr(delivery, "_publish_in_transaction", fail_on_batches)
    outcomes = delivery.publish_batch(
        [request(alice, "a", private_message(GROUP)), request(alice, "b", private_message(GROUP))]
    )

    assert calls == [2, 1, 1]
    assert summary(outcomes) == [(TOPIC, 1, False), (TOPIC, 2, False)]


# --- WebSocket challenges (no database) -------------------------------------------------------


def test_a_connections_challenge_is_single_use_and_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    book, other = auth.ChallengeBook(), auth.ChallengeBook()
    challenge = book.issue("relay.test")

    with pytest.raises(RelayError) as unknown:
        other.consume(challenge.nonce)
    assert unknown.value.code == "unknown_challenge"
    assert book.consume(challenge.nonce) == challenge
    with pytest.raises(RelayError) as used:
        book.consume(challenge.nonce)
    assert used.value.code == "challenge_used"

    late = book.issue("relay.test")
    monkeypatch.setattr(auth, "_now", lambda: late.expires_at)
    with pytest.raises(RelayError) as expired:
        book.consume(late.nonce)
    assert expired.value.code == "challenge_expired"
