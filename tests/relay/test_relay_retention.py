"""Retention (prune), stats and the management commands; conversation unread counts."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from relay_support import Device, commit, private_message

from webapp.relay import auth, conversations, delivery, directory
from webapp.relay.errors import Conflict
from webapp.relay.identifiers import group_topic
from webapp.relay.models import AuthChallenge, AuthToken, Envelope, Installation, KeyPackage, Topic
from webapp.relay.retention import prune, stats

pytestmark = pytest.mark.django_db

GROUP = b"kept-group"
TOPIC = group_topic(GROUP)


@pytest.fixture
def alice() -> Installation:
    return auth.register_first_installation(Device().public_key)


def age_envelopes(through: int, days: float) -> None:
    Envelope.objects.filter(sequence__lte=through).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def test_prune_deletes_an_old_prefix_and_remembers_it(alice: Installation) -> None:
    for i in range(5):
        delivery.publish(alice, TOPIC, f"m{i}", private_message(GROUP))
    age_envelopes(through=3, days=40)

    result = prune(timedelta(days=30))

    assert (result.envelopes, result.topics) == (3, 1)
    assert list(Envelope.objects.values_list("sequence", flat=True).order_by("sequence")) == [4, 5]
    assert Topic.objects.get(name=TOPIC).pruned_through == 3
    (position,) = delivery.open_topics(alice, {TOPIC: 0})
    assert position.first_sequence == 4
    page = delivery.history(alice, TOPIC, 0, 10)
    assert [e.sequence for e in page.envelopes] == [4, 5]
    assert delivery.publish(alice, TOPIC, "m5", private_message(GROUP)).envelope.sequence == 6


def test_prune_keeps_the_commit_slots(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "c1", commit(GROUP, 1))
    age_envelopes(through=1, days=40)
    prune(timedelta(days=30))

    with pytest.raises(Conflict) as caught:
        delivery.publish(alice, TOPIC, "c2", commit(GROUP, 1, b"late"))

    assert caught.value.code == "epoch_conflict"


def test_unread_count_ignores_what_retention_deleted(alice: Installation) -> None:
    for i in range(5):
        delivery.publish(alice, TOPIC, f"m{i}", private_message(GROUP))
    age_envelopes(through=3, days=40)
    prune(timedelta(days=30))

    page, _ = conversations.list_conversations(alice)

    assert {c.topic: c.unread for c in page}[TOPIC] == 2


def test_no_retention_keeps_envelopes(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))
    age_envelopes(through=1, days=4000)

    assert prune(None).envelopes == 0
    assert Envelope.objects.count() == 1


def test_prune_deletes_expired_credentials_and_claimed_key_packages(alice: Installation) -> None:
    device = Device()
    bob = auth.register_first_installation(device.public_key)
    directory.upload_key_packages(
        bob, [(device.key_package(), False), (device.key_package(), False)]
    )
    directory.claim_key_packages(alice, bob.pk)
    auth.issue_challenge("relay.test")
    auth.issue_token(alice)
    later = timezone.now() + timedelta(days=2)

    result = prune(timedelta(days=30), now=later)

    assert (result.challenges, result.tokens, result.key_packages, result.rate_buckets) == (
        1,
        1,
        1,
        1,
    )
    assert not AuthChallenge.objects.exists() and not AuthToken.objects.exists()
    assert KeyPackage.objects.count() == 1


def test_stats_count_what_is_stored(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))

    counts = stats()

    assert counts["inboxes"] == counts["installations"] == 1
    assert (counts["topics_group"], counts["topics_welcome"]) == (1, 1)
    assert counts["envelopes"] == 1
    assert counts["envelope_bytes"] == len(private_message(GROUP))


def test_prune_command(alice: Installation, settings: object) -> None:
    settings.VEILPOST_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))
    age_envelopes(through=1, days=40)
    out = StringIO()

    call_command("prune", stdout=out)

    assert "1 deleted from 1 topics" in out.getvalue()
    assert not Envelope.objects.exists()
    with pytest.raises(CommandError, match="0 or more"):
        call_command("prune", "--retention-days", "-1")


def test_prune_command_with_retention_off(alice: Installation) -> None:
    delivery.publish(alice, TOPIC, "m1", private_message(GROUP))
    age_envelopes(through=1, days=400)
    out = StringIO()

    call_command("prune", "--retention-days", "0", stdout=out)

    assert "kept" in out.getvalue()
    assert Envelope.objects.count() == 1


def test_stats_command(alice: Installation) -> None:
    out = StringIO()
    call_command("stats", "--json", stdout=out)
    assert json.loads(out.getvalue())["installations"] == 1

    out = StringIO()
    call_command("stats", stdout=out)
    assert "topics_welcome" in out.getvalue()
