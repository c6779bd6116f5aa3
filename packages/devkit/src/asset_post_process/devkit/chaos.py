"""Fault-injection helpers for the reliability suite (``tests/chaos``): what happened, measured from outside.

- :class:`CallTally` reads the simulator's recorded addon calls incrementally and tallies them per
  (asset, addon): successes, failures, and when they came;
- :class:`HealthProbe` polls the health API's ``/healthcheck`` from a thread and keeps every answer;
- :func:`rss_kib` / :func:`process_tree` read a process tree's resident memory from ``/proc``;
- :class:`EventStream` sends a steady stream of valid events from a thread, retrying sends while the broker
  is down;
- :func:`push_raw` puts raw bytes straight into a queue's Redis list (what a broken producer would do);
- :func:`scan_redis` and :func:`scan_files` look for secrets in every Redis key and value, and in log files.

Every loop here is bounded in count or time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from asset_post_process.devkit.factory import image_asset
from asset_post_process.devkit.simulator import SimulatorClient
from asset_post_process.devkit.simulator.models import ADDON_PREFIX

Pair = tuple[str, str]
"""(asset id, addon path name such as ``face_recognition``)."""


@dataclass(frozen=True)
class AddonCall:
    """One answered addon call as the simulator recorded it."""

    seq: int
    time: float
    asset_id: str
    addon: str
    status: int | None
    outcome: str

    @property
    def succeeded(self) -> bool:
        """Whether the addon did the work (2xx) or said it already had (409)."""
        return self.status is not None and (200 <= self.status < 300 or self.status == 409)


@dataclass
class CallTally:
    """The simulator's answered addon calls, read incrementally (only calls after ``since``)."""

    sim: SimulatorClient
    since: int = 0
    abandon_after: float = 60.0
    calls: list[AddonCall] = field(default_factory=list)
    abandoned: int = 0
    _seen: set[int] = field(default_factory=set)
    _abandoned: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._start = self.since

    def refresh(self) -> int:
        """Read calls answered since the last refresh; returns how many were new.

        A call still in progress (``pending``) is read again next time; the cursor only moves over answered calls,
        and over calls pending for longer than ``abandon_after`` seconds (their client went away mid-call and the
        server dropped the request: the addon did not do the work), which are counted in ``abandoned``.
        """
        new = 0
        cursor_moving = True
        now = time.time()
        for call in self.sim.calls(since=self.since):
            if call.outcome == "pending":
                if now - call.time > self.abandon_after:
                    if call.seq not in self._abandoned:
                        self._abandoned.add(call.seq)
                        self.abandoned += 1
                    if cursor_moving:
                        self.since = call.seq
                    continue
                cursor_moving = False
                continue
            if cursor_moving:
                self.since = call.seq
            if call.seq in self._seen:
                continue
            self._seen.add(call.seq)
            if call.endpoint.startswith(ADDON_PREFIX) and call.asset_id is not None and call.addon is not None:
                self.calls.append(AddonCall(call.seq, call.time, call.asset_id, call.addon, call.status, call.outcome))
                new += 1
        self._seen = {seq for seq in self._seen if seq > self.since}
        self._abandoned = {seq for seq in self._abandoned if seq > self.since}
        return new

    def reconcile(self) -> None:
        """Rebuild :attr:`calls` from one full read of every answered addon call since the tally began.

        The incremental cursor of :meth:`refresh` is a shortcut for polling; the figures and verdicts are taken
        from this full read, so no call the simulator answered can be missed by the cursor's bookkeeping.
        """
        self.calls = [
            AddonCall(call.seq, call.time, call.asset_id, call.addon, call.status, call.outcome)
            for call in self.sim.calls(since=self._start)
            if call.outcome != "pending"
            and call.endpoint.startswith(ADDON_PREFIX)
            and call.asset_id is not None
            and call.addon is not None
        ]
        self._seen = {call.seq for call in self.calls if call.seq > self.since}

    def successes(self) -> dict[Pair, int]:
        """Successful calls per (asset, addon)."""
        counts: dict[Pair, int] = {}
        for call in self.calls:
            if call.succeeded:
                key = (call.asset_id, call.addon)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def missing(self, expected: Iterable[Pair]) -> list[Pair]:
        """Expected (asset, addon) pairs with no successful call yet."""
        done = self.successes()
        return [pair for pair in expected if pair not in done]

    def duplicates(self, expected: Iterable[Pair]) -> dict[Pair, int]:
        """Expected pairs whose addon did the work more than once, with how many times."""
        done = self.successes()
        return {pair: done[pair] for pair in expected if done.get(pair, 0) > 1}

    def count(
        self, *, addon: str | None = None, start: float = 0.0, end: float = float("inf"), failed: bool | None = None
    ) -> int:
        """Calls (of ``addon``) that arrived in [``start``, ``end``) (``failed``: only failures / successes)."""
        return sum(
            1
            for c in self.calls
            if (addon is None or c.addon == addon)
            and start <= c.time < end
            and (failed is None or failed != c.succeeded)
        )

    def last_success_time(self, pairs: Iterable[Pair]) -> float | None:
        """When the last of ``pairs`` that succeeded first succeeded (``None`` if none has)."""
        first: dict[Pair, float] = {}
        for call in self.calls:
            if call.succeeded:
                key = (call.asset_id, call.addon)
                first[key] = min(first.get(key, call.time), call.time)
        times = [first[pair] for pair in pairs if pair in first]
        return max(times) if times else None


