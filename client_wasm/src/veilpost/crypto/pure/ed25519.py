"""Ed25519 (RFC 8032 §5.1) on Python integers, tuned for CPython and Pyodide.

Public functions: :func:`public_key` (§5.1.5), :func:`sign` (§5.1.6) and :func:`verify`
(§5.1.7, strict). SHA-512 comes from :mod:`hashlib`, which is native code in Pyodide too.

Technique
---------
- Field elements are plain ``int`` values modulo ``p = 2**255 - 19``. Each product is reduced
  with a cheap *fold*, ``(c & M) + 19 * (c >> 255)`` (``2**255`` is congruent to 19), when it
  only feeds another multiplication, and with ``% p`` when it leaves the formula. A fold leaves
  about 261 bits, which still fits the nine 30-bit digits CPython multiplies as cheaply as a
  fully reduced value; it costs about half of ``%`` (measured on CPython 3.11 and in Pyodide).
  Intermediate values may be negative; Python's ``&``, ``>>`` and ``%`` keep them congruent.
- Points use extended twisted Edwards coordinates ``(X : Y : Z : T)`` with ``x = X/Z``,
  ``y = Y/Z``, ``T = XY/Z`` (Hisil, Wong, Carter, Dawson 2008): doubling ``dbl-2008-hwcd``
  (7 multiplications, plus 1 for ``T`` only when an addition follows) and addition
  ``add-2008-hwcd-3`` against precomputed points in "Niels" form, ``(y + x, y - x, 2dxy)``
  (7 multiplications; 8 against a projective ``(Y + X, Y - X, 2Z, 2dT)``).
- Fixed-base multiplication ``[a]B`` uses a table of 64 rows x 16 points, row ``i`` holding
  ``[j * 16**i]B`` for ``j = -8..7``; the scalar is recoded into signed radix-16 digits, so
  ``[a]B`` costs 64 mixed additions and no doubling. The table (and the wNAF table of ``B``
  below) is built once per process, on first use, with a single batched inversion: about
  580 point operations, 4-7 ms on CPython 3.11 and 9-14 ms in Pyodide (development machine).
- Verification computes ``R' = [S]B + [k](-A)`` with Strauss-Shamir interleaving: one chain of
  ~253 doublings shared by a width-5 wNAF of ``k`` (eight odd multiples of ``-A``, built per
  call) and a width-8 wNAF of ``S`` (64 odd multiples of ``B``, precomputed). It branches on the
  (public) digits, which is fine: nothing in ``verify`` is secret.
- Square roots follow §5.1.3 with an addition chain for ``(p - 5) / 8``; inverses use
  ``pow(z, -1, p)`` (extended Euclid in C, several times faster than ``pow(z, p - 2, p)``).

Strictness (what Project Wycheproof expects): ``S >= L`` is rejected, ``A`` must decode
canonically (``y < p``, no ``x = 0`` with the sign bit set), and ``R`` is never decoded: the
canonical encoding of ``R'`` is compared with the 32 bytes of ``R``, so a non-canonical or
undecodable ``R`` can never match. The check is cofactorless (``[S]B = R + [k]A``).

Python integers give no constant-time guarantee. Signing does not branch on secret digits
(table rows are indexed by the digit, the zero digit adds the neutral point), but timing and
memory access still depend on the values; see ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["public_key", "sign", "verify"]

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point B
_MASK = (1 << 255) - 1
_D = -121665 * pow(121666, -1, _P) % _P  # curve constant d = -121665/121666
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)  # a square root of -1 modulo p
_BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BASE_Y = 46316835694926478169428394003475163141307993866256225615783033603165251855960

# (X, Y, Z, T) extended coordinates.
_Point = tuple[int, int, int, int]
# (y + x, y - x, 2dxy): an affine point ready for mixed addition.
_Niels = tuple[int, int, int]
# (Y + X, Y - X, 2Z, 2dT): a projective point ready for addition.
_ProjNiels = tuple[int, int, int, int]

_NIELS_IDENTITY: _Niels = (1, 1, 0)
_PROJ_NIELS_IDENTITY: _ProjNiels = (1, 1, 2, 0)

_COMB_ROWS = 64  # radix-16 digits of a scalar below 2**256
_B_WINDOW = 8  # wNAF width for S in verify: 64 precomputed odd multiples of B
_A_WINDOW = 5  # wNAF width for k in verify: 8 odd multiples of -A, computed per call

# Adding 8 to every radix-16 digit of a scalar below 2**253 turns its nibbles n_i into signed
# digits n_i - 8 in -8..7 (ref10's recoding, done by one big-integer addition).
_EIGHTS = int("8" * _COMB_ROWS, 16)
_HEX_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))


# --- Field and point helpers used off the hot paths ------------------------------------------


def _square_times(x: int, n: int) -> int:
    """Return ``x ** (2**n) mod p`` for ``0 <= x < p`` by ``n`` squarings.

    Squarings go in pairs: the first of a pair is only folded (its ~260-bit result squares as
    cheaply as a reduced one), the second is reduced with ``%``.
    """
    p = _P
    m = _MASK
    for _ in range(n >> 1):
        x *= x
        x = (x & m) + 19 * (x >> 255)
        x = x * x % p
    if n & 1:
        x = x * x % p
    return x


def _pow_p58(z: int) -> int:
    """Return ``z ** ((p - 5) / 8) mod p``, i.e. ``z ** (2**252 - 3)``, by ref10's chain.

    252 squarings and 11 multiplications, faster than ``pow()``, which spends about as many
    extra multiplications on the dense exponent as it does squarings.
    """
    p = _P
    z2 = z * z % p
    z9 = _square_times(z2, 2) * z % p
    z11 = z9 * z2 % p
    z_5_0 = z11 * z11 % p * z9 % p  # z^(2^5 - 1)
    z_10_0 = _square_times(z_5_0, 5) * z_5_0 % p
    z_20_0 = _square_times(z_10_0, 10) * z_10_0 % p
    z_40_0 = _square_times(z_20_0, 20) * z_20_0 % p
    z_50_0 = _square_times(z_40_0, 10) * z_10_0 % p
    z_100_0 = _square_times(z_50_0, 50) * z_50_0 % p
    z_200_0 = _square_times(z_100_0, 100) * z_100_0 % p
    z_250_0 = _square_times(z_200_0, 50) * z_50_0 % p
    return _square_times(z_250_0, 2) * z % p  # z^(2^252 - 4) * z


def _decode(data: bytes) -> tuple[int, int] | None:
    """Decode a 32-byte point encoding to affine ``(x, y)`` (§5.1.3); ``None`` if invalid.

    Strict: ``y >= p`` and the encoding of ``x = 0`` with the sign bit set are rejected.
    """
    p = _P
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= _MASK
    if y >= p:
        return None
    yy = y * y % p
    u = (yy - 1) % p
    v = (_D * yy + 1) % p
    v3 = v * v % p * v % p
    uv3 = u * v3 % p
    # Candidate root x = u v^3 (u v^7)^((p - 5) / 8).
    x = uv3 * _pow_p58(uv3 * v3 % p * v % p) % p
    vxx = v * x % p * x % p
    if vxx != u:
        if vxx != p - u:
            return None  # u/v is not a square: no point has this y
        x = x * _SQRT_M1 % p
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = p - x
    return x, y


def _encode(x_proj: int, y_proj: int, z_inv: int) -> bytes:
    """Encode a point given ``X``, ``Y`` and ``1/Z`` (§5.1.2): ``y`` with the sign of ``x``."""
    x = x_proj * z_inv % _P
    y = y_proj * z_inv % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _add(p1: _Point, p2: _Point) -> _Point:
    """Extended + extended addition (add-2008-hwcd-3 with a = -1); for table building."""
    p = _P
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % p
    b = (y1 + x1) * (y2 + x2) % p
    c = t1 * _D2 % p * t2 % p
    d = 2 * z1 * z2 % p
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % p, g * h % p, f * g % p, e * h % p


def _double(p1: _Point) -> _Point:
    """Extended doubling (dbl-2008-hwcd, a = -1, E F G H negated: same point); for tables."""
    p = _P
    x, y, z, _ = p1
    a = x * x % p
    b = y * y % p
    c = 2 * z * z % p
    h = a + b
    e = h - (x + y) * (x + y) % p
    g = a - b
    f = c + g
    return e * f % p, g * h % p, f * g % p, e * h % p


def _to_niels(points: list[_Point]) -> list[_Niels]:
    """Convert points to affine Niels form with one inversion (Montgomery's batch trick)."""
    p = _P
    prefix = []
    acc = 1
    for point in points:
        prefix.append(acc)
        acc = acc * point[2] % p
    inv = pow(acc, -1, p)  # 1 / (Z_0 Z_1 ... Z_{n-1})
    out: list[_Niels] = [_NIELS_IDENTITY] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z, _ = points[i]
        z_inv = inv * prefix[i] % p
        inv = inv * z % p  # now 1 / (Z_0 ... Z_{i-1})
        ax = x * z_inv % p
        ay = y * z_inv % p
        out[i] = ((ay + ax) % p, (ay - ax) % p, ax * ay % p * _D2 % p)
    return out


def _neg_niels(point: _Niels) -> _Niels:
    """Negate an affine Niels point: (y + x, y - x, 2dxy) -> (y - x, y + x, -2dxy)."""
    return point[1], point[0], (-point[2]) % _P


# --- Precomputed tables for B, built on first use --------------------------------------------

# (comb, b_wnaf): comb[i][n] is [(n - 8) * 16**i]B; b_wnaf[d] is [d]B for odd |d| < 128.
_Tables = tuple[tuple[tuple[_Niels, ...], ...], tuple[_Niels, ...]]
_tables: _Tables | None = None


def _base_tables() -> _Tables:
    """Return the tables of B, building them on first use (published by one assignment)."""
    global _tables
    if _tables is None:
        _tables = _build_tables()
    return _tables


def _build_tables() -> _Tables:
    """Build the fixed-base comb and the wNAF table of odd multiples of B."""
    base: _Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)
    points: list[_Point] = []
    row_base = base
    for _ in range(_COMB_ROWS):
        multiple = row_base
        points.append(multiple)
        for _ in range(7):  # [2..8] * 16**i * B
            multiple = _add(multiple, row_base)
            points.append(multiple)
        row_base = _double(multiple)  # 16 * 16**i * B = 2 * (8 * 16**i * B)
    # Odd multiples B, 3B, ..., 127B for the wNAF of S in verify.
    twice = _double(base)
    odd = [base]
    for _ in range(2 ** (_B_WINDOW - 2) - 1):
        odd.append(_add(odd[-1], twice))
    niels = _to_niels(points + odd)

    comb = []
    for i in range(_COMB_ROWS):
        multiples = niels[8 * i : 8 * i + 8]  # [1..8] * 16**i * B
        negatives = [_neg_niels(m) for m in reversed(multiples)]  # [-8..-1] * 16**i * B
        # Indexed by the offset nibble n = digit + 8: row[n] = [(n - 8) * 16**i]B.
        comb.append((*negatives, _NIELS_IDENTITY, *multiples[:7]))
    return tuple(comb), _signed_table(niels[8 * _COMB_ROWS :], _B_WINDOW)


