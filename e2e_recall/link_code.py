"""The one-time code that links a new device, and the keys derived from it.

The old device draws a 16-byte secret ``S`` and shows it as a code a person
can read aloud and type: ``S`` in Crockford base32 (26 symbols, most significant first;
the first holds only 3 bits, so it is 0 to 7) followed by a 2-symbol
checksum, 28 symbols in groups of four joined by ``-``.  Input is forgiving
(case, ``I``/``L`` read as ``1``, ``O`` as ``0``, spaces and dashes
anywhere) but strict about content: a code that does not decode, or whose
checksum does not match, is :class:`~e2e_recall.errors.BadCode`, so a typo is
reported as a typo rather than deriving keys that silently open nothing.

The two checksum symbols make the 28 symbols a codeword of a Reed-Solomon
code over GF(32) (field polynomial ``x^5 + x^2 + 1``, ``a = x``): with the
symbols ``v_0 .. v_27`` in the order shown, ``sum v_i a^i = 0`` and ``sum
v_i a^(2i) = 0``.  The code has distance 3, so any one or two wrong
symbols -- every substitution and every swap of two symbols -- are always
detected, never read as another secret.  The checksum is no secret and adds
no strength.  The code carries the whole 128 bits because
the relay sees ciphertext made from it and there is no vetted PAKE in the
libraries this project may use (docs/threat-model.md).

From ``S``: ``link_id = HKDF-SHA256(S, salt="", info=KDF_LINK_ID)[:16]``
names the relay's slot, and ``link_key = HKDF-SHA256(S, salt="",
info=KDF_LINK_KEY)`` (32 bytes) seals both messages of the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .domains import ID_LEN, KDF_LINK_ID, KDF_LINK_KEY, KEY_LEN, LINK_SECRET_LEN
from .errors import BadCode, UsageError
from .randomness import Rng, system_random

__all__ = [
    "CODE_SYMBOLS",
    "LinkKeys",
    "format_code",
    "link_keys",
    "new_link_secret",
    "parse_code",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_SECRET_SYMBOLS = 26  # 130 bits: the first symbol holds the top 3 bits of S
_CHECK_SYMBOLS = 2
CODE_SYMBOLS = _SECRET_SYMBOLS + _CHECK_SYMBOLS
_GROUP = 4
_READ_AS = {"I": "1", "L": "1", "O": "0"}


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """What both devices derive from the secret: the slot's name and the sealing key."""

    link_id: bytes
    link_key: bytes


def new_link_secret(rng: Rng = system_random) -> bytes:
    return rng(LINK_SECRET_LEN)


def _field_tables() -> tuple[list[int], list[int]]:
    """Exponents and logarithms of GF(32) with ``x^5 + x^2 + 1``."""
    exp, log = [0] * 62, [0] * 32
    value = 1
    for power in range(31):
        exp[power] = exp[power + 31] = value
        log[value] = power
        value <<= 1
        if value & 32:
            value ^= 0b100101
    return exp, log


_EXP, _LOG = _field_tables()


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    return 0 if a == 0 else _EXP[(_LOG[a] - _LOG[b]) % 31]


def _syndromes(values: list[int]) -> tuple[int, int]:
    s1 = s2 = 0
    for index, value in enumerate(values):
        s1 ^= _mul(value, _EXP[index % 31])
        s2 ^= _mul(value, _EXP[(2 * index) % 31])
    return s1, s2


def _check_symbols(data: list[int]) -> list[int]:
    """The two symbols that make ``data + [c, d]`` a codeword (both syndromes zero)."""
    s1, s2 = _syndromes(data)
    a, b = _EXP[_SECRET_SYMBOLS], _EXP[_SECRET_SYMBOLS + 1]
    a2, b2 = _mul(a, a), _mul(b, b)
    det = _mul(a, b2) ^ _mul(b, a2)
    return [_div(_mul(s1, b2) ^ _mul(s2, b), det), _div(_mul(a, s2) ^ _mul(a2, s1), det)]


def _digits(value: int, count: int) -> list[int]:
    out = []
    for _ in range(count):
        out.append(value & 31)
        value >>= 5
    return out[::-1]


def format_code(secret: bytes) -> str:
    """The code for ``secret``: 28 symbols in groups of four, e.g. ``2K7Q-...-X9``."""
    if type(secret) is not bytes or len(secret) != LINK_SECRET_LEN:
        raise UsageError("bad_length", "a link secret is 16 bytes")
    data = _digits(int.from_bytes(secret, "big"), _SECRET_SYMBOLS)
    text = "".join(ALPHABET[d] for d in data + _check_symbols(data))
    return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def parse_code(text: str) -> bytes:
    """The secret a typed code stands for; :class:`BadCode` for anything else."""
    if type(text) is not str or len(text) > 4 * CODE_SYMBOLS:
        raise BadCode("bad_code", "not a link code")
    cleaned = [_READ_AS.get(c, c) for c in text.upper() if c not in " -\t"]
    if len(cleaned) != CODE_SYMBOLS or any(c not in ALPHABET for c in cleaned):
        raise BadCode("bad_code", f"a link code has {CODE_SYMBOLS} symbols of 0-9 and A-Z")
    values = [ALPHABET.index(symbol) for symbol in cleaned]
    if _syndromes(values) != (0, 0):
        raise BadCode("bad_checksum", "the link code's checksum does not match: a typo?")
    value = 0
    for digit in values[:_SECRET_SYMBOLS]:
        value = value << 5 | digit
    if value >> (8 * LINK_SECRET_LEN):
        raise BadCode("bad_code", "the first symbol of a link code is 0 to 7")
    return value.to_bytes(LINK_SECRET_LEN, "big")


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=None, info=info).derive(secret)


def link_keys(secret: bytes) -> LinkKeys:
    """``link_id`` and ``link_key`` from the secret (salt empty: HKDF's zero salt)."""
    if type(secret) is not bytes or len(secret) != LINK_SECRET_LEN:
        raise UsageError("bad_length", "a link secret is 16 bytes")
    return LinkKeys(_hkdf(secret, KDF_LINK_ID)[:ID_LEN], _hkdf(secret, KDF_LINK_KEY))
