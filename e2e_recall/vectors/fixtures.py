"""The cast and the forging tools the vector generator shares.

Every key, id and nonce comes from one :class:`~e2e_recall.randomness.SeededRandom`
drawn in a fixed order, so the same seed always yields the same files.  The
forging helpers build the hostile inputs (signatures under the wrong label,
malleated or small-order signatures, keys of mixed order) that the library's
own API refuses to make.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings as sodium

from .. import wire
from ..device import DeviceSecrets
from ..domains import HASH_FINGERPRINT
from ..hashing import digest
from ..identity import fingerprint
from ..randomness import SeededRandom
from ..signing import SigningKey
from ..wrapping import WrapSuite
from .ed25519_alt import L

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "NON_CANONICAL_ED25519",
    "SMALL_ORDER_ED25519",
    "SMALL_ORDER_X25519",
    "T0",
    "Context",
    "container",
    "fixed",
    "flip_bit",
    "forge_mixed_order_key",
    "forge_small_order_r",
    "forge_torsion_r",
    "malleate",
]

T0 = 1_800_000_000_000  # 2027-01-15 08:00:00 UTC, in ms
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

ORDER8_POINT = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
IDENTITY_POINT = b"\x01" + bytes(31)
SMALL_ORDER_ED25519 = {
    "identity (order 1)": IDENTITY_POINT,
    "order 2": bytes.fromhex("ec" + "ff" * 30 + "7f"),
    "order 4": bytes(32),
    "order 8": ORDER8_POINT,
}
NON_CANONICAL_ED25519 = bytes.fromhex("ee" + "ff" * 30 + "7f")  # y = p + 1
SMALL_ORDER_X25519 = {
    "u = 0": bytes(32),
    "u = 1": b"\x01" + bytes(31),
    "order 8, first": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
    ),
    "order 8, second": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "u = p - 1": bytes.fromhex("ec" + "ff" * 30 + "7f"),
    "u = p (non-canonical 0)": bytes.fromhex("ed" + "ff" * 30 + "7f"),
    "u = p + 1 (non-canonical 1)": bytes.fromhex("ee" + "ff" * 30 + "7f"),
}


@dataclass
class Context:
    """The parties of every vector, drawn from one seed."""

    seed: str
    rng: SeededRandom
    alice: SigningKey
    bob: SigningKey
    carol: SigningKey
    relay: SigningKey
    alice_device: DeviceSecrets
    bob_device: DeviceSecrets
    bob_laptop: DeviceSecrets
    conversation: bytes
    other_conversation: bytes

    @classmethod
    def from_seed(cls, seed: str) -> Context:
        rng = SeededRandom(seed.encode())
        alice = SigningKey.generate(rng)
        bob = SigningKey.generate(rng)
        carol = SigningKey.generate(rng)
        relay = SigningKey.generate(rng)
        return cls(
            seed=seed,
            rng=rng,
            alice=alice,
            bob=bob,
            carol=carol,
            relay=relay,
            alice_device=DeviceSecrets.generate(WrapSuite.X25519, rng),
            bob_device=DeviceSecrets.generate(WrapSuite.X25519, rng),
            bob_laptop=DeviceSecrets.generate(WrapSuite.XWING, rng),
            conversation=rng(16),
            other_conversation=rng(16),
        )

    def uid(self, key: SigningKey) -> bytes:
        return fingerprint(key.public_key)

    def new_id(self) -> bytes:
        return self.rng(16)


def fixed(value: bytes) -> Callable[[int], bytes]:
    """An ``rng`` that returns ``value``: to encrypt with a nonce stated in a vector."""

    def rng(n: int) -> bytes:
        assert n == len(value), "a fixed rng asked for another length"
        return value

    return rng


def container(body: bytes, signature: bytes) -> bytes:
    """The signed-object container around raw body bytes (no checks)."""
    return wire.encode({"body": body, "signature": signature})


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 1 << bit
    return bytes(changed)


def malleate(signature: bytes) -> bytes:
    """R || (S + L): the same point equation, a non-canonical S."""
    s = int.from_bytes(signature[32:], "little") + L
    return signature[:32] + s.to_bytes(32, "little")


def _secret_scalar(key: SigningKey) -> int:
    h = hashlib.sha512(key.seed).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little")


def _challenge(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def forge_small_order_r(key: SigningKey, message: bytes) -> bytes:
    """A signature with R = identity and S = k*a: OpenSSL accepts it, libsodium must not."""
    k = _challenge(IDENTITY_POINT, key.public_key.raw, message)
    s = (k * _secret_scalar(key)) % L
    return IDENTITY_POINT + s.to_bytes(32, "little")


def forge_torsion_r(key: SigningKey, message: bytes) -> bytes:
    """R + T8 for an honest R: cofactored verifiers accept it, cofactorless ones (ours) refuse."""
    r = int.from_bytes(hashlib.sha512(b"torsion nonce" + message).digest(), "little") % L
    honest_r = sodium.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
    big_r = sodium.crypto_core_ed25519_add(honest_r, ORDER8_POINT)
    k = _challenge(big_r, key.public_key.raw, message)
    s = (r + k * _secret_scalar(key)) % L
    return big_r + s.to_bytes(32, "little")


def forge_mixed_order_key(
    key: SigningKey, label: bytes, payload_for: Callable[[bytes], bytes]
) -> tuple[bytes, bytes, bytes]:
    """A key A + T8 and a signature a cofactorless verifier accepts.

    ``payload_for`` is called with the forged key's fingerprint and returns
    the payload to sign; nonces are tried until the challenge is a multiple
    of 8, which makes the torsion part vanish from the verification equation.
    Returns (public key, signed payload, signature).
    """
    mixed = sodium.crypto_core_ed25519_add(key.public_key.raw, ORDER8_POINT)
    payload = payload_for(digest(HASH_FINGERPRINT, mixed))
    message = label + payload
    a = _secret_scalar(key)
    counter = 0
    while True:
        r = (
            int.from_bytes(
                hashlib.sha512(b"mixed-order nonce" + bytes([counter])).digest(), "little"
            )
            % L
        )
        big_r = sodium.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
        k = _challenge(big_r, mixed, message)
        if k % 8 == 0:
            s = (r + k * a) % L
            return mixed, payload, big_r + s.to_bytes(32, "little")
        counter += 1
