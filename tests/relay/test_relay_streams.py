"""The per-connection delivery state (webapp.relay.streams), without sockets."""

from __future__ import annotations

import pytest

from webapp.relay.streams import DeliveryWindow, Offer


def window(max_envelopes: int = 10, max_bytes: int = 1000) -> DeliveryWindow:
    w = DeliveryWindow(max_envelopes, max_bytes)
    w.open("t", 1, cursor=0)
    w.streams["t"].behind = False  # backlog read: live from here
    return w


def test_next_sequence_is_sent_older_skipped_gap_caught_up() -> None:
    w = window()

    assert w.offer("t", 1, 10) is Offer.SEND
    w.record_sent("t", 1, 10)
    assert w.offer("t", 1, 10) is Offer.SKIP  # duplicate
    assert w.offer("t", 3, 10) is Offer.CATCH_UP  # 2 was lost
    assert w.streams["t"].behind
    assert w.offer("t", 2, 10) is Offer.CATCH_UP  # behind: the database read delivers it


def test_new_subscription_is_behind_until_its_backlog_is_read() -> None:
    w = DeliveryWindow(10, 1000)
    w.open("t", 1, cursor=5)

    assert w.offer("t", 6, 10) is Offer.CATCH_UP
    assert w.offer("t", 5, 10) is Offer.SKIP


def test_unknown_topic_is_skipped() -> None:
    assert window().offer("other", 1, 10) is Offer.SKIP


def test_window_counts_envelopes_and_bytes_until_acknowledged() -> None:
    w = window(max_envelopes=2, max_bytes=1000)
    w.record_sent("t", 1, 100)
    w.record_sent("t", 2, 100)

    assert w.full and w.in_flight == 2 and w.in_flight_bytes == 200
    assert w.offer("t", 3, 100) is Offer.CATCH_UP

    w.acknowledge("t", 1)
    assert not w.full and (w.in_flight, w.in_flight_bytes) == (1, 100)
    w.acknowledge("t", 1)  # again: harmless
    w.acknowledge("t", 99)  # beyond what was sent: acknowledges what was
    assert (w.in_flight, w.in_flight_bytes) == (0, 0)


def test_byte_window_but_one_envelope_always_fits() -> None:
    w = window(max_envelopes=10, max_bytes=100)

    assert w.has_room(5000)  # nothing in flight: a large envelope still goes
    w.record_sent("t", 1, 5000)
    assert not w.has_room(1) and w.full


def test_closing_a_stream_releases_its_window() -> None:
    w = window()
    w.record_sent("t", 1, 10)

    w.close("t")

    assert (w.in_flight, w.in_flight_bytes, w.streams) == (0, 0, {})


def test_sending_backwards_is_a_bug() -> None:
    w = window()
    w.record_sent("t", 1, 10)

    with pytest.raises(ValueError, match="sequence 1 after 1"):
        w.record_sent("t", 1, 10)


def test_resubscribing_restarts_from_the_new_cursor() -> None:
    w = window()
    w.record_sent("t", 1, 10)

    w.open("t", 1, cursor=0)

    assert w.streams["t"].sent == 0 and w.in_flight == 0 and w.streams["t"].behind
