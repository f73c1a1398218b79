"""The key schedule (RFC 9420 §8): the working group's ``key-schedule.json`` on every backend,
and the behaviour around it (hidden secrets, exporter, external init, confirmation and
membership tags)."""

from __future__ import annotations

import dataclasses

import pytest
from mls_vectors import run_vector_file
from support import MLS_VECTORS, h, load_json

from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_schedule import (
    EpochSecrets,
    derive_epoch_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    derive_welcome_secret,
    external_init_secret,
    mls_exporter,
    new_external_init,
    next_epoch_secrets,
    welcome_key_and_nonce,
    zero_secret,
)
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.key_schedule import check_key_schedule

SECRET_NAMES = [f.name for f in dataclasses.fields(EpochSecrets) if f.name != "suite"]


def test_key_schedule_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["key-schedule"] is check_key_schedule
    assert {1, 3} <= run_vector_file("key-schedule", backend)


@pytest.fixture
def suite(backend: CryptoBackend) -> CipherSuite:
    return CipherSuite(1, CryptoProvider(backend))


def _context(epoch: int = 1, tree_hash: bytes = b"\x01" * 32) -> GroupContext:
    return GroupContext(
        cipher_suite=1,
        group_id=b"group",
        epoch=epoch,
        tree_hash=tree_hash,
        confirmed_transcript_hash=b"\x02" * 32,
    )


def _epoch(suite: CipherSuite, context: GroupContext | None = None) -> EpochSecrets:
    return next_epoch_secrets(
        suite,
        init_secret=b"\x03" * 32,
        commit_secret=b"\x04" * 32,
        group_context=context or _context(),
    )


def test_whole_chain_equals_the_steps_and_no_psk_means_the_zero_secret(suite: CipherSuite) -> None:
    init, commit, context = b"\x03" * 32, b"\x04" * 32, _context()
    joiner = derive_joiner_secret(suite, init, commit, context)
    epoch_secret = derive_epoch_secret(suite, joiner, context, zero_secret(suite))
    stepwise = derive_epoch_secrets(suite, epoch_secret)
    whole = _epoch(suite, context)
    for name in SECRET_NAMES:
        assert getattr(whole, name) == getattr(stepwise, name), name
    assert derive_welcome_secret(suite, joiner) == derive_welcome_secret(suite, joiner, bytes(32))
    # A PSK changes everything after the joiner secret.
    with_psk = derive_epoch_secrets(
        suite, derive_epoch_secret(suite, joiner, context, b"\x05" * 32)
    )
    assert with_psk.encryption_secret != whole.encryption_secret


def test_secrets_are_distinct_and_bound_to_the_group_context(suite: CipherSuite) -> None:
    secrets = _epoch(suite)
    values = [getattr(secrets, name) for name in SECRET_NAMES]
    assert len(set(values)) == len(values) == 9
    other = _epoch(suite, _context(tree_hash=b"\x09" * 32))
    assert all(getattr(other, n) != getattr(secrets, n) for n in SECRET_NAMES)


def test_repr_shows_no_secret_and_the_object_is_immutable(suite: CipherSuite) -> None:
    secrets = _epoch(suite)
    text = repr(secrets) + str(secrets)
    assert text.startswith("EpochSecrets(suite=0x0001")
    for name in SECRET_NAMES:
        value = getattr(secrets, name)
        assert value.hex() not in text and repr(value) not in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        secrets.init_secret = b""  # type: ignore[misc]


def test_exporter_depends_on_label_context_and_length(suite: CipherSuite) -> None:
    secrets = _epoch(suite)
    base = secrets.export("veilpost test", b"context", 32)
    assert base == mls_exporter(suite, secrets.exporter_secret, b"veilpost test", b"context", 32)
    assert secrets.export("veilpost other", b"context", 32) != base
    assert secrets.export("veilpost test", b"context2", 32) != base
    assert len(secrets.export("veilpost test", b"", 255 * 32)) == 255 * 32
    with pytest.raises(UsageError, match=r"length must be in 0..8160, got 8161"):
        secrets.export("veilpost test", b"", 255 * 32 + 1)


