"""Transcript hashes (RFC 9420 §8.2): the working group's ``transcript-hashes.json`` on every
backend, the hash inputs written out byte by byte, and what each part of a commit feeds into
which hash."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from mls_vectors import run_vector_file
from support import MLS_VECTORS, h, load_json

from veilpost.codec import DecodeError, decode, encode, encode_varint
from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.commit import Commit
from veilpost.mls.errors import UsageError
from veilpost.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    Sender,
    WireFormat,
)
from veilpost.mls.proposals import Proposal, Remove
from veilpost.mls.transcript_hash import (
    ConfirmedTranscriptHashInput,
    InterimTranscriptHashInput,
    confirmed_transcript_hash,
    interim_transcript_hash,
    next_transcript_hashes,
)
from veilpost.mls.vectors import CHECKERS, VectorMismatch
from veilpost.mls.vectors.transcript_hashes import check_transcript_hashes

VECTORS = load_json(MLS_VECTORS / "transcript-hashes.json")


def test_transcript_hash_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["transcript-hashes"] is check_transcript_hashes
    assert {1, 3} <= run_vector_file("transcript-hashes", backend)


@pytest.fixture
def suite(backend: CryptoBackend) -> CipherSuite:
    return CipherSuite(1, CryptoProvider(backend))


def _commit(
    signature: bytes = b"\x51" * 64, tag: bytes | None = b"\x7a" * 32
) -> AuthenticatedContent:
    content = FramedContent(
        group_id=b"group",
        epoch=4,
        sender=Sender.member(2),
        authenticated_data=b"aad",
        body=Commit(),
    )
    return AuthenticatedContent(
        WireFormat.MLS_PRIVATE_MESSAGE, content, FramedContentAuthData(signature, tag)
    )


def test_hashes_follow_the_rfc_formulas_written_out(suite: CipherSuite) -> None:
    commit = _commit()
    interim_before = b"\x33" * 32
    # ConfirmedTranscriptHashInput: uint16 wire_format || FramedContent || opaque signature<V>
    confirmed_input = (
        (2).to_bytes(2, "big") + encode(commit.content) + encode_varint(64) + commit.auth.signature
    )
    confirmed = hashlib.sha256(interim_before + confirmed_input).digest()
    interim = hashlib.sha256(confirmed + encode_varint(32) + b"\x7a" * 32).digest()

    assert encode(ConfirmedTranscriptHashInput.of(commit)) == confirmed_input
    assert confirmed_transcript_hash(suite, interim_before, commit) == confirmed
    assert interim_transcript_hash(suite, confirmed, b"\x7a" * 32) == interim
    hashes = next_transcript_hashes(suite, interim_before, commit)
    assert (hashes.confirmed, hashes.interim) == (confirmed, interim)


def test_the_first_commit_starts_from_the_empty_interim_hash(suite: CipherSuite) -> None:
    commit = _commit()
    expected = hashlib.sha256(encode(ConfirmedTranscriptHashInput.of(commit))).digest()
    assert confirmed_transcript_hash(suite, b"", commit) == expected


def test_the_confirmation_tag_feeds_only_the_interim_hash(suite: CipherSuite) -> None:
    first = next_transcript_hashes(suite, b"", _commit(tag=b"\x01" * 32))
    second = next_transcript_hashes(suite, b"", _commit(tag=b"\x02" * 32))
    assert first.confirmed == second.confirmed
    assert first.interim != second.interim
    # ...so the confirmed hash can be computed before the tag exists.
    assert confirmed_transcript_hash(suite, b"", _commit(tag=None)) == first.confirmed


def test_signature_wire_format_and_history_all_feed_the_confirmed_hash(
    suite: CipherSuite,
) -> None:
    base = confirmed_transcript_hash(suite, b"", _commit())
    assert confirmed_transcript_hash(suite, b"", _commit(signature=b"\x52" * 64)) != base
    public = replace(_commit(), wire_format=WireFormat.MLS_PUBLIC_MESSAGE)
    assert confirmed_transcript_hash(suite, b"", public) != base
    assert confirmed_transcript_hash(suite, b"\x00" * 32, _commit()) != base


def test_only_commits_enter_the_transcript(suite: CipherSuite) -> None:
    proposal = replace(
        _commit(tag=None),
        content=replace(_commit().content, body=Proposal(Remove(1))),
    )
    with pytest.raises(UsageError, match="commits only, not proposal content"):
        confirmed_transcript_hash(suite, b"", proposal)
    # On the wire, the same input with a proposal inside is malformed.
    data = (1).to_bytes(2, "big") + encode(proposal.content) + encode_varint(0)
    with pytest.raises(DecodeError, match="content type proposal, not commit"):
        decode(ConfirmedTranscriptHashInput, data)


def test_the_interim_hash_needs_the_confirmation_tag(suite: CipherSuite) -> None:
    with pytest.raises(UsageError, match="no confirmation tag"):
        next_transcript_hashes(suite, b"", _commit(tag=None))


def test_hash_inputs_round_trip() -> None:
    confirmed_input = ConfirmedTranscriptHashInput.of(_commit())
    assert decode(ConfirmedTranscriptHashInput, encode(confirmed_input)) == confirmed_input
    interim_input = InterimTranscriptHashInput(b"\x09" * 32)
    assert decode(InterimTranscriptHashInput, encode(interim_input)) == interim_input


def test_the_checker_rejects_a_wrong_confirmation_tag(backend: CryptoBackend) -> None:
    case = dict(VECTORS[0])
    authenticated = decode(AuthenticatedContent, h(case["authenticated_content"]))
    tag = authenticated.auth.confirmation_tag
    assert tag is not None
    wrong = replace(
        authenticated,
        auth=replace(authenticated.auth, confirmation_tag=bytes([tag[0] ^ 1]) + tag[1:]),
    )
    case["authenticated_content"] = encode(wrong).hex()
    with pytest.raises(VectorMismatch, match="confirmation_tag"):
        check_transcript_hashes(case, CryptoProvider(backend))


def test_the_checker_rejects_a_wrong_interim_hash(backend: CryptoBackend) -> None:
    case = dict(VECTORS[0])
    case["interim_transcript_hash_after"] = "00" * 32
    with pytest.raises(VectorMismatch, match="interim_transcript_hash_after"):
        check_transcript_hashes(case, CryptoProvider(backend))
