"""The ``pure`` backend's AEADs: ChaCha20-Poly1305 (RFC 8439) and AES-128-GCM (SP 800-38D).

Published vectors check the primitives inside (the ChaCha20 block function, Poly1305, the
AES block cipher) through the modules' private helpers, and the AEADs through ``seal`` and
``open``. Round trips cover every short length and lengths on both sides of each internal
size boundary (layout switch, chunking, table or lane strategy); internal strategies are also
cross-checked against each other, which works inside Pyodide too. Where pyca/cryptography is
importable (CPython), random inputs are compared with it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from veilpost.crypto.backend import Aead, get_backend
from veilpost.crypto.errors import AeadAuthenticationError
from veilpost.crypto.pure import aes_gcm, chacha20poly1305

h = bytes.fromhex
cc = chacha20poly1305
Reference = Callable[[bytes], Any] | None  # pyca/cryptography's AEAD class, if importable


def pyca_aead(name: str) -> Reference:
    try:
        from cryptography.hazmat.primitives.ciphers import aead
    except ImportError:  # Pyodide: no pyca/cryptography
        return None
    return getattr(aead, name)  # type: ignore[no-any-return]


# --- RFC 8439 ------------------------------------------------------------------------------

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future,"
    b" sunscreen would be it."
)


def chacha20_block(key: bytes, counter: int, nonce: bytes, *, word_sliced: bool) -> bytes:
    """One serialized ChaCha20 block (§2.3), through either internal layout."""
    initial = cc._initial_state(key, nonce, 0)
    state = (*initial[:12], counter, *initial[13:])
    if word_sliced:
        return b"".join(pair.to_bytes(8, "little") for pair in cc._keystream_word_sliced(state, 1))
    return bytes(cc._keystream_row_sliced(state, 1))


BLOCK_VECTORS = [
    # §2.3.2
    (
        bytes(range(32)),
        1,
        "000000090000004a00000000",
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
    ),
    # Appendix A.1, test vectors #1-#5
    (
        bytes(32),
        0,
        "000000000000000000000000",
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
    ),
    (
        bytes(32),
        1,
        "000000000000000000000000",
        "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
        "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f",
    ),
    (
        bytes(31) + b"\x01",
        1,
        "000000000000000000000000",
        "3aeb5224ecf849929b9d828db1ced4dd832025e8018b8160b82284f3c949aa5a"
        "8eca00bbb4a73bdad192b5c42f73f2fd4e273644c8b36125a64addeb006c13a0",
    ),
    (
        b"\x00\xff" + bytes(30),
        2,
        "000000000000000000000000",
        "72d54dfbf12ec44b362692df94137f328fea8da73990265ec1bbbea1ae9af0ca"
        "13b25aa26cb4a648cb9b9d1be65b2c0924a66c54d545ec1b7374f4872e99f096",
    ),
    (
        bytes(32),
        0,
        "000000000000000000000002",
        "c2c64d378cd536374ae204b9ef933fcd1a8b2288b3dfa49672ab765b54ee27c7"
        "8a970e0e955c14f3a88e741b97c286f75f8fc299e8148362fa198a39531bed6d",
    ),
]


@pytest.mark.parametrize("word_sliced", [False, True], ids=["row-sliced", "word-sliced"])
@pytest.mark.parametrize(("key", "counter", "nonce", "expected"), BLOCK_VECTORS)
def test_chacha20_block(
    key: bytes, counter: int, nonce: str, expected: str, word_sliced: bool
) -> None:
    assert chacha20_block(key, counter, h(nonce), word_sliced=word_sliced).hex() == expected


def test_chacha20_encryption_rfc8439_2_4_2() -> None:
    key, nonce = bytes(range(32)), h("000000000000004a00000000")
    # _crypt encrypts from block counter 1, as §2.4.2 does.
    _, ciphertext = cc._crypt(cc._initial_state(key, nonce, len(SUNSCREEN)), SUNSCREEN)
    assert ciphertext.hex() == (
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
        "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
        "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
        "5af90bbf74a35be6b40b8eedf2785e42874d"
    )


POLY1305_VECTORS = [
    # §2.5.2
    (
        "85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b",
        b"Cryptographic Forum Research Group".hex(),
        "a8061dc1305136c6c22b8baf0c0127a9",
    ),
    # Appendix A.3, test vectors #1 and #5-#11 (the reduction's edge cases)
    ("00" * 32, "00" * 64, "00" * 16),
    ("02" + "00" * 31, "ff" * 16, "03" + "00" * 15),
    ("02" + "00" * 15 + "ff" * 16, "02" + "00" * 15, "03" + "00" * 15),
    ("01" + "00" * 31, "ff" * 16 + "f0" + "ff" * 15 + "11" + "00" * 15, "05" + "00" * 15),
    ("01" + "00" * 31, "ff" * 16 + "fb" + "fe" * 15 + "01" * 16, "00" * 16),
    ("02" + "00" * 31, "fd" + "ff" * 15, "fa" + "ff" * 15),
    (
        "01000000000000000400000000000000" + "00" * 16,
        "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000"
        "0000000000000000000000000000000001000000000000000000000000000000",
        "14000000000000005500000000000000",
    ),
    (
        "01000000000000000400000000000000" + "00" * 16,
        "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000"
        "00000000000000000000000000000000",
        "13000000000000000000000000000000",
    ),
]


@pytest.mark.parametrize(("key", "message", "tag"), POLY1305_VECTORS)
def test_poly1305(key: str, message: str, tag: str) -> None:
    assert cc._poly1305(h(key), h(message)).hex() == tag


def test_poly1305_lanes_match_serial() -> None:
    rng = random.Random(1305)
    for nblocks in (1, 63, 64, 65, 256, 1000, 8191, 8192, 9000):
        r = rng.getrandbits(128) & cc._CLAMP
        message = rng.randbytes(16 * nblocks)
        assert cc._poly1305_lanes(r, message) == cc._poly1305_serial(r, message)
    # Worst case for the lane bounds: every block and r as large as allowed.
    message = b"\xff" * 16 * 9000
    assert cc._poly1305_lanes(cc._CLAMP, message) == cc._poly1305_serial(cc._CLAMP, message)


def test_chacha20poly1305_rfc8439_2_8_2() -> None:
    key, nonce = bytes(range(0x80, 0xA0)), h("070000004041424344454647")
    aad = h("50515253c0c1c2c3c4c5c6c7")
    sealed = (
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691"
    )
    assert cc.seal(key, nonce, aad, SUNSCREEN).hex() == sealed
    assert cc.open(key, nonce, aad, h(sealed)) == SUNSCREEN


def test_chacha20poly1305_rfc8439_a_5() -> None:
    key = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
    nonce, aad = h("000000000102030405060708"), h("f33388860000000000004e91")
    sealed = h(
        "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
        "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
        "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
        "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
        "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
        "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
        "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
        "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
        "a6ad5cb4022b02709b"
        "eead9d67890cbb22392336fea1851f38"
    )
    plaintext = (
        "Internet-Drafts are draft documents valid for a maximum of six months and may be "
        "updated, replaced, or obsoleted by other documents at any time. It is inappropriate to "
        "use Internet-Drafts as reference material or to cite them other than as "
        "/\u201cwork in progress./\u201d"
    ).encode()
    assert cc.open(key, nonce, aad, sealed) == plaintext
    assert cc.seal(key, nonce, aad, plaintext) == sealed


# --- FIPS 197 and SP 800-38D -------------------------------------------------------------


def aes128_encrypt(key: bytes, blocks: bytes) -> bytes:
    """AES-128 of whole blocks (FIPS 197 §5.1) through the byte-sliced implementation."""
    n = len(blocks) // 16
    rows = aes_gcm._encrypt_rows(aes_gcm._round_keys(key, 0), bytearray(blocks), n)
    out = bytearray(16 * n)
    for r in range(4):
        out[r::4] = rows[r].to_bytes(4 * n, "little")
    return bytes(out)


def test_aes128_fips197_appendix_c1() -> None:
    key, block = bytes(range(16)), h("00112233445566778899aabbccddeeff")
    assert aes128_encrypt(key, block).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    # The same block in every position of a batch.
    assert aes128_encrypt(key, block * 5) == h("69c4e0d86a7b0430d8cdb78070b4c55a") * 5


def test_aes128_key_expansion_fips197_appendix_a1() -> None:
    round_keys = aes_gcm._expand_key(h("2b7e151628aed2a6abf7158809cf4f3c"))
    assert round_keys[1] == 0xA0FAFE17_88542CB1_23A33939_2A6C7605
    assert round_keys[10] == 0xD014F9A8_C9EE2589_E13F0CC8_B6630CA6


GCM_P3 = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
GCM_C3 = (
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
)
GCM_VECTORS = [
    # McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 1-4 (128-bit key).
    ("00" * 16, "00" * 12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"),
    (
        "00" * 16,
        "00" * 12,
        "00" * 16,
        "",
        "0388dace60b6a392f328c2b971b2fe78",
        "ab6e47d42cec13bdf53a67b21257bddf",
    ),
    (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        GCM_P3,
        "",
        GCM_C3,
        "4d5c2af327cd64a62cf35abd2ba6fab4",
    ),
    (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        GCM_P3[:120],
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        GCM_C3[:120],
        "5bc94fbc3221a5db94fae95ae7121a47",
    ),
]


@pytest.mark.parametrize(("key", "nonce", "plaintext", "aad", "ciphertext", "tag"), GCM_VECTORS)
def test_aes_gcm_vectors(
    key: str, nonce: str, plaintext: str, aad: str, ciphertext: str, tag: str
) -> None:
    assert aes_gcm.seal(h(key), h(nonce), h(aad), h(plaintext)).hex() == ciphertext + tag
    assert aes_gcm.open(h(key), h(nonce), h(aad), h(ciphertext + tag)) == h(plaintext)


def test_ghash_strategies_agree() -> None:
    rng = random.Random(128)
    for nblocks in (0, 1, 2, 17, 300, 5000):
        hash_key = rng.getrandbits(128)
        data = rng.randbytes(16 * nblocks)
        expected = aes_gcm._ghash_short(hash_key, data)
        assert aes_gcm._ghash_long(hash_key, data) == expected
        if nblocks:
            assert aes_gcm._ghash_wide(hash_key, data) == expected
    # The lane-parallel GHASH switches to more lanes on long inputs.
    hash_key, data = rng.getrandbits(128), rng.randbytes(16 * 33_000)
    assert aes_gcm._ghash_wide(hash_key, data) == aes_gcm._ghash_long(hash_key, data)


# --- Both AEADs ----------------------------------------------------------------------------

AEADS = [(chacha20poly1305, 32, pyca_aead("ChaCha20Poly1305")), (aes_gcm, 16, pyca_aead("AESGCM"))]
AEAD_IDS = ["chacha20poly1305", "aes_gcm"]


def boundary_lengths(module: ModuleType) -> list[int]:
    """Message lengths on both sides of each of the module's internal size boundaries."""
    if module is chacha20poly1305:
        # block 0 (the Poly1305 key) shares the first chunk with the message
        blocks = [cc._ROW_SLICED_MAX_BLOCKS - 1, cc._CHUNK_BLOCKS - 1, 2 * cc._CHUNK_BLOCKS - 1]
        block_size = 64
        mac_blocks = [cc._POLY_LANE_MIN_BLOCKS, cc._POLY_WIDE_BLOCKS]
    else:
        # blocks 0 and 1 (for H and the tag mask) share the first chunk with the message
        blocks = [aes_gcm._CHUNK_BLOCKS - 2, 2 * aes_gcm._CHUNK_BLOCKS - 2]
        block_size = 16
        mac_blocks = [aes_gcm._GHASH_TABLES_MIN_BLOCKS, aes_gcm._GHASH_WIDE_MIN_BLOCKS]
    lengths = {block_size * b + d for b in blocks for d in (-1, 0, 1)}
    # The authenticated data is 2 blocks of aad (23 bytes), the ciphertext, 1 block of lengths.
    lengths |= {16 * (b - 3) + d for b in mac_blocks for d in (-16, 0, 1)}
    return sorted(lengths | {(1 << 20) + 17})


