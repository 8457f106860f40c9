"""``python -m client.group_bench``: what one message to a group costs its sender, end to end.

``e2e-recall bench`` times the crypto of a group send alone.  This times the
whole send as the CLI makes it, against a real relay: the group's chain
refreshed from the relay, every member's devices fetched (one request, the
group directory) and their certificates checked, the key wrapped to each
device, the message kept in the outbox and posted, the relay's checks and
its commit.  The relay is an ``e2e-recall-relay serve`` process on
127.0.0.1 with a temporary SQLite database; members are real profiles (one
device each) made through the client library in this process.

    python -m client.group_bench [--sizes 2,16,64,256] [--runs 20] [--json]

Prints the median and 90th percentile per group size (the number of member
devices a message is wrapped to).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .client import Client

__all__ = ["main", "measure"]

_PASSPHRASE = "group bench passphrase"  # noqa: S105  (throwaway profiles in a temporary directory)


@contextlib.contextmanager
def _relay(root: Path) -> Iterator[str]:
    """``e2e-recall-relay serve`` as its own process on a free loopback port; its URL."""
    port_file = root / "port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
    env.update(
        E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",  # every member registers from here
        E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_LOG_LEVEL="error",
    )
    argv = ["serve", "--port", "0", "--port-file", str(port_file), "--data-dir", str(root)]
    process = subprocess.Popen(  # noqa: S603  (this interpreter, our own relay, fixed arguments)
        [sys.executable, "-m", "relay.cli", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().endswith("\n")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the relay did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        process.terminate()
        process.wait(timeout=30)


async def measure(root: Path, sizes: list[int], runs: int) -> list[dict[str, Any]]:
    """Median and p90 of ``runs`` sends to a group of each size (member devices)."""
    (root / "relay").mkdir()
    with _relay(root / "relay") as url:
        return await _measure(url, root, sizes, runs)


async def _measure(url: str, root: Path, sizes: list[int], runs: int) -> list[dict[str, Any]]:
    people: list[Client] = []
    try:
        for n in range(max(sizes) + 1):
            person = Client.create(root / f"p{n}", _PASSPHRASE, strength="interactive")
            people.append(person)
            await person.register(url, f"member{n}")
        sender = people[0]
        for n in range(1, max(sizes) + 1):
            await sender.add_contact(f"m{n}", f"member{n}")
        results = []
        for size in sizes:
            name = f"group-{size}"
            await sender.create_group(name, [f"m{n}" for n in range(1, size + 1)])
            await sender.send(name, "warm-up")  # the first send verifies every certificate
            times = []
            for run in range(runs):
                started = time.perf_counter()
                sent = await sender.send(name, f"message {run}")
                times.append(time.perf_counter() - started)
                if sent.queued or sent.problem is not None:
                    raise RuntimeError(f"a send to {name} did not go out: {sent.problem}")
            times.sort()
            results.append(
                {
                    "devices": size,
                    "runs": runs,
                    "median_ms": round(statistics.median(times) * 1000, 2),
                    "p90_ms": round(times[math.ceil(0.9 * len(times)) - 1] * 1000, 2),
                }
            )
        return results
    finally:
        for person in people:
            await person.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,16,64,256", help="member devices per group")
    parser.add_argument("--runs", type=int, default=20, help="timed sends per group")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes takes whole numbers separated by commas, e.g. 2,16,64")
    if not sizes or min(sizes) < 1 or args.runs < 1:
        parser.error("--sizes and --runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="e2e-recall-group-bench-") as work:
        results = asyncio.run(measure(Path(work), sizes, args.runs))
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    else:
        print("member devices   median      p90   (whole client send to a group, loopback relay)")
        for row in results:
            print(f"{row['devices']:>14}  {row['median_ms']:>7.1f} ms {row['p90_ms']:>7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
