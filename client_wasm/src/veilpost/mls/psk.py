"""Pre-shared keys (RFC 9420 §8.4): identifiers, and the ``psk_secret`` they combine into."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from veilpost.codec import Reader, Writer, encode
from veilpost.crypto import CipherSuite
from veilpost.mls._wire import read_selector
from veilpost.mls.errors import ProtocolError


class PSKType(enum.IntEnum):
    """``enum PSKType``."""

    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(enum.IntEnum):
    """``enum ResumptionPSKUsage``."""

    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@dataclass(frozen=True)
class PreSharedKeyID:
    """``struct PreSharedKeyID``: an external PSK by id, or a resumption PSK by group and epoch.

    For ``EXTERNAL``, ``psk_id`` is set; for ``RESUMPTION``, ``usage``, ``psk_group_id`` and
    ``psk_epoch`` are.
    """

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    def encode(self, writer: Writer) -> None:
        writer.uint8(self.psktype)
        if self.psktype is PSKType.EXTERNAL:
            writer.opaque(self.psk_id)
        else:
            writer.uint8(self.usage)
            writer.opaque(self.psk_group_id)
            writer.uint64(self.psk_epoch)
        writer.opaque(self.psk_nonce)

    @classmethod
    def decode(cls, reader: Reader) -> PreSharedKeyID:
        psktype = read_selector(reader, PSKType, "PreSharedKeyID.psktype")
        if psktype is PSKType.EXTERNAL:
            psk_id = reader.opaque("PreSharedKeyID.psk_id")
            return cls(psktype, psk_id=psk_id, psk_nonce=reader.opaque("PreSharedKeyID.psk_nonce"))
        usage = read_selector(reader, ResumptionPSKUsage, "PreSharedKeyID.usage")
        group_id = reader.opaque("PreSharedKeyID.psk_group_id")
        epoch = reader.uint64("PreSharedKeyID.psk_epoch")
        return cls(
            psktype,
            usage=usage,
            psk_group_id=group_id,
            psk_epoch=epoch,
            psk_nonce=reader.opaque("PreSharedKeyID.psk_nonce"),
        )


@dataclass(frozen=True)
class PSKLabel:
    """``struct { PreSharedKeyID id; uint16 index; uint16 count; } PSKLabel`` (§8.4): binds
    each PSK to its place in the Commit's list."""

    id: PreSharedKeyID
    index: int
    count: int

    def encode(self, writer: Writer) -> None:
        self.id.encode(writer)
        writer.uint16(self.index)
        writer.uint16(self.count)

    @classmethod
    def decode(cls, reader: Reader) -> PSKLabel:
        return cls(
            PreSharedKeyID.decode(reader),
            reader.uint16("PSKLabel.index"),
            reader.uint16("PSKLabel.count"),
        )


MAX_PSKS = 0xFFFF
"""The most PSKs one epoch can inject: ``PSKLabel.count`` is a ``uint16``."""


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """``psk_secret`` (§8.4) from the PSKs of a Commit or GroupSecrets, in their order.

    Each entry is a ``PreSharedKeyID`` and its PSK value (an external PSK, or the
    ``resumption_psk`` of the group and epoch it names). Every PSK is extracted, expanded with
    its :class:`PSKLabel` into ``psk_input``, and chained into the secret with
    ``KDF.Extract(salt=psk_input, ikm=previous)``. No PSKs gives the all-zero secret.
    """
    count = len(psks)
    if count > MAX_PSKS:
        raise ProtocolError(
            f"{count} PSKs, more than a PSKLabel can count ({MAX_PSKS})",
            check="psk.count",
            section="8.4",
        )
    zero = bytes(suite.kdf_size)
    secret = zero
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero, psk)
        label = encode(PSKLabel(psk_id, index, count))
        psk_input = suite.expand_with_label(extracted, "derived psk", label, suite.kdf_size)
        secret = suite.kdf_extract(psk_input, secret)
    return secret


def external_psk_id(suite: CipherSuite, psk_id: bytes) -> PreSharedKeyID:
    """A ``PreSharedKeyID`` for the external PSK ``psk_id`` with a fresh ``psk_nonce`` of
    ``KDF.Nh`` random bytes from the suite's provider, as each injection needs (§8.4)."""
    return PreSharedKeyID(
        PSKType.EXTERNAL, psk_nonce=suite.random_bytes(suite.kdf_size), psk_id=psk_id
    )


def resumption_psk_id(
    suite: CipherSuite, usage: ResumptionPSKUsage, group_id: bytes, epoch: int
) -> PreSharedKeyID:
    """A ``PreSharedKeyID`` for the ``resumption_psk`` of ``group_id`` at ``epoch``, with a
    fresh ``psk_nonce`` (§8.4, §8.6)."""
    return PreSharedKeyID(
        PSKType.RESUMPTION,
        psk_nonce=suite.random_bytes(suite.kdf_size),
        usage=usage,
        psk_group_id=group_id,
        psk_epoch=epoch,
    )
