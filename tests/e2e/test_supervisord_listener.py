"""docker/fatal_listener.py on its own: the event protocol, the FATAL rule and the crash-loop window.

(The listener also runs inside the real supervisord in test_supervisord.py; these pin its decisions exactly.)
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

LISTENER_PATH = Path(__file__).resolve().parents[2] / "docker" / "fatal_listener.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fatal_listener", LISTENER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fatal_listener = _load()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(name: str, payload: str) -> str:
    """One event as supervisord writes it to a listener's stdin."""
    header = f"ver:3.0 server:supervisor serial:1 pool:fatal-exit poolserial:1 eventname:{name} len:{len(payload)}"
    return f"{header}\n{payload}"


@pytest.fixture
def stops() -> list[str]:
    return []


@pytest.fixture
def listener(tmp_path: Path, stops: list[str]) -> Any:
    counter = fatal_listener.CrashCounter(3, 60.0, Clock())
    return fatal_listener.Listener(tmp_path / "fatal", counter, lambda: stops.append("stop"), settle_seconds=0)


def test_a_fatal_program_is_recorded_and_stops_supervisord(listener: Any, tmp_path: Path, stops: list[str]) -> None:
    listener.handle("PROCESS_STATE_FATAL", "processname:health-api groupname:postprocess from_state:BACKOFF")

    assert stops == ["stop"]
    assert (tmp_path / "fatal").read_text() == "postprocess:health-api\n"


def test_expected_exits_and_other_events_are_ignored(listener: Any, stops: list[str]) -> None:
    for _ in range(5):
        listener.handle("PROCESS_STATE_EXITED", "processname:w groupname:w from_state:RUNNING expected:1 pid:9")
    listener.handle("PROCESS_STATE_RUNNING", "processname:w groupname:w from_state:STARTING pid:9")

    assert stops == []


def test_unexpected_exits_stop_supervisord_at_the_limit() -> None:
    clock = Clock()
    counter = fatal_listener.CrashCounter(3, 60.0, clock)

    assert [counter.record("a"), counter.record("a")] == [False, False]
    assert counter.record("b") is False  # counted per program
    clock.now = 59.0
    assert counter.record("a") is True


def test_exits_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    counter = fatal_listener.CrashCounter(3, 60.0, clock)
    counter.record("a")
    clock.now = 30.0
    counter.record("a")
    clock.now = 61.0  # the first exit is now out of the window

    assert counter.record("a") is False
    clock.now = 62.0
    assert counter.record("a") is True


def test_serve_speaks_the_supervisor_protocol(listener: Any, tmp_path: Path, stops: list[str]) -> None:
    stdin = io.StringIO(
        event("PROCESS_STATE_EXITED", "processname:w groupname:w from_state:RUNNING expected:0 pid:9")
        + event("PROCESS_STATE_FATAL", "processname:w groupname:w from_state:BACKOFF")
    )
    stdout = io.StringIO()

    fatal_listener.serve(stdin, stdout, listener)

    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    assert stops == ["stop"]
    assert (tmp_path / "fatal").read_text() == "w\n"


def test_bad_crash_settings_fall_back_to_the_defaults(tmp_path: Path) -> None:
    built = fatal_listener.Listener.from_environment(
        {"POSTPROCESS_RUN_DIR": str(tmp_path), "POSTPROCESS_CRASH_LIMIT": "many"}
    )

    assert built.crashes.limit == fatal_listener.DEFAULT_CRASH_LIMIT
    assert built.marker == tmp_path / "fatal"