def wait_all_called(
    tally: CallTally,
    expected: Sequence[Pair],
    *,
    timeout: float,
    interval: float = 0.5,
    idle: Callable[[], bool] | None = None,
    idle_seconds: float = 5.0,
) -> bool:
    """Poll until every expected pair has a successful call, or ``timeout``; returns whether they all have.

    With ``idle`` (true when nothing is queued, in flight or waiting for a retry), stop early once the service
    has stayed idle with no new call for ``idle_seconds``: what is still missing then will never come.
    """
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while True:
        new = tally.refresh()
        if not tally.missing(expected):
            break
        now = time.monotonic()
        if now >= deadline:
            break
        if idle is not None and new == 0 and idle():
            idle_since = idle_since or now
            if now - idle_since >= idle_seconds:
                break
        else:
            idle_since = None
        time.sleep(interval)
    tally.reconcile()
    return not tally.missing(expected)


@dataclass(frozen=True)
class HealthSample:
    """One ``/healthcheck`` answer (``status`` ``None``: no answer at all)."""

    time: float
    status: int | None


class HealthProbe:
    """Polls ``{url}/healthcheck`` every ``interval`` seconds from a daemon thread, for at most ``max_seconds``."""

    def __init__(self, url: str, *, interval: float = 0.25, max_seconds: float = 900.0) -> None:
        self.url = url.rstrip("/")
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[HealthSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-health-probe", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    status: int | None = client.get(f"{self.url}/healthcheck").status_code
                except httpx.HTTPError:
                    status = None
                self.samples.append(HealthSample(time.time(), status))
                self._stop.wait(self.interval)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def statuses(self, start: float = 0.0, end: float = float("inf")) -> list[int | None]:
        """The statuses answered in [``start``, ``end``)."""
        return [s.status for s in list(self.samples) if start <= s.time < end]

    def first_time(self, status: int, after: float) -> float | None:
        """When ``status`` was first answered after ``after``."""
        return next((s.time for s in list(self.samples) if s.time >= after and s.status == status), None)


# ---------------------------------------------------------------------------------------------- processes
def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc``; Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree: list[int] = []
    todo = [pid]
    while todo and len(tree) < 10_000:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in KiB (0 for a process that is gone)."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


# ---------------------------------------------------------------------------------------------- broker
def push_raw(client: redis.Redis[bytes], queue: str, payloads: Iterable[bytes]) -> int:
    """LPUSH each payload into ``queue``'s Redis list (kombu's list for priority 0); returns how many."""
    count = 0
    pipe = client.pipeline(transaction=False)
    for payload in payloads:
        pipe.lpush(queue, payload)
        count += 1
    pipe.execute()
    return count


# ---------------------------------------------------------------------------------------------- secrets
@dataclass(frozen=True)
class Finding:
    """Where a secret was found: a Redis key (``where`` = ``key name`` or the value's type) or a file."""

    place: str
    where: str


def _type(client: redis.Redis[bytes], key: bytes) -> str:
    kind: bytes = client.type(key)  # type: ignore[no-untyped-call]
    return kind.decode()


def _values(client: redis.Redis[bytes], key: bytes) -> Iterator[bytes]:
    kind = _type(client, key)
    if kind == "string":
        value = client.get(key)
        if value is not None:
            yield value
    elif kind == "list":
        yield from client.lrange(key, 0, -1)
    elif kind == "hash":
        for name, value in client.hgetall(key).items():
            yield name
            yield value
    elif kind == "set":
        yield from client.smembers(key)
    elif kind == "zset":
        for member, _score in client.zrange(key, 0, -1, withscores=True):
            yield member
    elif kind == "stream":
        for _id, entry in client.xrange(key):
            for name, value in entry.items():
                yield name
                yield value


def scan_redis(
    client: redis.Redis[bytes], needles: Sequence[str], *, max_keys: int = 1_000_000
) -> tuple[int, list[Finding]]:
    """Look for each needle in every key name and every value of every type; returns (keys scanned, findings)."""
    wanted = [n.encode() for n in needles if n]
    findings: list[Finding] = []
    scanned = 0
    for key in client.scan_iter(count=1000):
        if scanned >= max_keys:
            break
        scanned += 1
        if any(n in key for n in wanted):
            findings.append(Finding(key.decode(errors="replace"), "key name"))
        for value in _values(client, key):
            if any(n in value for n in wanted):
                findings.append(Finding(key.decode(errors="replace"), f"value ({_type(client, key)})"))
                break
    return scanned, findings


def scan_files(paths: Iterable[Path], needles: Sequence[str]) -> tuple[int, int, list[Finding]]:
    """Look for each needle in every file; returns (files scanned, bytes scanned, findings)."""
    wanted = [n.encode() for n in needles if n]
    files = size = 0
    findings: list[Finding] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        size += len(data)
        for needle in wanted:
            if needle in data:
                findings.append(Finding(str(path), "file"))
                break
    return files, size, findings


# ---------------------------------------------------------------------------------------------- load
@dataclass(frozen=True)
class SentEvent:
    """One event the stream sent: its id, its asset, when it was accepted by the broker."""

    event_id: str
    asset_id: str
    sent_at: float


class EventStream:
    """Sends ``file-saved`` events about fresh image assets at ``rate`` per second for ``duration`` seconds.

    Runs in a thread: each asset is put into the simulator under ``apikey``, then the event is enqueued with
    ``producer``. A send that fails (the broker is down) is tried again every ``retry_interval`` seconds for at
    most ``max_send_seconds`` (what a real producer does); ``send_errors`` counts the failed tries.
    """

    def __init__(
        self,
        producer: Any,
        sim_url: str,
        apikey: str,
        *,
        rate: float,
        duration: float,
        prefix: str,
        retry_interval: float = 0.5,
        max_send_seconds: float = 90.0,
    ) -> None:
        self.producer = producer
        self.sim_url = sim_url
        self.apikey = apikey
        self.total = max(1, int(rate * duration))
        self.rate = rate
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.max_send_seconds = max_send_seconds
        self.sent: list[SentEvent] = []
        self.send_errors = 0
        self.unsent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-event-stream", daemon=True)

    def _send(self, sim: SimulatorClient, index: int) -> None:
        asset = image_asset()
        sim.put_asset(self.apikey, asset)
        event_id = f"{self.prefix}-{index:05d}"
        deadline = time.monotonic() + self.max_send_seconds
        while not self._stop.is_set():
            try:
                self.producer.enqueue_asset_event(
                    apikey=self.apikey, asset_id=asset["id"], event_type="file-saved", event_id=event_id
                )
            except Exception:
                self.send_errors += 1
                if time.monotonic() >= deadline:
                    self.unsent += 1
                    return
                self._stop.wait(self.retry_interval)
                continue
            self.sent.append(SentEvent(event_id, str(asset["id"]), time.time()))
            return

    def _run(self) -> None:
        start = time.monotonic()
        with SimulatorClient(self.sim_url) as sim:
            for index in range(self.total):
                pause = start + index / self.rate - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
                if self._stop.is_set():
                    return
                self._send(sim, index)

    def start(self) -> EventStream:
        """Start sending."""
        self._thread.start()
        return self

    def join(self, timeout: float) -> bool:
        """Wait (bounded) for the stream to end; returns whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self._stop.set()
        self._thread.join(10.0)

    @property
    def running(self) -> bool:
        """Whether the stream still sends."""
        return self._thread.is_alive()

    def expected(self, addons: Sequence[str]) -> list[Pair]:
        """Every (asset, addon) pair the sent events should have called (``addons``: path names)."""
        return [(event.asset_id, addon) for event in list(self.sent) for addon in addons]


# ---------------------------------------------------------------------------------------------- supervision
@dataclass(frozen=True)
class Exit:
    """A program found dead by :class:`Supervisor`: when, its exit status, and the end of its log."""

    program: str
    time: float
    returncode: int | None
    log_tail: str


class Supervisor:
    """Restarts programs that exited, as supervisord's ``autorestart`` does in the image.

    Call :meth:`check` from the thread that started the programs (the devkit's children get SIGTERM when the
    thread that started them ends, so a helper thread must not start them). At most ``max_restarts`` restarts.
    """

    def __init__(self, programs: Sequence[Any], *, max_restarts: int = 10) -> None:
        self.programs = list(programs)
        self.max_restarts = max_restarts
        self.exits: list[Exit] = []

    def check(self) -> bool:
        """Restart every program that is not running (without waiting for it); returns whether one was."""
        restarted = False
        for program in self.programs:
            if program.running or len(self.exits) >= self.max_restarts:
                continue
            self.exits.append(Exit(program.name, time.time(), program.returncode, program.log_tail(200_000)))
            program.start(wait=False)
            restarted = True
        return restarted
