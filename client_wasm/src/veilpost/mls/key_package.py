"""Key packages (RFC 9420 §10): pre-published material for adding a client to a group.

A :class:`KeyPackage` carries the client's HPKE ``init_key`` (the Welcome is encrypted to it)
and the :class:`~veilpost.mls.leaf_node.LeafNode` it will occupy, signed over
``KeyPackageTBS`` with the leaf's signature key. Its reference (§5.2) is
``MakeKeyPackageRef`` of its encoding. ``version`` and ``cipher_suite`` are plain ``int``:
checking them belongs to key package validation (§10.1), not to decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from veilpost.codec import Reader, Writer
from veilpost.crypto.errors import SignatureVerificationError
from veilpost.mls.errors import ValidationError
from veilpost.mls.extensions import Extension
from veilpost.mls.leaf_node import LeafNode, ProtocolVersion

if TYPE_CHECKING:
    from veilpost.crypto import CipherSuite

KEY_PACKAGE_SIGNATURE_LABEL = "KeyPackageTBS"


@dataclass(frozen=True)
class KeyPackage:
    """``struct KeyPackage``. Build it with an empty signature and call :meth:`sign`."""

    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: list[Extension] = field(default_factory=list)
    signature: bytes = b""
    version: int = ProtocolVersion.MLS10

    def _encode_content(self, writer: Writer) -> None:
        """Write ``KeyPackageTBS``: every field but the signature."""
        writer.uint16(self.version)
        writer.uint16(self.cipher_suite)
        writer.opaque(self.init_key)
        self.leaf_node.encode(writer)
        writer.struct_vector(self.extensions)

    def encode(self, writer: Writer) -> None:
        self._encode_content(writer)
        writer.opaque(self.signature)

    @classmethod
    def decode(cls, reader: Reader) -> KeyPackage:
        version = reader.uint16("KeyPackage.version")
        return cls(
            version=version,
            cipher_suite=reader.uint16("KeyPackage.cipher_suite"),
            init_key=reader.opaque("KeyPackage.init_key"),
            leaf_node=LeafNode.decode(reader),
            extensions=reader.vector(Extension.decode, "KeyPackage.extensions"),
            signature=reader.opaque("KeyPackage.signature"),
        )

    def to_be_signed(self) -> bytes:
        """The encoded ``KeyPackageTBS``."""
        writer = Writer()
        self._encode_content(writer)
        return writer.getvalue()

    def sign(self, suite: CipherSuite, signature_private_key: bytes) -> KeyPackage:
        """Return a copy signed with ``SignWithLabel(., "KeyPackageTBS", KeyPackageTBS)``.

        The key must be the one whose public half is ``leaf_node.signature_key``.
        """
        signature = suite.sign_with_label(
            signature_private_key, KEY_PACKAGE_SIGNATURE_LABEL, self.to_be_signed()
        )
        return replace(self, signature=signature)

    def verify_signature(self, suite: CipherSuite) -> None:
        """Check the signature under ``leaf_node.signature_key``.

        Raises :class:`~veilpost.mls.errors.ValidationError` (check ``key_package.signature``).
        """
        try:
            suite.verify_with_label(
                self.leaf_node.signature_key,
                KEY_PACKAGE_SIGNATURE_LABEL,
                self.to_be_signed(),
                self.signature,
            )
        except SignatureVerificationError as exc:
            raise ValidationError(
                f"KeyPackage signature does not verify under its leaf's signature key: {exc}",
                check="key_package.signature",
                section="10.1",
            ) from exc

    def ref(self, suite: CipherSuite) -> bytes:
        """``KeyPackageRef``: ``MakeKeyPackageRef`` over this key package's encoding (§5.2)."""
        writer = Writer()
        self.encode(writer)
        return suite.make_key_package_ref(writer.getvalue())
