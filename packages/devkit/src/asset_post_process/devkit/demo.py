"""``make demo``: the whole service on this machine against a simulated FileSpin, and what it decided.

Provisions a Redis, serves the FileSpin simulator with a small account (three addons with different hooks and
content types; photos, a video, a PDF), starts the three programs (under the project's ``supervisord.conf`` when
supervisord is installed, else directly), sends a mix of events through the public producer API, waits (bounded)
until the simulator received what the decisions call for, and prints per event which addons were called and
which were skipped, and why (from the process worker's decision log). Then it stops everything, unless
``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.redis_provision import provision_redis
from asset_post_process.devkit.simulator import FACE_DELETE, RecordedCall, SimulatorClient, run_simulator
from asset_post_process.devkit.simulator.models import addon_endpoint
from asset_post_process.devkit.waiting import WaitTimeout, wait_until

ADDONS = ("FACE_RECOGNITION", "SCENE_CLASSIFICATION", "EMOTION_RECOGNITION")
SHORT = {"FACE_RECOGNITION": "face", "SCENE_CLASSIFICATION": "scene", "EMOTION_RECOGNITION": "emotion"}
KEEP_HOURS = 24
FINAL_OUTCOMES = frozenset({"planned", "asset_not_found", "dead_lettered"})
DELETE_ENDPOINTS = {"FACE_RECOGNITION": FACE_DELETE}


class Stack(Protocol):
    """What the demo needs of a running service (a :class:`ServiceStack` or a supervisord-run one)."""

    name: str

    def producer(self) -> EventProducer: ...
    def decisions(self) -> DecisionLog: ...
    def stop(self, timeout: float = ...) -> None: ...

    @property
    def api_url(self) -> str: ...


@dataclass
class DemoEvent:
    """One event the demo sends, and what came of it."""

    label: str
    asset: dict[str, Any]
    event_type: str
    addons: list[str] | None = None
    force: bool = False
    duplicate_of: DemoEvent | None = None
    message: dict[str, Any] = field(default_factory=dict)
    entry: dict[str, Any] | None = None

    @property
    def event_id(self) -> str:
        """The event id the message carries."""
        return str(self.message.get("event_id", ""))


def demo_account() -> tuple[factory.Account, dict[str, dict[str, Any]]]:
    """A user with three addons hooked differently, and a handful of assets."""
    criteria = {"data_schema_id": 1, "fields": {"assetCode": "GM"}}
    settings = factory.user_settings(
        # Faces: in every new image; its data is deleted with the image.
        factory.addon(
            "FACE_RECOGNITION",
            hooks={"file-saved": factory.hook(["image/*"]), "file-deleted": factory.hook(["image/*"])},
        ),
        # Scenes: JPEG photos when saved, and any image once tagged assetCode=GM (schema 1).
        factory.addon(
            "SCENE_CLASSIFICATION",
            hooks={
                "file-saved": factory.hook(["image/jpeg"]),
                "file-data-updated": factory.hook(["image/*"], schema_criteria=criteria),
                "file-deleted": factory.hook(["image/*"]),
            },
        ),
        # Emotions: PNGs and videos when saved (but the addon itself only takes images).
        factory.addon("EMOTION_RECOGNITION", hooks={"file-saved": factory.hook(["image/png", "video/*"])}),
    )
    assets = {
        "beach.jpg": factory.image_asset(name="beach.jpg"),
        "logo.png": factory.image_asset(name="logo.png", content_type="image/png"),
        "keynote.mp4": factory.video_asset(name="keynote.mp4"),
        "report.pdf": factory.document_asset(name="report.pdf"),
        "product.jpg": factory.image_asset(name="product.jpg", data_schema_id=1, data={"assetCode": "GM"}),
        "portrait.jpg": factory.image_asset(name="portrait.jpg", data={"_filespin_fr_count": 2}),
    }
    account = factory.Account(settings=settings, assets=list(assets.values()))
    return account, assets


def demo_events(assets: dict[str, dict[str, Any]]) -> list[list[DemoEvent]]:
    """The events, in phases (a phase is sent once the one before it is done)."""
    forced = DemoEvent("forced re-run", assets["portrait.jpg"], "file-saved", addons=["FACE_RECOGNITION"], force=True)
    first = [
        DemoEvent("new photo", assets["beach.jpg"], "file-saved"),
        DemoEvent("new logo", assets["logo.png"], "file-saved"),
        DemoEvent("new video", assets["keynote.mp4"], "file-saved"),
        DemoEvent("new PDF", assets["report.pdf"], "file-saved"),
        DemoEvent("tagged GM", assets["product.jpg"], "file-data-updated"),
        DemoEvent("data edited", assets["beach.jpg"], "file-data-updated"),
        DemoEvent("faces only", assets["portrait.jpg"], "file-saved", addons=["FACE_RECOGNITION"]),
    ]
    second = [forced]
    # The broker delivering the forced event a second time (same message, same event id), and a deletion.
    third = [
        DemoEvent(
            "redelivered",
            assets["portrait.jpg"],
            "file-saved",
            addons=["FACE_RECOGNITION"],
            force=True,
            duplicate_of=forced,
        ),
        DemoEvent("deleted", assets["beach.jpg"], "file-deleted"),
    ]
    return [first, second, third]


def send(events: Sequence[DemoEvent], producer: EventProducer, apikey: str, simulator: SimulatorClient) -> None:
    """Build and send each event through the public producer API (a duplicate resends its original)."""
    for event in events:
        if event.duplicate_of is not None:
            event.message = event.duplicate_of.message
        else:
            asset_data = event.asset if event.event_type == "file-deleted" else None
            if asset_data is not None:
                simulator.delete_asset(str(event.asset["id"]))  # FileSpin may purge the asset before we read it
            event.message = producer.build_message(
                apikey=apikey,
                asset_id=str(event.asset["id"]),
                event_type=event.event_type,
                addons=event.addons,
                force_processing=event.force,
                asset_data=asset_data,
                event_id=f"demo-{uuid.uuid4().hex[:12]}",
            )
        producer.send_message(event.message)


def _entries_for(decisions: DecisionLog, event: DemoEvent) -> list[dict[str, Any]]:
    """The event's decision-log entries, oldest first."""
    latest = decisions.latest(str(event.asset["id"]), limit=50)
    return [e for e in reversed(latest) if e.get("event_id") == event.event_id]


