"""A member's signing identity and its key packages (RFC 9420 §5.3, §10).

:class:`SigningIdentity` is what a client signs with in every group: a credential bound to an
Ed25519 signature key pair (§5.3), and the capabilities it advertises in its leaf nodes
(§7.2, without GREASE: the builders add GREASE to what is published, §13.5).

:class:`KeyPackageBundle` is a published key package with the private keys that go with it:
the HPKE ``init_key`` private key (the Welcome is encrypted to it), the leaf's
``encryption_key`` private key (the joiner's first leaf key), and the signing identity that
signed it. :func:`make_key_package` builds one; publish ``bundle.to_message()`` and keep the
bundle (``to_bytes``) until a Welcome consumes it (§16.8: a key package is used once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from veilpost.codec import DecodeError, Reader, Writer, decode, encode
from veilpost.mls.builders import default_capabilities, new_key_package
from veilpost.mls.credential import Credential
from veilpost.mls.errors import UsageError
from veilpost.mls.extensions import Extension
from veilpost.mls.framing import MLSMessage
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import Capabilities, Lifetime

if TYPE_CHECKING:
    from veilpost.crypto import CipherSuite

__all__ = ["KeyPackageBundle", "SigningIdentity", "make_key_package"]

_BUNDLE_MAGIC = b"VPKPB\x00"
_BUNDLE_VERSION = 1


@dataclass(frozen=True)
class SigningIdentity:
    """A credential, the Ed25519 key pair it is bound to, and the client's capabilities.

    Build one with :meth:`generate` (fresh key) or :meth:`from_private_key`.
    ``capabilities`` is the client's own view (no GREASE); ``leaf_extensions`` go in every
    leaf node this identity makes, and their non-default types must be in ``capabilities``.
    """

    credential: Credential
    signature_private_key: bytes = field(repr=False)
    signature_key: bytes
    capabilities: Capabilities = field(default_factory=default_capabilities)
    leaf_extensions: tuple[Extension, ...] = ()

    @classmethod
    def generate(
        cls,
        suite: CipherSuite,
        credential: Credential | bytes,
        *,
        capabilities: Capabilities | None = None,
        leaf_extensions: tuple[Extension, ...] = (),
    ) -> SigningIdentity:
        """A fresh signature key pair for ``credential`` (bytes: a ``basic`` identity)."""
        private_key, public_key = suite.signature_key_pair()
        return cls(
            _credential(credential),
            private_key,
            public_key,
            capabilities or default_capabilities(),
            leaf_extensions,
        )

    @classmethod
    def from_private_key(
        cls,
        suite: CipherSuite,
        credential: Credential | bytes,
        signature_private_key: bytes,
        *,
        capabilities: Capabilities | None = None,
        leaf_extensions: tuple[Extension, ...] = (),
    ) -> SigningIdentity:
        """The identity of an existing Ed25519 private key (its 32-byte seed)."""
        return cls(
            _credential(credential),
            signature_private_key,
            suite.signature_public_key(signature_private_key),
            capabilities or default_capabilities(),
            leaf_extensions,
        )

    def encode(self, writer: Writer) -> None:
        self.credential.encode(writer)
        writer.opaque(self.signature_private_key)
        writer.opaque(self.signature_key)
        self.capabilities.encode(writer)
        writer.struct_vector(self.leaf_extensions)

    @classmethod
    def decode(cls, reader: Reader) -> SigningIdentity:
        return cls(
            Credential.decode(reader),
            reader.opaque("SigningIdentity.signature_private_key"),
            reader.opaque("SigningIdentity.signature_key"),
            Capabilities.decode(reader),
            tuple(reader.vector(Extension.decode, "SigningIdentity.leaf_extensions")),
        )


def _credential(credential: Credential | bytes) -> Credential:
    return Credential.basic(credential) if isinstance(credential, bytes) else credential


@dataclass(frozen=True)
class KeyPackageBundle:
    """A key package and the private keys a Welcome to it needs (§10, §12.4.3.1)."""

    key_package: KeyPackage
    init_private_key: bytes = field(repr=False)
    encryption_private_key: bytes = field(repr=False)
    signer: SigningIdentity

    def __post_init__(self) -> None:
        if self.signer.signature_key != self.key_package.leaf_node.signature_key:
            raise UsageError("the signer's signature key is not the key package leaf's")

    def ref(self, suite: CipherSuite) -> bytes:
        """The key package's ``KeyPackageRef`` (§5.2)."""
        return self.key_package.ref(suite)

    def to_message(self) -> bytes:
        """The key package as an ``MLSMessage`` (``mls_key_package``), ready to publish."""
        return encode(MLSMessage(self.key_package))

    def to_bytes(self) -> bytes:
        """The bundle, private keys included, for the client's key store."""
        writer = Writer()
        writer.fixed(_BUNDLE_MAGIC)
        writer.uint16(_BUNDLE_VERSION)
        self.key_package.encode(writer)
        writer.opaque(self.init_private_key)
        writer.opaque(self.encryption_private_key)
        self.signer.encode(writer)
        return writer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyPackageBundle:
        """Read what :meth:`to_bytes` wrote; anything else is a :class:`DecodeError`."""
        reader = Reader(data)
        if reader.fixed(len(_BUNDLE_MAGIC), "key package bundle magic") != _BUNDLE_MAGIC:
            raise DecodeError("not a veilpost key package bundle (bad magic)")
        version = reader.uint16("key package bundle version")
        if version != _BUNDLE_VERSION:
            raise DecodeError(
                f"key package bundle version {version} is not supported (only {_BUNDLE_VERSION})"
            )
        key_package = KeyPackage.decode(reader)
        init_private_key = reader.opaque("KeyPackageBundle.init_private_key")
        encryption_private_key = reader.opaque("KeyPackageBundle.encryption_private_key")
        signer = SigningIdentity.decode(reader)
        reader.finish("KeyPackageBundle")
        try:
            return cls(key_package, init_private_key, encryption_private_key, signer)
        except UsageError as exc:
            raise DecodeError(f"inconsistent key package bundle: {exc}") from exc

    @classmethod
    def from_message(
        cls,
        message: bytes,
        init_private_key: bytes,
        encryption_private_key: bytes,
        signer: SigningIdentity,
    ) -> KeyPackageBundle:
        """A bundle from a key package ``MLSMessage`` and its private keys."""
        body = decode(MLSMessage, message).body
        if not isinstance(body, KeyPackage):
            raise DecodeError(f"expected an mls_key_package message, got {type(body).__name__}")
        return cls(body, init_private_key, encryption_private_key, signer)


def make_key_package(
    suite: CipherSuite,
    signer: SigningIdentity,
    *,
    now: int,
    lifetime: Lifetime | None = None,
    extensions: tuple[Extension, ...] = (),
    grease: bool = True,
) -> KeyPackageBundle:
    """A fresh key package of ``signer`` for ``suite`` (valid 90 days from ``now`` unless
    ``lifetime`` is given), with GREASE values by default (§13.5)."""
    key_package, init_private_key, encryption_private_key = new_key_package(
        suite,
        signer.credential,
        signer.signature_private_key,
        now=now,
        lifetime=lifetime,
        capabilities=signer.capabilities,
        extensions=extensions,
        leaf_extensions=signer.leaf_extensions,
        grease=grease,
    )
    return KeyPackageBundle(key_package, init_private_key, encryption_private_key, signer)
