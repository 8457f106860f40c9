"""What the crash suite knows: its settings, its record of each message, and its findings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import e2e_recall as er

from driver import Person


@dataclass
class Sent:
    """One message as the workers know it: the oracle's record."""

    sender: Person
    recipient: Person
    header: er.Header
    body: dict[str, Any]  # the exact request, re-sent as is on a retry
    text: str
    send: str = "pending"  # ok, failed, unknown
    recall: str = ""  # "", ok, failed, unknown
    recall_body: dict[str, Any] | None = None
    replacement: Sent | None = None
    opened: set[int] = field(default_factory=set)  # recipient device indexes that got the key
    receipts: set[int] = field(default_factory=set)
    blobs: list[Upload] = field(default_factory=list)  # bound by this send, in order
    downloaded: set[tuple[bytes, int]] = field(default_factory=set)  # (blob id, device) served
    expires_at: int | None = None  # a from-sent timer's moment (ms, wall clock)
    timer: int | None = None  # expire_after (ms) of a timed message, from sent or opened
    from_opened: bool = False  # the timer counts from each device's opening
    # device index -> (just before the first open attempt, its answer): opened_at lies between
    open_window: dict[int, tuple[int, int]] = field(default_factory=dict)
    open_unknown: set[int] = field(default_factory=set)  # opens never answered
    never_open: bool = False  # a from-opened message the workers leave sealed
    busy: bool = False


@dataclass
class Upload:
    """One blob as its uploader knows it (the bytes are random: the relay treats them as opaque)."""

    owner: Person
    blob_id: bytes
    data: bytes
    digest: bytes
    created: str = "pending"  # ok, failed, unknown (of POST /v1/blobs)
    offset: int = -1  # where the relay last said the stored bytes end (-1: ask it)
    acked: int = 0  # the highest offset a PATCH answer acknowledged as stored
    complete: bool = False  # a PATCH answered complete
    message: Sent | None = None  # the send that lists it, once one was attempted
    busy: bool = False


@dataclass
class CrashConfig:
    operations: int = 400
    kills: int = 3
    people: int = 4
    devices_per_person: int = 2
    workers: int = 8
    seed: int = 1
    request_timeout: float = 5.0
    blobs: bool = True  # uploads, sends that bind them, downloads, recalls that destroy them
    blob_sizes: tuple[int, ...] = (0, 1, 4096, 65_553, 200_000, 700_000)
    groups: int = 2  # groups changed, sent to and recalled from (0: none)
    timers: bool = True  # some direct sends carry a timer of 1 to 3 s, from sent or opened
    revoke: bool = True  # one person's last device is revoked half-way through
    linking: bool = True  # devices are linked to extra people through link slots
    linkers: int = 2  # people whose devices are linked (they take no other part)
    rotation: bool = True  # each person's first device rotates its wrapping key
    rotation_lifetime: int = 20_000  # ms a rotated certificate lives (its key accepts wraps)
    postgres: bool = False  # the relays use a PostgreSQL server the run starts (else SQLite)
    relays: int = 1  # relay processes on the one database (more than one: PostgreSQL only)
    postgres_kills: int = 0  # of the kills, how many SIGKILL PostgreSQL instead of a relay


