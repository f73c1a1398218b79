"""AES-128-GCM (FIPS 197, NIST SP 800-38D) in pure Python, tuned for CPython's big integers.

Only what MLS uses: 128-bit keys, 96-bit nonces and 128-bit tags. Every Python operation is
made to do as much work as possible in C, because this is the browser's only AES-GCM and
each interpreted step costs about three times as much inside Pyodide.

AES-128 in counter mode (FIPS 197 §5.1, SP 800-38D §6.5): byte-sliced big integers
    All the counter blocks of a chunk are encrypted together. The state of N blocks is kept as
    four integers, one per AES state row: row integer r holds bytes r, r + 4, r + 8, r + 12 of
    every block (the bytes at positions = r mod 4 of the concatenated blocks, which one strided
    slice extracts), i.e. one 32-bit word per block whose byte c is state byte (r, c). Then:

    - SubBytes (§5.1.1) is ``bytes.translate`` with the S-box, at C speed;
    - ShiftRows (§5.1.2) rotates the bytes of every word of row r by r places: two shifts,
      two masks and an OR for the whole row;
    - MixColumns (§5.1.3) combines rows r and r + 1, r + 2, r + 3 position by position, which
      in this layout needs no data movement at all: with ``z_r = a_r ^ a_(r+1)``,
      ``b_r = xtime(z_r) ^ a_(r+1) ^ z_(r+2)``, and ``xtime`` of every byte at once is
      ``((z & 0x7f..) << 1) ^ ((z >> 7) & 0x01..) * 0x1b``;
    - AddRoundKey (§5.1.4) XORs each row with its round-key word repeated N times.

    The keystream is XORed into the data in the same layout (four strided slices of the data
    per chunk). Block 0 of the first chunk is the all-zero block, whose encryption is the hash
    key H, and block 1 is J0 = nonce || 1, which masks the tag; the message uses counters 2,
    3, ... (§7.1), so block j simply has counter j. Key expansion (§5.2) is per message (MLS
    uses a fresh key for every message) and works on whole 128-bit round keys.

GHASH (SP 800-38D §6.4): multiplication by H with per-key tables
    A block is one Python integer (bit-reflected, as in §6.3). Three strategies, by length:

    - short inputs: one 256-entry table of the unreduced products ``b * H`` (b a byte), built
      per key in microseconds; a block is 16 lookups combined by shifts and XORs (Horner's
      rule over its bytes) and one reduction modulo x^128 + x^7 + x^2 + x + 1;
    - medium inputs: 16 positional tables of reduced products (4096 entries, built from
      nibble tables), so that a block is 16 lookups and XORs and nothing else;
    - long inputs: k interleaved Horner accumulators (the lanes), all multiplied by H^k at
      each step through ``bytes.translate``: for a constant C, each output byte of
      (byte b at position j) * C is a fixed function of b, so 256 translate tables multiply
      every lane at once, in C; the lanes are combined at the end with the positional tables.

Key and nonce lengths are checked by the caller (:mod:`veilpost.crypto.pure`).

Python integers give no constant-time guarantee, and table lookups indexed by secret bytes
leak through caches: timing may depend on keys and data. See ``docs/security.md`` for what
this means in a browser. The code is written for clarity and speed, not contorted towards
constant time.
"""

from __future__ import annotations

import hmac
import struct

from veilpost.crypto.errors import AeadAuthenticationError

TAG_SIZE = 16