@pytest.mark.parametrize(("module", "key_size", "reference"), AEADS, ids=AEAD_IDS)
def test_round_trip_every_short_length(
    module: ModuleType, key_size: int, reference: Reference
) -> None:
    rng = random.Random(key_size)
    key, nonce = rng.randbytes(key_size), rng.randbytes(12)
    for length in range(301):
        plaintext, aad = rng.randbytes(length), rng.randbytes(length % 37)
        sealed = module.seal(key, nonce, aad, plaintext)
        assert len(sealed) == length + 16
        assert module.open(key, nonce, aad, sealed) == plaintext


@pytest.mark.parametrize(("module", "key_size", "reference"), AEADS, ids=AEAD_IDS)
def test_round_trip_across_internal_boundaries(
    module: ModuleType, key_size: int, reference: Reference
) -> None:
    rng = random.Random(7 * key_size)
    key, nonce = rng.randbytes(key_size), rng.randbytes(12)
    for length in boundary_lengths(module):
        plaintext, aad = rng.randbytes(length), rng.randbytes(23)
        sealed = module.seal(key, nonce, aad, plaintext)
        if reference is not None:
            assert sealed == reference(key).encrypt(nonce, plaintext, aad), length
        assert module.open(key, nonce, aad, sealed) == plaintext


