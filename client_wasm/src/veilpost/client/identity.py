"""Installations, inboxes and their signed identity records (``docs/protocol.md``, "Identities").

- An **installation** is one Ed25519 key (:class:`InstallationKey`): its MLS signature key, and
  the key that authenticates to the relay.
- An **inbox** is the account that owns installations. Its id is the installation id of its
  first installation, and every MLS credential of its installations names it (a ``basic``
  credential whose identity is the inbox id in ASCII).
- An **identity record** (:class:`IdentityRecord`) lists the inbox's installations and the
  Ethereum addresses bound to it. The relay stores versions 1, 2, … opaque, each signed by an
  installation over ``identity_record_message(inbox id, version, record)``. A client trusts a
  record only through the chain (:func:`verify_record_chain`): version 1 is signed by the inbox's
  first installation (whose id is the inbox id) and lists it; every later version is signed by
  an installation the previous version listed. The relay can withhold a new version, never forge
  one.
- An **address binding** (:class:`AddressBinding`) is an EIP-191 ``personal_sign`` signature
  by an Ethereum wallet over :func:`veilpost.protocol.address_binding_text` of the inbox id and
  the time of signing; anyone can check it by recovering the signer.

- A **safety fingerprint** (:func:`fingerprint`) of a verified record is what two people
  compare out of band to know that they see the same installations of an inbox.

Wire form of a record (TLS presentation language, RFC 9420 §2.1)::

    struct { opaque address<V>; opaque signature<V>; uint64 issued_at; } AddressBinding;
    struct {
        opaque magic[4] = "VPIR"; uint16 format = 1;
        opaque inbox_id<V>; uint64 version;
        opaque installations<V><V>;        // Ed25519 public keys, 32 bytes each
        AddressBinding addresses<V>;
    } IdentityRecord;
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from veilpost.codec import DecodeError, Reader, Writer
from veilpost.crypto import CryptoProvider, ethereum, get_provider
from veilpost.mls.credential import Credential, CredentialType
from veilpost.protocol import (
    address_binding_text,
    identity_record_message,
    installation_id,
    is_installation_id,
)

from .errors import IdentityError

__all__ = [
    "AddressBinding",
    "IdentityRecord",
    "InstallationKey",
    "SignedRecord",
    "credential_for",
    "fingerprint",
    "inbox_of_credential",
    "verify_record_chain",
]

_MAGIC = b"VPIR"
_FORMAT = 1
MAX_INSTALLATIONS = 64
MAX_ADDRESSES = 16


def _fail(check: str, message: str) -> IdentityError:
    error = IdentityError(f"{message} [{check}]")
    error.check = check  # type: ignore[attr-defined]
    return error


class InstallationKey:
    """An installation's Ed25519 key pair. ``installation_id`` is derived from the public key."""

    __slots__ = ("_private_key", "provider", "public_key")

    def __init__(self, private_key: bytes, *, provider: CryptoProvider | None = None) -> None:
        if len(private_key) != 32:
            raise ValueError(f"an installation key is 32 bytes, not {len(private_key)}")
        self.provider = provider or get_provider()
        self._private_key = bytes(private_key)
        self.public_key = self.provider.backend.ed25519_public_key(self._private_key)

    @classmethod
    def generate(cls, *, provider: CryptoProvider | None = None) -> InstallationKey:
        """A fresh key from the provider's random source."""
        provider = provider or get_provider()
        return cls(provider.random_bytes(32), provider=provider)

    @classmethod
    def from_hex(cls, text: str, *, provider: CryptoProvider | None = None) -> InstallationKey:
        """A key written as 64 hex characters (an optional ``0x`` prefix is allowed)."""
        text = text.strip().removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("an installation key is 64 hex characters") from None
        return cls(raw, provider=provider)

    @property
    def private_key(self) -> bytes:
        """The 32-byte Ed25519 seed. Keep it secret."""
        return self._private_key

    @property
    def installation_id(self) -> str:
        return installation_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.provider.backend.ed25519_sign(self._private_key, message)

    def __repr__(self) -> str:
        return f"InstallationKey(installation_id={self.installation_id})"


def credential_for(inbox_id: str) -> Credential:
    """The MLS credential of every installation of ``inbox_id``."""
    return Credential.basic(inbox_id.encode("ascii"))


def inbox_of_credential(credential: Credential) -> str:
    """The inbox a member's credential names; :class:`IdentityError` if it names none."""
    if credential.credential_type != CredentialType.BASIC or credential.identity is None:
        raise _fail("credential.type", "a Veilpost member has a basic credential")
    try:
        inbox = credential.identity.decode("ascii")
    except UnicodeDecodeError:
        inbox = ""
    if not is_installation_id(inbox):
        raise _fail("credential.inbox", "the credential's identity is not an inbox id")
    return inbox


