"""supervisord event listener: when a program cannot be kept running, stop supervisord so the container exits.

Runs as ``[eventlistener:fatal-exit]`` in supervisord.conf, subscribed to two events:

* ``PROCESS_STATE_FATAL``: the program could not start (it exited ``startretries`` + 1 times, each within
  ``startsecs``);
* ``PROCESS_STATE_EXITED`` with ``expected:0``: the program ran, then died (a crash, an out-of-memory kill). When
  one program does so ``POSTPROCESS_CRASH_LIMIT`` times (default 5) within
  ``POSTPROCESS_CRASH_WINDOW_SECONDS`` (default 300), it is crash-looping: treated like FATAL.

Either way the listener appends the program's name to ``$POSTPROCESS_RUN_DIR/fatal`` (the marker the entrypoint
turns into exit code 1) and sends SIGTERM to supervisord, its parent: supervisord then stops the other programs
gracefully (Celery warm shutdown) and exits, and Swarm replaces the container. Standard library only: it runs on
the host in tests as in the image.

The protocol (supervisor docs, "Events"): write ``READY``, read a header line and ``len`` bytes of payload,
answer ``RESULT 2\\nOK``. stdout is the protocol channel, so every log line goes to stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

FATAL_MARKER = "fatal"
DEFAULT_CRASH_LIMIT = 5
DEFAULT_CRASH_WINDOW_SECONDS = 300.0


def parse_tokens(line: str) -> dict[str, str]:
    """``"a:1 b:2"`` -> ``{"a": "1", "b": "2"}`` (supervisor's header and payload format)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


class CrashCounter:
    """Unexpected exits per program within a sliding window; says when a program is crash-looping."""

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._exits: defaultdict[str, deque[float]] = defaultdict(deque)

    def record(self, program: str) -> bool:
        """Count one unexpected exit of ``program``; True when it reached the limit within the window."""
        now = self._clock()
        exits = self._exits[program]
        exits.append(now)
        while exits and now - exits[0] > self.window:
            exits.popleft()
        return len(exits) >= self.limit


class Listener:
    """Decides, per event, whether supervisord must stop; records why in the marker file."""

    def __init__(
        self, marker: Path | None, crashes: CrashCounter, stop: Callable[[], None], settle_seconds: float = 1.0
    ) -> None:
        self.marker = marker
        self.crashes = crashes
        self._stop = stop
        self.settle_seconds = settle_seconds

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Listener:
        """Marker in ``POSTPROCESS_RUN_DIR``, limits from ``POSTPROCESS_CRASH_*``; stopping signals our parent."""
        run_dir = environ.get("POSTPROCESS_RUN_DIR")
        try:
            limit = max(1, int(environ.get("POSTPROCESS_CRASH_LIMIT", DEFAULT_CRASH_LIMIT)))
            window = float(environ.get("POSTPROCESS_CRASH_WINDOW_SECONDS", DEFAULT_CRASH_WINDOW_SECONDS))
        except ValueError:  # a listener that dies on a typo would leave the container unguarded
            print("fatal-exit: bad POSTPROCESS_CRASH_* value, using the defaults", file=sys.stderr, flush=True)
            limit, window = DEFAULT_CRASH_LIMIT, DEFAULT_CRASH_WINDOW_SECONDS
        return cls(Path(run_dir) / FATAL_MARKER if run_dir else None, CrashCounter(limit, window), stop_parent)

    def handle(self, event: str, payload: str) -> None:
        """React to one event (``eventname`` and the first line of its payload)."""
        fields = parse_tokens(payload.split("\n", 1)[0])
        program = fields.get("processname", "?")
        group = fields.get("groupname", program)
        name = program if group == program else f"{group}:{program}"
        if event == "PROCESS_STATE_FATAL":
            self._give_up(name, "could not start (FATAL)")
        elif event == "PROCESS_STATE_EXITED" and fields.get("expected") == "0" and self.crashes.record(name):
            self._give_up(name, f"crashed {self.crashes.limit} times within {self.crashes.window:g}s")

    def _give_up(self, name: str, why: str) -> None:
        print(f"fatal-exit: program {name} {why}: stopping supervisord", file=sys.stderr, flush=True)
        if self.marker is not None:
            with self.marker.open("a", encoding="utf-8") as out:
                out.write(f"{name}\n")
        # supervisord restarts a crashed program at once; a stop signal sent to its process group before the new
        # child has called setpgrp() is lost (ESRCH, ignored), and the stop would then wait stopwaitsecs for it.
        time.sleep(self.settle_seconds)
        self._stop()


def stop_parent() -> None:
    """SIGTERM to supervisord (our parent); never to init, which a listener orphaned from supervisord would see."""
    parent = os.getppid()
    if parent > 1:
        os.kill(parent, signal.SIGTERM)


def serve(stdin: TextIO, stdout: TextIO, listener: Listener) -> None:
    """Answer supervisord's events until it closes our stdin."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        header = parse_tokens(header_line)
        payload = stdin.read(int(header.get("len", "0")))
        listener.handle(header.get("eventname", ""), payload)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main() -> int:
    """Entry point: serve events on stdin/stdout."""
    serve(sys.stdin, sys.stdout, Listener.from_environment(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
