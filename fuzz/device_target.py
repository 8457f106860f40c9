"""The device fuzz target: link codes, sealed link messages, approvals and device revocations.

Kept apart from targets.py like the group target.  A sealed link message is
stopped by its AEAD unless it was sealed under the key the target opens it
with, so the target seals the fuzzer's bytes itself in some modes (or takes
the link secret from the input, as the seeds from the vectors do), and the
parsing and the checks behind the AEAD are reached.
"""

from __future__ import annotations

import nacl.bindings as sodium
from targets import DEVICE_CERTIFICATE, NOW, SIGNER_PUBLIC, InvariantBroken, resigned

import e2e_recall as er
from e2e_recall.device_admin import verify_device_approval, verify_device_revocation
from e2e_recall.domains import AEAD_LINK_ANSWER, AEAD_LINK_REQUEST, SIG_DEVICE_REVOCATION
from e2e_recall.errors import E2ERecallError
from e2e_recall.link_code import LinkKeys, format_code, link_keys, parse_code
from e2e_recall.linking import LinkRequest, open_link_answer, open_link_request

_KEYS = link_keys(bytes(range(16)))
_NEW = er.DeviceSecrets.generate(rng=er.SeededRandom(b"fuzz linked device"))
_EXPECTED = LinkRequest(_NEW.device_id, _NEW.signing_key.public_key, _NEW.wrap_key.public_key, None)
_RELAY = bytes(range(32))
_MODES = 7


def _sealed(plain: bytes, label: bytes, keys: LinkKeys = _KEYS) -> bytes:
    nonce = bytes(24)
    aad = label + keys.link_id
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, aad, nonce, keys.link_key
    )


def _code(data: bytes) -> None:
    """Whatever parses must format to a code that parses to the same secret, in any case."""
    secret = parse_code(data.decode("latin-1"))
    shown = format_code(secret)
    if parse_code(shown) != secret or parse_code(shown.lower()) != secret:
        raise InvariantBroken("a link code that does not survive formatting")


def _keys_from(data: bytes) -> tuple[LinkKeys, bytes]:
    """The input's first 16 bytes as the link secret (as the seeds carry it), and the rest."""
    return link_keys(data[:16].ljust(16, b"\x00")), data[16:]


def devices(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % _MODES, data[1:]
    try:
        if mode == 0:
            _code(rest)
        elif mode == 1:
            keys, sealed = _keys_from(rest)
            open_link_request(sealed, link_id=keys.link_id, link_key=keys.link_key)
        elif mode == 2:
            sealed = _sealed(rest, AEAD_LINK_REQUEST)
            open_link_request(sealed, link_id=_KEYS.link_id, link_key=_KEYS.link_key)
        elif mode in (3, 4):
            keys, sealed = (
                _keys_from(rest) if mode == 3 else (_KEYS, _sealed(rest, AEAD_LINK_ANSWER))
            )
            open_link_answer(
                sealed, link_id=keys.link_id, link_key=keys.link_key, expected=_EXPECTED, now=NOW
            )
        elif mode == 5:
            signed = resigned(SIG_DEVICE_REVOCATION, rest[1:]) if rest[:1] == b"\x01" else rest
            verify_device_revocation(signed, SIGNER_PUBLIC, relay=_RELAY)
        else:
            verify_device_approval(
                rest, SIGNER_PUBLIC, relay=_RELAY, certificate=DEVICE_CERTIFICATE.signed
            )
    except E2ERecallError:
        return
