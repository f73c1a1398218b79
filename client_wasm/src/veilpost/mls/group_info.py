"""Group info (RFC 9420 §12.4.3): what a joiner learns about the group it joins.

A :class:`GroupInfo` travels encrypted inside a Welcome, or in the clear (as an MLSMessage)
for external joins. It is signed by the member at leaf ``signer`` over ``GroupInfoTBS``
(:meth:`GroupInfo.to_be_signed`): every field above the signature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from veilpost.codec import Reader, Writer
from veilpost.crypto.errors import SignatureVerificationError
from veilpost.mls.errors import ValidationError
from veilpost.mls.extensions import Extension
from veilpost.mls.group_context import GroupContext

if TYPE_CHECKING:
    from veilpost.crypto import CipherSuite

GROUP_INFO_SIGNATURE_LABEL = "GroupInfoTBS"


@dataclass(frozen=True)
class GroupInfo:
    """``struct GroupInfo``. Build it with an empty signature and call :meth:`sign`."""

    group_context: GroupContext
    extensions: list[Extension]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def _encode_content(self, writer: Writer) -> None:
        """Write ``GroupInfoTBS``: every field but the signature."""
        self.group_context.encode(writer)
        writer.struct_vector(self.extensions)
        writer.opaque(self.confirmation_tag)
        writer.uint32(self.signer)

    def encode(self, writer: Writer) -> None:
        self._encode_content(writer)
        writer.opaque(self.signature)

    @classmethod
    def decode(cls, reader: Reader) -> GroupInfo:
        return cls(
            group_context=GroupContext.decode(reader),
            extensions=reader.vector(Extension.decode, "GroupInfo.extensions"),
            confirmation_tag=reader.opaque("GroupInfo.confirmation_tag"),
            signer=reader.uint32("GroupInfo.signer"),
            signature=reader.opaque("GroupInfo.signature"),
        )

    def to_be_signed(self) -> bytes:
        """The encoded ``GroupInfoTBS``."""
        writer = Writer()
        self._encode_content(writer)
        return writer.getvalue()

    def sign(self, suite: CipherSuite, signature_private_key: bytes) -> GroupInfo:
        """Return a copy signed with ``SignWithLabel(., "GroupInfoTBS", GroupInfoTBS)``."""
        signature = suite.sign_with_label(
            signature_private_key, GROUP_INFO_SIGNATURE_LABEL, self.to_be_signed()
        )
        return replace(self, signature=signature)

    def verify_signature(self, suite: CipherSuite, signer_signature_key: bytes) -> None:
        """Check the signature under the signature key of the leaf at index ``signer``.

        Raises :class:`~veilpost.mls.errors.ValidationError` (check ``group_info.signature``).
        """
        try:
            suite.verify_with_label(
                signer_signature_key,
                GROUP_INFO_SIGNATURE_LABEL,
                self.to_be_signed(),
                self.signature,
            )
        except SignatureVerificationError as exc:
            raise ValidationError(
                f"GroupInfo signature does not verify under the key of signer leaf"
                f" {self.signer}: {exc}",
                check="group_info.signature",
                section="12.4.3.1",
            ) from exc