@dataclass
class Findings:
    """The reckoning; every count but ``operations`` and ``kills`` must be zero."""

    operations: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_after_recall: int = 0
    restarts: int = 0
    lost: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    recalls_not_applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    missed_notices: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    integrity_failures: list[str] = field(default_factory=list)
    resolved_unknown: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # route and code of each 4xx
    checked_present: int = 0  # acknowledged messages whose envelope came back byte for byte
    checked_recalled: int = 0  # recalled messages no route would give back
    checked_notices: int = 0
    # attachments (blobs)
    kills_mid_upload: int = 0  # while a PATCH body was streaming
    kills_mid_blob_recall: int = 0  # a recall of a message with files sent, not yet answered
    kills_after_blob_recall: int = 0  # its commit acknowledged, its unlink maybe not yet done
    orphans_swept_at_start: int = 0  # files a kill left without a row, removed at start-up
    blob_offsets_lost: list[str] = field(default_factory=list)  # stored offset < acknowledged
    blobs_not_resumable: list[str] = field(default_factory=list)
    blobs_corrupted: list[str] = field(default_factory=list)  # bytes or digest differ
    blobs_lost: list[str] = field(default_factory=list)  # a bound blob of a live message gone
    partial_served: list[str] = field(default_factory=list)  # an unfinished upload downloadable
    blobs_resurrected: list[str] = field(default_factory=list)  # a recalled message's blob served
    blob_files_left: list[str] = field(default_factory=list)  # a recalled blob's file on disk
    orphan_files: list[str] = field(default_factory=list)  # a file under blob_dir nobody owns
    checked_uploads_resumed: int = 0  # unfinished uploads found at their offset and completed
    checked_blobs_present: int = 0  # bound blobs downloaded byte for byte at the end
    checked_blobs_recalled: int = 0  # blobs of recalled messages refused and without a file
    checked_partial_refused: int = 0  # unfinished uploads a download request was refused
    checked_blob_dirs: int = 0  # times blob_dir was listed after a start-up
    # groups
    kills_mid_group_change: int = 0  # a membership change sent, not yet answered
    group_changes_refused: list[str] = field(default_factory=list)  # a valid change refused
    group_sends_refused: list[str] = field(default_factory=list)  # a send to the members refused
    group_chains_wrong: list[str] = field(default_factory=list)  # chain != acknowledged changes
    group_reports_wrong: list[str] = field(default_factory=list)  # report names others
    group_outsiders_served: list[str] = field(default_factory=list)  # a non-member fetched it
    checked_group_chains: int = 0
    checked_group_present: int = 0  # member devices that fetched a live group message
    checked_group_outsiders: int = 0  # non-members refused a group message
    # disappearing messages (timers)
    kills_around_timer: int = 0  # within 100 ms either side of a timer's moment
    expired_early: list[str] = field(default_factory=list)  # refused well before its moment
    served_after_expiry: list[str] = field(default_factory=list)  # served well after it
    timers_not_fired: list[str] = field(default_factory=list)  # not destroyed after its time
    checked_timed_before: int = 0  # timed messages served before their moment
    checked_expired: int = 0  # recipient devices refused a timed message at the end
    # device revocation
    kills_mid_revocation: int = 0  # the revocation sent, not yet answered
    revocations_refused: list[str] = field(default_factory=list)  # not acknowledged
    revoked_served: list[str] = field(default_factory=list)  # the revoked device got something
    checked_revoked_refusals: int = 0  # messages, directory and a wrap refused for it
    # every send
    # a refused send exists after all, or a refused recall was applied
    refused_but_stored: list[str] = field(default_factory=list)
    # from-opened timers
    kills_mid_timed_open: int = 0  # an open of a from-opened message sent, not yet answered
    unopened_expired: list[str] = field(default_factory=list)  # a never-opened copy destroyed
    checked_sealed_unopened: int = 0  # never-opened from-opened copies still served at the end
    checked_opened_refetched: int = 0  # opened from-opened copies fetched again and judged
    # linking
    kills_mid_link: int = 0  # a link-slot request or a linked registration in flight
    links_completed: int = 0  # a linked device registered and logged in
    link_answers_lost_in_flight: int = 0  # taken by an attempt whose answer never came
    link_steps_refused: list[str] = field(default_factory=list)  # a valid step refused
    link_slots_reused: list[str] = field(default_factory=list)  # a slot used a second time
    link_lost: list[str] = field(default_factory=list)  # an acknowledged request/answer gone
    linked_missing: list[str] = field(default_factory=list)  # a registered device not there
    unapproved_devices: list[str] = field(default_factory=list)  # exists without approval
    checked_linked_devices: int = 0  # registered, listed with their certificate, log in
    checked_unlinked_refused: int = 0  # abandoned or impostor devices absent, login refused
    checked_slot_reuse_refused: int = 0  # second requests, answers and takes refused
    checked_slots_spent: int = 0  # taken slots gone at the end
    # key rotation
    kills_mid_rotation: int = 0  # a certificate upload sent, not yet answered
    rotations_refused: list[str] = field(default_factory=list)  # a valid rotation refused
    stale_wraps_accepted: list[str] = field(default_factory=list)  # a wrap past its key's time
    live_wraps_refused: list[str] = field(default_factory=list)  # stale_key for usable keys
    certificates_wrong: list[str] = field(default_factory=list)  # not the last acknowledged
    key_status_wrong: list[str] = field(default_factory=list)  # keys or pending wraps wrong
    checked_old_key_accepted: int = 0  # sends wrapped to a superseded, still usable key
    checked_stale_refused: int = 0  # sends wrapped to a key past its time, refused
    checked_certificates: int = 0  # current certificates read back as last acknowledged
    checked_key_status: int = 0
    checked_old_key_opened: int = 0  # messages opened at the end with a superseded key
    # PostgreSQL (tests/support/crash_pgkill.py) and several relay processes
    postgres_kills: int = 0  # kills of the postmaster (counted in ``kills`` too)
    postgres_outages: list[float] = field(default_factory=list)  # seconds it was down
    recovery_seconds: list[float] = field(default_factory=list)  # its return to /healthz 200
    not_recovered: list[str] = field(default_factory=list)  # a relay still failing after it
    outage_answers: Counter[str] = field(default_factory=Counter)  # probes while it was down
    outage_answers_wrong: list[str] = field(default_factory=list)  # not a 503 with a sentence
    unavailable: Counter[str] = field(default_factory=Counter)  # 5xx answers clients got
    server_errors: list[str] = field(default_factory=list)  # 5xx other than a clean 503
    log_problems: list[str] = field(default_factory=list)  # tracebacks, non-JSON log lines
    acked_while_one_down: int = 0  # operations acknowledged while a relay process was down
    seconds: float = 0.0

    def problems(self) -> dict[str, list[str]]:
        return {
            name: values
            for name, values in (
                ("lost", self.lost),
                ("corrupted", self.corrupted),
                ("resurrected", self.resurrected),
                ("recalls_not_applied", self.recalls_not_applied),
                ("duplicates", self.duplicates),
                ("missed_notices", self.missed_notices),
                ("unresolved", self.unresolved),
                ("integrity_failures", self.integrity_failures),
                ("blob_offsets_lost", self.blob_offsets_lost),
                ("blobs_not_resumable", self.blobs_not_resumable),
                ("blobs_corrupted", self.blobs_corrupted),
                ("blobs_lost", self.blobs_lost),
                ("partial_served", self.partial_served),
                ("blobs_resurrected", self.blobs_resurrected),
                ("blob_files_left", self.blob_files_left),
                ("orphan_files", self.orphan_files),
                ("group_changes_refused", self.group_changes_refused),
                ("group_sends_refused", self.group_sends_refused),
                ("group_chains_wrong", self.group_chains_wrong),
                ("group_reports_wrong", self.group_reports_wrong),
                ("group_outsiders_served", self.group_outsiders_served),
                ("expired_early", self.expired_early),
                ("served_after_expiry", self.served_after_expiry),
                ("timers_not_fired", self.timers_not_fired),
                ("revocations_refused", self.revocations_refused),
                ("revoked_served", self.revoked_served),
                ("refused_but_stored", self.refused_but_stored),
                ("unopened_expired", self.unopened_expired),
                ("link_steps_refused", self.link_steps_refused),
                ("link_slots_reused", self.link_slots_reused),
                ("link_lost", self.link_lost),
                ("linked_missing", self.linked_missing),
                ("unapproved_devices", self.unapproved_devices),
                ("rotations_refused", self.rotations_refused),
                ("stale_wraps_accepted", self.stale_wraps_accepted),
                ("live_wraps_refused", self.live_wraps_refused),
                ("certificates_wrong", self.certificates_wrong),
                ("key_status_wrong", self.key_status_wrong),
                ("not_recovered", self.not_recovered),
                ("outage_answers_wrong", self.outage_answers_wrong),
                ("server_errors", self.server_errors),
                ("log_problems", self.log_problems),
            )
            if values
        }

    def table(self) -> list[tuple[str, str]]:
        done = sum(self.operations.values())
        rows = [
            ("operations", str(done)),
            *[(f"  {kind}", str(count)) for kind, count in sorted(self.operations.items())],
            ("kills (SIGKILL)", str(self.kills)),
            ("  right after a recall", str(self.kills_after_recall)),
            ("restarts", str(self.restarts)),
            ("unknown outcomes resolved", str(sum(self.resolved_unknown.values()))),
            ("messages checked present at the end", str(self.checked_present)),
            ("recalled messages checked unreadable", str(self.checked_recalled)),
            ("device event streams checked", str(self.checked_notices)),
            ("acknowledged messages lost", str(len(self.lost))),
            ("envelopes changed", str(len(self.corrupted))),
            ("recalled messages readable (resurrected)", str(len(self.resurrected))),
            ("acknowledged recalls not applied", str(len(self.recalls_not_applied))),
            ("duplicate notices", str(len(self.duplicates))),
            ("missed notices", str(len(self.missed_notices))),
            ("unknown operations unresolved", str(len(self.unresolved))),
            ("integrity_check failures", str(len(self.integrity_failures))),
            ("kills while an upload streamed", str(self.kills_mid_upload)),
            ("kills while a recall with files ran", str(self.kills_mid_blob_recall)),
            ("kills right after a recall with files", str(self.kills_after_blob_recall)),
            ("orphan blob files swept at start-up", str(self.orphans_swept_at_start)),
            ("unfinished uploads resumed and completed", str(self.checked_uploads_resumed)),
            ("unfinished uploads refused as downloads", str(self.checked_partial_refused)),
            ("bound blobs downloaded byte for byte", str(self.checked_blobs_present)),
            ("recalled blobs refused, no file left", str(self.checked_blobs_recalled)),
            ("blob_dir listings checked", str(self.checked_blob_dirs)),
            ("acknowledged upload offsets lost", str(len(self.blob_offsets_lost))),
            ("uploads not resumable", str(len(self.blobs_not_resumable))),
            ("blobs changed", str(len(self.blobs_corrupted))),
            ("bound blobs lost", str(len(self.blobs_lost))),
            ("unfinished uploads served", str(len(self.partial_served))),
            ("recalled blobs served (resurrected)", str(len(self.blobs_resurrected))),
            ("recalled blobs' files left", str(len(self.blob_files_left))),
            ("orphan files in blob_dir", str(len(self.orphan_files))),
            ("kills while a group change was in flight", str(self.kills_mid_group_change)),
            ("group chains read back and replayed", str(self.checked_group_chains)),
            ("group message copies fetched byte for byte", str(self.checked_group_present)),
            ("non-members refused a group message", str(self.checked_group_outsiders)),
            ("valid group changes refused", str(len(self.group_changes_refused))),
            ("group sends refused", str(len(self.group_sends_refused))),
            ("group chains not as acknowledged", str(len(self.group_chains_wrong))),
            ("group reports naming others", str(len(self.group_reports_wrong))),
            ("group messages served to non-members", str(len(self.group_outsiders_served))),
            ("kills around a timer's moment", str(self.kills_around_timer)),
            ("timed messages served before their moment", str(self.checked_timed_before)),
            ("timed copies checked destroyed at the end", str(self.checked_expired)),
            ("timed messages refused early", str(len(self.expired_early))),
            ("timed messages served after their moment", str(len(self.served_after_expiry))),
            ("timed messages not destroyed", str(len(self.timers_not_fired))),
            ("kills while the device revocation ran", str(self.kills_mid_revocation)),
            ("revoked device: refusals checked", str(self.checked_revoked_refusals)),
            ("revocations not acknowledged", str(len(self.revocations_refused))),
            ("revoked device served or listed", str(len(self.revoked_served))),
            ("refused sends stored or recalls applied", str(len(self.refused_but_stored))),
            ("kills while a from-opened open ran", str(self.kills_mid_timed_open)),
            ("opened from-opened copies fetched again", str(self.checked_opened_refetched)),
            ("never-opened copies checked sealed", str(self.checked_sealed_unopened)),
            ("never-opened copies destroyed", str(len(self.unopened_expired))),
            ("kills while a link step ran", str(self.kills_mid_link)),
            ("devices linked", str(self.links_completed)),
            ("link answers taken, answer lost in flight", str(self.link_answers_lost_in_flight)),
            ("linked devices checked listed, logging in", str(self.checked_linked_devices)),
            ("unlinked devices checked absent", str(self.checked_unlinked_refused)),
            ("second uses of a slot refused", str(self.checked_slot_reuse_refused)),
            ("spent slots checked gone", str(self.checked_slots_spent)),
            ("valid link steps refused", str(len(self.link_steps_refused))),
            ("slots used twice", str(len(self.link_slots_reused))),
            ("acknowledged link messages lost", str(len(self.link_lost))),
            ("registered linked devices missing", str(len(self.linked_missing))),
            ("devices without a valid approval", str(len(self.unapproved_devices))),
            ("kills while a rotation ran", str(self.kills_mid_rotation)),
            ("wraps to a superseded usable key accepted", str(self.checked_old_key_accepted)),
            ("wraps to a key past its time refused", str(self.checked_stale_refused)),
            ("certificates checked last acknowledged", str(self.checked_certificates)),
            ("key statuses checked", str(self.checked_key_status)),
            ("messages opened with a superseded key", str(self.checked_old_key_opened)),
            ("valid rotations refused", str(len(self.rotations_refused))),
            ("wraps past their key's time accepted", str(len(self.stale_wraps_accepted))),
            ("wraps to usable keys refused", str(len(self.live_wraps_refused))),
            ("certificates not the last acknowledged", str(len(self.certificates_wrong))),
            ("key statuses wrong", str(len(self.key_status_wrong))),
            ("PostgreSQL kills (SIGKILL of the postmaster)", str(self.postgres_kills)),
            ("  seconds down, each", " ".join(f"{s:.1f}" for s in self.postgres_outages)),
            ("  relay recovery after restart, s (max)", _most(self.recovery_seconds)),
            ("  probes answered during the outage", _counts(self.outage_answers)),
            ("5xx answers clients got", _counts(self.unavailable)),
            ("acknowledged while a relay process was down", str(self.acked_while_one_down)),
            ("relays not recovered after PostgreSQL", str(len(self.not_recovered))),
            ("outage answers not a 503 with a sentence", str(len(self.outage_answers_wrong))),
            ("5xx answers other than 503", str(len(self.server_errors))),
            ("log lines with an unhandled error", str(len(self.log_problems))),
            ("seconds", f"{self.seconds:.1f}"),
        ]
        return rows


def _most(values: list[float]) -> str:
    return f"{max(values):.2f}" if values else "-"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {count}" for key, count in sorted(counter.items())) or "0"
