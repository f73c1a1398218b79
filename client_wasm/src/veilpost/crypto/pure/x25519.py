"""X25519 (RFC 7748 §5) on Python integers, tuned for CPython and Pyodide.

:func:`x25519` is the §5 function: the scalar is clamped (§5, ``decodeScalar25519``), the
u-coordinate is decoded with its top bit masked and reduced modulo ``p`` when it is not
canonical (``decodeUCoordinate``), and the Montgomery ladder of §5 runs over the 255 bits. The
all-zero output is returned as is; :mod:`veilpost.crypto.pure` rejects it (§6.1).

Technique
---------
- The ladder step is inlined into the loop (5M + 4S + one multiplication by ``a24 = 121665``)
  with everything in local variables. Products that only feed another multiplication are
  reduced with a *fold*, ``(c & M) + 19 * (c >> 255)`` (``2**255`` is congruent to 19), which
  leaves at most ~262 bits: still nine 30-bit digits, so the next multiplication costs the same
  as with a fully reduced operand, while the fold costs about half of ``% p``. The four outputs
  of each step are reduced with ``% p`` so that the values cannot grow.
- The conditional swap of §5 is not an ``if``: the pair order is chosen by slicing the tuple
  ``(x2, z2, x3, z3, x2, z2)`` with one of two precomputed slices, picked from the bits of
  ``k ^ (k >> 1)`` (the lazy swap of §5, one swap per bit). It costs the same as a branch and
  less than an arithmetic mask swap, and keeps the instruction sequence independent of the
  scalar's bits. Python integers give no constant-time guarantee anyway (see
  ``docs/security.md``).
- ``DA`` and ``CB`` are left unreduced (510 bits) because only their sum and difference are
  used: folding those two saves two folds per step.
- The final inversion uses ``pow(z, -1, p)`` (extended Euclid in C, several times faster than
  ``pow(z, p - 2, p)``), blinded by a random factor because ``z`` depends on the secret scalar
  (:func:`.ed25519.blinded_inverse`); ``z = 0`` (a low-order input) gives the all-zero output,
  as ``z**(p-2)`` would.

:func:`x25519_base` computes ``X25519(k, 9)`` without the ladder: the base point ``u = 9`` is
the Ed25519 base point ``B`` under the birational map ``u = (1 + y) / (1 - y)`` (RFC 7748
§4.1), so ``[k]B`` is computed with the fixed-base table of :mod:`.ed25519` (64 mixed additions
instead of 255 ladder steps) and mapped back. ``B`` has prime order ``L``, so ``k`` is reduced
modulo ``L`` first; the u-coordinate does not depend on the sign of ``x``.
"""

from __future__ import annotations

from veilpost.crypto.pure.ed25519 import _L, _scalar_mult_base, blinded_inverse

__all__ = ["x25519", "x25519_base"]

_P = 2**255 - 19
_MASK = (1 << 255) - 1
_A24 = 121665  # (A - 2) / 4 for Curve25519's A = 486662

# Lazy-swap bits, as the ASCII digits of format(..., "b"): "0" keeps the order (x2, z2, x3, z3),
# "1" swaps it; each maps to a slice of the 6-tuple (x2, z2, x3, z3, x2, z2).
_SWAP_SLICES: dict[int, slice] = {ord("0"): slice(0, 4), ord("1"): slice(2, 6)}


def _clamp(scalar: bytes) -> int:
    """decodeScalar25519 (§5): clear bits 0-2 and 255, set bit 254."""
    k = int.from_bytes(scalar, "little")
    return (k & ((1 << 254) - 8)) | (1 << 254)


def x25519(scalar: bytes, u: bytes) -> bytes:
    """Return ``X25519(scalar, u)`` (RFC 7748 §5) as 32 little-endian bytes; may be all zero."""
    p = _P
    m = _MASK
    a24 = _A24
    k = _clamp(scalar)
    x1 = (int.from_bytes(u, "little") & m) % p
    x2, z2, x3, z3 = 1, 0, x1, 1
    # Bit t of k ^ (k >> 1) is k_t XOR k_(t+1): whether to swap before processing bit t. k has
    # exactly 255 bits (bit 254 set), bit 0 clear, so no swap is left over after the loop.
    swaps = format(k ^ (k >> 1), "b").encode()
    for order in map(_SWAP_SLICES.__getitem__, swaps):
        state: tuple[int, ...] = (x2, z2, x3, z3, x2, z2)
        x2, z2, x3, z3 = state[order]
        a = x2 + z2
        b = x2 - z2
        da = (x3 - z3) * a
        cb = (x3 + z3) * b
        aa = a * a
        aa = (aa & m) + 19 * (aa >> 255)
        bb = b * b
        bb = (bb & m) + 19 * (bb >> 255)
        # DA and CB stay unreduced: only their sum and difference are folded, once each.
        t = da + cb
        t = (t & m) + 19 * (t >> 255)
        x3 = t * t % p
        t = da - cb
        t = (t & m) + 19 * (t >> 255)
        t *= t
        z3 = x1 * ((t & m) + 19 * (t >> 255)) % p
        x2 = aa * bb % p
        e = aa - bb
        z2 = e * (aa + a24 * e) % p
    if z2 == 0:
        return bytes(32)
    return (x2 * blinded_inverse(z2) % p).to_bytes(32, "little")


def x25519_base(scalar: bytes) -> bytes:
    """Return ``X25519(scalar, 9)``, the public key of ``scalar``, via the Edwards base table."""
    _, y, z = _scalar_mult_base(_clamp(scalar) % _L)
    # u = (1 + y) / (1 - y) with y = Y/Z. Z = Y would be the neutral point (u = 0); it cannot
    # happen for a clamped scalar (a multiple of 8 below 2**255 is never a multiple of L).
    denominator = (z - y) % _P
    if denominator == 0:
        return bytes(32)
    return ((z + y) * blinded_inverse(denominator) % _P).to_bytes(32, "little")