def wait_decided(events: Sequence[DemoEvent], decisions: DecisionLog, timeout: float) -> None:
    """Wait until each event has its final decision-log entry (a duplicate: its second one)."""

    def all_decided() -> bool:
        for event in events:
            final = [e for e in _entries_for(decisions, event) if e.get("outcome") in FINAL_OUTCOMES]
            needed = 2 if event.duplicate_of is not None else 1
            if len(final) < needed:
                return False
            event.entry = final[needed - 1]
        return True

    wait_until(all_decided, timeout=timeout, interval=0.2, message="the decision log of every event")


def expected_calls(events: Sequence[DemoEvent], decisions: DecisionLog) -> Counter[tuple[str, str]]:
    """(asset id, simulator endpoint) -> calls the dispatched decisions call for.

    Every entry of an event counts, not only its final one: two deliveries of one event handled at the same
    time may each dispatch some addons and defer the rest, so the dispatches can sit in earlier entries.
    """
    expected: Counter[tuple[str, str]] = Counter()
    for event in {e.event_id: e for e in events}.values():
        for entry in _entries_for(decisions, event):
            for decision in entry.get("decisions", []):
                if decision.get("outcome") != "dispatched":
                    continue
                addon = str(decision["addon"])
                expected[(str(event.asset["id"]), _endpoint(addon, decision.get("action")))] += 1
    return expected


def seen_calls(calls: Sequence[RecordedCall]) -> Counter[tuple[str, str]]:
    """(asset id, endpoint) -> answered addon calls the simulator received."""
    seen: Counter[tuple[str, str]] = Counter()
    for call in calls:
        if call.status is None or call.endpoint in ("settings", "asset_data"):
            continue
        ids = call.json.get("ids", []) if call.endpoint == FACE_DELETE and isinstance(call.json, dict) else []
        for asset_id in ids or [call.asset_id]:
            seen[(str(asset_id), call.endpoint)] += 1
    return seen


def wait_called(expected: Counter[tuple[str, str]], simulator: SimulatorClient, timeout: float) -> None:
    """Wait until the simulator answered at least the expected calls."""

    def done() -> bool:
        seen = seen_calls(simulator.calls())
        return all(seen[key] >= count for key, count in expected.items())

    wait_until(done, timeout=timeout, interval=0.2, message="the addon calls the decisions call for")


def _endpoint(addon: str, action: str | None) -> str:
    return DELETE_ENDPOINTS.get(addon, "") if action == "delete" else addon_endpoint(addon)


