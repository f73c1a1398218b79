"""Keccak-256, secp256k1 ECDSA with recovery, and Ethereum signed messages (EIP-55, EIP-191).

Known answers: Keccak-256 of "" and "abc"; EIP-55's own examples; the web3.js documentation's
account (private key 0x4c08...2318) and its ``sign("Some data")``, which also checks the RFC
6979 nonce and low-s. Where pyca/cryptography is importable (CPython), signatures are checked
against it both ways; every check ``recover`` makes has a test that breaks just that check.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from veilpost.crypto import ethereum, secp256k1
from veilpost.crypto.errors import InvalidKeyError, SignatureVerificationError
from veilpost.crypto.keccak import keccak256

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import (
        Prehashed,
        decode_dss_signature,
        encode_dss_signature,
    )

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # Pyodide: no cryptography build
    HAVE_CRYPTOGRAPHY = False

needs_cryptography = pytest.mark.skipif(
    not HAVE_CRYPTOGRAPHY, reason="pyca/cryptography is not importable (e.g. in Pyodide)"
)

WEB3_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
WEB3_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
WEB3_SIGNATURE = bytes.fromhex(
    "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
    "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029"
    "1c"
)


# --- Keccak-256 ---------------------------------------------------------------------------------


def test_keccak256_known_answers() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


def test_keccak256_is_not_sha3_256() -> None:
    assert keccak256(b"abc") != hashlib.sha3_256(b"abc").digest()


@pytest.mark.parametrize("length", [134, 135, 136, 137, 271, 272, 273])
def test_keccak256_around_the_block_boundary(length: int) -> None:
    """Lengths that make the padding share a block, fill one, or spill into the next:
    each digest is distinct and depends on the last byte."""
    data = bytes(range(256)) * 2
    digest = keccak256(data[:length])
    assert len(digest) == 32
    assert digest != keccak256(data[: length - 1])
    assert digest != keccak256(data[: length - 1] + b"\xff")


# --- Addresses (EIP-55) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_examples(address: str) -> None:
    assert ethereum.checksum_address(address.lower()) == address
    assert ethereum.checksum_address(address[2:].upper()) == address


@pytest.mark.parametrize("bad", ["", "0x", "0x" + "g" * 40, "0x" + "a" * 39, "a" * 41])
def test_not_an_address(bad: str) -> None:
    with pytest.raises(ValueError, match="not an Ethereum address"):
        ethereum.checksum_address(bad)


def test_addresses_of_known_keys() -> None:
    one = (1).to_bytes(32, "big")
    assert ethereum.address_of_private_key(one) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    assert ethereum.address_of_private_key(WEB3_KEY) == WEB3_ADDRESS


@pytest.mark.parametrize("key", [b"", bytes(32), secp256k1.N.to_bytes(32, "big"), bytes(33)])
def test_private_keys_out_of_range_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        secp256k1.public_key(key)


# --- Signed messages (EIP-191) ---------------------------------------------------------------


def test_web3_personal_sign_known_answer() -> None:
    assert ethereum.personal_message_hash(b"Some data").hex() == (
        "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
    )
    assert ethereum.sign_message(WEB3_KEY, b"Some data") == WEB3_SIGNATURE
    assert ethereum.recover_message_signer(b"Some data", WEB3_SIGNATURE) == WEB3_ADDRESS
    assert ethereum.verify_message(WEB3_ADDRESS.lower(), b"Some data", WEB3_SIGNATURE)


def test_random_keys_sign_and_recover() -> None:
    rng = random.Random(191)
    for _ in range(8):
        key = rng.randbytes(32)
        message = rng.randbytes(rng.randrange(0, 300))
        signature = ethereum.sign_message(key, message)
        assert int.from_bytes(signature[32:64], "big") <= secp256k1.N // 2  # low s
        assert ethereum.recover_message_signer(message, signature) == (
            ethereum.address_of_private_key(key)
        )


def test_a_changed_message_recovers_someone_else() -> None:
    signature = ethereum.sign_message(WEB3_KEY, b"bind inbox A")
    assert not ethereum.verify_message(WEB3_ADDRESS, b"bind inbox B", signature)


def test_v_as_0_or_1_is_accepted() -> None:
    zero_based = WEB3_SIGNATURE[:64] + bytes([WEB3_SIGNATURE[64] - 27])
    assert ethereum.recover_message_signer(b"Some data", zero_based) == WEB3_ADDRESS


def _with(r: int | None = None, s: int | None = None, v: int | None = None) -> bytes:
    sig = bytearray(WEB3_SIGNATURE)
    if r is not None:
        sig[:32] = r.to_bytes(32, "big")
    if s is not None:
        sig[32:64] = s.to_bytes(32, "big")
    if v is not None:
        sig[64] = v
    return bytes(sig)


WEB3_S = int.from_bytes(WEB3_SIGNATURE[32:64], "big")


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (WEB3_SIGNATURE[:64], "65 bytes"),
        (WEB3_SIGNATURE + b"\x00", "65 bytes"),
        (_with(v=29), "v is 29"),
        (_with(r=0), "out of range"),
        (_with(r=secp256k1.N), "out of range"),
        (_with(s=0), "out of range"),
        (_with(s=secp256k1.N - WEB3_S, v=27 if WEB3_SIGNATURE[64] == 28 else 28), "out of range"),
        (_with(r=5), "not the x of a curve point"),  # x = 5: x^3 + 7 is not a square mod p
    ],
)
def test_each_recovery_check(signature: bytes, reason: str) -> None:
    with pytest.raises(SignatureVerificationError, match=reason):
        ethereum.recover_message_signer(b"Some data", signature)
    assert not ethereum.verify_message(WEB3_ADDRESS, b"Some data", signature)


def test_recovery_ids_that_need_r_plus_n_are_refused_when_beyond_p() -> None:
    digest = ethereum.personal_message_hash(b"Some data")
    r = int.from_bytes(WEB3_SIGNATURE[:32], "big")
    with pytest.raises(SignatureVerificationError, match="r \\+ n"):
        secp256k1.recover(digest, r, WEB3_S, 2)  # r + n >= p for any r this large


# --- Against pyca/cryptography ------------------------------------------------------------------


@needs_cryptography
def test_our_signatures_verify_with_openssl() -> None:
    rng = random.Random(7)
    for _ in range(5):
        key = rng.randbytes(32)
        digest = rng.randbytes(32)
        r, s, _ = secp256k1.sign_recoverable(key, digest)
        x, y = secp256k1.public_key(key)
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256K1()).public_key()
        public.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        with pytest.raises(InvalidSignature):
            public.verify(
                encode_dss_signature(r, s), bytes(32), ec.ECDSA(Prehashed(hashes.SHA256()))
            )


@needs_cryptography
def test_we_recover_openssl_signers() -> None:
    for _ in range(5):
        private = ec.generate_private_key(ec.SECP256K1())
        numbers = private.public_key().public_numbers()
        digest = random.Random(_).randbytes(32)
        r, s = decode_dss_signature(private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        if s > secp256k1.N // 2:
            s = secp256k1.N - s  # OpenSSL does not normalise; the same signature, low s
        recovered = {secp256k1.recover(digest, r, s, v) for v in (0, 1)}
        assert (numbers.x, numbers.y) in recovered
