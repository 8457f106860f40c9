"""``e2e-recall demo``: the situations people recall messages in, played end to end.

A real relay runs in this process on 127.0.0.1 (a random port, a temporary
SQLite database); Alice and Bob are real clients with their own profiles,
talking to it over HTTP.  Bob has a laptop and a phone (linked to his
identity with a one-time code, as ``device link`` does), and the phone is
offline for part of the story.  One clock drives relay and clients alike,
so "ten minutes later" takes no time.  Nothing here is simulated except
the passing of time: the reports are the relay's, checked by Alice's client.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from rich.console import Console

from .client import Client, Entry
from .core import system_clock
from .errors import ClientError, RecallNotAccepted
from .render import print_entries, print_report, short

__all__ = ["run_demo"]

MINUTE = 60_000
_PASSPHRASE = "demo passphrase, not a secret"  # noqa: S105 (throwaway demo profiles)


class DemoWentWrong(ClientError):
    """The story did not go as the product promises: a bug, said as one sentence."""

    def __init__(self, what: str) -> None:
        super().__init__(f"The demo went wrong: {what}.", "demo_failed")


class DemoClock:
    """Wall-clock time that the story can move forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return system_clock() + self.offset

    def advance(self, ms: int) -> None:
        self.offset += ms


class Story:
    def __init__(self, console: Console, pause: float) -> None:
        self.out = console
        self.pause = pause
        self.scene_number = 0

    async def scene(self, title: str, text: str) -> None:
        if self.scene_number and self.pause:
            await asyncio.sleep(self.pause)
        self.scene_number += 1
        self.out.print()
        self.out.rule(f"{self.scene_number}. {title}")
        self.out.print(text, highlight=False)

    def say(self, who: str, text: str) -> None:
        self.out.print(f"[bold]{who}[/]: {text}", highlight=False)

    def bob_sees(self, device: str, entries: list[Entry]) -> None:
        self.out.print(f"[bold]Bob's {device}[/] shows:", highlight=False)
        print_entries(self.out, entries, title=f"Bob's {device}: conversation with alice")


async def _start_relay(data_dir: Path, clock: DemoClock) -> tuple[str, object]:
    """The real relay application, in this process (the demo's only use of relay/)."""
    from aiohttp import web

    from relay.app import create_app
    from relay.config import load_config

    logging.getLogger("relay").setLevel(logging.WARNING)
    config = load_config(env={}, flags={"data_dir": str(data_dir), "port": 0, "host": "127.0.0.1"})
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}", runner


async def run_demo(console: Console, *, pause: float = 0.0) -> int:
    with tempfile.TemporaryDirectory(prefix="e2e-recall-demo-") as tmp:
        root = Path(tmp)
        clock = DemoClock()
        url, runner = await _start_relay(root / "relay", clock)
        try:
            await _play(Story(console, pause), root, url, clock)
        finally:
            await runner.cleanup()  # type: ignore[attr-defined]
    return 0


def _people(root: Path, clock: DemoClock) -> tuple[Client, Client]:
    def make(name: str) -> Client:
        return Client.create(
            root / name,
            _PASSPHRASE,
            strength="interactive",  # a throwaway profile; real ones default to "moderate"
            clock=clock,
        )

    return make("alice"), make("bob-laptop")


async def _link_phone(root: Path, url: str, laptop: Client, clock: DemoClock) -> Client:
    """Bob's phone joins his identity with the code his laptop shows, as 'device link' does."""
    link = await laptop.link_device()
    answering = asyncio.create_task(link.joined())
    try:
        phone, _ = await Client.join(
            root / "bob-phone", _PASSPHRASE, link.code, url, strength="interactive", clock=clock
        )
    finally:
        await answering
    return phone


async def _introduce(
    root: Path, url: str, alice: Client, laptop: Client, clock: DemoClock
) -> Client:
    await alice.register(url, "alice")
    await laptop.register(url, "bob")
    await laptop.add_contact("alice", "alice")
    phone = await _link_phone(root, url, laptop, clock)
    await alice.add_contact("bob", "bob")
    return phone


async def _show_report(story: Story, alice: Client, message_id: bytes) -> None:
    story.out.print("[bold]Alice's report[/]:", highlight=False)
    print_report(story.out, await alice.report(message_id), "bob")


