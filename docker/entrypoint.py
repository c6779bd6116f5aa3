"""The container's entrypoint (PID 1): check the settings, run supervisord, exit non-zero if a program went FATAL.

    python3 docker/entrypoint.py [path/to/supervisord.conf]      (default: supervisord.conf beside docker/)

1. The service settings are loaded once: a missing or bad ``POSTPROCESS_*`` variable stops the container here
   with exit code 3 and one line naming the variable, instead of three programs crash-looping.
2. The variables supervisord.conf expands get their values when they are not set:
   ``POSTPROCESS_PROCESS_QUEUE`` / ``POSTPROCESS_TRIGGER_QUEUE`` from those same settings (so the ``-Q`` of each
   worker and the Celery app's routes cannot disagree; a ``_FILE`` variant is resolved into the plain variable)
   and ``POSTPROCESS_RUN_DIR`` (control socket, pid file, FATAL marker; a fresh temporary directory by default).
   This interpreter's bin directory goes first on ``PATH``, so ``celery`` and ``gunicorn`` come from the same
   environment.
3. supervisord runs as the only child. SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to it
   (TERM: graceful stop of every program); as PID 1 this process also reaps orphaned processes.
   supervisord's stdout and stderr are pipes made here and copied to ours: supervisord.conf logs to
   ``/dev/stdout``, which a non-root supervisord can reopen only when it owns the file behind it, and the
   container's own stdio may belong to root (some runtimes, ``docker run --user``).
4. Exit code: 1 when the fatal-exit listener left its marker (a program could not start, or kept crashing),
   else supervisord's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path
from types import FrameType

EXIT_FATAL = 1
EXIT_CONFIG = 3
FATAL_MARKER = "fatal"  # written by fatal_listener.py
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
QUEUE_FIELDS = ("process_queue", "trigger_queue")


def log(message: str) -> None:
    """One line on stderr (the container's log)."""
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def prepare_environment(environ: MutableMapping[str, str]) -> None:
    """Validate the settings and fill in what supervisord.conf expands; raises ``ConfigurationError``."""
    from asset_post_process.common.settings import Settings, env_name, load_settings

    settings: Settings = load_settings()
    for field in QUEUE_FIELDS:
        name = env_name(field)
        if name not in environ:
            environ.pop(f"{name}_FILE", None)  # the value now travels in the plain variable (both set is an error)
            environ[name] = str(getattr(settings, field))
    if not environ.get("POSTPROCESS_RUN_DIR"):
        environ["POSTPROCESS_RUN_DIR"] = tempfile.mkdtemp(prefix="postprocess-supervisor-")
    Path(environ["POSTPROCESS_RUN_DIR"]).mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    environ["PATH"] = os.pathsep.join([bin_dir, environ.get("PATH", os.defpath)])


def default_config() -> Path:
    """supervisord.conf in the directory above this script (the repository root, or /opt/postprocess)."""
    return Path(__file__).resolve().parent.parent / "supervisord.conf"


def copy_stream(source: int, target: int) -> None:
    """Copy bytes from the ``source`` fd to the ``target`` fd until end of file; close ``source``."""
    try:
        while chunk := os.read(source, 65536):
            view = memoryview(chunk)
            while view:
                view = view[os.write(target, view) :]
    except OSError:
        pass  # our own stdout is gone: nothing left to write to
    finally:
        os.close(source)


def relay(target: int) -> tuple[int, threading.Thread]:
    """A pipe whose bytes a daemon thread copies to ``target``; returns the pipe's write end and the thread."""
    read_end, write_end = os.pipe()
    thread = threading.Thread(target=copy_stream, args=(read_end, target), name=f"relay-{target}", daemon=True)
    thread.start()
    return write_end, thread


def run_supervisord(config: Path) -> int:
    """Run supervisord until it exits, passing signals on and reaping every child; its exit code."""
    child: dict[str, int] = {}
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if "pid" not in child:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):  # supervisord has just exited: nothing left to tell
            os.kill(child["pid"], signum)

    for forwarded in FORWARDED_SIGNALS:
        signal.signal(forwarded, forward)
    (out, out_thread), (err, err_thread) = relay(1), relay(2)
    argv = [sys.executable, "-m", "supervisor.supervisord", "--configuration", str(config)]
    redirect = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
    child["pid"] = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=redirect)
    os.close(out)
    os.close(err)
    for early in pending:
        os.kill(child["pid"], early)
    code = EXIT_FATAL
    while True:
        try:
            pid, status = os.waitpid(-1, 0)  # any child: as PID 1 we inherit orphans and must reap them
        except ChildProcessError:
            break  # cannot happen while supervisord runs; never loop on it
        if pid == child["pid"]:
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            break
    for thread in (out_thread, err_thread):
        thread.join(timeout=5)  # the last lines; an orphan still holding a pipe open must not keep us here
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    config = Path(args[0]) if args else default_config()
    from asset_post_process.common.settings import ConfigurationError

    try:
        prepare_environment(os.environ)
    except ConfigurationError as exc:
        log(str(exc))
        return EXIT_CONFIG
    marker = Path(os.environ["POSTPROCESS_RUN_DIR"]) / FATAL_MARKER
    marker.unlink(missing_ok=True)
    code = run_supervisord(config)
    if marker.exists():
        programs = ", ".join(marker.read_text(encoding="utf-8").split())
        log(f"supervisord was stopped by the fatal-exit listener; program(s) not kept running: {programs}")
        return EXIT_FATAL
    log(f"supervisord exited with code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
