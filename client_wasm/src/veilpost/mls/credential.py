"""Credentials (RFC 9420 §5.3): who a member claims to be, bound to its signature key.

Only the wire format lives here; whether a credential is acceptable is the application's
Authentication Service's call (§5.3.1). A credential type outside the registry's ``basic`` and
``x509`` has no defined content, so it cannot be decoded and is a
:class:`~veilpost.codec.DecodeError` (the value may still appear, as a plain ``int``, in
``Capabilities.credentials``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from veilpost.codec import EncodeError, Reader, Writer
from veilpost.mls._wire import read_selector


class CredentialType(enum.IntEnum):
    """The credential types this implementation can decode (§17.5)."""

    BASIC = 0x0001
    X509 = 0x0002


@dataclass(frozen=True)
class Certificate:
    """``struct { opaque cert_data<V>; } Certificate``: one DER-encoded X.509 certificate."""

    cert_data: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.cert_data)

    @classmethod
    def decode(cls, reader: Reader) -> Certificate:
        return cls(reader.opaque("Certificate.cert_data"))


@dataclass(frozen=True)
class Credential:
    """``struct Credential``: a ``basic`` identity or an ``x509`` certificate chain.

    ``identity`` is set for ``BASIC``, ``certificates`` (end-entity first) for ``X509``; use
    :meth:`basic` and :meth:`x509` to build one.
    """

    credential_type: CredentialType
    identity: bytes = b""
    certificates: list[Certificate] = field(default_factory=list)

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        """A ``basic`` credential: a bare identity whose format the application defines."""
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: list[bytes]) -> Credential:
        """An ``x509`` credential from DER certificates, end-entity certificate first."""
        return cls(CredentialType.X509, certificates=[Certificate(c) for c in certificates])

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            if self.certificates:
                raise EncodeError("a basic Credential carries no certificates")
            writer.opaque(self.identity)
        else:
            if self.identity:
                raise EncodeError("an x509 Credential carries no identity")
            writer.struct_vector(self.certificates)

    @classmethod
    def decode(cls, reader: Reader) -> Credential:
        credential_type = read_selector(
            reader, CredentialType, "Credential.credential_type", width=2
        )
        if credential_type is CredentialType.BASIC:
            return cls(credential_type, identity=reader.opaque("Credential.identity"))
        return cls(
            credential_type,
            certificates=reader.vector(Certificate.decode, "Credential.certificates"),
        )
