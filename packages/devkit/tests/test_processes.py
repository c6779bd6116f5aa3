"""ManagedProcess with real child processes: readiness, logs, graceful stop, group kill, failed start."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from asset_post_process.devkit.launcher import child_env, isolated_env, settings_from_env
from asset_post_process.devkit.ports import wait_for
from asset_post_process.devkit.processes import LaunchError, ManagedProcess

# A program that starts a grandchild, says "ready." and then waits; on SIGTERM it says goodbye and exits.
PROGRAM = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("grandchild", child.pid, flush=True)
    def bye(*_):
        print("warm shutdown", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye if sys.argv[1] == "polite" else signal.SIG_IGN)
    print("node@host ready.", flush=True)
    for _ in range(600):
        time.sleep(1)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _program(tmp_path: Path, mode: str) -> ManagedProcess:
    return ManagedProcess(
        "toy",
        [sys.executable, "-c", PROGRAM, mode],
        child_env({}),
        tmp_path / "logs" / "toy.log",
        lambda p: "ready." in p.read_log(since_start=True),
    )


def _grandchild(process: ManagedProcess) -> int:
    assert wait_for(lambda: "grandchild" in process.read_log(), timeout=10)
    return int(process.read_log().split("grandchild", 1)[1].split()[0])


def test_start_waits_for_ready_and_stop_is_graceful_then_group_is_gone(tmp_path: Path) -> None:
    process = _program(tmp_path, "polite")
    process.start(timeout=20)
    assert process.running
    grandchild = _grandchild(process)
    assert _alive(grandchild)
    assert process.stop(timeout=10) == 0
    assert "warm shutdown" in process.read_log()
    assert wait_for(lambda: not _alive(grandchild), timeout=5)  # the group was killed after the main exited


def test_stop_kills_a_program_that_ignores_sigterm(tmp_path: Path) -> None:
    process = _program(tmp_path, "stubborn")
    process.start(timeout=20)
    assert process.stop(timeout=0.5) == -9


def test_kill_takes_the_whole_group_and_start_again_appends_to_the_log(tmp_path: Path) -> None:
    process = _program(tmp_path, "polite")
    process.start(timeout=20)
    first_grandchild = _grandchild(process)
    process.kill()
    assert not process.running
    assert wait_for(lambda: not _alive(first_grandchild), timeout=5)
    process.start(timeout=20)  # readiness is read from the new run's part of the log only
    assert process.read_log().count("ready.") == 2
    assert process.read_log(since_start=True).count("ready.") == 1
    process.stop(timeout=10)


def test_a_program_that_exits_while_starting_raises_with_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('bad configuration: POSTPROCESS_X'); sys.exit(3)"],
        child_env({}),
        tmp_path / "broken.log",
        lambda _: False,
    )
    with pytest.raises(LaunchError, match="exited with 3") as failed:
        process.start(timeout=20)
    assert "bad configuration" in str(failed.value)


def test_child_env_drops_outside_settings_and_stacks_are_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTPROCESS_REDIS_URL", "redis://elsewhere:6379/0")
    env = child_env({"POSTPROCESS_LOG_LEVEL": "DEBUG"})
    assert "POSTPROCESS_REDIS_URL" not in env
    assert env["POSTPROCESS_LOG_LEVEL"] == "DEBUG"

    base = {"POSTPROCESS_APIKEY_KEYS": "x" * 43 + "=", "POSTPROCESS_ADDON_URLS": '{"FACE_RECOGNITION": "http://a/"}'}
    one, two = isolated_env("one", base), isolated_env("two", base)
    assert one["POSTPROCESS_PROCESS_QUEUE"] != two["POSTPROCESS_PROCESS_QUEUE"]
    assert one["POSTPROCESS_TRIGGER_QUEUE"] != two["POSTPROCESS_TRIGGER_QUEUE"]
    assert one["POSTPROCESS_KEY_PREFIX"] != two["POSTPROCESS_KEY_PREFIX"]
    settings = settings_from_env(one)
    assert settings.process_queue == "one.process"
    assert settings.addon_urls == {"FACE_RECOGNITION": "http://a"}
    assert isolated_env("one", {**base, "POSTPROCESS_KEY_PREFIX": "mine"})["POSTPROCESS_KEY_PREFIX"] == "mine"
