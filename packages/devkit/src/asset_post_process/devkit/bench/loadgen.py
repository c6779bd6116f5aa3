"""The load: users and assets in the simulator, the messages for them, and producers (all at once, or paced).

Every event is a ``file-saved`` of an image asset whose owner enabled the three built-in addons, so each event
means one settings read (cached), one asset data GET and three addon calls. Assets are reused across events
(the simulator is told not to mark an asset processed, so every event runs its three addons again); an event's
identity is its ``event_id``. Progress and timing are read from the calls the simulator records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asset_post_process.devkit import factory
from asset_post_process.devkit.simulator import ASSET_DATA, SimulatorClient
from asset_post_process.devkit.simulator.models import ADDON_PREFIX

ADDONS_PER_EVENT = len(factory.BUILTIN_ADDONS)

Sender = Callable[[dict[str, Any]], Any]
"""Sends one message (a real ``process_asset`` message, or a floor hop-1 message)."""


@dataclass
class Workload:
    """``users`` accounts with ``assets_per_user`` image assets each; event ``i`` goes to user ``i % users``."""

    accounts: list[factory.Account] = field(default_factory=list)

    @classmethod
    def create(cls, users: int, assets_per_user: int) -> Workload:
        """A workload of fresh accounts and assets (not yet in the simulator: see :meth:`load_into`)."""
        if users < 1 or assets_per_user < 1:
            raise ValueError("at least one user with one asset")
        accounts = []
        for _ in range(users):
            account = factory.Account()
            for _ in range(assets_per_user):
                account.add(factory.image_asset())
            accounts.append(account)
        return cls(accounts)

    def load_into(self, simulator: SimulatorClient) -> Workload:
        """Put every user and asset into the simulator."""
        for account in self.accounts:
            account.load_into(simulator)
        return self

    def target(self, index: int) -> tuple[str, dict[str, Any]]:
        """``(apikey, asset)`` of event ``index``."""
        account = self.accounts[index % len(self.accounts)]
        asset = account.assets[(index // len(self.accounts)) % len(account.assets)]
        return account.apikey, asset

    def real_messages(self, count: int, messages: factory.MessageFactory) -> list[dict[str, Any]]:
        """``count`` valid ``process_asset`` messages (key encrypted, fresh ``event_id`` each)."""
        built = []
        for index in range(count):
            apikey, asset = self.target(index)
            built.append(messages.file_saved(apikey, asset))
        return built

    def floor_messages(self, count: int) -> list[dict[str, Any]]:
        """``count`` hop-1 messages of the bare pipeline (:mod:`.floor`)."""
        built = []
        for index in range(count):
            apikey, asset = self.target(index)
            built.append({"apikey": apikey, "asset_id": str(asset["id"])})
        return built


def send_all(send: Sender, messages: Iterable[dict[str, Any]]) -> int:
    """Send every message as fast as possible; returns how many were sent."""
    sent = 0
    for message in messages:
        send(message)
        sent += 1
    return sent


def send_paced(send: Sender, messages: list[dict[str, Any]], rate: float) -> dict[str, float]:
    """Send ``messages`` at ``rate`` per second (on a fixed schedule, no drift); returns asset id -> send time.

    Each message's asset must be its own (the enqueue time is matched to the addon calls by asset id).
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    for index, message in enumerate(messages):
        pause = start + index / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent_at[str(message["asset_id"])] = time.time()
        send(message)
    return sent_at


def addon_calls(counts: dict[str, int]) -> int:
    """Addon calls in a :meth:`SimulatorClient.counts` answer."""
    return sum(n for endpoint, n in counts.items() if endpoint.startswith(ADDON_PREFIX))


def wait_for_addon_calls(simulator: SimulatorClient, expected: int, *, timeout: float, interval: float = 0.2) -> bool:
    """Poll (bounded by ``timeout``) until the simulator has received ``expected`` addon calls."""
    deadline = time.monotonic() + timeout
    while True:
        if addon_calls(simulator.counts()) >= expected:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass(frozen=True)
class Span:
    """When the simulator saw a run's first asset data call and its last addon call (epoch seconds)."""

    first_data_call: float
    last_addon_call: float

    @property
    def seconds(self) -> float:
        """The run's duration as the simulator saw it."""
        return max(1e-9, self.last_addon_call - self.first_data_call)


def span_of_run(simulator: SimulatorClient) -> Span:
    """The :class:`Span` of the calls recorded since the simulator's calls were last cleared."""
    calls = simulator.calls()
    data_times = [c.time for c in calls if c.endpoint == ASSET_DATA]
    addon_times = [c.time for c in calls if c.endpoint.startswith(ADDON_PREFIX)]
    if not data_times or not addon_times:
        raise RuntimeError("no asset data or addon call was recorded")
    return Span(min(data_times), max(addon_times))


def addon_call_latencies(simulator: SimulatorClient, sent_at: dict[str, float]) -> list[float]:
    """Seconds from each event's enqueue to each of its addon calls' arrival at the simulator."""
    return [
        call.time - sent_at[call.asset_id]
        for call in simulator.calls()
        if call.endpoint.startswith(ADDON_PREFIX) and call.asset_id in sent_at
    ]
