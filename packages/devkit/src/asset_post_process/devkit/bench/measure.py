"""Figures read from the machine: percentiles, peak RSS of a process tree, Redis command counts, Redis ops/s."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import redis

PROC = Path("/proc")


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values`` by the nearest-rank method; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (scanning ``/proc/*/stat``), nearest first."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2:
            parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop(0)
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def status_kib(pid: int, field: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in KiB (``VmHWM``: peak resident set, ``VmRSS``: now), or ``None``."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def peak_rss_mib(pid: int) -> dict[int, float]:
    """Peak RSS (``VmHWM``) in MiB of ``pid`` and of each of its descendants, by pid."""
    peaks: dict[int, float] = {}
    for each in (pid, *children_of(pid)):
        kib = status_kib(each, "VmHWM")
        if kib is not None:
            peaks[each] = kib / 1024.0
    return peaks


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants, in seconds; 0 if gone."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in (pid, *children_of(pid)):
        try:
            stat = (PROC / str(each) / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return total


def command_calls(client: redis.Redis[bytes]) -> dict[str, int]:
    """``INFO commandstats`` as calls per command name."""
    stats = client.info("commandstats")
    calls: dict[str, int] = {}
    for name, value in stats.items():
        if isinstance(value, dict) and "calls" in value:
            calls[str(name).removeprefix("cmdstat_")] = int(value["calls"])
    return calls


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two :func:`command_calls` readings (commands with none left out)."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return {name: n for name, n in sorted(delta.items(), key=lambda kv: -kv[1]) if n > 0}


def redis_benchmark(
    port: int, *, requests: int = 200_000, clients: int = 50, tests: Iterable[str] = ("set", "get", "lpush", "rpop")
) -> dict[str, float] | None:
    """Requests per second of ``redis-benchmark`` against 127.0.0.1:``port`` (no pipelining), per test.

    ``None`` when ``redis-benchmark`` is not on PATH.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    command = [binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", str(clients)]
    command += ["-t", ",".join(tests), "--csv"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, env=dict(os.environ))
    figures: dict[str, float] = {}
    for line in done.stdout.splitlines():
        cells = [cell.strip('"') for cell in line.split(",")]
        if len(cells) >= 2 and cells[0] != "test":
            try:
                figures[cells[0]] = float(cells[1])
            except ValueError:
                continue
    return figures
