"""ChaCha20-Poly1305 AEAD (RFC 8439) in pure Python, tuned for CPython's big integers.

This is the browser's only ChaCha20-Poly1305, so it is written for speed inside Pyodide, where
every bytecode costs about three times what it costs natively. The idea throughout is to make
each Python operation do as much work as possible in C: a big-integer ``+``, ``^``, ``<<`` or
``&`` costs one interpreter step whatever the size of its operands.

ChaCha20 (RFC 8439 §2.1-§2.4): "SIMD within a big integer"
    The 16-word state of N blocks is transposed into lanes: lane ``j`` of an integer holds the
    state word of block ``j`` in its low 32 bits, followed by 32 guard bits (64-bit lanes). One
    big-integer operation then applies an add, xor or rotate to all N blocks at once:

    - ``(a + b) & MASK``: the carry out of bit 31 lands in the guard bits and is masked away;
    - ``((x << r) | (x >> (32 - r))) & MASK``: ``x << r`` moves the top ``r`` bits of each word
      into its own guard bits; ``x >> (32 - r)`` brings them down to bits ``0..r-1`` of the
      same lane, and what it drags in from the lane above lands at bits ``32 + r`` and up,
      again guard bits. So every lane rotates independently, provided that its guard bits
      were clean (they are: every result is masked).

    Two layouts are used. For long messages, one integer per state word ("word-sliced": 16
    integers of N lanes, the round function written out as in §2.3). For short ones, where
    the interpreter's per-operation cost dominates, one integer per state *row* ("row-sliced":
    4 integers of 4N lanes, each holding four consecutive segments of N lanes, one per column),
    so that a column round is 4 quarter-round steps instead of 16; the diagonal round first
    rotates rows b, c and d by 1, 2 and 3 segments (a big-integer rotation), as SIMD code does
    with lane shuffles. The keystream goes back to byte order through ``int.to_bytes`` and
    strided ``memoryview`` copies of whole 8-byte items, and is XORed with the data as big
    integers. Long messages are processed in chunks of ``_CHUNK_BLOCKS`` blocks.

Poly1305 (RFC 8439 §2.5): the accumulator is one Python integer.
    Short inputs use Horner's rule four blocks per step with precomputed ``r^2, r^3, r^4``, so
    one ``% p`` (the expensive part) serves four blocks. Long inputs run 64 or 128 interleaved
    accumulators as the lanes of one big integer, multiplied by ``r^k`` at each step and
    reduced lane-wise with the identity ``2^130 = 5 (mod p)``; the lanes are combined at the
    end. The AEAD construction (§2.8) authenticates whole 16-byte blocks only.

Key and nonce lengths are checked by the caller (:mod:`veilpost.crypto.pure`).

Python integers give no constant-time guarantee: the time taken by these operations may
depend on the values of keys and data. See ``docs/security.md`` for what this means in a
browser. The code is written for clarity and speed, not contorted towards constant time.
"""

# The round functions keep each quarter-round step ("a += b; d ^= a; d <<<= 16") on one line,
# as RFC 8439 §2.1 writes it (hence also the "fmt: off" blocks).
# ruff: noqa: E702

from __future__ import annotations

import hmac
import struct
import sys

from veilpost.crypto.errors import AeadAuthenticationError

TAG_SIZE = 16

_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k", §2.3
_WORD = 0xFFFFFFFF

# Keystream chunking: 1024 blocks (64 KiB) keep each lane integer at 8 KiB, which measured as
# fast per block as larger chunks, in CPython and in Pyodide.
_CHUNK_BLOCKS = 1024
# Up to this many blocks (block 0 included) the row-sliced layout wins: it runs fewer, larger
# big-integer operations, which matters most where each interpreted operation is dearest.
# Measured crossovers: about 80 blocks in Pyodide, 20 in CPython.
_ROW_SLICED_MAX_BLOCKS = 80 if sys.platform == "emscripten" else 20
assert 4 * _ROW_SLICED_MAX_BLOCKS <= _CHUNK_BLOCKS  # the lane masks below must cover 4 rows
# The longest message RFC 8439 allows: the 32-bit block counter starts at 1 for the message.
_MAX_MESSAGE = 64 * (2**32 - 1)

# One in the low bit of every 64-bit lane, and the lane index in every lane, for the largest
# chunk; a call for fewer lanes takes the low end of these (one shift or mask).
_LANE_ONES = int.from_bytes((b"\x01" + bytes(7)) * _CHUNK_BLOCKS, "little")
_LANE_INDEX = int.from_bytes(struct.pack(f"<{_CHUNK_BLOCKS}Q", *range(_CHUNK_BLOCKS)), "little")


