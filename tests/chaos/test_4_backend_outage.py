"""4. The FileSpin backend down, then slow: settings and asset data answer 503, then take longer than the read timeout.

Events keep coming. The process worker classifies 5xx and timeouts as transient and retries each event
through the delayed queue with backoff; once the backend answers again every event is planned and its addons
called, none dead-lettered (the outage is shorter than the retry budget), none called twice.
"""

from __future__ import annotations

import time
from typing import Any

from asset_post_process.devkit.chaos import CallTally, EventStream, wait_all_called
from asset_post_process.devkit.simulator import ASSET_DATA, SETTINGS, Step

#: Scripted 503s per endpoint: more than the calls an outage of this length can draw; cleared when it ends.
OUTAGE_STEPS = 5000


def test_backend_outage_then_slowness(chaos: Any, profile: Any, figures: Any) -> None:
    stack, sim = chaos.stack, chaos.sim
    account = chaos.new_account()
    tally = CallTally(sim)
    lead_in = 2.0
    outage, slow = profile.backend_outage_seconds, profile.backend_slow_seconds
    stream = EventStream(
        stack.producer(),
        sim.base_url,
        account.apikey,
        rate=profile.backend_rate,
        duration=lead_in + outage + slow + 2.0,
        prefix=f"backend-{int(time.time())}",
    )
    stream.start()
    try:
        time.sleep(lead_in)
        # Phase 1: both backend endpoints answer 503.
        down_at = time.time()
        for endpoint in (SETTINGS, ASSET_DATA):
            sim.script(endpoint, [Step(503)] * OUTAGE_STEPS)
        time.sleep(outage)
        sim.clear_scripts()
        # Phase 2: every backend answer takes longer than the workers' read timeout (addons stay fast).
        slow_at = time.time()
        sim.set_addon_default("*", latency=0.0)
        sim.configure(api_latency=profile.backend_latency)
        time.sleep(slow)
        sim.configure(api_latency=0.0)
        back_at = time.time()
        assert stream.join(outage + slow + 120), "the event stream did not finish"
    finally:
        stream.stop()
        sim.clear_scripts()
        sim.configure(api_latency=0.0)
    expected = stream.expected(chaos.addon_paths)
    all_called = wait_all_called(tally, expected, timeout=profile.recovery_timeout)

    counts = sim.counts()
    recovered_at = tally.last_success_time(expected)
    letters = chaos.letters_for({e.event_id for e in stream.sent})
    duplicates = tally.duplicates(expected)
    backend_calls = counts.get(SETTINGS, 0) + counts.get(ASSET_DATA, 0)
    scripted_left = 2 * OUTAGE_STEPS  # what was queued; used up only if the outage drew that many calls
    figures(
        f"4. backend 503 for {outage:g}s, then {profile.backend_latency:g}s slow for {slow:g}s",
        events_sent=len(stream.sent),
        events_sent_during_faults=sum(1 for e in stream.sent if down_at <= e.sent_at < back_at),
        backend_calls=backend_calls,
        backend_calls_during_503=_backend_calls(sim, down_at, slow_at),
        backend_calls_during_slowness=_backend_calls(sim, slow_at, back_at),
        addon_calls_expected=len(expected),
        addon_calls_seen=len(tally.calls),
        pairs_called=len(expected) - len(tally.missing(expected)),
        duplicate_pairs=len(duplicates),
        dead_letters=len(letters),
        seconds_to_recover_after_backend_back=(recovered_at - back_at) if recovered_at else "never",
    )
    assert _backend_calls(sim, down_at, slow_at) < scripted_left, "the scripted outage ran out of 503s"
    assert all_called, (
        f"{len(tally.missing(expected))} (asset, addon) pairs never called: {tally.missing(expected)[:5]}; "
        f"broker: {chaos.broker_state()}"
    )
    assert not letters, [(dl.reason_code, dl.reason) for dl in letters[:5]]
    assert not duplicates, duplicates


def _backend_calls(sim: Any, start: float, end: float) -> int:
    return sum(
        1 for endpoint in (SETTINGS, ASSET_DATA) for call in sim.calls(endpoint=endpoint) if start <= call.time < end
    )