@dataclass(frozen=True)
class AddressBinding:
    """An Ethereum address bound to an inbox by the wallet's EIP-191 signature."""

    address: str
    signature: bytes
    issued_at: int

    @classmethod
    def create(cls, wallet_private_key: bytes, inbox_id: str, issued_at: int) -> AddressBinding:
        """Sign the binding of the wallet's address to ``inbox_id`` at Unix time
        ``issued_at`` (needs the wallet key)."""
        text = address_binding_text(inbox_id, issued_at).encode("utf-8")
        signature = ethereum.sign_message(wallet_private_key, text)
        return cls(ethereum.address_of_private_key(wallet_private_key), signature, issued_at)

    def verify(self, inbox_id: str) -> None:
        """Check that the address's wallet signed the binding to ``inbox_id``."""
        text = address_binding_text(inbox_id, self.issued_at).encode("utf-8")
        try:
            ok = ethereum.verify_message(self.address, text, self.signature)
        except ValueError:
            ok = False
        if not ok:
            raise _fail(
                "record.address",
                f"address {self.address} did not sign the binding to inbox {inbox_id}",
            )

    def encode(self, writer: Writer) -> None:
        writer.opaque(bytes.fromhex(self.address[2:]))
        writer.opaque(self.signature)
        writer.uint64(self.issued_at)

    @classmethod
    def decode(cls, reader: Reader) -> AddressBinding:
        raw = reader.opaque("AddressBinding.address")
        signature = reader.opaque("AddressBinding.signature")
        issued_at = reader.uint64("AddressBinding.issued_at")
        if len(raw) != 20 or len(signature) != 65:
            raise DecodeError("an address binding is a 20-byte address and a 65-byte signature")
        return cls(ethereum.checksum_address("0x" + raw.hex()), signature, issued_at)


@dataclass(frozen=True)
class IdentityRecord:
    """One version of an inbox's installations and bound addresses."""

    inbox_id: str
    version: int
    installations: tuple[bytes, ...]
    addresses: tuple[AddressBinding, ...] = field(default=())

    @classmethod
    def genesis(cls, key: InstallationKey) -> IdentityRecord:
        """Version 1 of a new inbox whose first installation is ``key``."""
        return cls(key.installation_id, 1, (key.public_key,))

    def installation_ids(self) -> frozenset[str]:
        return frozenset(installation_id(k) for k in self.installations)

    def lists(self, public_key: bytes) -> bool:
        return bytes(public_key) in self.installations

    def address_list(self) -> list[str]:
        return [binding.address for binding in self.addresses]

    def successor(
        self,
        *,
        add: Iterable[bytes] = (),
        remove: Iterable[bytes] = (),
        bind: Iterable[AddressBinding] = (),
    ) -> IdentityRecord:
        """The next version with installations added or removed and addresses bound."""
        removed = {bytes(k) for k in remove}
        keys = [k for k in self.installations if k not in removed]
        for key in map(bytes, add):
            if key not in keys and key not in removed:
                keys.append(key)
        bindings = {b.address: b for b in self.addresses}
        bindings.update({b.address: b for b in bind})
        return IdentityRecord(
            self.inbox_id, self.version + 1, tuple(keys), tuple(bindings.values())
        )

    def to_bytes(self) -> bytes:
        writer = Writer()
        writer.fixed(_MAGIC)
        writer.uint16(_FORMAT)
        writer.opaque(self.inbox_id.encode("ascii"))
        writer.uint64(self.version)
        writer.vector(self.installations, Writer.opaque)
        writer.struct_vector(self.addresses)
        return writer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityRecord:
        """Decode a record strictly; :class:`IdentityError` (check ``record.decode``) if not."""
        try:
            reader = Reader(data)
            if reader.fixed(4, "IdentityRecord.magic") != _MAGIC:
                raise DecodeError("not a Veilpost identity record (bad magic)")
            if reader.uint16("IdentityRecord.format") != _FORMAT:
                raise DecodeError("unsupported identity record format")
            inbox = reader.opaque("IdentityRecord.inbox_id").decode("ascii")
            version = reader.uint64("IdentityRecord.version")
            keys = tuple(reader.vector(lambda r: r.opaque("installation"), "installations"))
            addresses = tuple(reader.vector(AddressBinding.decode, "addresses"))
            reader.finish("IdentityRecord")
        except (DecodeError, UnicodeDecodeError) as exc:
            raise _fail("record.decode", f"the identity record does not decode: {exc}") from None
        return cls(inbox, version, keys, addresses)