def _lane_ones(lanes: int) -> int:
    return _LANE_ONES >> (64 * (_CHUNK_BLOCKS - lanes))


def _lane_index(lanes: int) -> int:
    return _LANE_INDEX & ((1 << (64 * lanes)) - 1)


def _keystream_word_sliced(state: tuple[int, ...], nblocks: int) -> list[int]:
    """``nblocks`` ChaCha20 blocks (§2.3) from ``state``, one integer per state word.

    The result is 8 integers of ``nblocks`` 64-bit lanes: lane j of integer i holds keystream
    bytes 8i..8i+7 of block j, read as a little-endian integer.
    """
    ones = _lane_ones(nblocks)
    m = ones * _WORD  # the low 32 bits of every lane
    init = [word * ones for word in state]
    init[12] += _lane_index(nblocks)  # block j uses counter + j
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = init
    # fmt: off
    for _ in range(10):
        # Column round: QUARTERROUND(0, 4, 8, 12) ... (3, 7, 11, 15), §2.2, each line being
        # "a += b; d ^= a; d <<<= 16" and so on for all lanes at once.
        x0 = (x0 + x4) & m; x12 ^= x0; x12 = ((x12 << 16) | (x12 >> 16)) & m
        x8 = (x8 + x12) & m; x4 ^= x8; x4 = ((x4 << 12) | (x4 >> 20)) & m
        x0 = (x0 + x4) & m; x12 ^= x0; x12 = ((x12 << 8) | (x12 >> 24)) & m
        x8 = (x8 + x12) & m; x4 ^= x8; x4 = ((x4 << 7) | (x4 >> 25)) & m
        x1 = (x1 + x5) & m; x13 ^= x1; x13 = ((x13 << 16) | (x13 >> 16)) & m
        x9 = (x9 + x13) & m; x5 ^= x9; x5 = ((x5 << 12) | (x5 >> 20)) & m
        x1 = (x1 + x5) & m; x13 ^= x1; x13 = ((x13 << 8) | (x13 >> 24)) & m
        x9 = (x9 + x13) & m; x5 ^= x9; x5 = ((x5 << 7) | (x5 >> 25)) & m
        x2 = (x2 + x6) & m; x14 ^= x2; x14 = ((x14 << 16) | (x14 >> 16)) & m
        x10 = (x10 + x14) & m; x6 ^= x10; x6 = ((x6 << 12) | (x6 >> 20)) & m
        x2 = (x2 + x6) & m; x14 ^= x2; x14 = ((x14 << 8) | (x14 >> 24)) & m
        x10 = (x10 + x14) & m; x6 ^= x10; x6 = ((x6 << 7) | (x6 >> 25)) & m
        x3 = (x3 + x7) & m; x15 ^= x3; x15 = ((x15 << 16) | (x15 >> 16)) & m
        x11 = (x11 + x15) & m; x7 ^= x11; x7 = ((x7 << 12) | (x7 >> 20)) & m
        x3 = (x3 + x7) & m; x15 ^= x3; x15 = ((x15 << 8) | (x15 >> 24)) & m
        x11 = (x11 + x15) & m; x7 ^= x11; x7 = ((x7 << 7) | (x7 >> 25)) & m
        # Diagonal round: QUARTERROUND(0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14).
        x0 = (x0 + x5) & m; x15 ^= x0; x15 = ((x15 << 16) | (x15 >> 16)) & m
        x10 = (x10 + x15) & m; x5 ^= x10; x5 = ((x5 << 12) | (x5 >> 20)) & m
        x0 = (x0 + x5) & m; x15 ^= x0; x15 = ((x15 << 8) | (x15 >> 24)) & m
        x10 = (x10 + x15) & m; x5 ^= x10; x5 = ((x5 << 7) | (x5 >> 25)) & m
        x1 = (x1 + x6) & m; x12 ^= x1; x12 = ((x12 << 16) | (x12 >> 16)) & m
        x11 = (x11 + x12) & m; x6 ^= x11; x6 = ((x6 << 12) | (x6 >> 20)) & m
        x1 = (x1 + x6) & m; x12 ^= x1; x12 = ((x12 << 8) | (x12 >> 24)) & m
        x11 = (x11 + x12) & m; x6 ^= x11; x6 = ((x6 << 7) | (x6 >> 25)) & m
        x2 = (x2 + x7) & m; x13 ^= x2; x13 = ((x13 << 16) | (x13 >> 16)) & m
        x8 = (x8 + x13) & m; x7 ^= x8; x7 = ((x7 << 12) | (x7 >> 20)) & m
        x2 = (x2 + x7) & m; x13 ^= x2; x13 = ((x13 << 8) | (x13 >> 24)) & m
        x8 = (x8 + x13) & m; x7 ^= x8; x7 = ((x7 << 7) | (x7 >> 25)) & m
        x3 = (x3 + x4) & m; x14 ^= x3; x14 = ((x14 << 16) | (x14 >> 16)) & m
        x9 = (x9 + x14) & m; x4 ^= x9; x4 = ((x4 << 12) | (x4 >> 20)) & m
        x3 = (x3 + x4) & m; x14 ^= x3; x14 = ((x14 << 8) | (x14 >> 24)) & m
        x9 = (x9 + x14) & m; x4 ^= x9; x4 = ((x4 << 7) | (x4 >> 25)) & m
    # fmt: on
    final = (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)
    # Add the input state (§2.3) and pair words 2i and 2i+1 into one 64-bit lane.
    return [
        ((final[2 * i] + init[2 * i]) & m) | (((final[2 * i + 1] + init[2 * i + 1]) & m) << 32)
        for i in range(8)
    ]


