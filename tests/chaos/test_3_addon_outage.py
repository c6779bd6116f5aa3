"""3. An addon outage: FACE_RECOGNITION answers 503, or hangs past the read timeout, for a while.

Events keep coming during the outage. The breaker opens after ``threshold`` failures and lets one probe
through each time it half-opens, so the calls to the failing addon during the outage stay bounded:

    threshold + trigger concurrency (calls already admitted when it opened) + ceil(outage / (open + probe)) + 1

while the other addon keeps working. Breaker deferrals spend no retry, so with an outage shorter than the
retry budget nothing is dead-lettered, every job completes once the addon is back, and nothing is called twice.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from asset_post_process.devkit.chaos import CallTally, EventStream, wait_all_called

DOWN_ADDON = "face_recognition"
UP_ADDON = "scene_classification"


@pytest.mark.parametrize("mode", ["503", "hang"])
def test_addon_outage(chaos: Any, profile: Any, figures: Any, mode: str) -> None:
    if mode not in profile.outage_modes:
        pytest.skip(f"outage mode {mode} is not part of the {profile.name} run")
    stack, sim = chaos.stack, chaos.sim
    account = chaos.new_account()
    tally = CallTally(sim)
    outage = profile.outage_seconds
    # Events before, during and after the outage.
    lead_in = 2.0
    stream = EventStream(
        stack.producer(),
        sim.base_url,
        account.apikey,
        rate=profile.outage_rate,
        duration=lead_in + outage + 2.0,
        prefix=f"addon-{mode}-{int(time.time())}",
    )
    stream.start()
    try:
        time.sleep(lead_in)
        down_at = time.time()
        sim.addon_down(DOWN_ADDON, mode)  # type: ignore[arg-type]
        time.sleep(outage)
        sim.addon_up(DOWN_ADDON)
        up_at = time.time()
        assert stream.join(outage + 120), "the event stream did not finish"
    finally:
        stream.stop()
        sim.addon_up(DOWN_ADDON)
    expected = stream.expected(chaos.addon_paths)
    all_called = wait_all_called(tally, expected, timeout=profile.recovery_timeout)

    recovered_at = tally.last_success_time(expected)
    letters = chaos.letters_for({e.event_id for e in stream.sent})
    duplicates = tally.duplicates(expected)
    down_calls = tally.count(addon=DOWN_ADDON, start=down_at, end=up_at)
    down_failed = tally.count(addon=DOWN_ADDON, start=down_at, end=up_at, failed=True)
    up_calls = tally.count(addon=UP_ADDON, start=down_at, end=up_at, failed=False)
    # Each probe cycle lasts the open time plus, for a hung addon, the read timeout the probe waits out.
    cycle = chaos.breaker_open_seconds + (chaos.http_read_timeout if mode == "hang" else 0.0)
    bound = chaos.breaker_threshold + chaos.trigger_concurrency + math.ceil(outage / cycle) + 1
    events_in_outage = sum(1 for e in stream.sent if down_at <= e.sent_at < up_at)
    base, cap = chaos.backoff
    figures(
        f"3. addon outage ({mode}, {outage:g}s)",
        events_sent=len(stream.sent),
        events_sent_during_outage=events_in_outage,
        addon_calls_expected=len(expected),
        addon_calls_seen=len(tally.calls),
        calls_to_down_addon_during_outage=down_calls,
        of_which_failed=down_failed,
        bound_on_calls_during_outage=bound,
        successful_calls_to_other_addon_during_outage=up_calls,
        pairs_called=len(expected) - len(tally.missing(expected)),
        duplicate_pairs=len(duplicates),
        dead_letters=len(letters),
        retry_budget=f"{chaos.max_retries} retries, backoff {base:g}-{cap:g}s",
        seconds_to_recover_after_addon_back=(recovered_at - up_at) if recovered_at else "never",
    )
    assert all_called, (
        f"{len(tally.missing(expected))} (asset, addon) pairs never called: {tally.missing(expected)[:5]}; "
        f"broker: {chaos.broker_state()}"
    )
    assert not letters, [(dl.reason_code, dl.reason) for dl in letters[:5]]
    assert not duplicates, duplicates
    assert down_calls <= bound, f"{down_calls} calls to the failing addon during a {outage:g}s outage"
    # The breaker is per addon: the other one kept working during the outage.
    assert up_calls > 0