async def _play(story: Story, root: Path, url: str, clock: DemoClock) -> None:
    story.out.print(f"A relay is running at {url} (temporary SQLite database).", highlight=False)
    alice, laptop = _people(root, clock)
    phone: Client | None = None
    try:
        phone = await _introduce(root, url, alice, laptop, clock)
        story.out.print(
            "Alice has one device. Bob has a laptop (device "
            f"{laptop.device_id.hex()[:8]}) and a phone (device {phone.device_id.hex()[:8]}), "
            "both under one identity: the phone joined with a one-time code the laptop "
            "showed ('e2e-recall device link').",
            highlight=False,
        )
        await _wrong_person(story, alice, laptop, phone)
        await _delivered_not_opened(story, alice, laptop, phone)
        await _wrong_attachment(story, root, alice, laptop, phone)
        await _opened_then_recalled(story, alice, laptop, phone, clock)
        await _typo_replaced(story, alice, laptop, phone)
        await _window_closed(story, alice, laptop, phone, clock)
        await _offline_device(story, alice, laptop, phone, clock)
        await _group_recall(story, root, url, alice, laptop, phone, clock)
    finally:
        for client in (alice, laptop, phone):
            if client is not None:
                await client.close()
    story.out.print()
    story.out.rule("The end")
    story.out.print(
        "Every line above is the relay's signed account, checked by Alice's client, or a "
        "device's own signed receipt. Nothing claims more than is true: once a key was "
        "released, the message was possibly already read, copied or screenshotted."
    )


async def _wrong_person(story: Story, alice: Client, laptop: Client, phone: Client) -> None:
    await story.scene(
        "The wrong person",
        "Alice means to tell Carol about Bob's surprise party, but picks Bob. Both of Bob's "
        "devices are asleep; she notices at once and recalls it.",
    )
    sent = await alice.send("bob", "Carol: the surprise party for Bob is Friday at 8, don't tell!")
    story.say("alice", f"sent {short(sent.message_id)} to bob, then: e2e-recall recall")
    await alice.recall(sent.message_id)
    await _show_report(story, alice, sent.message_id)
    await laptop.sync()
    await phone.sync()
    story.out.print("Bob's devices wake up and sync. Nothing to explain, so nothing is shown:")
    story.bob_sees("laptop", laptop.history("alice"))


async def _delivered_not_opened(story: Story, alice: Client, laptop: Client, phone: Client) -> None:
    await story.scene(
        "Delivered, but never opened",
        "Alice pastes the office door code into the chat by mistake. Bob's devices receive "
        "the ciphertext, but the key stays at the relay until Bob opens it.",
    )
    sent = await alice.send("bob", "door code is 4711#")
    await laptop.sync()
    await phone.sync()
    story.bob_sees("laptop", laptop.history("alice"))
    await alice.recall(sent.message_id)
    story.say("alice", f"recalls {short(sent.message_id)}")
    await _show_report(story, alice, sent.message_id)
    await laptop.sync()
    await phone.sync()
    await alice.sync()
    story.out.print("Bob's devices obey the recall and sign deletion receipts:")
    await _show_report(story, alice, sent.message_id)
    story.bob_sees("laptop", laptop.history("alice"))


async def _wrong_attachment(
    story: Story, root: Path, alice: Client, laptop: Client, phone: Client
) -> None:
    await story.scene(
        "The wrong attachment",
        "Alice means to send Bob the meeting agenda, but attaches the salary spreadsheet. "
        "The file is encrypted on her machine under a key derived from the message's own "
        "key, so recalling the message takes the file with it.",
    )
    folder = root / "alice-documents"
    folder.mkdir()
    wrong = folder / "salaries-2027.csv"
    wrong.write_text("name,salary\n" + "".join(f"person {n},{50_000 + n}\n" for n in range(2000)))
    sent = await alice.send("bob", "Agenda for Monday attached", files=[wrong])
    story.say("alice", f"e2e-recall send bob --file {wrong.name} 'Agenda for Monday attached'")
    await laptop.sync()
    await phone.sync()
    story.bob_sees("laptop", laptop.history("alice"))
    await alice.recall(sent.message_id)
    story.say("alice", f"recalls {short(sent.message_id)} before Bob opens it")
    await laptop.sync()
    await phone.sync()
    await alice.sync()
    view = await alice.report(sent.message_id)
    if view.files != 1 or not view.files_destroyed:
        raise DemoWentWrong("the relay did not destroy the recalled attachment")
    if any(line.files_downloaded for line in view.lines):
        raise DemoWentWrong("a device downloaded a file it was never able to open")
    await _show_report(story, alice, sent.message_id)
    story.bob_sees("laptop", laptop.history("alice"))


async def _opened_then_recalled(
    story: Story, alice: Client, laptop: Client, phone: Client, clock: DemoClock
) -> None:
    await story.scene(
        "Opened, then regretted",
        "Alice vents about the new manager. Bob reads it on his laptop; two minutes later "
        "Alice regrets the tone and recalls it. The laptop had the key, so the report cannot "
        "promise that nobody read it.",
    )
    sent = await alice.send("bob", "honestly the new manager is hopeless")
    await laptop.sync()
    await phone.sync()
    opened = await laptop.open_message(sent.message_id)
    story.out.print(f"Bob's laptop opens it: {opened.text!r}", highlight=False)
    clock.advance(2 * MINUTE)
    await alice.recall(sent.message_id)
    await laptop.sync()
    await phone.sync()
    await alice.sync()
    await _show_report(story, alice, sent.message_id)
    story.bob_sees("laptop", laptop.history("alice"))