def _keystream_row_sliced(state: tuple[int, ...], nblocks: int) -> bytearray:
    """The keystream of ``nblocks`` ChaCha20 blocks from ``state``, one integer per state row.

    Row integer ``a`` holds segments ``[x0 lanes][x1 lanes][x2 lanes][x3 lanes]`` of ``nblocks``
    lanes each (``b``, ``c``, ``d`` likewise for rows 1-3), so the four column quarter rounds
    run as one. For the diagonal round, rotating a row right by one segment puts ``x5`` under
    ``x0``, ``x6`` under ``x1`` and so on (§2.2's diagonals), and is undone afterwards.
    """
    seg = 64 * nblocks
    seg2, seg3 = 2 * seg, 3 * seg
    ones = _lane_ones(nblocks)
    m = _lane_ones(4 * nblocks) * _WORD

    def row(w0: int, w1: int, w2: int, w3: int) -> int:
        return (w0 | (w1 << seg) | (w2 << seg2) | (w3 << seg3)) * ones

    a0 = row(*state[0:4])
    b0 = row(*state[4:8])
    c0 = row(*state[8:12])
    d0 = row(*state[12:16]) + _lane_index(nblocks)  # counters in segment 0
    a, b, c, d = a0, b0, c0, d0
    # fmt: off
    for _ in range(10):
        # Column round, all four columns at once.
        a = (a + b) & m; d ^= a; d = ((d << 16) | (d >> 16)) & m
        c = (c + d) & m; b ^= c; b = ((b << 12) | (b >> 20)) & m
        a = (a + b) & m; d ^= a; d = ((d << 8) | (d >> 24)) & m
        c = (c + d) & m; b ^= c; b = (b << 7) | (b >> 25)
        # Diagonalize: rotate rows b, c, d right by 1, 2, 3 segments. The masks also clean
        # b's guard bits, so b's rotation above does not need its own.
        b = ((b >> seg) | (b << seg3)) & m
        c = ((c >> seg2) | (c << seg2)) & m
        d = ((d >> seg3) | (d << seg)) & m
        # Diagonal round.
        a = (a + b) & m; d ^= a; d = ((d << 16) | (d >> 16)) & m
        c = (c + d) & m; b ^= c; b = ((b << 12) | (b >> 20)) & m
        a = (a + b) & m; d ^= a; d = ((d << 8) | (d >> 24)) & m
        c = (c + d) & m; b ^= c; b = (b << 7) | (b >> 25)
        # Undo the diagonalization.
        b = ((b >> seg3) | (b << seg)) & m
        c = ((c >> seg2) | (c << seg2)) & m
        d = ((d >> seg) | (d << seg3)) & m
    # fmt: on
    out = bytearray(64 * nblocks)
    view = memoryview(out).cast("Q")
    for r, (x, x_init) in enumerate(((a, a0), (b, b0), (c, c0), (d, d0))):
        x = (x + x_init) & m
        # Pair the words: segment 0 now holds words 4r | 4r+1 << 32, segment 2 the next two;
        # lane j of each is 8 keystream bytes of block j, copied into place whole.
        x |= x >> (seg - 32)
        pairs = memoryview(x.to_bytes(32 * nblocks, "little")).cast("Q")
        view[2 * r :: 8] = pairs[0:nblocks]
        view[2 * r + 1 :: 8] = pairs[2 * nblocks : 3 * nblocks]
    return out