def _signed_table(odd: list[_Niels], window: int) -> tuple[_Niels, ...]:
    """Lay out odd multiples so that ``table[d]`` is ``[d]P`` for odd ``|d| < 2**(window-1)``.

    Negative digits use Python's negative indexing: ``table[-d]`` is ``table[2**window - d]``.
    Even slots are never read.
    """
    table = [_NIELS_IDENTITY] * (1 << window)
    for j, point in enumerate(odd):
        table[2 * j + 1] = point
        table[-(2 * j + 1)] = _neg_niels(point)
    return tuple(table)


# --- Scalar multiplications --------------------------------------------------------------------


def _scalar_mult_base(scalar: int) -> tuple[int, int, int]:
    """Return projective ``(X, Y, Z)`` of ``[scalar]B`` for ``0 <= scalar < 2**253``.

    One mixed addition per radix-16 digit, no doubling, no branch on the digits.
    """
    p = _P
    m = _MASK
    comb, _ = _base_tables()
    # Little-endian nibbles of scalar + 0x88...8: the big-endian hex string, reversed.
    nibbles = (scalar + _EIGHTS).to_bytes(32, "big").hex()[::-1].encode().translate(_HEX_NIBBLE)
    x, y, z, t = 0, 1, 1, 0  # the neutral point
    for row, nibble in zip(comb, nibbles, strict=True):
        ypx, ymx, xy2d = row[nibble]
        a = (y - x) * ymx
        a = (a & m) + 19 * (a >> 255)
        b = (y + x) * ypx
        b = (b & m) + 19 * (b >> 255)
        c = t * xy2d
        c = (c & m) + 19 * (c >> 255)
        d = z + z
        e = b - a
        f = d - c
        g = d + c
        h = b + a
        x = e * f % p
        y = g * h % p
        z = f * g % p
        t = e * h % p
    return x, y, z