# FIPS 197 Figure 7.
_SBOX = bytes.fromhex(
    "637c777bf26b6fc53001672bfed7ab76ca82c97dfa5947f0add4a2af9ca472c0"
    "b7fd9326363ff7cc34a5e5f171d8311504c723c31896059a071280e2eb27b275"
    "09832c1a1b6e5aa0523bd6b329e32f8453d100ed20fcb15b6acbbe394a4c58cf"
    "d0efaafb434d338545f9027f503c9fa851a3408f929d38f5bcb6da2110fff3d2"
    "cd0c13ec5f974417c4a77e3d645d197360814fdc222a908846eeb814de5e0bdb"
    "e0323a0a4906245cc2d3ac629195e479e7c8376d8dd54ea96c56f4ea657aae08"
    "ba78252e1ca6b4c6e8dd741f4bbd8b8a703eb5664803f60e613557b986c11d9e"
    "e1f8981169d98e949b1e87e9ce5528df8ca1890dbfe6426841992d0fb054bb16"
)
_RCON = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36)
_EVERY_WORD = 0x00000001_00000001_00000001_00000001

# Round keys as row words (see _round_key_rows): 11 tuples (row 0, row 1, row 2, row 3).
_RoundKeys = list[tuple[int, int, int, int]]

# Blocks per chunk of counter-mode work: row integers of 8 KiB.
_CHUNK_BLOCKS = 2048
# SP 800-38D §5.2.1.1: at most 2^39 - 256 bits of plaintext, i.e. 2^32 - 2 blocks.
_MAX_MESSAGE = 16 * (2**32 - 2)


def _per_word(pattern: bytes) -> int:
    """``pattern`` (4 bytes) repeated for every block of the largest chunk."""
    return int.from_bytes(pattern * _CHUNK_BLOCKS, "little")


# Masks for the largest chunk; a chunk of n blocks takes their low 32n bits (one shift).
_ONES = _per_word(b"\x01\x00\x00\x00")  # times a 32-bit word: the word in every block
_KEEP_1 = _per_word(b"\xff\xff\xff\x00")  # ShiftRows of row 1, bytes 0-2 and byte 3
_WRAP_1 = _per_word(b"\x00\x00\x00\xff")
_KEEP_2 = _per_word(b"\xff\xff\x00\x00")  # row 2
_WRAP_2 = _per_word(b"\x00\x00\xff\xff")
_KEEP_3 = _per_word(b"\xff\x00\x00\x00")  # row 3
_WRAP_3 = _per_word(b"\x00\xff\xff\xff")
_LOW7 = _per_word(b"\x7f" * 4)  # xtime: the bits that shift left within their byte
_LSB = _per_word(b"\x01" * 4)  # xtime: where a byte's top bit lands after >> 7


def _expand_key(key: bytes) -> list[int]:
    """FIPS 197 §5.2: the 11 round keys of AES-128, as 128-bit big-endian integers.

    With round key k = w0 w1 w2 w3 (w0 the most significant word), the next one is
    w0^t, w1^w0^t, w2^w1^w0^t, w3^w2^w1^w0^t for t = SubWord(RotWord(w3)) ^ Rcon: a
    prefix XOR over the words (three shifts) and t in every word (one multiplication).
    """
    k = int.from_bytes(key, "big")
    keys = [k]
    for rcon in _RCON:
        w3 = k.to_bytes(16, "big")[12:]
        t = int.from_bytes((w3[1:] + w3[:1]).translate(_SBOX), "big") ^ (rcon << 24)
        k ^= (k >> 32) ^ (k >> 64) ^ (k >> 96) ^ (t * _EVERY_WORD)
        keys.append(k)
    return keys


def _round_key_rows(keys: list[int]) -> _RoundKeys:
    """The round keys as 4 little-endian row words each: row word r of a round key holds its
    bytes r, r + 4, r + 8, r + 12 (state row r, FIPS 197 §3.4), matching the row layout."""
    flat = b"".join(k.to_bytes(16, "big") for k in keys)
    rows = [struct.unpack("<11I", flat[r::4]) for r in range(4)]
    return list(zip(*rows, strict=True))


