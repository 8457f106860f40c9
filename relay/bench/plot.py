"""``--plot FILE.png``: latency over the run and its distribution, one PNG.

matplotlib is an optional extra (``pip install 'e2e-recall[plot]'``), so it
is imported here, lazily, only when a plot is asked for; ``--plot`` is
checked before the run starts, so a missing matplotlib costs no run.

The upper panel shows, per slice of the window, the median and the 99th
percentile of each kind of operation: a stall (a checkpoint, a scrub, a
full pool) shows as a spike at the moment it happened.  The lower panel is
the distribution of every sample, as the share of operations at or under
each latency (logarithmic axis), so the tail is as readable as the median.
"""

from __future__ import annotations

from pathlib import Path

from .errors import BenchFailed, BenchUsageError
from .samples import Samples

__all__ = ["draw"]

SHOWN = ("send", "open", "recall", "propagation")
BUCKETS = 60
"""Points per line in the upper panel: a minute-long run shows each second."""


def _over_time(samples: Samples, width: float) -> tuple[list[float], list[float], list[float]]:
    """Median and 99th percentile of the samples started in each ``width`` seconds."""
    buckets: dict[int, list[float]] = {}
    for started, latency in zip(samples.started, samples.latency_ms, strict=True):
        buckets.setdefault(int(started / width), []).append(latency)
    seconds, medians, tails = [], [], []
    for bucket in sorted(buckets):
        values = sorted(buckets[bucket])
        seconds.append((bucket + 0.5) * width)
        medians.append(values[(len(values) - 1) // 2])
        tails.append(values[min(len(values) - 1, int(len(values) * 0.99))])
    return seconds, medians, tails


def draw(path: Path, samples: dict[str, Samples], title: str) -> None:
    """Write the two panels to ``path`` (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise BenchUsageError(
            "--plot needs matplotlib, which is not installed: pip install 'e2e-recall[plot]'."
        ) from None
    figure, (over_time, distribution) = pyplot.subplots(2, 1, figsize=(10, 8))
    window = max((max(s.started) for s in samples.values() if len(s)), default=1.0)
    width = max(0.1, window / BUCKETS)
    for kind in SHOWN:
        if kind not in samples or not len(samples[kind]):
            continue
        seconds, medians, tails = _over_time(samples[kind], width)
        line = over_time.plot(seconds, medians, label=f"{kind} p50")[0]
        over_time.plot(seconds, tails, linestyle="--", color=line.get_color(), label=f"{kind} p99")
        ordered = sorted(samples[kind].latency_ms)
        shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
        distribution.step(ordered, shares, where="post", color=line.get_color(), label=kind)
    over_time.set(title=title, xlabel="seconds into the run", ylabel="latency (ms)")
    over_time.set_yscale("log")
    over_time.legend(fontsize="small", ncol=2)
    over_time.grid(alpha=0.3)
    distribution.set(xlabel="latency (ms)", ylabel="share of operations at or under")
    distribution.set_xscale("log")
    distribution.legend(fontsize="small")
    distribution.grid(alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise BenchFailed(f"Cannot write the plot to {path}: {exc.strerror or exc}.") from None
    finally:
        pyplot.close(figure)