@pytest.mark.parametrize(("module", "key_size", "reference"), AEADS, ids=AEAD_IDS)
def test_matches_pyca_cryptography(module: ModuleType, key_size: int, reference: Reference) -> None:
    if reference is None:
        pytest.skip("pyca/cryptography is not importable here")
    rng = random.Random(99 + key_size)
    for _ in range(150):
        key, nonce = rng.randbytes(key_size), rng.randbytes(12)
        length = rng.choice([rng.randrange(64), rng.randrange(2000), rng.randrange(40000)])
        plaintext = rng.randbytes(length)
        aad = rng.randbytes(rng.choice([0, 1, 16, rng.randrange(600)]))
        expected = reference(key).encrypt(nonce, plaintext, aad)
        assert module.seal(key, nonce, aad, plaintext) == expected
        assert module.open(key, nonce, aad, expected) == plaintext


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize(("module", "key_size", "reference"), AEADS, ids=AEAD_IDS)
@pytest.mark.parametrize("length", [0, 1, 64, 1000, 70_000])
def test_tampering_is_detected(
    module: ModuleType, key_size: int, reference: Reference, length: int
) -> None:
    rng = random.Random(length + key_size)
    key, nonce, aad = rng.randbytes(key_size), rng.randbytes(12), rng.randbytes(20)
    sealed = module.seal(key, nonce, aad, rng.randbytes(length))
    forgeries: list[Callable[[], bytes]] = [
        lambda: module.open(key, nonce, aad, _flip(sealed, rng.randrange(8 * len(sealed)))),
        lambda: module.open(key, nonce, aad, _flip(sealed, 8 * (len(sealed) - 16))),  # tag
        lambda: module.open(key, nonce, _flip(aad, rng.randrange(8 * len(aad))), sealed),
        lambda: module.open(key, nonce, aad + b"\x00", sealed),
        lambda: module.open(key, _flip(nonce, rng.randrange(96)), aad, sealed),
        lambda: module.open(_flip(key, rng.randrange(8 * key_size)), nonce, aad, sealed),
        lambda: module.open(key, nonce, aad, sealed[:-1]),
        lambda: module.open(key, nonce, aad, sealed + b"\x00"),
    ]
    if length:
        body_bit = rng.randrange(8 * length)  # a bit of the ciphertext proper
        forgeries.append(lambda: module.open(key, nonce, aad, _flip(sealed, body_bit)))
    for forge in forgeries:
        with pytest.raises(AeadAuthenticationError, match="tag"):
            forge()


@pytest.mark.parametrize(("module", "key_size", "reference"), AEADS, ids=AEAD_IDS)
def test_input_shorter_than_tag(module: ModuleType, key_size: int, reference: Reference) -> None:
    key, nonce = bytes(key_size), bytes(12)
    for length in range(16):
        with pytest.raises(AeadAuthenticationError, match="shorter than the 16-byte tag"):
            module.open(key, nonce, b"", bytes(length))


@pytest.mark.parametrize("aead", [Aead.CHACHA20_POLY1305, Aead.AES_128_GCM])
def test_through_the_pure_backend(aead: Aead) -> None:
    backend = get_backend("pure")
    key, nonce = bytes(range(aead.key_size)), bytes(range(12))
    sealed = backend.aead_seal(aead, key, nonce, b"aad", b"hello, veilpost")
    assert backend.aead_open(aead, key, nonce, b"aad", sealed) == b"hello, veilpost"
    with pytest.raises(AeadAuthenticationError):
        backend.aead_open(aead, key, nonce, b"aaD", sealed)