def _wnaf(k: int, window: int) -> list[tuple[int, int]]:
    """The nonzero digits of the width-``window`` NAF of ``k >= 0`` as ``(position, digit)``.

    Digits are odd, below ``2**(window-1)`` in absolute value, at least ``window`` positions
    apart, and listed from the least significant; runs of zero bits are skipped in one step.
    """
    digits: list[tuple[int, int]] = []
    full = 1 << window
    half = full >> 1
    low = full - 1
    position = 0
    while k:
        if k & 1:
            d = k & low
            if d >= half:
                d -= full
            digits.append((position, d))
            k = (k - d) >> window  # the low `window` bits of k - d are zero
            position += window
        else:
            zeros = (k & -k).bit_length() - 1
            k >>= zeros
            position += zeros
    return digits


def _double_scalar_mult(s: int, k: int, a_neg: tuple[int, int]) -> tuple[int, int, int]:
    """Return projective ``(X, Y, Z)`` of ``[s]B + [k]A'`` for the affine point ``A'``.

    Variable time (for verification only): Strauss-Shamir with wNAF digits of both scalars.
    """
    p = _P
    m = _MASK
    _, b_table = _base_tables()

    # Odd multiples A', 3A', ..., 15A' in projective Niels form.
    ax, ay = a_neg
    point: _Point = (ax, ay, 1, ax * ay % p)
    twice = _double(point)
    a_table = [_PROJ_NIELS_IDENTITY] * (1 << _A_WINDOW)
    for j in range(1 << (_A_WINDOW - 2)):
        if j:
            point = _add(point, twice)
        x, y, z, t = point
        ypx, ymx, z2, t2d = (y + x) % p, (y - x) % p, 2 * z % p, t * _D2 % p
        a_table[2 * j + 1] = (ypx, ymx, z2, t2d)
        a_table[-(2 * j + 1)] = (ymx, ypx, z2, (-t2d) % p)

    # Merge the two digit lists into steps (doublings before, digit of k, digit of s), from the
    # most significant position down; a last step with no digits does the trailing doublings.
    digits: dict[int, list[int]] = {}
    for position, d in _wnaf(k, _A_WINDOW):
        digits[position] = [d, 0]
    for position, d in _wnaf(s, _B_WINDOW):
        digits.setdefault(position, [0, 0])[1] = d
    steps = []
    previous = max(digits, default=0)
    for position in sorted(digits, reverse=True):
        dk, ds = digits[position]
        steps.append((previous - position, dk, ds))
        previous = position
    if previous:
        steps.append((previous, 0, 0))

    x, y, z, t = 0, 1, 1, 0  # the neutral point
    e = h = 0  # so that T = E * H is right even if the first step has no doubling
    for doublings, dk, ds in steps:
        for _ in range(doublings):
            # dbl-2008-hwcd with E = 2XY computed directly, and F and H negated (which negates
            # X, Y, Z and T together: the same point). T only after the last doubling of a run.
            a = x * x
            a = (a & m) + 19 * (a >> 255)
            b = y * y
            b = (b & m) + 19 * (b >> 255)
            c = z * z
            c = (c & m) + 19 * (c >> 255)
            e = x * y
            e = (e & m) + 19 * (e >> 255)
            e += e
            c += c
            h = a + b
            g = b - a
            f = c - g
            x = e * f % p
            y = g * h % p
            z = f * g % p
        t = e * h % p
        if dk:
            ypx, ymx, z2, t2d = a_table[dk]
            a = (y - x) * ymx
            a = (a & m) + 19 * (a >> 255)
            b = (y + x) * ypx
            b = (b & m) + 19 * (b >> 255)
            c = t * t2d
            c = (c & m) + 19 * (c >> 255)
            d = z * z2
            d = (d & m) + 19 * (d >> 255)
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            x = e * f % p
            y = g * h % p
            z = f * g % p
            if ds:
                t = e * h % p
        if ds:
            ypx, ymx, xy2d = b_table[ds]
            a = (y - x) * ymx
            a = (a & m) + 19 * (a >> 255)
            b = (y + x) * ypx
            b = (b & m) + 19 * (b >> 255)
            c = t * xy2d
            c = (c & m) + 19 * (c >> 255)
            d = z + z
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            x = e * f % p
            y = g * h % p
            z = f * g % p
    return x, y, z


