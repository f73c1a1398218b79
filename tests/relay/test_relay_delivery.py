"""The delivery service without sockets: publishing, sequences, idempotency, commit ordering,
topic access, backlogs and history."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from relay_support import Device, commit, private_message, public_commit, welcome

from veilpost.mls.framing import ContentType
from webapp.relay import auth, delivery
from webapp.relay.errors import Conflict, Forbidden, InvalidInput, NotFound, RelayError, TooLarge
from webapp.relay.identifiers import group_topic
from webapp.relay.models import Envelope, GroupEpochCommit, Installation, Membership, Topic

GROUP = b"group-one"
TOPIC = group_topic(GROUP)

pytestmark = pytest.mark.django_db


def register(device: Device | None = None) -> Installation:
    return auth.register_first_installation((device or Device()).public_key)


@pytest.fixture
def alice() -> Installation:
    return register()


@pytest.fixture
def bob() -> Installation:
    return register()


def stored() -> list[tuple[str, int]]:
    return list(Envelope.objects.order_by("id").values_list("topic__name", "sequence"))


def test_sequences_start_at_one_and_have_no_gap(alice: Installation) -> None:
    sequences = [
        delivery.publish(alice, TOPIC, f"m{i}", private_message(GROUP, 0)).envelope.sequence
        for i in range(5)
    ]

    assert sequences == [1, 2, 3, 4, 5]
    assert Topic.objects.get(name=TOPIC).last_sequence == 5


def test_envelope_keeps_the_header_and_no_sender(alice: Installation) -> None:
    payload = private_message(GROUP, 7, ContentType.PROPOSAL)

    delivery.publish(alice, TOPIC, "m1", payload)

    envelope = Envelope.objects.get()
    assert (envelope.wire_format, envelope.epoch, envelope.content_type) == (2, 7, 2)
    assert bytes(envelope.payload) == payload and envelope.size == len(payload)
    field_names = {f.name for f in Envelope._meta.get_fields()}
    assert not field_names & {"sender", "installation", "ip", "ip_address", "publisher"}


def test_publishing_makes_the_publisher_a_member(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))

    assert Membership.objects.filter(installation=alice, topic__name=TOPIC).exists()


def test_retry_with_the_same_id_returns_the_same_sequence(alice: Installation) -> None:
    payload = private_message(GROUP)
    first = delivery.publish(alice, TOPIC, "retry-me", payload)
    delivery.publish(alice, TOPIC, "other", private_message(GROUP))

    again = delivery.publish(alice, TOPIC, "retry-me", payload)

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.envelope.sequence == first.envelope.sequence == 1
    assert stored() == [(TOPIC, 1), (TOPIC, 2)]


def test_same_id_with_another_payload_is_refused(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "id-1", private_message(GROUP, ciphertext=b"one"))

    with pytest.raises(Conflict) as caught:
        delivery.publish(alice, TOPIC, "id-1", private_message(GROUP, ciphertext=b"two"))

    assert caught.value.code == "id_reused"
    assert stored() == [(TOPIC, 1)]


def test_ids_are_per_topic(alice: Installation) -> None:
    other = group_topic(b"group-two")
    delivery.publish(alice, TOPIC, "same", private_message(GROUP))

    published = delivery.publish(alice, other, "same", private_message(b"group-two"))

    assert (published.duplicate, published.envelope.sequence) == (False, 1)


@pytest.mark.parametrize("client_id", ["", "x" * 65, "has space", "ünï", "a/b"])
def test_bad_client_id_is_refused(alice: Installation, client_id: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        delivery.publish(alice, TOPIC, client_id, private_message(GROUP))

    assert caught.value.code == "invalid_id"
    assert stored() == []


# --- Commit ordering --------------------------------------------------------------------------


def test_second_commit_for_an_epoch_is_refused_naming_the_epoch(
    alice: Installation, bob: Installation
) -> None:
    delivery.publish(alice, TOPIC, "c1", commit(GROUP, 5, b"alice"))

    with pytest.raises(Conflict) as caught:
        delivery.publish(bob, TOPIC, "c2", commit(GROUP, 5, b"bob"))

    assert caught.value.code == "epoch_conflict"
    assert "epoch 5" in caught.value.message
    assert caught.value.details == {"epoch": 5, "current_epoch": 6}
    assert stored() == [(TOPIC, 1)]
    assert list(GroupEpochCommit.objects.values_list("epoch", "sequence")) == [(5, 1)]


def test_the_loser_retries_on_the_new_epoch(alice: Installation, bob: Installation) -> None:
    delivery.publish(alice, TOPIC, "c1", commit(GROUP, 5))

    retried = delivery.publish(bob, TOPIC, "c2", commit(GROUP, 6))

    assert retried.envelope.sequence == 2


def test_stale_commit_is_refused(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "c1", commit(GROUP, 8))

    with pytest.raises(Conflict) as caught:
        delivery.publish(alice, TOPIC, "c2", commit(GROUP, 3))

    assert caught.value.code == "epoch_conflict"
    assert "epoch 3" in caught.value.message and "stale" in caught.value.message
    assert caught.value.details["current_epoch"] == 9


def test_public_message_commits_count_too(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "c1", public_commit(GROUP, 2))

    with pytest.raises(Conflict, match="epoch 2"):
        delivery.publish(alice, TOPIC, "c2", commit(GROUP, 2))


def test_application_messages_and_proposals_are_not_ordered_by_epoch(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "c1", commit(GROUP, 4))

    for index, content_type in enumerate([ContentType.APPLICATION, ContentType.PROPOSAL]):
        delivery.publish(alice, TOPIC, f"m{index}", private_message(GROUP, 4, content_type))
        delivery.publish(alice, TOPIC, f"old{index}", private_message(GROUP, 2, content_type))

    assert Topic.objects.get(name=TOPIC).last_sequence == 5


def test_a_retried_commit_is_idempotent_not_a_conflict(alice: Installation) -> None:
    payload = commit(GROUP, 1)
    first = delivery.publish(alice, TOPIC, "c1", payload)

    again = delivery.publish(alice, TOPIC, "c1", payload)

    assert again.duplicate and again.envelope.sequence == first.envelope.sequence


# --- What the relay refuses, storing nothing ----------------------------------------------


def test_group_id_must_match_the_topic(alice: Installation) -> None:
    with pytest.raises(InvalidInput) as caught:
        delivery.publish(alice, TOPIC, "m1", private_message(b"another-group"))

    assert caught.value.code == "group_mismatch"
    assert stored() == [] and not Topic.objects.filter(name=TOPIC).exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not an MLS message",
        private_message(GROUP)[:-1],  # truncated
        private_message(GROUP) + b"\x00",  # trailing byte
        b"\x00\x02" + private_message(GROUP)[2:],  # version 2
        private_message(GROUP)[:2] + b"\x00\x09" + private_message(GROUP)[4:],  # wire format 9
    ],
)
def test_payload_that_is_not_an_mls_message_is_refused(alice: Installation, payload: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        delivery.publish(alice, TOPIC, "m1", payload)

    assert caught.value.code == "invalid_envelope"
    assert stored() == []


def test_group_topic_refuses_welcomes_and_key_packages(alice: Installation) -> None:
    for payload in (welcome(), Device().key_package()):
        with pytest.raises(InvalidInput, match="group topic carries") as caught:
            delivery.publish(alice, TOPIC, "m1", payload)
        assert caught.value.code == "invalid_envelope"


def test_epoch_beyond_the_database_range_is_refused(alice: Installation) -> None:
    with pytest.raises(InvalidInput, match="epoch") as caught:
        delivery.publish(alice, TOPIC, "m1", commit(GROUP, 2**64 - 1))

    assert caught.value.code == "invalid_envelope"


def test_oversized_envelope_is_refused(alice: Installation, settings: object) -> None:
    settings.VEILPOST_MAX_ENVELOPE_BYTES = 1000  # type: ignore[attr-defined]

    with pytest.raises(TooLarge) as caught:
        delivery.publish(alice, TOPIC, "m1", private_message(GROUP, ciphertext=b"x" * 1000))

    assert caught.value.code == "envelope_too_large"
    assert "1000" in caught.value.message
    assert stored() == []


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "group:",
        "group:abc=",
        "group:a+b/",
        "group:QR",
        "welcome:XYZ",
        "chat:1",
        "group:" + "A" * 400,
    ],
)
def test_malformed_topic_names_are_refused(alice: Installation, topic: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        delivery.publish(alice, topic, "m1", private_message(GROUP))

    assert caught.value.code == "invalid_topic"


def test_rate_limit_per_installation(
    alice: Installation, bob: Installation, settings: object
) -> None:
    settings.VEILPOST_PUBLISH_RATE = 0.001  # type: ignore[attr-defined]
    settings.VEILPOST_PUBLISH_BURST = 2  # type: ignore[attr-defined]
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))
    delivery.publish(alice, TOPIC, "m2", private_message(GROUP))

    with pytest.raises(RelayError) as caught:
        delivery.publish(alice, TOPIC, "m3", private_message(GROUP))

    assert caught.value.code == "rate_limited"
    assert caught.value.details["retry_after"] > 0
    assert delivery.publish(bob, TOPIC, "m4", private_message(GROUP)).envelope.sequence == 3


# --- Welcome inboxes --------------------------------------------------------------------------


def test_welcome_goes_to_the_recipients_inbox(alice: Installation, bob: Installation) -> None:
    inbox = f"welcome:{bob.pk}"

    published = delivery.publish(alice, inbox, "w1", welcome())

    assert published.envelope.sequence == 1
    assert not Membership.objects.filter(installation=alice, topic__name=inbox).exists()


def test_welcome_inbox_carries_only_welcomes(alice: Installation, bob: Installation) -> None:
    with pytest.raises(InvalidInput, match="mls_welcome"):
        delivery.publish(alice, f"welcome:{bob.pk}", "w1", private_message(GROUP))


def test_welcome_inbox_of_an_unknown_installation(alice: Installation) -> None:
    with pytest.raises(NotFound) as caught:
        delivery.publish(alice, f"welcome:{Device().installation_id}", "w1", welcome())

    assert caught.value.code == "unknown_topic"


def test_only_the_owner_reads_a_welcome_inbox(alice: Installation, bob: Installation) -> None:
    with pytest.raises(Forbidden) as caught:
        delivery.open_topics(alice, {f"welcome:{bob.pk}": 0})
    assert caught.value.code == "not_your_inbox"

    with pytest.raises(Forbidden):
        delivery.history(alice, f"welcome:{bob.pk}", 0, 10)

    (position,) = delivery.open_topics(bob, {f"welcome:{bob.pk}": 0})
    assert position.kind == "welcome"


# --- Subscriptions, backlogs, history ----------------------------------------------------


def test_open_topics_creates_group_topics_and_memberships(alice: Installation) -> None:
    positions = delivery.open_topics(alice, {TOPIC: 0})

    assert [(p.name, p.last_sequence, p.first_sequence) for p in positions] == [(TOPIC, 0, 1)]
    assert Membership.objects.filter(installation=alice, topic__name=TOPIC).exists()


def test_open_topics_is_all_or_nothing(alice: Installation, bob: Installation) -> None:
    with pytest.raises(Forbidden):
        delivery.open_topics(alice, {TOPIC: 0, f"welcome:{bob.pk}": 0})

    assert not Topic.objects.filter(name=TOPIC).exists()


def test_cursor_beyond_the_last_sequence_is_refused(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))

    with pytest.raises(InvalidInput) as caught:
        delivery.open_topics(alice, {TOPIC: 2})

    assert caught.value.code == "invalid_cursor"
    assert "2" in caught.value.message


def test_envelopes_after_respects_limit_and_bytes(alice: Installation) -> None:
    for i in range(5):
        delivery.publish(alice, TOPIC, f"m{i}", private_message(GROUP, ciphertext=b"x" * 100))
    pk = Topic.objects.get(name=TOPIC).pk
    size = len(private_message(GROUP, ciphertext=b"x" * 100))

    page, complete = delivery.envelopes_after(TOPIC, pk, 1, limit=2, max_bytes=10**6)
    assert [e.sequence for e in page] == [2, 3] and not complete

    page, complete = delivery.envelopes_after(TOPIC, pk, 0, limit=10, max_bytes=size * 2)
    assert [e.sequence for e in page] == [1, 2] and not complete

    page, complete = delivery.envelopes_after(TOPIC, pk, 3, limit=10, max_bytes=1)
    assert [e.sequence for e in page] == [4] and not complete  # always at least one

    page, complete = delivery.envelopes_after(TOPIC, pk, 3, limit=2, max_bytes=10**6)
    assert [e.sequence for e in page] == [4, 5] and complete


def test_history_is_for_members_only(alice: Installation, bob: Installation) -> None:
    for i in range(3):
        delivery.publish(alice, TOPIC, f"m{i}", private_message(GROUP))

    page = delivery.history(alice, TOPIC, 1, 10)
    assert [e.sequence for e in page.envelopes] == [2, 3] and not page.has_more

    with pytest.raises(Forbidden) as caught:
        delivery.history(bob, TOPIC, 0, 10)
    assert caught.value.code == "not_a_member"

    with pytest.raises(NotFound):
        delivery.history(alice, group_topic(b"nobody"), 0, 10)


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_get_distinct_gap_free_sequences() -> None:
    publishers = [register() for _ in range(8)]
    sequences: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def publish_many(installation: Installation, worker: int) -> None:
        try:
            for i in range(15):
                published = delivery.publish(
                    installation, TOPIC, f"w{worker}-{i}", private_message(GROUP, 0)
                )
                with lock:
                    sequences.append(published.envelope.sequence)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish_many, args=(p, n)) for n, p in enumerate(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(sequences) == list(range(1, 121))
    assert Topic.objects.get(name=TOPIC).last_sequence == 120


@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_for_one_epoch_accept_exactly_one() -> None:
    committers = [register() for _ in range(6)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def try_commit(installation: Installation, worker: int) -> None:
        try:
            delivery.publish(installation, TOPIC, f"c{worker}", commit(GROUP, 9, bytes([worker])))
            outcome = "accepted"
        except Conflict as exc:
            outcome = exc.code
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=try_commit, args=(c, n)) for n, c in enumerate(committers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["accepted"] + ["epoch_conflict"] * 5
    assert GroupEpochCommit.objects.count() == 1 and Envelope.objects.count() == 1