def _aes_ctr(round_keys: _RoundKeys, nonce: bytes, data: bytes) -> tuple[int, int, bytes]:
    """Return ``(H, E_K(J0), data XOR keystream)`` with the keystream of counters 2, 3, ...

    ``H`` and ``E_K(J0)`` are big-endian integers (SP 800-38D §6.4 and §7.1).
    """
    fb = int.from_bytes
    total_blocks = 2 + -(-len(data) // 16)
    # Blocks 0 and 1 encrypt 32 zero bytes: their outputs are H and E_K(J0) themselves.
    source = b"".join((bytes(32), data, bytes(-len(data) % 16)))
    out = bytearray(16 * total_blocks)
    count_chunks = -(-total_blocks // _CHUNK_BLOCKS)
    size = -(-total_blocks // count_chunks)
    for start in range(0, total_blocks, size):
        n = min(size, total_blocks - start)
        # Counter blocks nonce || j for j = start..start+n-1, big-endian counters copied as
        # whole 4-byte items (so independent of the host's byte order); block 0 is all zero.
        blocks = bytearray((nonce + bytes(4)) * n)
        counters = struct.pack(f">{n}I", *range(start, start + n))
        memoryview(blocks).cast("I")[3::4] = memoryview(counters).cast("I")
        if start == 0:
            blocks[0:16] = bytes(16)
        rows = _encrypt_rows(round_keys, blocks, n)
        lo, hi = 16 * start, 16 * (start + n)
        for r in range(4):
            stream = rows[r] ^ fb(source[lo + r : hi : 4], "little")
            out[lo + r : hi : 4] = stream.to_bytes(4 * n, "little")
    return fb(out[0:16], "big"), fb(out[16:32], "big"), bytes(out[32 : 32 + len(data)])


def _encrypt_rows(round_keys: _RoundKeys, blocks: bytearray, n: int) -> list[int]:
    """Encrypt ``n`` blocks (FIPS 197 §5.1); return the four row integers of the output."""
    size = 4 * n  # bytes per row integer
    drop = 32 * (_CHUNK_BLOCKS - n)
    ones = _ONES >> drop
    keep1, wrap1 = _KEEP_1 >> drop, _WRAP_1 >> drop
    keep2, wrap2 = _KEEP_2 >> drop, _WRAP_2 >> drop
    keep3, wrap3 = _KEEP_3 >> drop, _WRAP_3 >> drop
    low7, lsb = _LOW7 >> drop, _LSB >> drop
    keys = [(k0 * ones, k1 * ones, k2 * ones, k3 * ones) for k0, k1, k2, k3 in round_keys]
    fb = int.from_bytes
    sbox = _SBOX
    k0, k1, k2, k3 = keys[0]
    a0 = fb(blocks[0::4], "little") ^ k0
    a1 = fb(blocks[1::4], "little") ^ k1
    a2 = fb(blocks[2::4], "little") ^ k2
    a3 = fb(blocks[3::4], "little") ^ k3
    for rnd in range(1, 11):
        # SubBytes.
        a0 = fb(a0.to_bytes(size, "little").translate(sbox), "little")
        a1 = fb(a1.to_bytes(size, "little").translate(sbox), "little")
        a2 = fb(a2.to_bytes(size, "little").translate(sbox), "little")
        a3 = fb(a3.to_bytes(size, "little").translate(sbox), "little")
        # ShiftRows: byte c of row r takes byte c + r (mod 4) of the same block.
        a1 = ((a1 >> 8) & keep1) | ((a1 << 24) & wrap1)
        a2 = ((a2 >> 16) & keep2) | ((a2 << 16) & wrap2)
        a3 = ((a3 >> 24) & keep3) | ((a3 << 8) & wrap3)
        k0, k1, k2, k3 = keys[rnd]
        if rnd == 10:  # the last round has no MixColumns
            break
        # MixColumns and AddRoundKey: b_r = 2 a_r + 3 a_(r+1) + a_(r+2) + a_(r+3)
        #                                 = xtime(z_r) + a_(r+1) + z_(r+2), z_r = a_r + a_(r+1).
        z0, z1, z2, z3 = a0 ^ a1, a1 ^ a2, a2 ^ a3, a3 ^ a0
        x0 = ((z0 & low7) << 1) ^ ((z0 >> 7) & lsb) * 0x1B
        x1 = ((z1 & low7) << 1) ^ ((z1 >> 7) & lsb) * 0x1B
        x2 = ((z2 & low7) << 1) ^ ((z2 >> 7) & lsb) * 0x1B
        x3 = x0 ^ x1 ^ x2  # xtime is linear and z0 + z1 + z2 + z3 = 0
        a0, a1, a2, a3 = x0 ^ a1 ^ z2 ^ k0, x1 ^ a2 ^ z3 ^ k1, x2 ^ a3 ^ z0 ^ k2, x3 ^ a0 ^ z1 ^ k3
    return [a0 ^ k0, a1 ^ k1, a2 ^ k2, a3 ^ k3]


# --- GHASH (SP 800-38D §6.3, §6.4) -------------------------------------------------------
#
# A block is a big-endian integer whose bit 127 - i is the coefficient of x^i ("reflected"):
# multiplying by x is a right shift, and x^128 = x^7 + x^2 + x + 1 folds back as 0xE1 << 120.

_R = 0xE1 << 120
_M127 = (1 << 127) - 1


def _fold_table() -> list[int]:
    """Reduction of the 7 bits that the lazy product leaves beyond x^127 (see _ghash_short)."""
    table = []
    for low in range(128):
        e = low << 121
        table.append(e ^ (e >> 1) ^ (e >> 2) ^ (e >> 7))
    return table


_FOLD7 = _fold_table()


def _ghash_short(h: int, data: bytes) -> int:
    """GHASH_H(data) with one 256-entry table of unreduced products; cheap per key.

    ``products[b]`` is b * H as a polynomial of degree < 135, as an integer whose bit 134 - i
    is the coefficient of x^i (b's top bit being x^0). A block's 16 bytes, most significant
    first, then give the 255-bit product (bit 254 - i for x^i) by Horner's rule in x^8, which
    is a left shift by 8 here. The reduction folds bits 0-126 (x^254 .. x^128) back with
    x^128 = 1 + x + x^2 + x^7: once as four shifts, and the 7 bits that this pushes past x^127
    once more through a 128-entry table.
    """
    products = [0]
    for t in range(8):  # bit t of b is the coefficient of x^(7 - t): H * x^(7 - t) is h << t
        term = h << t
        products += [p ^ term for p in products]
    u = products
    fold = _FOLD7
    m127 = _M127
    fb = int.from_bytes
    y = 0
    for i in range(0, len(data), 16):
        b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = (
            y ^ fb(data[i : i + 16], "big")
        ).to_bytes(16, "big")
        # Horner's rule over the bytes: p = (...(u[b0] << 8 ^ u[b1]) << 8 ...) << 8 ^ u[b15].
        p = ((u[b0] << 8 ^ u[b1]) << 8 ^ u[b2]) << 8 ^ u[b3]
        p = (((p << 8 ^ u[b4]) << 8 ^ u[b5]) << 8 ^ u[b6]) << 8 ^ u[b7]
        p = (((p << 8 ^ u[b8]) << 8 ^ u[b9]) << 8 ^ u[b10]) << 8 ^ u[b11]
        p = (((p << 8 ^ u[b12]) << 8 ^ u[b13]) << 8 ^ u[b14]) << 8 ^ u[b15]
        low = p & m127
        w = (low << 8) ^ (low << 7) ^ (low << 6) ^ (low << 1)
        y = (p >> 127) ^ (w >> 7) ^ fold[w & 0x7F]
    return y


def _times_x_powers(c: int) -> list[int]:
    """``[C, C * x, ..., C * x^127]``: multiplying by x is a right shift with reduction."""
    powers = [c]
    for _ in range(127):
        c = (c >> 1) ^ _R if c & 1 else c >> 1
        powers.append(c)
    return powers


def _ghash_tables(h: int) -> list[list[int]]:
    """Shoup-style positional tables: ``tables[j][b]`` = (byte b at byte position j) * H."""
    powers = _times_x_powers(h)  # powers[i] = H * x^i
    nibbles = []
    for i in range(0, 128, 4):
        # A nibble's top bit (value 8) is the coefficient of x^i, its bottom bit of x^(i+3).
        a, b, c, d = powers[i : i + 4]
        low = [0, d, c, c ^ d, b, b ^ d, b ^ c, b ^ c ^ d]  # nibbles 0-7
        nibbles.append(low + [e ^ a for e in low])
    return [[hi ^ lo for hi in nibbles[2 * j] for lo in nibbles[2 * j + 1]] for j in range(16)]


def _ghash_long(h: int, data: bytes) -> int:
    """GHASH_H(data) with 16 positional tables: 16 lookups and XORs per block."""
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15 = _ghash_tables(h)
    fb = int.from_bytes
    y = 0
    for i in range(0, len(data), 16):
        b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15 = (
            y ^ fb(data[i : i + 16], "big")
        ).to_bytes(16, "big")
        y = t0[b0] ^ t1[b1] ^ t2[b2] ^ t3[b3] ^ t4[b4] ^ t5[b5] ^ t6[b6] ^ t7[b7]
        y ^= t8[b8] ^ t9[b9] ^ t10[b10] ^ t11[b11] ^ t12[b12] ^ t13[b13] ^ t14[b14] ^ t15[b15]
    return y


# Lane-parallel GHASH: each Horner step multiplies every lane by the same constant C = H^k.
# Multiplication by a constant is GF(2)-linear, so output byte m of (byte b at position j) * C
# is a fixed function of b: one 256-byte bytes.translate table per (j, m).
_LANE_REPEAT = [int.from_bytes((b"\x01" + bytes(15)) * (1 << t), "little") for t in range(8)]


def _translate_tables(c: int) -> list[bytes]:
    """``tables[16 j + m][b]`` = big-endian byte m of (byte b at byte position j) * C."""
    powers = _times_x_powers(c)  # powers[i] = C * x^i
    tables = []
    for j in range(16):
        # The 256 products for position j as 128-bit lanes of one integer, built by doubling:
        # bit t of b (coefficient x^(8j + 7 - t)) adds powers[8j + 7 - t] to lanes 2^t.. 2^(t+1).
        lanes = 0
        for t in range(8):
            lanes |= (lanes ^ powers[8 * j + 7 - t] * _LANE_REPEAT[t]) << (128 << t)
        products = lanes.to_bytes(4096, "little")  # product b, least significant byte first
        tables += [products[15 - m :: 16] for m in range(16)]
    return tables


def _ghash_wide(h: int, data: bytes) -> int:
    """GHASH_H(data) with k interleaved Horner accumulators, multiplied by H^k with translate.

    With the blocks numbered so that their count is a multiple of k (zero blocks in front,
    which change nothing), lane j accumulates blocks j, k + j, 2k + j, ... and GHASH is
    sum_j lane_j * H^(k - j), itself the GHASH of the k lanes as consecutive blocks. The
    lanes are kept "byte-planar": plane m holds byte m of every lane. A step translates each
    of the 16 input planes with 16 tables (one per output byte), joins the 256 results into
    one integer and XORs its 16 input-plane groups together by halving folds.
    """
    fb = int.from_bytes
    nblocks = len(data) // 16
    k = 256 if nblocks < 32768 else 1024
    steps = -(-nblocks // k)
    padded = bytes(16 * (steps * k - nblocks)) + data
    c = h
    for _ in range(k.bit_length() - 1):  # C = H^k by squaring; a one-block GHASH is a product
        c = _ghash_short(c, c.to_bytes(16, "big"))
    tables = _translate_tables(c)
    size = 16 * k  # bytes of lanes
    by_input_plane = [(j * k, (j + 1) * k, tables[16 * j : 16 * j + 16]) for j in range(16)]
    folds = [(8 * half, (1 << (8 * half)) - 1) for half in (128 * k, 64 * k, 32 * k, 16 * k)]

    def planes(step: int) -> int:
        base = step * size
        return fb(b"".join([padded[base + m : base + size : 16] for m in range(16)]), "little")

    acc = planes(0)
    for step in range(1, steps):
        lanes = acc.to_bytes(size, "little")
        x = fb(
            b"".join([lanes[a:b].translate(t) for a, b, row in by_input_plane for t in row]),
            "little",
        )
        for bits, mask in folds:
            x = (x >> bits) ^ (x & mask)
        acc = x ^ planes(step)
    lanes = acc.to_bytes(size, "little")
    blocks = bytearray(size)
    for m in range(16):
        blocks[m::16] = lanes[m * k : (m + 1) * k]
    return _ghash_long(h, bytes(blocks))


# Below this many blocks, the single table (cheap to build); then positional tables; then
# lane-parallel GHASH, whose per-key setup (tables for H^k) pays off on long messages.
_GHASH_TABLES_MIN_BLOCKS = 256
_GHASH_WIDE_MIN_BLOCKS = 4096


def _tag(h: int, mask: int, aad: bytes, ciphertext: bytes) -> bytes:
    """SP 800-38D §7.1 steps 5-6: GHASH of aad, ciphertext and lengths, masked by E_K(J0)."""
    data = b"".join(
        (
            aad,
            bytes(-len(aad) % 16),
            ciphertext,
            bytes(-len(ciphertext) % 16),
            struct.pack(">QQ", 8 * len(aad), 8 * len(ciphertext)),
        )
    )
    nblocks = len(data) // 16
    if nblocks >= _GHASH_WIDE_MIN_BLOCKS:
        s = _ghash_wide(h, data)
    elif nblocks >= _GHASH_TABLES_MIN_BLOCKS:
        s = _ghash_long(h, data)
    else:
        s = _ghash_short(h, data)
    return (s ^ mask).to_bytes(16, "big")


# --- AEAD (SP 800-38D §7) ----------------------------------------------------------------


def _round_keys(key: bytes, length: int) -> _RoundKeys:
    if length > _MAX_MESSAGE:
        raise ValueError("AES-GCM message longer than 2^39 - 256 bits (SP 800-38D §5.2.1.1)")
    return _round_key_rows(_expand_key(key))


def seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate: return ``ciphertext || tag`` (SP 800-38D §7.1)."""
    round_keys = _round_keys(key, len(plaintext))
    h, mask, ciphertext = _aes_ctr(round_keys, nonce, plaintext)
    return ciphertext + _tag(h, mask, aad, ciphertext)


def open(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """Check the tag and decrypt ``ciphertext || tag`` (SP 800-38D §7.2).

    Raises ``AeadAuthenticationError`` if the input is shorter than the tag or the tag does
    not match.
    """
    if len(ciphertext) < TAG_SIZE:
        raise AeadAuthenticationError(
            f"AES-GCM input is {len(ciphertext)} bytes, shorter than the 16-byte tag"
        )
    body, tag = ciphertext[:-TAG_SIZE], ciphertext[-TAG_SIZE:]
    round_keys = _round_keys(key, len(body))
    multi_chunk = len(body) >= 16 * _CHUNK_BLOCKS
    if multi_chunk:
        # Authenticate before decrypting, so that a forgery costs two blocks, not the message.
        h, mask, _ = _aes_ctr(round_keys, nonce, b"")
    else:
        # One chunk: decrypting costs little more than computing H and E_K(J0) alone, and
        # the plaintext is only returned if the tag matches.
        h, mask, plaintext = _aes_ctr(round_keys, nonce, body)
    if not hmac.compare_digest(_tag(h, mask, aad, body), tag):
        raise AeadAuthenticationError("AES-GCM tag does not match (SP 800-38D §7.2)")
    if multi_chunk:
        _, _, plaintext = _aes_ctr(round_keys, nonce, body)
    return plaintext