# --- RFC 8032 operations -----------------------------------------------------------------------


def _expand(seed: bytes) -> tuple[int, bytes]:
    """Hash the seed (§5.1.5): the clamped secret scalar (reduced mod L) and the nonce prefix."""
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return a % _L, digest[32:]


def _hash_mod_l(*parts: bytes) -> int:
    h = hashlib.sha512()
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "little") % _L


def blinded_inverse(z: int) -> int:
    """``1 / z`` modulo p for a secret-dependent ``z``, blinded against timing.

    ``pow(z, -1, p)`` runs the extended Euclidean algorithm, whose running time depends on
    ``z``. Inverting ``z * r`` for a fresh random ``r`` and multiplying by ``r`` again gives the
    same result while decorrelating the timing from ``z``, for two extra multiplications. The
    blinding factor affects no output, so it comes from ``secrets``, not the provider.
    """
    r = secrets.randbelow(_P - 1) + 1
    return pow(z * r % _P, -1, _P) * r % _P


def public_key(seed: bytes) -> bytes:
    """Return the 32-byte public key of a 32-byte private key (seed), RFC 8032 §5.1.5."""
    a, _ = _expand(seed)
    x, y, z = _scalar_mult_base(a)
    return _encode(x, y, blinded_inverse(z))


def sign(seed: bytes, message: bytes) -> bytes:
    """Return the deterministic 64-byte signature ``R || S`` of ``message``, RFC 8032 §5.1.6."""
    a, prefix = _expand(seed)
    r = _hash_mod_l(prefix, message)
    ax, ay, az = _scalar_mult_base(a)
    rx, ry, rz = _scalar_mult_base(r)
    # One inversion for both encodings.
    inv = blinded_inverse(az * rz % _P)
    pub = _encode(ax, ay, inv * rz % _P)
    r_bytes = _encode(rx, ry, inv * az % _P)
    k = _hash_mod_l(r_bytes, pub, message)
    s = (r + k * a) % _L
    return r_bytes + s.to_bytes(32, "little")


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a valid Ed25519 signature (RFC 8032 §5.1.7, strict).

    Never raises for a 32-byte key and 64-byte signature; anything malformed gives ``False``.
    """
    if len(public_key) != 32 or len(signature) != 64:
        return False
    r_bytes = signature[:32]
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    point = _decode(public_key)
    if point is None:
        return False
    k = _hash_mod_l(r_bytes, public_key, message)
    ax, ay = point
    x, y, z = _double_scalar_mult(s, k, ((-ax) % _P, ay))  # [S]B - [k]A
    if z % _P == 0:  # cannot happen on this complete curve; keeps verify from raising
        return False
    return _encode(x, y, pow(z, -1, _P)) == r_bytes
