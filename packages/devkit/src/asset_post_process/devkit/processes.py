"""Child processes the devkit runs: started in their own process group, logged to a file, stopped for sure."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from asset_post_process.devkit.ports import wait_for


class LaunchError(RuntimeError):
    """A program did not become ready (the message carries the end of its log)."""


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved here in the parent: a child between fork and exec must not import anything."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child when the thread that started it dies, so no server outlives its test run.

    Start children from a long-lived thread (the main thread): the signal fires when the starting thread ends.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _new_group_dying_with_parent() -> None:  # pragma: no cover - runs in the child
    os.setsid()
    die_with_parent()


class ManagedProcess:
    """One program run as a child: its own process group, stdout and stderr appended to ``log_path``.

    ``ready(self)`` tells when it is ready; :meth:`start` waits for it (bounded) and raises :class:`LaunchError`
    with the log's tail if the program exits or stays unready. :meth:`stop` is SIGTERM (Celery's warm shutdown,
    Gunicorn's graceful stop), then SIGKILL of the whole group; :meth:`kill` is an immediate SIGKILL of the group.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[ManagedProcess], bool],
        *,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self._ready = ready
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.log_offset = 0

    @property
    def pid(self) -> int | None:
        """The main process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the main process is alive."""
        return self.pid is not None

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal)."""
        return None if self._process is None else self._process.poll()

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> None:
        """Start the program; with ``wait``, return once it is ready."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.log_offset = log_file.tell()
            self.started_at = time.time()
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_new_group_dying_with_parent,  # setsid + parent-death signal, nothing else
            )
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until the program is ready; :class:`LaunchError` if it exits or times out."""
        process = self._process
        if process is None:
            raise LaunchError(f"{self.name} was not started")
        ready = wait_for(lambda: process.poll() is not None or self._ready(self), timeout=timeout, interval=0.1)
        if process.poll() is not None:
            raise LaunchError(f"{self.name} exited with {process.returncode} while starting:\n{self.log_tail()}")
        if not ready:
            self.kill()
            raise LaunchError(f"{self.name} was not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the main process, wait up to ``timeout``, then SIGKILL the group; returns the exit status."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        self._kill_group(process)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the main process and every process of its group (a crash, for fault tests)."""
        if self._process is not None:
            self._kill_group(self._process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def read_log(self, *, since_start: bool = False) -> str:
        """The program's log (all runs appended; ``since_start``: only the latest run)."""
        try:
            with open(self.log_path, "rb") as log_file:
                if since_start:
                    log_file.seek(self.log_offset)
                return log_file.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the latest run's log."""
        return self.read_log(since_start=True)[-max_chars:]