def render(events: Sequence[DemoEvent], simulator: SimulatorClient) -> str:
    """The table: one line per (event, addon), then totals."""
    answered: dict[tuple[str, str], list[RecordedCall]] = {}
    for call in simulator.calls():
        if call.status is None or call.endpoint in ("settings", "asset_data"):
            continue
        ids = call.json.get("ids", []) if call.endpoint == FACE_DELETE and isinstance(call.json, dict) else []
        for asset_id in ids or [call.asset_id]:
            answered.setdefault((str(asset_id), call.endpoint), []).append(call)
    total_answered = sum(len(calls) for calls in answered.values())

    width = 118
    lines = [f"{'#':>2}  {'what':<14} {'event':<24} {'asset':<13} {'addon':<8} {'result':<8} why", "-" * width]
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for number, event in enumerate(events, start=1):
        entry = event.entry or {}
        flags = f" [{','.join(SHORT.get(a, a) for a in event.addons)}]" if event.addons else ""
        flags += " force" if event.force else ""
        prefix = f"{number:>2}  {event.label:<14} {event.event_type + flags:<24} {event.asset['name']:<13}"
        decisions = entry.get("decisions", [])
        if not decisions:
            outcome = str(entry.get("outcome", "?"))
            lines.append(f"{prefix} {'-':<8} {outcome:<8} {entry.get('reason', 'no decision recorded')}")
            totals[outcome] += 1
            continue
        for index, decision in enumerate(decisions):
            addon, action = str(decision["addon"]), decision.get("action")
            outcome, code = decision.get("outcome"), str(decision.get("reason_code", "?"))
            if outcome == "dispatched":
                calls = answered.get((str(event.asset["id"]), _endpoint(addon, action)), [])
                status = f"HTTP {calls.pop(0).status}" if calls else "sent"
                result = "DELETED" if action == "delete" else "CALLED"
                why = status if code == "run" else f"{status}; {decision.get('reason', '')}"
                totals["called"] += 1
            elif outcome == "already_dispatched":
                result, why = "dup", "already dispatched for this event id: not sent again"
                totals["duplicate"] += 1
            else:
                result, why = "skipped", str(decision.get("reason", ""))
                totals["skipped"] += 1
                reasons[code] += 1
            lines.append(
                f"{prefix if index == 0 else ' ' * len(prefix)} {SHORT.get(addon, addon):<8} {result:<8} {why}"
            )
    lines.append("-" * width)
    lines.append(
        f"{len(events)} events, {totals['called'] + totals['skipped'] + totals['duplicate']} addon decisions: "
        f"{totals['called']} called, {totals['skipped']} skipped, {totals['duplicate']} duplicate(s) not re-sent; "
        f"the simulator answered {total_answered} addon call(s)."
    )
    if reasons:
        lines.append("skipped because: " + ", ".join(f"{code} {n}" for code, n in reasons.most_common()))
    return "\n".join(lines)


@contextmanager
def start_stack(env: dict[str, str], logs_dir: Path, *, direct: bool) -> Iterator[tuple[Stack, str]]:
    """The three programs: under supervisord.conf when possible (unless ``direct``), else via the launcher."""
    if not direct:
        from asset_post_process.devkit.supervised import SupervisedStack, repository_root, supervisord_available

        if supervisord_available():
            with SupervisedStack(env, logs_dir=logs_dir, name="demo") as supervised:
                yield supervised, f"under supervisord ({repository_root()}/supervisord.conf)"
            return
    with ServiceStack(env, logs_dir=logs_dir, name="demo") as stack:
        yield stack, "started directly"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="stay up after the table until Ctrl-C")
    parser.add_argument("--direct", action="store_true", help="start the programs directly, not under supervisord")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each phase of events may take at most (default 30)"
    )
    parser.add_argument("--logs", type=Path, default=Path(".demo/logs"), help="where the programs' logs go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: everything started is stopped either way
    if args.logs.exists():
        shutil.rmtree(args.logs, ignore_errors=True)
    args.logs.mkdir(parents=True, exist_ok=True)

    with ExitStack() as resources:
        try:
            redis_server = resources.enter_context(provision_redis())
            print(f"Redis:     {redis_server.kind} at {redis_server.url} ({redis_server.detail})")
            simulator = resources.enter_context(run_simulator())
            account, assets = demo_account()
            account.load_into(simulator)
            print(f"FileSpin:  simulator at {simulator.base_url}, 1 user, {len(assets)} assets, 3 addons")
            env = {
                "POSTPROCESS_REDIS_URL": redis_server.url,
                "POSTPROCESS_FILESPIN_API_URL": simulator.base_url,
                "POSTPROCESS_APIKEY_KEYS": factory.new_fernet_key(),
                "POSTPROCESS_KEY_PREFIX": "demo",
                "POSTPROCESS_LOG_LEVEL": "INFO",
                "POSTPROCESS_HEARTBEAT_TTL_SECONDS": "5",
                "POSTPROCESS_RETRY_BACKOFF_BASE_SECONDS": "0.5",
                "POSTPROCESS_RETRY_BACKOFF_MAX_SECONDS": "5",
            }
            stack, how = resources.enter_context(start_stack(env, args.logs, direct=args.direct))
            print(f"Service:   process worker, trigger worker and health API {how}")
            print(f"           health API at {stack.api_url}, logs in {args.logs}/")
            producer, decisions = stack.producer(), stack.decisions()
            all_events: list[DemoEvent] = []
            for phase in demo_events(assets):
                send(phase, producer, account.apikey, simulator)
                all_events.extend(phase)
                phase_deadline = time.monotonic() + args.timeout
                wait_decided(phase, decisions, args.timeout)
                wait_called(expected_calls(phase, decisions), simulator, max(1.0, phase_deadline - time.monotonic()))
            print()
            print(render(all_events, simulator))
            print(f"\ndone in {time.monotonic() - started:.1f}s")
            if args.keep:
                print(f"\n--keep: everything stays up until Ctrl-C (or {KEEP_HOURS} hours).")
                threading.Event().wait(KEEP_HOURS * 3600)
        except WaitTimeout as exc:
            print(f"\nthe service did not finish in time: {exc}\nsee the logs in {args.logs}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
