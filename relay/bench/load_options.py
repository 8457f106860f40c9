"""The bench's options for what the sent messages are: timers (``--expire``) and groups.

Kept apart from :mod:`.options` (which holds the run's shape: users, mix,
rate, transport) so that each stays one screenful of checks.  As there, a
wrong value is one sentence (:class:`BenchUsageError`) before anything starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from e2e_recall.expiry import MAX_EXPIRE_MS, MIN_EXPIRE_MS

from ..units import parse_duration
from .errors import BenchUsageError

__all__ = ["GroupLoad", "add_load_arguments", "expire_from_args", "groups_from_args"]

DEFAULT_GROUP_SIZE = 3
DEFAULT_GROUP_SHARE = 50.0


@dataclass(frozen=True)
class GroupLoad:
    """How many groups, of how many members, and the share of sends (0 to 1) they get."""

    groups: int = 0
    size: int = 0
    share: float = 0.0


def add_load_arguments(load: argparse._ArgumentGroup) -> None:
    """``--expire``, ``--groups``, ``--group-size`` and ``--group-share``, with their help."""
    load.add_argument(
        "--expire",
        metavar="DURATION",
        help="give every message a disappearing timer of DURATION from sending (1s or "
        "more): the relay's timer job destroys each at its moment, and the delay from the "
        "moment to the device's expired event is measured (default: no timer)",
    )
    load.add_argument(
        "--groups",
        type=int,
        default=0,
        metavar="N",
        help="create N groups before the run (each a signed chain, as a client makes it, "
        "among one worker's users) and send --group-share of the sends to them, wrapped to "
        "every member device; group sends, recalls and their propagation are reported on "
        "rows of their own (default: 0, no groups)",
    )
    load.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_GROUP_SIZE,
        metavar="M",
        help=f"members per group, the creator included (default: {DEFAULT_GROUP_SIZE})",
    )
    load.add_argument(
        "--group-share",
        type=float,
        default=DEFAULT_GROUP_SHARE,
        metavar="PERCENT",
        help="percent of the sends that go to a group when --groups is given "
        f"(default: {DEFAULT_GROUP_SHARE:g})",
    )


def expire_from_args(text: str | None) -> int:
    """``--expire`` in milliseconds, 0 without a timer."""
    if text is None:
        return 0
    try:
        ms = parse_duration(text)
    except ValueError as exc:
        raise BenchUsageError(f"--expire: {exc}.") from None
    if not MIN_EXPIRE_MS <= ms <= MAX_EXPIRE_MS:
        raise BenchUsageError("--expire must be between 1s and 365d.")
    return ms


def groups_from_args(args: argparse.Namespace, users: int, workers: int) -> GroupLoad:
    """The group options, checked against the users each worker has to make groups of."""
    groups = args.groups
    if groups < 0:
        raise BenchUsageError(f"--groups is a number of groups, not {groups}.")
    if groups == 0:
        return GroupLoad()
    if groups < workers:
        raise BenchUsageError(
            f"--groups must give each of the {workers} workers a group at least, not {groups}."
        )
    fewest = users // workers  # a group is made of one worker's own users
    size = args.group_size
    if not 2 <= size <= fewest:
        raise BenchUsageError(
            f"--group-size must be between 2 and {fewest} (the users of one worker), not {size}."
        )
    share = args.group_share
    if not 0 < share <= 100:
        raise BenchUsageError(f"--group-share is a percent above 0 and at most 100, not {share}.")
    return GroupLoad(groups, size, share / 100)
