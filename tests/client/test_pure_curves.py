"""The pure X25519 and Ed25519 modules: RFC vectors, strictness and cross-checks.

RFC 7748 §5.2 (including the iterated test, 1 and 1000 iterations) and §6.1, RFC 8032 §7.1
(TEST 1, 2, 3, 1024 and SHA(abc)), the fixed-base X25519 path against the ladder, and the
strict-verification cases: flipped bits, ``S + L``, non-canonical ``R`` and ``A``.
Standard library, pytest and ``veilpost`` only, because this file also runs inside Pyodide;
the comparisons with pyca/cryptography are skipped where it is not importable (Pyodide).
"""

from __future__ import annotations

import hashlib
import random

import pytest

from veilpost.crypto.errors import KeyAgreementError
from veilpost.crypto.pure import PureBackend, ed25519, x25519

try:
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ca_ed25519
    from cryptography.hazmat.primitives.asymmetric import x25519 as ca_x25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # Pyodide: no cryptography build
    HAVE_CRYPTOGRAPHY = False

needs_cryptography = pytest.mark.skipif(
    not HAVE_CRYPTOGRAPHY, reason="pyca/cryptography is not importable (e.g. in Pyodide)"
)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
NINE = (9).to_bytes(32, "little")

h = bytes.fromhex