def _chunks(total_blocks: int) -> list[tuple[int, int]]:
    """Split blocks ``0..total_blocks-1`` into near-equal runs of at most ``_CHUNK_BLOCKS``."""
    count = -(-total_blocks // _CHUNK_BLOCKS)
    size = -(-total_blocks // count)
    return [(start, min(size, total_blocks - start)) for start in range(0, total_blocks, size)]


def _crypt(state: tuple[int, ...], data: bytes) -> tuple[bytes, bytes]:
    """ChaCha20-encrypt ``data`` from block 1 on; return (Poly1305 key, output), §2.4, §2.6.

    The same keystream also gives block 0, from which §2.6 takes the one-time Poly1305 key.
    """
    fb = int.from_bytes
    total_blocks = 1 + -(-len(data) // 64)
    if total_blocks <= _ROW_SLICED_MAX_BLOCKS:
        stream = _keystream_row_sliced(state, total_blocks)
        n = len(data)
        output = fb(data, "little") ^ fb(stream[64 : 64 + n], "little")
        return bytes(stream[:32]), output.to_bytes(n, "little")
    # Long data: block 0 is encrypted too, as 64 zero bytes. Data is read and output written
    # 8 bytes at a time with strided memoryview slices: bytes 8i..8i+7 of all the blocks of a
    # chunk make one integer of 64-bit lanes, XORed with the matching keystream integer in one
    # operation. The slices copy whole 8-byte items, so the host's byte order does not matter.
    source = memoryview(b"".join((bytes(64), data, bytes(-len(data) % 64)))).cast("Q")
    out = bytearray(64 * total_blocks)
    view = memoryview(out).cast("Q")
    for start, count in _chunks(total_blocks):
        pairs = _keystream_word_sliced((*state[:12], start, *state[13:]), count)
        end = 8 * (start + count)
        for i, pair in enumerate(pairs):
            words = slice(8 * start + i, end, 8)
            plain = fb(source[words], "little")
            view[words] = memoryview((pair ^ plain).to_bytes(8 * count, "little")).cast("Q")
    return bytes(out[:32]), bytes(out[64 : 64 + len(data)])


# --- Poly1305 (§2.5) ---------------------------------------------------------------------

_P = (1 << 130) - 5
_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
_M128 = (1 << 128) - 1
_HIBIT = 1 << 128  # the "add one bit beyond the block" of §2.5.1, for full blocks

# Lane-parallel Poly1305 from this many blocks on (below, its setup and the final combination
# of the lanes cost more than they save); 64 lanes up to _POLY_WIDE_BLOCKS blocks, then 128.
# Each lane is 40 bytes: a reduced accumulator (< 2^131) times r^k (< 2^130) fits, with room
# for the slow growth between full reductions.
_POLY_LANE_MIN_BLOCKS = 256
_POLY_WIDE_BLOCKS = 8192
_POLY_LANE_BYTES = 40


def _poly1305_serial(r: int, msg: bytes) -> int:
    """Horner's rule, four blocks per reduction: acc = (acc + m1) r^4 + m2 r^3 + m3 r^2 + m4 r."""
    fb = int.from_bytes
    acc = 0
    end4 = len(msg) - len(msg) % 64
    if end4:
        r2 = r * r % _P
        r3 = r2 * r % _P
        r4 = r3 * r % _P
        pad = _HIBIT * (r4 + r3 + r2 + r)  # the 2^128 bit of all four blocks, premultiplied
        m = _M128
        for i in range(0, end4, 64):
            x = fb(msg[i : i + 64], "little")
            acc = (
                (acc + (x & m)) * r4
                + ((x >> 128) & m) * r3
                + ((x >> 256) & m) * r2
                + (x >> 384) * r
                + pad
            ) % _P
    end = len(msg) - len(msg) % 16
    for i in range(end4, end, 16):
        acc = (acc + fb(msg[i : i + 16], "little") + _HIBIT) * r % _P
    if end < len(msg):  # a final partial block gets its 1 byte appended (§2.5.1)
        acc = (acc + fb(msg[end:] + b"\x01", "little")) * r % _P
    return acc


def _poly1305_lanes(r: int, msg: bytes) -> int:
    """Poly1305 of whole blocks with k interleaved Horner accumulators in one big integer.

    With k lanes and the blocks numbered so that their count is a multiple of k (zero blocks,
    which change nothing, are put in front), lane j accumulates blocks j, k + j, 2k + j, ...
    with multiplier r^k, and the result is sum_j lane_j * r^(k - j).
    """
    nblocks = len(msg) // 16
    k = 64 if nblocks < _POLY_WIDE_BLOCKS else 128
    width = _POLY_LANE_BYTES
    steps = -(-nblocks // k)
    skip = steps * k - nblocks  # leading all-zero lanes
    # Spread the blocks into 40-byte lanes, each block followed by its 2^128 bit.
    lanes = bytearray(width * steps * k)
    words = memoryview(lanes).cast("Q")
    src = memoryview(msg).cast("Q")
    q = width // 8
    words[skip * q :: q] = src[0::2]
    words[skip * q + 1 :: q] = src[1::2]
    lanes[skip * width + 16 :: width] = b"\x01" * nblocks
    rk = pow(r, k, _P)
    low130 = int.from_bytes((b"\xff" * 16 + b"\x03" + bytes(width - 17)) * k, "little")
    step = width * k
    fb = int.from_bytes
    acc = fb(lanes[0:step], "little")
    for g in range(1, steps):
        acc *= rk
        # Lane-wise partial reduction, 2^130 = 5 (mod p): lo + 5 * hi. One pass leaves a lane
        # about 2.4 bits longer than it was before the step; a second pass every 16 steps
        # brings lanes back under 2^131, so products stay under about 2^300, inside 320 bits.
        lo = acc & low130
        acc = lo + ((acc ^ lo) >> 130) * 5
        if not g & 15:
            lo = acc & low130
            acc = lo + ((acc ^ lo) >> 130) * 5
        acc += fb(lanes[g * step : (g + 1) * step], "little")
    result = acc.to_bytes(step + 1, "little")
    h = 0
    for j in range(0, step, width):
        h = (h + fb(result[j : j + width], "little")) * r % _P
    return h


def _poly1305(key: bytes, msg: bytes) -> bytes:
    """The Poly1305 tag of ``msg`` under the one-time 32-byte ``key`` (§2.5.1)."""
    r = int.from_bytes(key[:16], "little") & _CLAMP
    s = int.from_bytes(key[16:32], "little")
    if len(msg) % 16 == 0 and len(msg) // 16 >= _POLY_LANE_MIN_BLOCKS:
        acc = _poly1305_lanes(r, msg)
    else:
        acc = _poly1305_serial(r, msg)
    return ((acc + s) & _M128).to_bytes(16, "little")


def _mac_data(aad: bytes, ciphertext: bytes) -> bytes:
    """§2.8: aad, pad to 16, ciphertext, pad to 16, the two lengths as 64-bit little-endian."""
    return b"".join(
        (
            aad,
            bytes(-len(aad) % 16),
            ciphertext,
            bytes(-len(ciphertext) % 16),
            struct.pack("<QQ", len(aad), len(ciphertext)),
        )
    )


# --- AEAD (§2.8) -------------------------------------------------------------------------


def _initial_state(key: bytes, nonce: bytes, length: int) -> tuple[int, ...]:
    """The ChaCha20 state of §2.3 with block counter 0."""
    if length > _MAX_MESSAGE:
        raise ValueError("ChaCha20-Poly1305 message longer than 2^32 - 1 blocks (RFC 8439)")
    return _SIGMA + struct.unpack("<8I", key) + (0,) + struct.unpack("<3I", nonce)


def seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate: return ``ciphertext || tag`` (RFC 8439 §2.8)."""
    poly_key, ciphertext = _crypt(_initial_state(key, nonce, len(plaintext)), plaintext)
    return ciphertext + _poly1305(poly_key, _mac_data(aad, ciphertext))


def open(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """Check the tag and decrypt ``ciphertext || tag``; raise ``AeadAuthenticationError``."""
    if len(ciphertext) < TAG_SIZE:
        raise AeadAuthenticationError(
            f"ChaCha20-Poly1305 input is {len(ciphertext)} bytes, shorter than the 16-byte tag"
        )
    body, tag = ciphertext[:-TAG_SIZE], ciphertext[-TAG_SIZE:]
    state = _initial_state(key, nonce, len(body))
    multi_chunk = len(body) >= 64 * _CHUNK_BLOCKS
    if multi_chunk:
        # Authenticate before decrypting, so that a forgery costs one block, not the message.
        poly_key, _ = _crypt(state, b"")
    else:
        # One chunk: decrypting costs little more than deriving the Poly1305 key alone, and
        # the plaintext is only returned if the tag matches.
        poly_key, plaintext = _crypt(state, body)
    if not hmac.compare_digest(_poly1305(poly_key, _mac_data(aad, body)), tag):
        raise AeadAuthenticationError("ChaCha20-Poly1305 tag does not match (RFC 8439 §2.8)")
    if multi_chunk:
        _, plaintext = _crypt(state, body)
    return plaintext
