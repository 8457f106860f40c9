"""What this device tells its person about devices: contacts' and its own user's.

A contact's devices change when they link or revoke one.  That is not a
change of identity (the safety number stays the same, nothing is refused),
but it is worth knowing: each time a directory refresh shows devices added
or removed compared with the last set this device verified, a note is kept
here ("alice linked a new device 3f2a91c0"), shown once by ``sync`` and
``watch`` and in the conversation's ``history``.  A ``device`` event from the
relay (one of our own devices was revoked) becomes such a note as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2e_recall import DeviceCertificate, wire
from e2e_recall.report import format_time

from .core import Core
from .store import Contact

__all__ = ["NOTE_KIND", "device_change_notes", "notes_for", "own_device_revoked", "take_notes"]

NOTE_KIND = "device"
_TABLE = """CREATE TABLE IF NOT EXISTS device_notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    peer BLOB NOT NULL,
    device_id BLOB NOT NULL,
    at INTEGER NOT NULL,
    text TEXT NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0
)"""
_LIMITS = wire.Limits(max_size=1 << 22, max_array=4096)


def _ensure(core: Core) -> None:
    core.store.execute(_TABLE)


def _ids(devices: bytes | None, core: Core, who: Contact) -> set[bytes] | None:
    """The device ids in a contact's stored set (None: never seen, so nothing to compare)."""
    if devices is None:
        return None
    from .contacts import _verified_certificates  # it imports this module

    signed = list(wire.decode(devices, limits=_LIMITS))
    return {
        c.device_id for c in _verified_certificates(core, core.verify_key(who.identity_key), signed)
    }


def device_change_notes(
    core: Core, who: Contact, before: bytes | None, after: Sequence[DeviceCertificate]
) -> None:
    """Note the devices a refresh of ``who`` added or removed (call inside a transaction)."""
    old = _ids(before, core, who)
    if old is None:
        return
    new = {c.device_id for c in after}
    if old == new:
        return
    _ensure(core)
    now = core.clock()
    for device_id in sorted(new - old):
        _add(
            core,
            who.user_id,
            device_id,
            now,
            f"{who.name} linked a new device {device_id.hex()[:8]}",
        )
    for device_id in sorted(old - new):
        _add(core, who.user_id, device_id, now, f"{who.name} removed device {device_id.hex()[:8]}")


def own_device_revoked(core: Core, device_id: bytes, revoked_at: int) -> str:
    """Note that one of our own devices was revoked; the sentence to show."""
    text = f"Your device {device_id.hex()[:8]} was revoked on {format_time(revoked_at)}."
    _ensure(core)
    with core.store.transaction():
        _add(core, core.user_id, device_id, core.clock(), text, shown=1)
    return text


def _add(core: Core, peer: bytes, device_id: bytes, at: int, text: str, shown: int = 0) -> None:
    core.store.execute(
        "INSERT INTO device_notes (peer, device_id, at, text, shown) VALUES (?, ?, ?, ?, ?)",
        (peer, device_id, at, text, shown),
    )


def take_notes(core: Core) -> list[tuple[bytes, bytes, str]]:
    """Notes not shown yet, as (peer, device id, text), marked shown."""
    _ensure(core)
    with core.store.transaction():
        rows = core.store.execute(
            "SELECT seq, peer, device_id, text FROM device_notes WHERE shown = 0 ORDER BY seq"
        ).fetchall()
        core.store.execute("UPDATE device_notes SET shown = 1 WHERE shown = 0")
    return [(bytes(r[1]), bytes(r[2]), str(r[3])) for r in rows]


def notes_for(core: Core, peer: bytes) -> list[tuple[int, str]]:
    """Every note about ``peer``'s devices, oldest first, as (time, text)."""
    _ensure(core)
    rows = core.store.execute(
        "SELECT at, text FROM device_notes WHERE peer = ? ORDER BY seq", (peer,)
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
