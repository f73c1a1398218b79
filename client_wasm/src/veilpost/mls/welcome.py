"""The Welcome message (RFC 9420 §12.4.3.1): group secrets for members added by a Commit.

The ``joiner_secret`` (with an optional path secret and the PSKs in use) is HPKE-encrypted
to each new member's key package init key, as :class:`GroupSecrets` inside an
:class:`EncryptedGroupSecrets` found by :attr:`~EncryptedGroupSecrets.new_member` (a
``KeyPackageRef``); the :class:`~veilpost.mls.group_info.GroupInfo` is AEAD-encrypted once
for all of them in ``encrypted_group_info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veilpost.codec import Reader, Writer
from veilpost.mls.psk import PreSharedKeyID
from veilpost.mls.update_path import HPKECiphertext


@dataclass(frozen=True)
class PathSecret:
    """``struct { opaque path_secret<V>; } PathSecret``."""

    path_secret: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.path_secret)

    @classmethod
    def decode(cls, reader: Reader) -> PathSecret:
        return cls(reader.opaque("PathSecret.path_secret"))


@dataclass(frozen=True)
class GroupSecrets:
    """``struct GroupSecrets``: what one new member decrypts from the Welcome."""

    joiner_secret: bytes
    path_secret: PathSecret | None = None
    psks: list[PreSharedKeyID] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.joiner_secret)
        writer.optional_struct(self.path_secret)
        writer.struct_vector(self.psks)

    @classmethod
    def decode(cls, reader: Reader) -> GroupSecrets:
        return cls(
            reader.opaque("GroupSecrets.joiner_secret"),
            reader.optional(PathSecret.decode, "GroupSecrets.path_secret"),
            reader.vector(PreSharedKeyID.decode, "GroupSecrets.psks"),
        )


@dataclass(frozen=True)
class EncryptedGroupSecrets:
    """``struct EncryptedGroupSecrets``: one new member's key package ref and its secrets."""

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.new_member)
        self.encrypted_group_secrets.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> EncryptedGroupSecrets:
        return cls(
            reader.opaque("EncryptedGroupSecrets.new_member"),
            HPKECiphertext.decode(reader),
        )


@dataclass(frozen=True)
class Welcome:
    """``struct Welcome``."""

    cipher_suite: int
    secrets: list[EncryptedGroupSecrets]
    encrypted_group_info: bytes

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.cipher_suite)
        writer.struct_vector(self.secrets)
        writer.opaque(self.encrypted_group_info)

    @classmethod
    def decode(cls, reader: Reader) -> Welcome:
        return cls(
            reader.uint16("Welcome.cipher_suite"),
            reader.vector(EncryptedGroupSecrets.decode, "Welcome.secrets"),
            reader.opaque("Welcome.encrypted_group_info"),
        )