@dataclass(frozen=True)
class SignedRecord:
    """A record version as the relay serves it: the record bytes, the signature and the key
    of the installation that signed it."""

    version: int
    record: bytes
    signature: bytes
    signer_key: bytes


def _check_record(inbox_id: str, record: IdentityRecord, version: int) -> None:
    if record.inbox_id != inbox_id:
        raise _fail(
            "record.inbox", f"the record is for inbox {record.inbox_id[:40]!r}, not {inbox_id}"
        )
    if record.version != version:
        raise _fail(
            "record.version", f"the record says version {record.version}, the relay {version}"
        )
    keys = record.installations
    if not keys or len(keys) > MAX_INSTALLATIONS:
        raise _fail("record.installations", f"a record lists 1 to {MAX_INSTALLATIONS} keys")
    if any(len(k) != 32 for k in keys) or len(set(keys)) != len(keys):
        raise _fail("record.installations", "installation keys are distinct 32-byte keys")
    addresses = [b.address for b in record.addresses]
    if len(addresses) > MAX_ADDRESSES or len(set(addresses)) != len(addresses):
        raise _fail("record.address", f"a record binds at most {MAX_ADDRESSES} distinct addresses")
    for binding in record.addresses:
        binding.verify(inbox_id)


def verify_record_chain(
    inbox_id: str,
    versions: Sequence[SignedRecord],
    trusted: IdentityRecord | None = None,
    *,
    provider: CryptoProvider | None = None,
) -> IdentityRecord:
    """Verify ``versions`` (consecutive, oldest first) as the continuation of ``trusted`` (or
    from version 1) and return the newest record; :class:`IdentityError` names the failed check.
    """
    backend = (provider or get_provider()).backend
    current = trusted
    expected = 1 if trusted is None else trusted.version + 1
    for signed in versions:
        if signed.version != expected:
            raise _fail(
                "record.sequence", f"expected record version {expected}, got {signed.version}"
            )
        record = IdentityRecord.from_bytes(signed.record)
        _check_record(inbox_id, record, signed.version)
        message = identity_record_message(inbox_id, signed.version, signed.record)
        if not backend.ed25519_verify(signed.signer_key, message, signed.signature):
            raise _fail("record.signature", f"version {signed.version}'s signature is invalid")
        if current is None:
            if installation_id(signed.signer_key) != inbox_id or not record.lists(
                signed.signer_key
            ):
                raise _fail(
                    "record.genesis_signer",
                    "version 1 must be signed by the inbox's first installation, and list it",
                )
        elif not current.lists(signed.signer_key):
            raise _fail(
                "record.signer_not_listed",
                f"version {signed.version} is signed by installation"
                f" {installation_id(signed.signer_key)}, which version {current.version}"
                " does not list",
            )
        current = record
        expected += 1
    if current is None:
        raise _fail("record.missing", f"inbox {inbox_id} has no identity record")
    return current


FINGERPRINT_LABEL = b"veilpost safety fingerprint v1"
FINGERPRINT_GROUPS = 12


def fingerprint(record: IdentityRecord) -> str:
    """The safety fingerprint of an inbox's installations: twelve groups of five decimal
    digits, e.g. ``"04217 93310 …"``. Two people who see the same fingerprint for an inbox
    see the same installations of it (the relay cannot add one unnoticed).

    Derivation (TLS presentation language)::

        struct {
            opaque label<V> = "veilpost safety fingerprint v1";
            opaque inbox_id<V>;                 // ASCII
            opaque installations<V><V>;         // the record's Ed25519 keys, sorted bytewise
        } FingerprintInput;

        digest = SHA-256(0x00 || FingerprintInput) || SHA-256(0x01 || FingerprintInput)
        group[i] = uint40(digest[5i .. 5i+5]) mod 100000      for i in 0..11

    each group written with five digits (leading zeros kept), the groups joined by spaces.
    The record's version and its address bindings are not part of it: the fingerprint changes
    exactly when the inbox's set of installations does.
    """
    writer = Writer()
    writer.opaque(FINGERPRINT_LABEL)
    writer.opaque(record.inbox_id.encode("ascii"))
    writer.vector(sorted(bytes(k) for k in record.installations), Writer.opaque)
    data = writer.getvalue()
    digest = hashlib.sha256(b"\x00" + data).digest() + hashlib.sha256(b"\x01" + data).digest()
    groups = (
        int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100_000
        for i in range(FINGERPRINT_GROUPS)
    )
    return " ".join(f"{group:05d}" for group in groups)
