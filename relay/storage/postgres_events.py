"""The PostgreSQL backend's event queue as the devices read it: fetch and acknowledge.

Events are queued by the stores that decide them (:func:`.postgres_rows.insert_events`,
under the per-device locks that keep their numbers in commit order); here a
device reads its queue in order and drops what it confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import EventKind, EventRecord
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = ["PostgresEvents"]


class PostgresEvents:
    """The event store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine

    async def events_since(self, device_id: bytes, after: int, limit: int) -> list[EventRecord]:
        async def run(conn: Conn) -> list[EventRecord]:
            found = await conn.fetch(
                "SELECT seq, device_id, kind, message_id, payload, created_at FROM events "
                "WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                device_id,
                after,
                limit,
            )
            return [EventRecord(r[0], r[1], EventKind(r[2]), r[3], r[4], r[5]) for r in found]

        return await self._engine.read(run)

    async def ack_events(self, acks: Mapping[bytes, int]) -> None:
        """Raise each device's acknowledged number and drop its events up to it, in one write.

        Devices are updated in a fixed order, so two acknowledgements for an
        overlapping set of devices lock their rows in the same order.
        """
        pairs = sorted((device_id, upto) for device_id, upto in acks.items())
        if not pairs:
            return
        devices = [device_id for device_id, _ in pairs]
        uptos = [upto for _, upto in pairs]

        async def run(tx: Tx) -> None:
            await tx.conn.execute(
                "UPDATE devices SET acked_seq = greatest(devices.acked_seq, a.upto) "
                "FROM unnest($1::bytea[], $2::bigint[]) AS a(device_id, upto) "
                "WHERE devices.device_id = a.device_id",
                devices,
                uptos,
            )
            await tx.conn.execute(
                "DELETE FROM events USING unnest($1::bytea[], $2::bigint[]) AS a(device_id, upto) "
                "WHERE events.device_id = a.device_id AND events.seq <= a.upto",
                devices,
                uptos,
            )

        await self._engine.write(run)
