"""A group message, recalled, with the honest report per member -- through ``Client``.

Alice, Bob (a laptop and a phone he links to himself) and Carol each get a
profile in a temporary directory and register with a relay you run:

    e2e-recall-relay serve                  # in another terminal
    python examples/group_recall.py http://127.0.0.1:8765

Alice makes a group, sends to it, and recalls after Bob's laptop opened the
message, his phone only fetched it, and Carol was offline.  The report then
says, member by member and device by device, what the recall could undo.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
from pathlib import Path

from client.client import Client

PASSPHRASE = "example passphrase, not a secret"  # noqa: S105 (throwaway profiles)


async def main(url: str, root: Path) -> None:
    tag = secrets.token_hex(3)  # handles are unique per relay; run it as often as you like
    alice, laptop, carol = (
        Client.create(root / name, PASSPHRASE, strength="interactive")
        for name in ("alice", "bob-laptop", "carol")
    )
    clients = [alice, laptop, carol]
    try:
        for client, name in ((alice, "alice"), (laptop, "bob"), (carol, "carol")):
            await client.register(url, f"{name}-{tag}")

        # Bob links his phone: the laptop shows a code, the phone joins with it.
        link = await laptop.link_device()
        answering = asyncio.create_task(link.joined())
        phone, _ = await Client.join(
            root / "bob-phone", PASSPHRASE, link.code, link.relay_url, strength="interactive"
        )
        clients.append(phone)
        linked = await answering
        print(f"bob linked his phone {linked.device_id.hex()[:8]}: registered {linked.registered}")
        print(f"bob's devices: {len(await laptop.devices())}")

        # Alice pins her contacts and makes the group; she is its admin.
        await alice.add_contact("bob", f"bob-{tag}")
        await alice.add_contact("carol", f"carol-{tag}")
        await alice.create_group("trip", ["bob", "carol"])
        members = await alice.group_members("trip")
        print(
            "members: "
            + ", ".join(
                f"{m.name} ({len(m.devices)} device{'s' if len(m.devices) > 1 else ''}"
                + (", admin)" if m.admin else ")")
                for m in members
            )
        )

        sent = await alice.send_to_group("trip", "leaving at 9, not 10", timer=None)
        print(f"sent {sent.message_id.hex()[:8]} to trip")

        # Bob's laptop opens it; his phone fetches it but leaves it sealed; Carol is offline.
        await laptop.sync()
        await phone.sync()
        opened = await laptop.open_message(sent.message_id)
        print(f"bob's laptop reads: {opened.text}")

        recalled = await alice.recall(sent.message_id)
        print(f"recalled: already before {recalled.already_recalled}")
        for device in (laptop, phone):
            await device.sync()  # each checks the recall's signature, deletes, signs a receipt

        report = await alice.report(sent.message_id)
        print(f"report: {report.state}, relay receipt {report.relay_receipt}")
        for person, lines in report.by_person().items():
            print(f"  {person}: " + ", ".join(str(line.state) for line in lines))
            for line in lines:
                print(f"    device {line.device}: {line.sentence}")
    finally:
        for client in clients:
            await client.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/group_recall.py RELAY_URL")
    with tempfile.TemporaryDirectory(prefix="e2e-recall-example-") as folder:
        asyncio.run(main(sys.argv[1], Path(folder)))
