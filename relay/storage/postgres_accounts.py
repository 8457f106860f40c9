"""The PostgreSQL backend's accounts: users, devices, challenges, sessions, handles.

The same SQL as the SQLite backend's account methods (:mod:`.sqlite`), with
one difference that matters: SQLite has a single writer, so "look, then
insert" cannot race there, while here two relay processes may register the
same handle at the same moment.  SERIALIZABLE makes one of them retry (and
then see the other's row), and a unique violation that still gets through is
answered as the same :class:`~relay.errors.Conflict` the look would have
given, never as a database failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from ..errors import Conflict
from .base import DeviceRecord, SessionRecord, UserRecord
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = ["DEVICE_COLUMNS", "PostgresAccounts", "to_device"]

DEVICE_COLUMNS = "device_id, user_id, certificate, signing_key, created_at, revoked_at, acked_seq"
_USER_COLUMNS = "user_id, identity_key, handle, created_at"
_SESSION_COLUMNS = "token_hash, user_id, device_id, created_at, expires_at"
_CHALLENGE_SLACK = 256  # below the cap by more than this, a challenge is stored without a count
_FAST_CHALLENGES = 32  # such uncounted stores in flight at once, per relay process
_SWEEP_EVERY_MS = 1000  # expired sessions are deleted after a login at most this often


def to_device(row: asyncpg.Record) -> DeviceRecord:
    return DeviceRecord(*row)


def _storable(handle: str) -> bool:
    """Whether PostgreSQL's text can hold ``handle`` at all (no NUL, valid UTF-8).

    One it cannot hold was never stored, so a lookup finds nothing -- as the
    same lookup on SQLite does -- rather than failing as a database error.
    """
    if "\x00" in handle:
        return False
    try:
        handle.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clash(exc: asyncpg.UniqueViolationError) -> Conflict:
    """The Conflict a unique violation of add_device stands for (a concurrent registration)."""
    constraint = getattr(exc, "constraint_name", "") or ""
    if "handle" in constraint:
        return Conflict("That handle is taken.", code="handle_taken")
    if constraint.startswith("devices"):
        return Conflict("That device is already registered.", code="device_exists")
    return Conflict(
        "That user id is registered with another identity key.", code="identity_mismatch"
    )


class PostgresAccounts:
    """The account store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]
    _challenge_gate: asyncio.Semaphore | None = None  # made on first use, in the relay's loop
    _sweeping = False  # a delete of expired sessions is under way in this process
    _swept_at = -(2**62)  # when it last ran (the new session's created_at)

    async def add_device(self, user: UserRecord, device: DeviceRecord) -> None:
        async def run(tx: Tx) -> None:
            conn = tx.conn
            row = await conn.fetchrow(
                "SELECT identity_key FROM users WHERE user_id = $1 FOR UPDATE", user.user_id
            )
            try:
                if row is None:
                    if user.handle and await conn.fetchval(
                        "SELECT 1 FROM users WHERE handle = $1", user.handle
                    ):
                        raise Conflict("That handle is taken.", code="handle_taken")
                    await conn.execute(
                        f"INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $2, $3, $4)",
                        user.user_id,
                        user.identity_key,
                        user.handle,
                        user.created_at,
                    )
                elif bytes(row[0]) != user.identity_key:
                    raise Conflict(
                        "That user id is registered with another identity key.",
                        code="identity_mismatch",
                    )
                if await conn.fetchval(
                    "SELECT 1 FROM devices WHERE device_id = $1", device.device_id
                ):
                    raise Conflict("That device is already registered.", code="device_exists")
                await conn.execute(
                    f"INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    device.device_id,
                    device.user_id,
                    device.certificate,
                    device.signing_key,
                    device.created_at,
                    device.revoked_at,
                    device.acked_seq,
                )
                tx.signal("devices", [device.user_id, device.device_id])
            except asyncpg.UniqueViolationError as exc:
                raise _clash(exc) from None

        await self._engine.write(run)

    async def get_user(
        self, user_id: bytes | None = None, handle: str | None = None
    ) -> UserRecord | None:
        async def run(conn: Conn) -> UserRecord | None:
            if user_id is not None:
                row = await conn.fetchrow(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1", user_id
                )
            elif handle is not None and _storable(handle):
                row = await conn.fetchrow(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE handle = $1", handle
                )
            else:
                row = None
            return UserRecord(*row) if row else None

        return await self._engine.read(run)

    async def release_handle(self, handle: str) -> bytes | None:
        if not _storable(handle):
            return None

        async def run(tx: Tx) -> bytes | None:
            found = await tx.conn.fetchval(
                "UPDATE users SET handle = NULL WHERE handle = $1 RETURNING user_id", handle
            )
            return bytes(found) if found is not None else None

        return await self._engine.write(run)

    async def get_devices(self, user_id: bytes) -> list[DeviceRecord]:
        async def run(conn: Conn) -> list[DeviceRecord]:
            found = await conn.fetch(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id",
                user_id,
            )
            return [to_device(row) for row in found]

        return await self._engine.read(run)

    async def get_device(self, device_id: bytes) -> DeviceRecord | None:
        async def run(conn: Conn) -> DeviceRecord | None:
            row = await conn.fetchrow(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1", device_id
            )
            return to_device(row) if row else None

        return await self._engine.read(run)

    async def put_challenge(self, challenge: bytes, expires_at: int, limit: int) -> bool:
        """Store a challenge unless ``limit`` unexpired ones are outstanding.

        Every login and registration starts here, so a burst of them must not
        queue up: a write that counts the whole table conflicts with every
        concurrent insert under SERIALIZABLE, and retrying them one by one
        held all the relay processes together to about 160 a second (SQLite's
        group commit takes thousands).  So while the count, read on a
        snapshot, is more than ``_CHALLENGE_SLACK`` below the cap, the write
        only inserts, reading nothing another write changes; nearer the cap it
        counts and inserts in one transaction, as SQLite does.  The cap can
        then be passed only by uncounted inserts still in flight, at most
        ``_FAST_CHALLENGES`` per relay process: it bounds a flood, and still
        does.  Expired rows are not counted; the retention job deletes them
        (:meth:`forget_challenges`).
        """
        now = self._clock()
        if self._challenge_gate is None:
            self._challenge_gate = asyncio.Semaphore(_FAST_CHALLENGES)

        async def outstanding(conn: Conn) -> int:
            found = await conn.fetchval(
                "SELECT count(*) FROM challenges WHERE expires_at >= $1", now
            )
            return int(found)

        async def insert(tx: Tx) -> bool:
            await tx.conn.execute(
                "INSERT INTO challenges (challenge, expires_at) VALUES ($1, $2)",
                challenge,
                expires_at,
            )
            return True

        async with self._challenge_gate:
            if await self._engine.read(outstanding) + _CHALLENGE_SLACK < limit:
                return await self._engine.write(insert)

        async def run(tx: Tx) -> bool:
            conn = tx.conn
            await conn.execute("DELETE FROM challenges WHERE expires_at < $1", now)
            if await conn.fetchval("SELECT count(*) FROM challenges") >= limit:
                return False
            await conn.execute(
                "INSERT INTO challenges (challenge, expires_at) VALUES ($1, $2)",
                challenge,
                expires_at,
            )
            return True

        return await self._engine.write(run)

    async def forget_challenges(self, now: int) -> int:
        async def run(tx: Tx) -> int:
            gone = await tx.conn.fetch(
                "DELETE FROM challenges WHERE expires_at < $1 RETURNING 1", now
            )
            return len(gone)

        return await self._engine.write(run)

    async def take_challenge(self, challenge: bytes, now: int) -> bool:
        async def run(tx: Tx) -> bool:
            taken = await tx.conn.fetchval(
                "DELETE FROM challenges WHERE challenge = $1 AND expires_at >= $2 RETURNING 1",
                challenge,
                now,
            )
            return taken is not None

        return await self._engine.write(run)

    async def put_session(self, session: SessionRecord) -> None:
        """Store a session; then, at most once a second here, delete the expired ones.

        SQLite deletes the expired sessions in the transaction that stores a
        new one.  Here that transaction would both read a range of the
        expiry index and insert into it, so concurrent logins conflicted
        with each other under SERIALIZABLE and retried one by one (1,000 at
        once took 6.6 s).  An insert alone reads nothing another login
        writes, and the delete, in its own transaction, conflicts with no
        insert; the relay refuses an expired session whether or not its row
        is gone yet (:meth:`~relay.accounts.Accounts.authenticate`).
        """

        async def insert(tx: Tx) -> None:
            await tx.conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)",
                session.token_hash,
                session.user_id,
                session.device_id,
                session.created_at,
                session.expires_at,
            )

        async def sweep(tx: Tx) -> None:
            await tx.conn.execute("DELETE FROM sessions WHERE expires_at < $1", session.created_at)

        await self._engine.write(insert)
        if self._sweeping or session.created_at - self._swept_at < _SWEEP_EVERY_MS:
            return
        self._sweeping = True
        try:
            await self._engine.write(sweep)
            self._swept_at = session.created_at
        finally:
            self._sweeping = False

    async def get_session(self, token_hash: bytes) -> SessionRecord | None:
        async def run(conn: Conn) -> SessionRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = $1", token_hash
            )
            return SessionRecord(*row) if row else None

        return await self._engine.read(run)

    async def delete_session(self, token_hash: bytes) -> None:
        async def run(tx: Tx) -> None:
            await tx.conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)
            tx.signal("logout", [token_hash])

        await self._engine.write(run)
