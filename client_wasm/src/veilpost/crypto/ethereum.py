"""Ethereum wallet signatures: addresses (EIP-55) and signed messages (EIP-191 ``personal_sign``).

An agent can bind its inbox to an Ethereum address by signing a message with its wallet key;
anyone can then recover the address from the signature. Pure Python (``keccak``,
``secp256k1``), so the browser can verify bindings too.
"""

from __future__ import annotations

from veilpost.crypto import secp256k1
from veilpost.crypto.errors import SignatureVerificationError
from veilpost.crypto.keccak import keccak256

SIGNATURE_BYTES = 65  # r (32) || s (32) || v (1)


def address_of(point: secp256k1.Point) -> str:
    """The EIP-55 checksummed address of a public key: the last 20 bytes of its Keccak-256."""
    digest = keccak256(secp256k1.encode_uncompressed(point)[1:])
    return checksum_address(digest[-20:].hex())


def address_of_private_key(private_key: bytes) -> str:
    return address_of(secp256k1.public_key(private_key))


def checksum_address(address: str) -> str:
    """``0x`` and 40 hex digits, in EIP-55 mixed case (accepts any case, with or without
    ``0x``); ``ValueError`` if it is not an address."""
    digits = address[2:] if address[:2] in ("0x", "0X") else address
    if len(digits) != 40 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"{address[:60]!r} is not an Ethereum address (0x and 40 hex digits)")
    lower = digits.lower()
    nibbles = keccak256(lower.encode("ascii")).hex()[:40]
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(n, 16) >= 8 else c
        for c, n in zip(lower, nibbles, strict=True)
    )


def personal_message_hash(message: bytes) -> bytes:
    """EIP-191 version ``0x45``: Keccak-256 of ``"\\x19Ethereum Signed Message:\\n" + len +
    message``, what wallets sign for ``personal_sign``."""
    prefix = b"\x19Ethereum Signed Message:\n" + str(len(message)).encode("ascii")
    return keccak256(prefix + message)


def sign_message(private_key: bytes, message: bytes) -> bytes:
    """A ``personal_sign`` signature: ``r || s || v`` with ``v`` = 27 or 28."""
    r, s, recovery_id = secp256k1.sign_recoverable(private_key, personal_message_hash(message))
    if recovery_id > 1:  # r >= n: probability about 2^-128
        raise SignatureVerificationError("this signature's recovery id cannot be encoded in v")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recovery_id])


def recover_message_signer(message: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``message`` with ``personal_sign``, or
    ``SignatureVerificationError`` naming what is wrong with the signature."""
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureVerificationError(
            f"an Ethereum signature has {SIGNATURE_BYTES} bytes, not {len(signature)}"
        )
    v = signature[64]
    if v in (27, 28):
        v -= 27
    if v not in (0, 1):
        raise SignatureVerificationError(f"v is {signature[64]}, not 27, 28, 0 or 1")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return address_of(secp256k1.recover(personal_message_hash(message), r, s, v))


def verify_message(address: str, message: bytes, signature: bytes) -> bool:
    """Whether ``address`` signed ``message`` (``personal_sign``)."""
    try:
        return recover_message_signer(message, signature) == checksum_address(address)
    except (SignatureVerificationError, ValueError):
        return False