# --- X25519, RFC 7748 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "u", "expected"),
    [
        (  # §5.2, first vector
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (  # §5.2, second vector (its u has the top bit set: it must be masked)
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ],
)
def test_x25519_rfc7748_vectors(scalar: str, u: str, expected: str) -> None:
    assert x25519.x25519(h(scalar), h(u)) == h(expected)


@pytest.mark.parametrize(
    ("iterations", "expected"),
    [
        (1, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"),
        # About 1 s on CPython 3.11 and 2.5 s in Pyodide on the development machine.
        (1000, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"),
    ],
)
def test_x25519_rfc7748_iterated(iterations: int, expected: str) -> None:
    k = u = NINE
    for _ in range(iterations):
        k, u = x25519.x25519(k, u), k
    assert k == h(expected)


def test_x25519_rfc7748_diffie_hellman() -> None:
    """RFC 7748 §6.1: both public keys (fixed-base and ladder) and the shared secret."""
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    alice_public = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_public = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519.x25519_base(alice) == x25519.x25519(alice, NINE) == alice_public
    assert x25519.x25519_base(bob) == x25519.x25519(bob, NINE) == bob_public
    assert x25519.x25519(alice, bob_public) == shared
    assert x25519.x25519(bob, alice_public) == shared


def test_x25519_base_matches_ladder() -> None:
    """The Edwards fixed-base path gives the ladder's result for every clamped scalar."""
    rng = random.Random(7748)
    scalars = [bytes(32), b"\xff" * 32, bytes(31) + b"\x40", bytes([8]) + b"\xff" * 31]
    scalars += [rng.randbytes(32) for _ in range(300)]
    for scalar in scalars:
        assert x25519.x25519_base(scalar) == x25519.x25519(scalar, NINE), scalar.hex()


def test_x25519_non_canonical_u() -> None:
    """u >= p is reduced and the top bit is ignored (RFC 7748 §5)."""
    k = h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    expected = x25519.x25519(k, NINE)
    assert x25519.x25519(k, (P + 9).to_bytes(32, "little")) == expected
    assert x25519.x25519(k, (9 | 1 << 255).to_bytes(32, "little")) == expected


@pytest.mark.parametrize("u", [0, 1, P - 1, P, P + 1])
def test_x25519_low_order_points_give_zero(u: int) -> None:
    """Low-order u (and their non-canonical forms) give all zero; the backend refuses it."""
    k = random.Random(u).randbytes(32)
    peer = (u % 2**256).to_bytes(32, "little")
    assert x25519.x25519(k, peer) == bytes(32)
    with pytest.raises(KeyAgreementError):
        PureBackend().x25519(k, peer)


@needs_cryptography
def test_x25519_agrees_with_cryptography() -> None:
    rng = random.Random(25519)
    for _ in range(100):
        k, u = rng.randbytes(32), rng.randbytes(32)
        private = ca_x25519.X25519PrivateKey.from_private_bytes(k)
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert x25519.x25519_base(k) == public
        peer = x25519.x25519_base(u)
        assert x25519.x25519(k, peer) == private.exchange(
            ca_x25519.X25519PublicKey.from_public_bytes(peer)
        )


# --- Ed25519, RFC 8032 --------------------------------------------------------------------------

TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12"
    "ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe57"
    "38829adb26c81b37c93a1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338b"
    "bd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e06203b33890cc9b8"
    "32f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53"
    "f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6"
    "079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c65adb7553"
    "878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2"
    "cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae078"
    "4504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8"
    "fcffead94f3c7ca495e056a9b47acdb751fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301"
    "651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc82aebfd9"
    "04b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a"
    "3ca8e1b939ae49e488acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a4"
    "3dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041"
    "e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d9"
    "0d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef"
    "68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

RFC8032_VECTORS = {  # §7.1: secret key, public key, message, signature
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
        "701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f36"
        "13d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f7"
        "60984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST 1024": (
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea"
        "23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7"
        "c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}


@pytest.mark.parametrize("name", sorted(RFC8032_VECTORS))
def test_ed25519_rfc8032_vectors(name: str) -> None:
    secret, public, message, signature = (h(v) for v in RFC8032_VECTORS[name])
    if name == "TEST 1024":
        assert len(message) == 1023
    assert ed25519.public_key(secret) == public
    assert ed25519.sign(secret, message) == signature
    assert ed25519.verify(public, message, signature)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("name", ["TEST 1", "TEST 3", "TEST SHA(abc)"])
def test_ed25519_flipped_bits_fail(name: str) -> None:
    _, public, message, signature = (h(v) for v in RFC8032_VECTORS[name])
    for bit in (0, 7, 100, 255, 256, 300, 503, 511):  # bits of R (0-255) and of S (256-511)
        assert not ed25519.verify(public, message, _flip(signature, bit)), bit
    for bit in (0, 1, 130, 254, 255):
        assert not ed25519.verify(_flip(public, bit), message, signature), bit
    altered = _flip(message, 5) if message else b"\x00"
    assert not ed25519.verify(public, altered, signature)


def test_ed25519_rejects_s_plus_l() -> None:
    """S + L is the same scalar modulo L but must be rejected (malleability, RFC 8032 §5.1.7)."""
    _, public, message, signature = (h(v) for v in RFC8032_VECTORS["TEST 2"])
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not ed25519.verify(public, message, malleated)
    assert not ed25519.verify(public, message, signature[:32] + L.to_bytes(32, "little"))
    assert not ed25519.verify(public, message, signature[:32] + b"\xff" * 32)


def _secret_scalar(seed: bytes) -> int:
    """The clamped secret scalar of RFC 8032 §5.1.5 (to forge test signatures)."""
    a = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


def _hash_mod_l(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


def test_ed25519_rejects_non_canonical_r() -> None:
    """R = neutral point (r = 0) with y = 1 encoded as y + p >= p must not verify.

    With r = 0 the signature is S = k * a, and [S]B - [k]A is the neutral point, whose
    canonical encoding is 01 00..00. A verifier that decoded R leniently (y mod p) would accept
    the non-canonical encoding; the control with the canonical encoding must verify.
    """
    seed, public, message, _ = (h(v) for v in RFC8032_VECTORS["TEST 3"])
    a = _secret_scalar(seed)
    for r_int, valid in ((1, True), (P + 1, False), (1 | 1 << 255, False)):
        r_bytes = r_int.to_bytes(32, "little")
        s = _hash_mod_l(r_bytes, public, message) * a % L
        signature = r_bytes + s.to_bytes(32, "little")
        assert ed25519.verify(public, message, signature) is valid, hex(r_int)


def test_ed25519_rejects_non_canonical_public_key() -> None:
    """The neutral point O as public key, canonically and non-canonically encoded.

    [S]B - [k]O = [S]B, so (R = [S]B, S) verifies under the canonical encoding 01 00..00 (the
    check is cofactorless and RFC 8032 does not reject small-order keys). y = 1 + p and x = 0
    with the sign bit set encode the same point non-canonically and must be rejected.
    """
    seed = bytes(range(32))
    s = _secret_scalar(seed) % L
    signature = ed25519.public_key(seed) + s.to_bytes(32, "little")  # R = [a]B = [s]B
    message = b"neutral key"
    assert ed25519.verify((1).to_bytes(32, "little"), message, signature)
    assert not ed25519.verify((P + 1).to_bytes(32, "little"), message, signature)
    assert not ed25519.verify((1 | 1 << 255).to_bytes(32, "little"), message, signature)


def test_ed25519_rejects_undecodable_points() -> None:
    """y with no x on the curve (u/v not a square), as R and as A."""
    _, public, message, signature = (h(v) for v in RFC8032_VECTORS["TEST 1"])
    bad = (2).to_bytes(32, "little")  # y = 2: (y^2 - 1)/(d y^2 + 1) is not a square
    assert not ed25519.verify(bad, message, signature)
    assert not ed25519.verify(public, message, bad + signature[32:])


def test_ed25519_verify_never_raises() -> None:
    rng = random.Random(8032)
    _, public, message, signature = (h(v) for v in RFC8032_VECTORS["TEST 2"])
    for _ in range(100):
        assert ed25519.verify(rng.randbytes(32), message, signature) is False
        assert ed25519.verify(public, message, rng.randbytes(64)) is False
    assert ed25519.verify(public[:31], message, signature) is False
    assert ed25519.verify(public, message, signature + b"\x00") is False
    assert ed25519.verify(b"\xff" * 32, message, b"\xff" * 64) is False


@needs_cryptography
def test_ed25519_agrees_with_cryptography() -> None:
    rng = random.Random(25519)
    for length in range(0, 300, 3):
        seed, message = rng.randbytes(32), rng.randbytes(length)
        private = ca_ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert ed25519.public_key(seed) == public
        signature = ed25519.sign(seed, message)
        assert signature == private.sign(message)
        assert ed25519.verify(public, message, signature)
        private.public_key().verify(signature, message)  # raises if it disagrees