def test_welcome_key_and_nonce_fit_the_aead(backend: CryptoBackend) -> None:
    for suite_id in (1, 3):
        suite = CipherSuite(suite_id, CryptoProvider(backend))
        key, nonce = welcome_key_and_nonce(suite, b"\x07" * 32)
        assert (len(key), len(nonce)) == (suite.aead_key_size, suite.aead_nonce_size)
        assert key != nonce[: len(key)]


def test_external_init_gives_joiner_and_members_the_same_init_secret(
    suite: CipherSuite,
) -> None:
    secrets = _epoch(suite)
    external_priv, external_pub = secrets.external_key_pair()
    assert external_pub == secrets.external_pub
    kem_output, joiner_init = new_external_init(suite, external_pub)
    assert len(joiner_init) == 32
    assert external_init_secret(suite, external_priv, kem_output) == joiner_init
    # Another epoch's key pair recovers a different secret (HPKE export has no tag to fail).
    other_priv, _ = _epoch(suite, _context(epoch=2)).external_key_pair()
    assert external_init_secret(suite, other_priv, kem_output) != joiner_init


def test_external_init_rejects_a_kem_output_that_does_not_decapsulate(suite: CipherSuite) -> None:
    external_priv, _ = _epoch(suite).external_key_pair()
    with pytest.raises(ProtocolError, match=r"kem_output \(31 bytes\)") as raised:
        external_init_secret(suite, external_priv, b"\x01" * 31)
    assert raised.value.check == "external_init.kem_output"
    assert raised.value.section == "8.3"


def test_confirmation_tag_verifies_only_over_its_transcript(suite: CipherSuite) -> None:
    secrets = _epoch(suite)
    transcript = b"\x0a" * 32
    tag = secrets.confirmation_tag(transcript)
    assert tag == suite.mac(secrets.confirmation_key, transcript)
    secrets.verify_confirmation_tag(transcript, tag)
    with pytest.raises(ValidationError) as raised:
        secrets.verify_confirmation_tag(b"\x0b" * 32, tag)
    assert raised.value.check == "confirmation_tag"
    with pytest.raises(ValidationError, match="confirmation_tag"):
        _epoch(suite, _context(epoch=2)).verify_confirmation_tag(transcript, tag)


def test_membership_tag_verifies_only_with_the_epochs_key(suite: CipherSuite) -> None:
    secrets = _epoch(suite)
    tbm = b"authenticated content tbm"
    tag = secrets.membership_tag(tbm)
    secrets.verify_membership_tag(tbm, tag)
    with pytest.raises(ValidationError) as raised:
        _epoch(suite, _context(epoch=2)).verify_membership_tag(tbm, tag)
    assert raised.value.check == "public_message.membership_tag"
    with pytest.raises(ValidationError):
        secrets.verify_membership_tag(tbm + b"x", tag)


def test_vector_epochs_chain_through_init_secret(backend: CryptoBackend) -> None:
    # next_epoch_secrets, fed each epoch's init_secret, walks the vector's whole chain.
    case = next(c for c in load_json(MLS_VECTORS / "key-schedule.json") if c["cipher_suite"] == 3)
    suite = CipherSuite(3, CryptoProvider(backend))
    init_secret = h(case["initial_init_secret"])
    for epoch, e in enumerate(case["epochs"]):
        secrets = next_epoch_secrets(
            suite,
            init_secret=init_secret,
            commit_secret=h(e["commit_secret"]),
            group_context=h(e["group_context"]),
            psk_secret=h(e["psk_secret"]),
        )
        assert secrets.epoch_authenticator == h(e["epoch_authenticator"]), epoch
        init_secret = secrets.init_secret


def test_group_context_with_extensions_round_trips() -> None:
    from veilpost.codec import decode, encode
    from veilpost.mls.extensions import Extension
    from veilpost.mls.group_context import GroupContext

    context = GroupContext(
        1, b"group", 3, b"tree", b"cth", [Extension(5, b"xy"), Extension(0x0A0A, b"")]
    )
    encoded = encode(context)
    assert encoded.endswith(bytes.fromhex("0800050278790a0a00"))
    assert decode(GroupContext, encoded) == context
