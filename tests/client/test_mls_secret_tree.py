"""The secret tree and sender ratchets (RFC 9420 §9): the working group's ``secret-tree.json``
on every backend, and one test per rule: out-of-order delivery within the window, no key used
twice, the forward bound, the backward window, and deletion of what was consumed (§9.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file

from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider, get_backend
from veilpost.mls.errors import ProtocolError, UsageError
from veilpost.mls.secret_tree import (
    GenerationReusedError,
    GenerationTooFarAheadError,
    GenerationTooOldError,
    RatchetKey,
    RatchetType,
    RatchetWindow,
    SecretTree,
    SecretTreeError,
)
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.secret_tree import check_secret_tree

APP = RatchetType.APPLICATION
HS = RatchetType.HANDSHAKE
ENCRYPTION_SECRET = bytes(range(32))


def test_secret_tree_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["secret-tree"] is check_secret_tree
    assert {1, 3} <= run_vector_file("secret-tree", backend)


@pytest.fixture
def suite(backend: CryptoBackend) -> CipherSuite:
    return CipherSuite(1, CryptoProvider(backend))


def _tree(
    suite: CipherSuite,
    n_leaves: int = 4,
    *,
    own_leaf: int | None = None,
    window: RatchetWindow | None = None,
) -> SecretTree:
    return SecretTree(suite, ENCRYPTION_SECRET, n_leaves, own_leaf=own_leaf, window=window)


def _sender_keys(
    suite: CipherSuite, leaf: int, count: int, ratchet: RatchetType = APP
) -> list[RatchetKey]:
    """What the member at ``leaf`` encrypts its first ``count`` messages with."""
    sender = _tree(suite, own_leaf=leaf)
    return [sender.next_encryption_key(ratchet) for _ in range(count)]


def _receive(
    tree: SecretTree, leaf: int, generation: int, ratchet: RatchetType = APP
) -> RatchetKey:
    with tree.decryption_key(leaf, ratchet, generation) as key:
        return key


def test_sender_and_receivers_derive_the_same_keys(suite: CipherSuite) -> None:
    sent = _sender_keys(suite, leaf=2, count=3)
    assert [k.generation for k in sent] == [0, 1, 2]
    receiver = _tree(suite, own_leaf=0)
    assert [_receive(receiver, 2, g) for g in range(3)] == sent
    assert len({k.key for k in sent}) == 3
    assert all(len(k.key) == 16 and len(k.nonce) == 12 for k in sent)


def test_out_of_order_messages_within_the_window_decrypt(suite: CipherSuite) -> None:
    sent = _sender_keys(suite, leaf=1, count=6)
    receiver = _tree(suite)
    for generation in (5, 2, 0, 4, 1, 3):
        assert _receive(receiver, 1, generation) == sent[generation]
    assert receiver.ratchet(1, APP).retained_generations == ()


def test_a_consumed_generation_cannot_be_used_again(suite: CipherSuite) -> None:
    receiver = _tree(suite)
    _receive(receiver, 3, 3)
    with pytest.raises(
        GenerationReusedError,
        match="generation 3 of the application ratchet of leaf 3 was already used",
    ) as raised:
        _receive(receiver, 3, 3)
    assert raised.value.check == "secret_tree.generation_reused"
    assert isinstance(raised.value, ProtocolError)


def test_the_senders_own_keys_are_gone_after_encrypting(suite: CipherSuite) -> None:
    sender = _tree(suite, own_leaf=0)
    sender.next_encryption_key(APP)
    sender.next_encryption_key(APP)
    ratchet = sender.ratchet(0, APP)
    assert (ratchet.next_generation, ratchet.retained_generations) == (2, ())
    with pytest.raises(GenerationReusedError):
        _receive(sender, 0, 1)


def test_a_generation_beyond_the_forward_bound_is_refused(suite: CipherSuite) -> None:
    receiver = _tree(suite, window=RatchetWindow(maximum_forward_distance=10))
    with pytest.raises(
        GenerationTooFarAheadError,
        match=r"generation 11 .* 11 generations ahead of the next expected \(0\); the limit is 10",
    ) as raised:
        _receive(receiver, 0, 11)
    assert raised.value.check == "secret_tree.generation_too_far_ahead"
    assert receiver.ratchet(0, APP).next_generation == 0  # the refusal changed nothing
    _receive(receiver, 0, 10)  # exactly at the bound is fine
    with pytest.raises(GenerationTooFarAheadError):
        _receive(receiver, 0, 22)
    _receive(receiver, 0, 21)


def test_the_default_forward_bound_is_1000(suite: CipherSuite) -> None:
    with pytest.raises(GenerationTooFarAheadError, match="the limit is 1000"):
        _receive(_tree(suite), 0, 1001)


def test_a_generation_older_than_the_window_is_refused(suite: CipherSuite) -> None:
    receiver = _tree(suite, window=RatchetWindow(out_of_order_tolerance=3))
    _receive(receiver, 2, 10)  # the window now covers generations 8..10
    assert receiver.ratchet(2, APP).retained_generations == (8, 9)
    with pytest.raises(
        GenerationTooOldError,
        match=r"generation 7 .* out-of-order window \(generations 8..10, tolerance 3\)",
    ) as raised:
        _receive(receiver, 2, 7)
    assert raised.value.check == "secret_tree.generation_too_old"
    _receive(receiver, 2, 8)
    _receive(receiver, 2, 12)  # the window moves on: 9 is now too old, 11 is kept
    assert receiver.ratchet(2, APP).retained_generations == (11,)
    with pytest.raises(GenerationTooOldError):
        _receive(receiver, 2, 9)


def test_zero_tolerance_means_strictly_in_order(suite: CipherSuite) -> None:
    receiver = _tree(suite, window=RatchetWindow(out_of_order_tolerance=0))
    _receive(receiver, 0, 1)
    assert receiver.ratchet(0, APP).retained_generations == ()
    with pytest.raises(GenerationTooOldError):
        _receive(receiver, 0, 0)


def test_used_keys_are_deleted_and_skipped_ones_kept(suite: CipherSuite) -> None:
    receiver = _tree(suite)
    _receive(receiver, 1, 4)
    ratchet = receiver.ratchet(1, APP)
    assert (ratchet.next_generation, ratchet.retained_generations) == (5, (0, 1, 2, 3))
    _receive(receiver, 1, 2)
    assert ratchet.retained_generations == (0, 1, 3)
    # The other ratchet of the same leaf is untouched: its generation 2 is still there.
    assert receiver.ratchet(1, HS).next_generation == 0
    _receive(receiver, 1, 2, HS)


def test_a_failed_decryption_consumes_nothing(suite: CipherSuite) -> None:
    sent = _sender_keys(suite, leaf=3, count=5)
    receiver = _tree(suite)
    for generation in (4, 1):  # a new generation, then a retained one
        with (
            pytest.raises(ValueError, match="tag mismatch"),
            receiver.decryption_key(3, APP, generation),
        ):
            raise ValueError("tag mismatch")
        assert _receive(receiver, 3, generation) == sent[generation]
    assert receiver.ratchet(3, APP).retained_generations == (0, 2, 3)


def test_a_stale_prepared_key_cannot_be_committed(suite: CipherSuite) -> None:
    ratchet = _tree(suite).ratchet(0, APP)
    first, second = ratchet.prepare(0), ratchet.prepare(0)
    ratchet.commit(first)
    with pytest.raises(UsageError, match="changed since this key was prepared"):
        ratchet.commit(second)


def test_node_secrets_follow_the_deletion_schedule(suite: CipherSuite) -> None:
    # §9.2's example: a four-member tree G(E(A, B), F(C, D)), nodes 3(1(0, 2), 5(4, 6)).
    tree = _tree(suite)
    assert tree.stored_node_secrets() == {3}
    _receive(tree, 3, 1)  # a message from D
    assert tree.stored_node_secrets() == {1, 4}  # E and C remain; G, F and D are gone
    assert tree.derived_leaves() == {3}
    _receive(tree, 2, 0, HS)  # from C: C's secret is used up, only E remains
    assert tree.stored_node_secrets() == {1}
    _receive(tree, 0, 0)
    assert tree.stored_node_secrets() == {2}
    _receive(tree, 1, 0)
    assert tree.stored_node_secrets() == set()
    assert tree.derived_leaves() == {0, 1, 2, 3}


def test_leaf_order_does_not_change_the_keys(suite: CipherSuite) -> None:
    forward, backward = _tree(suite, 8), _tree(suite, 8)
    keys = {leaf: _receive(forward, leaf, 0) for leaf in range(8)}
    assert {leaf: _receive(backward, leaf, 0) for leaf in reversed(range(8))} == keys


def test_refusals_for_leaves_and_configuration(suite: CipherSuite) -> None:
    tree = _tree(suite)
    with pytest.raises(
        SecretTreeError, match="leaf 4 is outside the secret tree of 4 leaves"
    ) as raised:
        _receive(tree, 4, 0)
    assert raised.value.check == "secret_tree.leaf_out_of_range"
    with pytest.raises(UsageError, match="no own leaf"):
        tree.next_encryption_key(APP)
    with pytest.raises(UsageError, match="own leaf 4 is outside"):
        _tree(suite, own_leaf=4)
    with pytest.raises(UsageError, match="power-of-two number of leaves"):
        _tree(suite, 3)
    with pytest.raises(UsageError, match="must not be negative"):
        RatchetWindow(out_of_order_tolerance=-1)
    with pytest.raises(UsageError, match="generation must be a uint32"):
        _receive(tree, 0, 1 << 32)


def test_repr_hides_keys(suite: CipherSuite) -> None:
    key = _sender_keys(suite, leaf=0, count=1)[0]
    tree = _tree(suite, own_leaf=1)
    prepared = tree.ratchet(0, APP).prepare(2)
    text = repr(key) + repr(tree) + repr(tree.ratchet(0, APP)) + repr(prepared)
    assert "generation=0" in text
    assert key.key.hex() not in text and repr(key.key) not in text
    assert prepared.next_secret is not None and prepared.next_secret.hex() not in text
    assert ENCRYPTION_SECRET.hex() not in text and repr(ENCRYPTION_SECRET) not in text


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(list(range(12))))
def test_any_delivery_order_within_the_window_decrypts_every_message(order: list[int]) -> None:
    suite = CipherSuite(3, CryptoProvider(get_backend("pure")))
    sent = _sender_keys(suite, leaf=1, count=12, ratchet=HS)
    receiver = _tree(suite)
    for generation in order:
        assert _receive(receiver, 1, generation, HS) == sent[generation]
    assert receiver.ratchet(1, HS).retained_generations == ()
    assert receiver.ratchet(1, HS).next_generation == 12
