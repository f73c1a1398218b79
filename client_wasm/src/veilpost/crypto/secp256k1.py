"""ECDSA over secp256k1 with public-key recovery, as Ethereum wallets sign (SEC 1, SEC 2).

Pure Python, standard library only (it runs in Pyodide): Jacobian coordinates, deterministic
nonces (RFC 6979 with HMAC-SHA-256), low-s signatures (EIP-2) and recovery of the public key
from ``(r, s, recovery id)``. Python integers are not constant-time: signing here is for an
agent binding its inbox to its wallet address once in a while, not for a hot path
(``docs/security.md``).
"""

from __future__ import annotations

import hashlib
import hmac

from veilpost.crypto.errors import InvalidKeyError, SignatureVerificationError

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)

Point = tuple[int, int]  # affine; the point at infinity is None where it can occur
_Jacobian = tuple[int, int, int]  # Z == 0: infinity


def _double(point: _Jacobian) -> _Jacobian:
    x, y, z = point
    if z == 0 or y == 0:
        return (0, 1, 0)
    yy = y * y % P
    s = 4 * x * yy % P
    m = 3 * x * x % P  # a = 0
    x3 = (m * m - 2 * s) % P
    return x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y * z % P


def _add(a: _Jacobian, b: _Jacobian) -> _Jacobian:
    if a[2] == 0:
        return b
    if b[2] == 0:
        return a
    x1, y1, z1 = a
    x2, y2, z2 = b
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(a) if s1 == s2 else (0, 1, 0)
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, h * z1 * z2 % P


def _multiply(point: Point, scalar: int) -> _Jacobian:
    result: _Jacobian = (0, 1, 0)
    addend: _Jacobian = (point[0], point[1], 1)
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _double(addend)
        scalar >>= 1
    return result


def _affine(point: _Jacobian) -> Point | None:
    x, y, z = point
    if z == 0:
        return None
    inverse = pow(z, -1, P)
    zz = inverse * inverse % P
    return x * zz % P, y * zz * inverse % P


def _check_private_key(private_key: bytes) -> int:
    if len(private_key) != 32:
        raise InvalidKeyError(f"a secp256k1 private key has 32 bytes, not {len(private_key)}")
    d = int.from_bytes(private_key, "big")
    if not 0 < d < N:
        raise InvalidKeyError("the secp256k1 private key is not in 1..n-1")
    return d


def public_key(private_key: bytes) -> Point:
    """The public point of a 32-byte big-endian private key."""
    point = _affine(_multiply(G, _check_private_key(private_key)))
    assert point is not None
    return point


def encode_uncompressed(point: Point) -> bytes:
    """SEC 1 uncompressed encoding: ``04 || X || Y``."""
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def _nonce(d: int, digest: bytes, attempt: int) -> int:
    """RFC 6979 §3.2 with HMAC-SHA-256: the ``attempt``-th candidate nonce for ``d``."""
    x = d.to_bytes(32, "big")
    h1 = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h1, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h1, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < N:
            if attempt == 0:
                return candidate
            attempt -= 1
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def sign_recoverable(private_key: bytes, digest: bytes) -> tuple[int, int, int]:
    """Sign a 32-byte digest: ``(r, s, recovery_id)`` with low ``s`` (``s <= n / 2``)."""
    if len(digest) != 32:
        raise ValueError(f"sign a 32-byte digest, not {len(digest)} bytes")
    d = _check_private_key(private_key)
    z = int.from_bytes(digest, "big") % N
    attempt = 0
    while True:
        k = _nonce(d, digest, attempt)
        attempt += 1
        point = _affine(_multiply(G, k))
        assert point is not None
        r = point[0] % N
        if r == 0:
            continue
        s = pow(k, -1, N) * (z + r * d) % N
        if s == 0:
            continue
        recovery_id = (point[1] & 1) | (2 if point[0] >= N else 0)
        if s > N // 2:
            s, recovery_id = N - s, recovery_id ^ 1
        return r, s, recovery_id


def recover(digest: bytes, r: int, s: int, recovery_id: int) -> Point:
    """The public key that made signature ``(r, s)`` of ``digest`` (SEC 1 §4.1.6), or
    ``SignatureVerificationError``. High ``s`` is refused (EIP-2: one signature per message)."""
    if len(digest) != 32:
        raise ValueError(f"recover from a 32-byte digest, not {len(digest)} bytes")
    if not (0 < r < N and 0 < s <= N // 2):
        raise SignatureVerificationError("r or s is out of range (s must be at most n/2)")
    if recovery_id not in (0, 1, 2, 3):
        raise SignatureVerificationError(f"recovery id {recovery_id} is not 0-3")
    x = r + N if recovery_id & 2 else r
    if x >= P:
        raise SignatureVerificationError("r + n is not a field element")
    y_squared = (pow(x, 3, P) + 7) % P
    y = pow(y_squared, (P + 1) // 4, P)
    if y * y % P != y_squared:
        raise SignatureVerificationError("r is not the x of a curve point")
    if y & 1 != recovery_id & 1:
        y = P - y
    z = int.from_bytes(digest, "big") % N
    r_inverse = pow(r, -1, N)
    point = _add(_multiply((x, y), s * r_inverse % N), _multiply(G, (-z * r_inverse) % N))
    recovered = _affine(point)
    if recovered is None:
        raise SignatureVerificationError("the signature recovers the point at infinity")
    return recovered
