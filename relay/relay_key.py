"""The relay's own Ed25519 key: it signs purge receipts.

Generated on first start into the data directory (mode 0600, written
atomically), loaded on every later start, and published at
``/.well-known/e2e-recall`` so senders can verify what the relay signed.
"""

from __future__ import annotations

import os
from pathlib import Path

from e2e_recall.errors import DecodeError
from e2e_recall.keyfile import dump_signing_key, load_signing_key
from e2e_recall.signing import SigningKey

__all__ = ["KEY_FILE", "RelayKeyError", "load_or_create_relay_key"]

KEY_FILE = "relay.key"


class RelayKeyError(Exception):
    """The relay key file exists but cannot be used; the message says what to do."""


def load_or_create_relay_key(data_dir: Path) -> SigningKey:
    path = data_dir / KEY_FILE
    if path.exists():
        try:
            return load_signing_key(path.read_bytes())
        except DecodeError as exc:
            raise RelayKeyError(
                f"{path} is not a relay key ({exc.reason}); restore it from a backup"
            ) from None
    # 0700 whatever the umask: with PostgreSQL no database file creates it private first.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SigningKey.generate()
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, dump_signing_key(key))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    return key
