"""2. Redis restarted (AOF, fsync always) under a steady stream of events.

Redis is stopped (SIGTERM, or SIGKILL: a crash) and kept down a few seconds, then started again on the same
port from its AOF. The workers must reconnect by themselves, keeping their PIDs; a worker that exits instead is
restarted as supervisord (``autorestart``) does in the image, so the figures still come out, and the scenario
fails (docs/reliability.md, finding 3).
The producer retries its sends while the broker is down, as the backend would. Every event's addons are
called in the end, nothing is dead-lettered, and the health check answers 503 while Redis is down and 200
again once it is back and the workers beat.

A job whose addon answered while Redis went away cannot write its done mark; its message is handed back
and it may call again (harmless for FileSpin, which answers 409). Such duplicates are counted and bounded by
restarts x trigger concurrency. No message may be lost: the broker transport fetches with BLMOVE into a
processing list (common/broker.py), and with the AOF fsynced on every write a restart keeps that list.
"""

from __future__ import annotations

import time
from typing import Any

from asset_post_process.devkit.chaos import CallTally, EventStream, HealthProbe, Supervisor, wait_all_called
from asset_post_process.devkit.waiting import wait_until


def test_redis_restarted_under_load(chaos: Any, profile: Any, figures: Any) -> None:
    stack, sim = chaos.stack, chaos.sim
    sim.set_addon_default("*", latency=0.2)
    sim.configure(api_latency=0.05)
    account = chaos.new_account()
    tally = CallTally(sim)
    pids = {p.name: p.pid for p in stack.programs}
    supervisor = Supervisor(stack.programs)

    def health_ok() -> bool:
        supervisor.check()
        return bool(chaos.health_status() == 200)

    def idle() -> bool:
        supervisor.check()
        return bool(chaos.idle())

    stream = EventStream(
        stack.producer(),
        sim.base_url,
        account.apikey,
        rate=profile.redis_rate,
        duration=profile.redis_duration,
        prefix=f"redis-{int(time.time())}",
    )
    outages: list[tuple[float, float]] = []
    health_back: list[float] = []
    gap = profile.redis_duration / (len(profile.redis_restarts) + 1)
    with HealthProbe(stack.api_url, interval=0.2) as probe:
        stream.start()
        started = time.time()
        try:
            for round_, (hard, down) in enumerate(profile.redis_restarts):
                time.sleep(max(0.0, started + gap * (round_ + 1) - time.time()))
                went_down = time.time()
                if hard:
                    chaos.redis.kill()
                else:
                    chaos.redis.stop()
                time.sleep(down)
                chaos.redis.start()
                supervisor.check()
                came_back = time.time()
                outages.append((went_down, came_back))
                wait_until(
                    health_ok,
                    timeout=120,
                    interval=0.2,
                    message="/healthcheck 200 after Redis came back",
                )
                health_back.append(time.time() - came_back)
            for _ in range(int(profile.redis_duration + 180)):
                supervisor.check()
                if stream.join(1.0):
                    break
            assert not stream.running, "the event stream did not finish"
        finally:
            stream.stop()
        expected = stream.expected(chaos.addon_paths)
        all_called = wait_all_called(tally, expected, timeout=profile.recovery_timeout, idle=idle)
        supervisor.check()

    recovered_at = tally.last_success_time(expected)
    missing = tally.missing(expected)
    lost = chaos.lost_messages(missing, {e.asset_id: e.event_id for e in stream.sent})
    letters = chaos.letters_for({e.event_id for e in stream.sent})
    duplicates = tally.duplicates(expected)
    extra_calls = sum(n - 1 for n in duplicates.values())
    bound = len(outages) * chaos.trigger_concurrency
    during = [s for start, end in outages for s in probe.statuses(start + 0.5, end)]
    figures(
        "2. Redis restarted under load",
        events_sent=len(stream.sent),
        send_retries_while_down=stream.send_errors,
        restarts=", ".join(f"{'SIGKILL' if h else 'SIGTERM'} {d:g}s down" for h, d in profile.redis_restarts),
        addon_calls_expected=len(expected),
        addon_calls_seen=len(tally.calls),
        pairs_called=len(expected) - len(missing),
        pairs_never_called=len(missing),
        every_pair_called=all_called,
        lost_process_asset_messages=lost["process_asset"],
        lost_trigger_addon_messages=lost["trigger_addon"],
        duplicate_pairs=len(duplicates),
        duplicate_calls=extra_calls,
        duplicate_bound=bound,
        dead_letters=len(letters),
        health_answers_while_down=f"{during.count(503)}x503 {sum(1 for s in during if s not in (200, 503))}xnone "
        f"{during.count(200)}x200",
        seconds_health_200_after_redis_back=max(health_back) if health_back else "never",
        seconds_to_recover_after_redis_back=(recovered_at - outages[-1][1]) if recovered_at and outages else "never",
        programs_exited=", ".join(f"{e.program} (status {e.returncode})" for e in supervisor.exits) or "none",
    )
    assert stream.unsent == 0
    # Every event's addons are called: a message fetched just before Redis went away sits in its worker's
    # processing list (persisted by the AOF) and comes back, so nothing is lost.
    assert lost == {"process_asset": 0, "trigger_addon": 0}, lost
    assert not missing, (
        f"{len(missing)} (asset, addon) pairs never called: {missing[:5]}; lost {lost}; broker: {chaos.broker_state()}"
    )
    assert not letters, [(dl.reason_code, dl.reason) for dl in letters[:5]]
    assert extra_calls <= bound, duplicates
    # The workers reconnected by themselves: none exited (the supervisor would have restarted it), same PIDs.
    # (Celery/kombu 5.7 used to exit here on an ack, reject or restore over the lost connection; common.broker's
    # QoS now leaves those messages to the visibility sweep.)
    assert not supervisor.exits, [(e.program, e.returncode, e.log_tail[-3000:]) for e in supervisor.exits]
    for program in stack.programs:
        assert program.pid == pids[program.name], f"{program.name} was restarted"
    # The health check saw the outage and recovered.
    assert 503 in during, f"no 503 while Redis was down: {during}"
    assert len(health_back) == len(outages)
