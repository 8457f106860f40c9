"""Strict Ed25519 checks without libsodium, for checking the vectors.

The product verifies with libsodium.  Here the signature equation is checked
by OpenSSL (through ``cryptography``), and the strictness rules the protocol
adds -- canonical encodings, no small-order ``R``, a public key of prime
order, ``S < L`` -- are checked on the decoded points with plain integer
arithmetic on the curve (RFC 8032, section 5.1.3).  The arithmetic only
classifies points in test tooling; nothing here signs, and the product
never calls it.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["L", "is_small_order_encoding", "strict_public_key_ok", "strict_verify"]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, P - 2, P)) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
_IDENTITY: Point = (0, 1, 1, 0)


def _decode(encoded: bytes) -> Point | None:
    """Decode a canonical point encoding, or None if it is not one."""
    if len(encoded) != 32:
        return None
    value = int.from_bytes(encoded, "little")
    sign, y = value >> 255, value & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (_D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        x = (x * _SQRT_M1) % P
        if (v * x * x - u) % P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, (x * y) % P)


def _add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e = ((y1 - x1) * (y2 - x2)) % P
    f = ((y1 + x1) * (y2 + x2)) % P
    g = (2 * t1 * t2 * _D) % P
    h = (2 * z1 * z2) % P
    i, j, k, m = f - e, h - g, h + g, f + e
    return ((i * j) % P, (k * m) % P, (j * k) % P, (i * m) % P)


def _multiply(scalar: int, point: Point) -> Point:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _is_identity(point: Point) -> bool:
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def is_small_order_encoding(encoded: bytes) -> bool:
    """True if ``encoded`` is a canonical encoding of a point of order 1, 2, 4 or 8."""
    point = _decode(encoded)
    return point is not None and _is_identity(_multiply(8, point))


def strict_public_key_ok(encoded: bytes) -> bool:
    """A public key the protocol accepts: canonical, on the curve, of prime order L."""
    point = _decode(encoded)
    if point is None or _is_identity(_multiply(8, point)):
        return False
    return _is_identity(_multiply(L, point))


def strict_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Protocol-strict Ed25519 verification using OpenSSL for the equation."""
    if len(signature) != 64 or not strict_public_key_ok(public_key):
        return False
    if int.from_bytes(signature[32:], "little") >= L:
        return False
    if is_small_order_encoding(signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True
