"""The crash suite's key rotation: wrapping keys rotate while the relay is killed.

Mixed into :class:`crash_harness.CrashRun`.  The first device of each person
rotates every 1 to 3 seconds for as long as the workers run: a new wrapping
key, a certificate the identity signs for it with a short lifetime
(``rotation_lifetime``, 20 s by default), uploaded with ``POST
/v1/devices/self/certificate`` and retried (the very same bytes: a retry of
a rotation that was applied answers ``created: false``) until the relay
answers, while the killer aims some kills at that upload.  The oracle keeps
each device's acknowledged certificates in order; a superseded one's key
accepts wraps until its own expiry (the first certificate has none: until
its successor's expiry), the rule of protocol section 5.1.  When the workers
stop, every device rotates once more to a certificate that outlives the
reckoning.

Senders wrap to the last acknowledged key; a quarter of direct sends to a
rotating device wrap to one of its superseded keys instead (a sender with
an older directory), some still usable and some past their time.  Every
send, direct or group, is judged against the rule with the times its
attempts were made: accepted though every attempt came after the key's
time (``stale_wraps_accepted``), or refused ``stale_key`` though every
attempt came before it (``live_wraps_refused``), each with a margin of
``KEY_MARGIN_MS``.  At the end, with the relay up and quiet:

- each device's certificate in the directory is the last acknowledged one
  (or the one whose upload was never answered, if the relay took it);
- its key status lists the current key as current, every key the rule
  says accepts wraps, none it says does not, and pending wraps only to
  keys the device was given;
- every live message it has not opened and whose wrap names a superseded
  key opens with that key's private half and decrypts to its text.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

import e2e_recall as er
from e2e_recall.rotation import issue_expiring_certificate

from crash_model import Sent
from driver import Device, Person, RelayRefused

KEY_MARGIN_MS = 400  # a request's time on a loaded machine, either side of a key's time
PROBE_SHARE = 0.25  # of direct sends to a rotating device: wrap to a superseded key
SETTLED_LIFETIME = 60 * 60 * 1000  # the last rotation's: it outlives the reckoning
OPEN_AT_END = 200  # messages opened with a superseded key at the end, at most


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class KeyRecord:
    """One acknowledged (or never answered) certificate of a rotating device."""

    key: er.WrapPrivateKey
    certificate: bytes
    created_at: int
    expires_at: int | None
    usable_until: int | None = None  # set once superseded; None while current

    @property
    def key_id(self) -> bytes:
        return self.key.public_key.key_id


@dataclass
class KeyHistory:
    person: Person
    index: int  # the device's index among the person's devices (0: never revoked)
    keys: list[KeyRecord] = field(default_factory=list)  # acknowledged, oldest first
    unknown: KeyRecord | None = None  # an upload never answered: no more rotations, no judging

    @property
    def device(self) -> Device:
        return self.person.devices[self.index]

    def until(self, key_id: bytes) -> float | None:
        """Until when the rule lets the relay accept wraps to this key (None: not its key)."""
        for record in self.keys:
            if record.key_id == key_id:
                if record is self.keys[-1]:
                    return float("inf") if record.expires_at is None else record.expires_at
                return record.usable_until
        return None


class RotationWork:
    """The rotator, the wrap judge and the rotation reckoning."""

    # provided by CrashRun (and its mixins)
    rng: Any
    config: Any
    findings: Any
    people: list[Person]
    messages: list[Sent]
    resumed: asyncio.Event
    reckoning: bool
    until_known: Any
    _record: Any

    def _setup_rotation(self) -> None:
        self.histories: dict[bytes, KeyHistory] = {}
        self.private_keys: dict[bytes, er.WrapPrivateKey] = {}
        self.rotation_sent = asyncio.Event()
        self.workers_done = False
        for person in self.people:
            for device in person.devices:
                key = device.secrets.wrap_key
                self.private_keys[key.public_key.key_id] = key
        if not self.config.rotation:
            return
        for person in self.people:
            device = person.devices[0]
            cert = er.verify_device_certificate(
                device.certificate, person.identity.public_key, now=None
            )
            first = KeyRecord(device.secrets.wrap_key, device.certificate, cert.created_at, None)
            self.histories[device.secrets.device_id] = KeyHistory(person, 0, [first])

    def _private_key(self, device: Device, key_id: bytes | None) -> er.WrapPrivateKey:
        """The private key a wrap names (the device's current one if it names none)."""
        return self.private_keys.get(key_id or b"", device.secrets.wrap_key)

    # -- the rotator --------------------------------------------------------------------------
    async def _rotator(self) -> None:
        """Each rotating device rotates every 1 to 3 s while the workers run, then once more."""
        await asyncio.gather(*(self._rotate_often(h) for h in self.histories.values()))

    async def _rotate_often(self, history: KeyHistory) -> None:
        """One device's rotations: often enough that its current key never runs out."""
        while not self.workers_done:
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            await self.resumed.wait()
            if history.unknown is not None:
                return  # frozen: resolved at the end
            await self._rotate(history, self.config.rotation_lifetime)
        if history.unknown is None:
            await self._rotate(history, SETTLED_LIFETIME)

    async def _rotate(self, history: KeyHistory, lifetime: int) -> None:
        device, person = history.device, history.person
        last = history.keys[-1]
        key = er.WrapPrivateKey.generate(er.WrapSuite.X25519)
        created_at = max(_now_ms(), last.created_at + 1)
        cert = issue_expiring_certificate(
            person.identity,
            device.secrets.device_id,
            device.secrets.signing_key.public_key,
            key.public_key,
            created_at=created_at,
            lifetime=lifetime,
        ).signed
        record = KeyRecord(key, cert, created_at, created_at + lifetime)
        self.private_keys[record.key_id] = key  # before the upload: it may be applied unanswered
        self.rotation_sent.set()
        try:
            outcome, answer = await self.until_known(
                person, "POST", "/v1/devices/self/certificate", {"certificate": cert}, history.index
            )
        finally:
            self.rotation_sent.clear()
        self._record("rotate", outcome)
        name = f"{person.name}/{history.index}"
        if outcome == "unknown":
            history.unknown = record
            return
        if outcome == "failed" or not isinstance(answer, dict):
            self.findings.rotations_refused.append(f"{name}: {answer}")
            return
        if answer.get("key_id") != record.key_id:
            self.findings.certificates_wrong.append(f"{name}: answered another key id")
        last.usable_until = last.expires_at if last.expires_at is not None else record.expires_at
        history.keys.append(record)
        device.secrets = replace(device.secrets, wrap_key=key)
        device.certificate = cert

    async def _wait_for_rotation_moment(self) -> None:
        """Before a kill: wait for a certificate upload to be in flight, and kill in it."""
        try:
            await asyncio.wait_for(self.rotation_sent.wait(), 5)
        except TimeoutError:
            return
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        self.findings.kills_mid_rotation += int(self.rotation_sent.is_set())

    # -- sends ----------------------------------------------------------------------------------
    def _probe_wraps(
        self, recipient: Person, header: er.Header, key: bytes, wraps: list[Any]
    ) -> None:
        """Now and then wrap to one of a rotating device's superseded keys (an older directory)."""
        if not self.histories or self.reckoning or self.rng.random() >= PROBE_SHARE:
            return
        for wrap in wraps:
            history = self.histories.get(wrap["device_id"])
            if history is None or history.unknown is not None or len(history.keys) < 2:
                continue
            old = self.rng.choice(history.keys[:-1])
            wrap["wrap"] = er.wrap_message_key(
                key,
                old.key.public_key,
                message_id=header.message_id,
                conversation_id=header.conversation_id,
                device_id=wrap["device_id"],
            )
            wrap["key_id"] = old.key_id
            return

    def _judge_wraps(
        self, wraps: list[Any], started: int, outcome: str, answer: Any, what: str
    ) -> bool:
        """Judge a send's outcome against the key rule; True if a refusal was the rule's."""
        now = _now_ms()
        limits = []
        for wrap in wraps:
            history = self.histories.get(wrap["device_id"])
            if history is None:
                continue
            if history.unknown is not None:
                return True  # the device's keys are not known for sure: no judging
            until = history.until(wrap["key_id"])
            if until is not None:
                limits.append((until, history.keys[-1].key_id == wrap["key_id"]))
        if not limits:
            return False
        if outcome == "ok":
            for until, current in limits:
                if started > until + KEY_MARGIN_MS:
                    self.findings.stale_wraps_accepted.append(
                        f"{what}: asked {started - until:.0f} ms after its key's time"
                    )
                elif not current and now < until - KEY_MARGIN_MS:
                    self.findings.checked_old_key_accepted += 1
            return False
        if isinstance(answer, RelayRefused) and answer.code == "stale_key":
            if all(now < until - KEY_MARGIN_MS for until, _ in limits):
                self.findings.live_wraps_refused.append(f"{what}: every key usable")
                return False
            if any(started > until + KEY_MARGIN_MS for until, _ in limits):
                self.findings.checked_stale_refused += 1
            return True
        return False

    # -- reckoning ------------------------------------------------------------------------------
    async def _reckon_rotation(self) -> None:
        opened = 0
        for history in self.histories.values():
            await self._reckon_certificate(history)
            await self._reckon_key_status(history)
            opened = await self._reckon_old_keys(history, opened)

    async def _reckon_certificate(self, history: KeyHistory) -> None:
        person, device = history.person, history.device
        name = f"{person.name}/{history.index}"
        other = next(p for p in self.people if p is not person)
        outcome, answer = await self.until_known(
            other, "GET", f"/v1/users/{person.user_id.hex()}", None
        )
        if outcome != "ok" or not isinstance(answer, dict):
            self.findings.certificates_wrong.append(f"{name}: directory {answer}")
            return
        listed = []
        for signed in answer["devices"]:
            cert = er.verify_device_certificate(signed, person.identity.public_key, now=None)
            if cert.device_id == device.secrets.device_id:
                listed.append(signed)
        if history.unknown is not None:
            self.findings.resolved_unknown["rotation (at the end)"] += 1
            if listed == [history.unknown.certificate]:
                last = history.keys[-1]
                last.usable_until = last.expires_at or history.unknown.expires_at
                history.keys.append(history.unknown)
            history.unknown = None
        if listed == [history.keys[-1].certificate]:
            self.findings.checked_certificates += 1
        else:
            self.findings.certificates_wrong.append(f"{name}: {len(listed)} listed, not the last")

    async def _reckon_key_status(self, history: KeyHistory) -> None:
        person = history.person
        name = f"{person.name}/{history.index}"
        outcome, answer = await self.until_known(
            person, "GET", "/v1/devices/self/keys", None, history.index
        )
        if outcome != "ok" or not isinstance(answer, dict):
            self.findings.key_status_wrong.append(f"{name}: {answer}")
            return
        now = _now_ms()
        listed = {k["key_id"]: k["current"] for k in answer["keys"]}
        wrong = []
        if [k for k, current in listed.items() if current] != [history.keys[-1].key_id]:
            wrong.append("the current key is not the last acknowledged")
        for record in history.keys:
            until = history.until(record.key_id)
            assert until is not None
            if until > now + KEY_MARGIN_MS and record.key_id not in listed:
                wrong.append(f"a usable key {record.key_id.hex()[:8]} is not listed")
            if until < now - KEY_MARGIN_MS and record.key_id in listed:
                wrong.append(f"a key past its time {record.key_id.hex()[:8]} is listed")
        given = {r.key_id for r in history.keys}
        for pending in answer["pending"]:
            if pending["key_id"] not in given:
                wrong.append(f"{pending['count']} pending wraps to a key it was never given")
        if wrong:
            self.findings.key_status_wrong += [f"{name}: {w}" for w in wrong]
        else:
            self.findings.checked_key_status += 1

    async def _reckon_old_keys(self, history: KeyHistory, opened: int) -> int:
        """Open live, unopened messages wrapped to superseded keys with those keys."""
        person, device = history.person, history.device
        current = history.keys[-1].key_id
        for sent in self.messages:
            if opened >= OPEN_AT_END:
                break
            if (
                sent.recipient is not person
                or sent.send != "ok"
                or sent.recall not in ("", "failed")
                or sent.timer is not None
                or history.index in sent.opened
            ):
                continue
            wrap = next(w for w in sent.body["wraps"] if w["device_id"] == device.secrets.device_id)
            if wrap["key_id"] == current:
                continue
            opened += 1
            name = f"{sent.header.message_id.hex()[:12]} with an old key"
            path = f"/v1/messages/{sent.header.message_id.hex()}/open"
            outcome, answer = await self.until_known(person, "POST", path, {}, history.index)
            if outcome != "ok" or not isinstance(answer, dict):
                self.findings.lost.append(f"{name}: {answer}")
                continue
            sent.opened.add(history.index)
            try:
                key = er.unwrap_message_key(
                    answer["wrap"],
                    self._private_key(device, answer.get("key_id")),
                    message_id=sent.header.message_id,
                    conversation_id=sent.header.conversation_id,
                    device_id=device.secrets.device_id,
                )
                verified = er.open_envelope(sent.body["envelope"], sent.sender.identity.public_key)
                text = verified.decrypt(key).text
            except er.errors.E2ERecallError:
                text = None
            if answer.get("key_id") != wrap["key_id"] or text != sent.text:
                self.findings.corrupted.append(name)
            else:
                self.findings.checked_old_key_opened += 1
        return opened
