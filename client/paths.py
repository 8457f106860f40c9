"""Where a profile lives: the platform's user data directory, or one given.

Several profiles on one machine (two people testing, or one person with two
relays) each get a directory of their own, chosen with ``--profile DIR`` or
``E2E_RECALL_PROFILE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

from .errors import KeystoreError

__all__ = [
    "DOWNLOADS_ENV",
    "PROFILE_ENV",
    "Profile",
    "default_downloads_dir",
    "default_profile_dir",
    "resolve_profile_dir",
]

PROFILE_ENV = "E2E_RECALL_PROFILE"
DOWNLOADS_ENV = "E2E_RECALL_DOWNLOADS"


def default_downloads_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where opened files are saved: ``E2E_RECALL_DOWNLOADS``, or the platform's downloads."""
    env = os.environ if env is None else env
    if env.get(DOWNLOADS_ENV):
        return Path(env[DOWNLOADS_ENV]).expanduser()
    return Path(platformdirs.user_downloads_dir())


def default_profile_dir() -> Path:
    return Path(platformdirs.user_data_dir("e2e-recall", appauthor=False))


def resolve_profile_dir(given: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The flag wins over the environment, which wins over the platform default."""
    env = os.environ if env is None else env
    if given:
        return Path(given).expanduser()
    if env.get(PROFILE_ENV):
        return Path(env[PROFILE_ENV]).expanduser()
    return default_profile_dir()


class Profile:
    """The files of one profile; nothing is created until :meth:`ensure`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def keystore(self) -> Path:
        return self.root / "keystore"

    @property
    def database(self) -> Path:
        return self.root / "client.db"

    @property
    def files(self) -> Path:
        """Decrypted attachments this profile saved (one directory per message)."""
        return self.root / "files"

    def ensure(self) -> None:
        """Create the directory, readable by its owner only."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.files.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeystoreError(
                f"Cannot create the profile directory {self.root} ({exc.strerror}).",
                "profile_unusable",
            ) from None

    def exists(self) -> bool:
        return self.keystore.is_file()
