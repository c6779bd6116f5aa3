"""supervisord event listener: when a program goes FATAL, stop supervisord so the container exits.

Runs as ``[eventlistener:fatal-exit]`` (``events=PROCESS_STATE_FATAL``) in supervisord.conf. On a FATAL event it
appends the program's name to ``$POSTPROCESS_RUN_DIR/fatal`` (the marker the entrypoint turns into a non-zero
exit code) and sends SIGTERM to supervisord, its parent: supervisord then stops the other programs gracefully
(Celery warm shutdown) and exits. Standard library only: it runs on the host in tests as in the image.

The protocol (supervisor docs, "Events"): write ``READY``, read a header line and ``len`` bytes of payload,
answer ``RESULT 2\\nOK``; stdout is the protocol channel, so every log line goes to stderr.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TextIO

FATAL_MARKER = "fatal"


def parse_tokens(line: str) -> dict[str, str]:
    """``"a:1 b:2"`` -> ``{"a": "1", "b": "2"}`` (supervisor's header and payload format)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def marker_path(environ: dict[str, str] | None = None) -> Path | None:
    """Where the FATAL marker goes: ``$POSTPROCESS_RUN_DIR/fatal`` (None when the variable is not set)."""
    run_dir = (environ if environ is not None else dict(os.environ)).get("POSTPROCESS_RUN_DIR")
    return Path(run_dir) / FATAL_MARKER if run_dir else None


def on_fatal(program: str, marker: Path | None, supervisord_pid: int) -> None:
    """Record ``program`` in the marker and ask supervisord (``supervisord_pid``) to shut down."""
    print(f"fatal-exit: program {program} is FATAL: stopping supervisord", file=sys.stderr, flush=True)
    if marker is not None:
        with marker.open("a", encoding="utf-8") as out:
            out.write(f"{program}\n")
    if supervisord_pid > 1:  # never signal init: a listener orphaned from supervisord has nothing to stop
        os.kill(supervisord_pid, signal.SIGTERM)


def serve(stdin: TextIO, stdout: TextIO, marker: Path | None) -> None:
    """Answer supervisord's events until it closes our stdin."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        header = parse_tokens(header_line)
        payload = stdin.read(int(header.get("len", "0")))
        if header.get("eventname") == "PROCESS_STATE_FATAL":
            fields = parse_tokens(payload.split("\n", 1)[0])
            program = fields.get("processname", "?")
            group = fields.get("groupname", program)
            on_fatal(program if group == program else f"{group}:{program}", marker, os.getppid())
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main() -> int:
    """Entry point: serve events on stdin/stdout."""
    serve(sys.stdin, sys.stdout, marker_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