async def _typo_replaced(story: Story, alice: Client, laptop: Client, phone: Client) -> None:
    await story.scene(
        "A typo, fixed in place",
        "Alice gets the time wrong and recalls with a replacement: the correction is sent and "
        "the original recalled in one request, so Bob never sees both, or neither.",
    )
    sent = await alice.send("bob", "Dinner tomorrow at 9?")
    await laptop.sync()
    await phone.sync()
    outcome = await alice.recall(sent.message_id, "Dinner tomorrow at 7?")
    if outcome.replacement_id is None:
        raise DemoWentWrong("the relay did not confirm the replacement")
    story.say(
        "alice", f"e2e-recall recall {short(sent.message_id)} --replace 'Dinner tomorrow at 7?'"
    )
    await laptop.sync()
    await phone.sync()
    await laptop.open_message(outcome.replacement_id)
    await alice.sync()
    await _show_report(story, alice, sent.message_id)
    story.bob_sees("laptop", laptop.history("alice"))


async def _window_closed(
    story: Story, alice: Client, laptop: Client, phone: Client, clock: DemoClock
) -> None:
    await story.scene(
        "Too late",
        "Alice sends a message that may be recalled for 10 minutes once opened. Bob opens it; "
        "an hour later Alice tries to recall it.",
    )
    sent = await alice.send("bob", "fine, you can have my parking spot", opened_window=10 * MINUTE)
    await laptop.sync()
    await laptop.open_message(sent.message_id)
    clock.advance(60 * MINUTE)
    try:
        await alice.recall(sent.message_id)
    except RecallNotAccepted as exc:
        story.out.print(f"[bold red]Recall refused[/]: {exc.sentence}", highlight=False)
        story.out.print(
            "What Alice can still do: send a follow-up correction, or ask Bob to delete it. "
            "Her message stays exactly as it was."
        )
    else:
        raise DemoWentWrong("the relay accepted a recall after its window closed")


async def _offline_device(
    story: Story, alice: Client, laptop: Client, phone: Client, clock: DemoClock
) -> None:
    await story.scene(
        "The phone that was offline",
        "Alice announces the wrong meeting room. Bob reads it on both devices, then his phone "
        "loses its connection. Alice recalls; the laptop deletes at once, the phone only when "
        "it comes back.",
    )
    sent = await alice.send("bob", "Meeting moved to room 4.12")
    for device in (laptop, phone):
        await device.sync()
        await device.open_message(sent.message_id)
    story.out.print("(Bob's phone goes offline.)")
    await alice.recall(sent.message_id)
    await laptop.sync()
    await alice.sync()
    await _show_report(story, alice, sent.message_id)
    clock.advance(45 * MINUTE)
    story.out.print("(45 minutes later the phone reconnects, sees the recall, and deletes.)")
    await phone.sync()
    await alice.sync()
    await _show_report(story, alice, sent.message_id)
    story.bob_sees("phone", phone.history("alice"))


async def _group_recall(
    story: Story,
    root: Path,
    url: str,
    alice: Client,
    laptop: Client,
    phone: Client,
    clock: DemoClock,
) -> None:
    await story.scene(
        "A group, recalled from everyone",
        "Alice makes a group with Bob and Carol (who is on a plane) and posts the wrong "
        "date for the trip. Bob reads it on his laptop; Alice recalls it from everyone at "
        "once and sees the report member by member.",
    )
    carol = Client.create(root / "carol", _PASSPHRASE, strength="interactive", clock=clock)
    try:
        await carol.register(url, "carol")
        await alice.add_contact("carol", "carol")
        group = await alice.create_group("trip", ["bob", "carol"])
        story.say("alice", "e2e-recall group create trip bob carol")
        sent = await alice.send(group.name, "The trip is on the 14th")
        for device in (laptop, phone):
            await device.sync()
        await laptop.open_message(sent.message_id)
        story.out.print("Bob's laptop opens it; his phone has it sealed; Carol is offline.")
        await alice.recall(sent.message_id)
        story.say("alice", f"recalls {short(sent.message_id)} from the whole group")
        await laptop.sync()
        await phone.sync()
        await alice.sync()
        story.out.print("[bold]Alice's report[/] (e2e-recall report):", highlight=False)
        view = await alice.report(sent.message_id)
        if sorted({line.person for line in view.lines}) != ["bob", "carol"]:
            raise DemoWentWrong("the group report does not list every member")
        print_report(story.out, view, group.name)
        clock.advance(3 * 60 * MINUTE)
        await carol.sync()
        story.out.print(
            "(Carol lands, syncs, and finds the group with nothing in it: the message was "
            "recalled before her device fetched anything.)"
        )
        entries = carol.history(_group_name(carol, group.group_id))
        print_entries(story.out, entries, title="Carol's group")
    finally:
        await carol.close()


def _group_name(client: Client, group_id: bytes) -> str:
    for group in client.groups():
        if group.group_id == group_id:
            return group.name
    raise DemoWentWrong("Carol's client did not learn of the group")
