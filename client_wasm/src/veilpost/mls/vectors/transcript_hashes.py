"""Checker for ``transcript-hashes.json``: one Commit moves the confirmed and interim transcript
hashes forward, and its confirmation tag is the MAC of the new confirmed hash (RFC 9420 §8.2,
§6.1)."""

from __future__ import annotations

from veilpost.codec import DecodeError, decode
from veilpost.crypto import CryptoProvider
from veilpost.mls.framing import AuthenticatedContent, ContentType
from veilpost.mls.key_schedule import confirmation_tag
from veilpost.mls.transcript_hash import next_transcript_hashes
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


@checker("transcript-hashes")
def check_transcript_hashes(case: Case, provider: CryptoProvider) -> None:
    """Decode ``authenticated_content`` (a Commit), check its confirmation tag under
    ``confirmation_key`` over ``confirmed_transcript_hash_after``, then both new hashes."""
    suite = suite_for(case, provider)
    try:
        commit = decode(AuthenticatedContent, h(case["authenticated_content"]))
    except DecodeError as exc:
        raise VectorMismatch(f"authenticated_content does not decode: {exc}") from exc
    expect(commit.content.content_type, ContentType.COMMIT, "authenticated_content content_type")
    confirmed_after = h(case["confirmed_transcript_hash_after"])
    expected_tag = confirmation_tag(suite, h(case["confirmation_key"]), confirmed_after)
    expect(commit.auth.confirmation_tag, expected_tag, "confirmation_tag")
    hashes = next_transcript_hashes(suite, h(case["interim_transcript_hash_before"]), commit)
    expect(hashes.confirmed, confirmed_after, "confirmed_transcript_hash_after")
    expect(
        hashes.interim, h(case["interim_transcript_hash_after"]), "interim_transcript_hash_after"
    )
