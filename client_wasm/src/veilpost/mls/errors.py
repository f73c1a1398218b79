"""Typed MLS errors: each names the check that failed and, where useful, the RFC section.

Two kinds, as in h11: :class:`ProtocolError` — the peer (or the delivery service) sent
something that RFC 9420 forbids; :class:`UsageError` — the caller asked for something the API
cannot do. Malformed bytes never get this far: decoders raise only
:class:`veilpost.codec.DecodeError`.
"""

from __future__ import annotations


class MlsError(Exception):
    """Base class of every error raised by :mod:`veilpost.mls`."""


class ProtocolError(MlsError):
    """Input that violates RFC 9420.

    ``check`` is a short stable name of the rule (e.g. ``"leaf_node.signature"``), ``section``
    the RFC 9420 section that states it; the message says what value failed.
    """

    def __init__(self, message: str, *, check: str, section: str | None = None) -> None:
        where = f" (RFC 9420 §{section})" if section else ""
        super().__init__(f"{message}{where}")
        self.check = check
        self.section = section


class ValidationError(ProtocolError):
    """A structure decoded fine but fails a validation rule (§7.3, §10.1, §12.2, §12.4 …)."""


class UsageError(MlsError):
    """The caller misused the API (wrong state, unknown member, unsupported option)."""
