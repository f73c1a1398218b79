"""Transcript hashes (RFC 9420 §8.2): a running hash over every Commit of the group.

Each Commit moves two hashes forward::

    interim_transcript_hash[n-1] ─┐
                                  ├─ Hash(· || ConfirmedTranscriptHashInput[n]) ─► confirmed[n]
    wire_format, content, signature ┘     (the Commit, up to and including its signature)

    confirmed_transcript_hash[n] ─┐
                                  ├─ Hash(· || InterimTranscriptHashInput[n]) ───► interim[n]
    confirmation_tag[n] ──────────┘

Both start as the empty string in epoch 0. ``confirmed[n]`` goes into the new GroupContext, and
the Commit's ``confirmation_tag`` is ``MAC(confirmation_key[n], confirmed[n])`` (§6.1): so the
tag cannot be part of the confirmed hash and is folded into the interim one instead. A joiner
learns ``confirmed[n]`` from the GroupContext and ``confirmation_tag[n]`` from the GroupInfo, and
computes ``interim[n]`` itself (§12.4.3.1).

The functions here are pure: hashes in, hashes out; the group state keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from veilpost.codec import DecodeError, Reader, Writer, encode
from veilpost.crypto import CipherSuite
from veilpost.mls._wire import read_selector
from veilpost.mls.errors import UsageError
from veilpost.mls.framing import AuthenticatedContent, ContentType, FramedContent, WireFormat

__all__ = [
    "ConfirmedTranscriptHashInput",
    "InterimTranscriptHashInput",
    "TranscriptHashes",
    "confirmed_transcript_hash",
    "interim_transcript_hash",
    "next_transcript_hashes",
]


@dataclass(frozen=True)
class ConfirmedTranscriptHashInput:
    """``struct { WireFormat wire_format; FramedContent content; opaque signature<V>; }``.

    ``content`` must be a Commit (its ``content_type`` is ``commit``).
    """

    wire_format: WireFormat
    content: FramedContent
    signature: bytes

    def __post_init__(self) -> None:
        if self.content.content_type != ContentType.COMMIT:
            raise UsageError(
                "the transcript hash covers commits only, not"
                f" {self.content.content_type.name.lower()} content"
            )

    @classmethod
    def of(cls, authenticated: AuthenticatedContent) -> ConfirmedTranscriptHashInput:
        """The input taken from a Commit's AuthenticatedContent (its confirmation tag, which
        may not be set yet, is not part of it)."""
        return cls(authenticated.wire_format, authenticated.content, authenticated.auth.signature)

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.wire_format)
        self.content.encode(writer)
        writer.opaque(self.signature)

    @classmethod
    def decode(cls, reader: Reader) -> ConfirmedTranscriptHashInput:
        wire_format = read_selector(
            reader, WireFormat, "ConfirmedTranscriptHashInput.wire_format", width=2
        )
        start = reader.offset
        content = FramedContent.decode(reader)
        if content.content_type != ContentType.COMMIT:
            raise DecodeError(
                f"ConfirmedTranscriptHashInput at offset {start}: content type"
                f" {content.content_type.name.lower()}, not commit"
            )
        signature = reader.opaque("ConfirmedTranscriptHashInput.signature")
        return cls(wire_format, content, signature)


@dataclass(frozen=True)
class InterimTranscriptHashInput:
    """``struct { MAC confirmation_tag; } InterimTranscriptHashInput``."""

    confirmation_tag: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.confirmation_tag)

    @classmethod
    def decode(cls, reader: Reader) -> InterimTranscriptHashInput:
        return cls(reader.opaque("InterimTranscriptHashInput.confirmation_tag"))


def confirmed_transcript_hash(
    suite: CipherSuite,
    interim_transcript_hash_before: bytes,
    commit: AuthenticatedContent | ConfirmedTranscriptHashInput,
) -> bytes:
    """``confirmed[n] = Hash(interim[n-1] || ConfirmedTranscriptHashInput[n])``.

    ``commit`` is the Commit that starts epoch ``n`` (sent in epoch ``n - 1``), signed; its
    confirmation tag is not needed, since the tag is computed from this hash.
    """
    if isinstance(commit, AuthenticatedContent):
        commit = ConfirmedTranscriptHashInput.of(commit)
    return suite.hash(interim_transcript_hash_before + encode(commit))


def interim_transcript_hash(
    suite: CipherSuite, confirmed_transcript_hash: bytes, confirmation_tag: bytes
) -> bytes:
    """``interim[n] = Hash(confirmed[n] || InterimTranscriptHashInput[n])``: also what a joiner
    computes from the GroupInfo's ``confirmed_transcript_hash`` and ``confirmation_tag``."""
    return suite.hash(
        confirmed_transcript_hash + encode(InterimTranscriptHashInput(confirmation_tag))
    )


@dataclass(frozen=True, slots=True)
class TranscriptHashes:
    """The two transcript hashes of one epoch."""

    confirmed: bytes
    interim: bytes


def next_transcript_hashes(
    suite: CipherSuite, interim_transcript_hash_before: bytes, commit: AuthenticatedContent
) -> TranscriptHashes:
    """Both hashes after ``commit``, which must carry its confirmation tag."""
    tag = commit.auth.confirmation_tag
    if tag is None:
        raise UsageError("the commit has no confirmation tag yet: the interim hash needs it")
    confirmed = confirmed_transcript_hash(suite, interim_transcript_hash_before, commit)
    return TranscriptHashes(confirmed, interim_transcript_hash(suite, confirmed, tag))
