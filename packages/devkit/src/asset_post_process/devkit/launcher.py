"""Runs the real programs (the two Celery workers and the health API) as subprocesses for tests and the demo.

    stack = ServiceStack(base_env, logs_dir=Path("test-logs"))   # its own queues and key prefix
    with stack:                                                   # starts both workers and the API, ready
        stack.producer().enqueue_asset_event(apikey=..., asset_id=..., event_type="file-saved")
        ...
        stack.process_worker.kill()                               # SIGKILL, for fault tests

Commands are DESIGN.md's: ``celery -A asset_post_process.<kind>_worker.app worker -Q <queue>`` and
``gunicorn -c <the health API's config> asset_post_process.health_api.app:app``, run by this interpreter
(``python -m celery``, ``python -m gunicorn``) so they come from the same environment.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import sys
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.keys import Keys
from asset_post_process.common.producer import EventProducer
from asset_post_process.common.settings import ENV_PREFIX, Settings, env_name
from asset_post_process.devkit.ports import free_port
from asset_post_process.devkit.processes import LaunchError, ManagedProcess

log = logging.getLogger(__name__)

PROCESS_APP = "asset_post_process.process_worker.app"
TRIGGER_APP = "asset_post_process.trigger_worker.app"
HEALTH_APP = "asset_post_process.health_api.app:app"
HEALTH_GUNICORN_CONF = "asset_post_process.health_api.gunicorn_conf"

#: Celery's "<node> ready." line (logged when the worker consumes), as text or inside a JSON log line.
_READY_LINE = re.compile(r"@\S+ ready\.")

__all__ = [
    "CeleryWorker",
    "HealthApiProcess",
    "LaunchError",
    "ManagedProcess",
    "ServiceStack",
    "StackClients",
    "celery_worker",
    "health_api",
    "settings_from_env",
]


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The :class:`Settings` the programs started with ``env`` will read (without touching ``os.environ``)."""
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = env.get(env_name(name))
        if raw is None:
            continue
        values[name] = json.loads(raw) if typing.get_origin(field.annotation) is dict else raw
    return Settings(**values)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``POSTPROCESS_*`` variable, plus ``env``: nothing leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    base["PYTHONUNBUFFERED"] = "1"
    return {**base, **env}


def _heartbeat_since(env: Mapping[str, str], kind: str, node: str, since: float) -> bool:
    settings_url = env.get(env_name("cache_url")) or env.get(env_name("redis_url"))
    if not settings_url:
        return False
    keys = Keys(env.get(env_name("key_prefix"), "postprocess"))
    client = redis.Redis.from_url(settings_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        score = client.zscore(keys.heartbeats(kind), node)
    except redis.RedisError:
        return False
    finally:
        client.close()
    return score is not None and score >= since - 1


class CeleryWorker(ManagedProcess):
    """A Celery worker program; ``node`` is its ``-n`` node name (unique per launch)."""

    def __init__(self, *args: Any, kind: str, node: str, queue: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.node = node
        self.queue = queue


class HealthApiProcess(ManagedProcess):
    """The health API under Gunicorn; ``url`` is its base URL."""

    def __init__(self, *args: Any, url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = url


def celery_worker(
    kind: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    node: str | None = None,
    extra_args: Sequence[str] = (),
) -> CeleryWorker:
    """The ``process`` or ``trigger`` worker with ``env``, consuming its queue from the settings in ``env``.

    Ready when its heartbeat (written on Celery's ``worker_ready``) or its "ready." log line appears.
    """
    if kind not in ("process", "trigger"):
        raise ValueError(f"unknown worker kind {kind!r}")
    settings = settings_from_env(env)
    queue = settings.process_queue if kind == "process" else settings.trigger_queue
    node = node or f"{kind}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        PROCESS_APP if kind == "process" else TRIGGER_APP,
        "worker",
        "-Q",
        queue,
        "-n",
        node,
        "--loglevel",
        settings.log_level,
        "--without-mingle",  # no start-up sync with other nodes: faster, and stacks in one Redis stay apart
        "--without-gossip",
        *extra_args,
    ]
    full_env = child_env(env)

    def ready(process: ManagedProcess) -> bool:
        if _READY_LINE.search(process.read_log(since_start=True)):
            return True
        return _heartbeat_since(full_env, kind, node, process.started_at)

    return CeleryWorker(f"{kind}-worker", command, full_env, log_path, ready, kind=kind, node=node, queue=queue)


def health_api(env: Mapping[str, str], log_path: Path, *, port: int | None = None) -> HealthApiProcess:
    """The health API under Gunicorn on 127.0.0.1, with the health API's own config when it is installed."""
    port = port or free_port()
    bind = f"127.0.0.1:{port}"
    full_env = child_env({env_name("health_bind"): bind, env_name("health_workers"): "1", **env})
    command = [sys.executable, "-m", "gunicorn"]
    if importlib.util.find_spec(HEALTH_GUNICORN_CONF) is not None:
        command += ["-c", f"python:{HEALTH_GUNICORN_CONF}"]
    else:
        command += ["-k", "uvicorn_worker.UvicornWorker"]
    command += ["-b", bind, "-w", "1", HEALTH_APP]
    url = f"http://{bind}"

    def ready(_: ManagedProcess) -> bool:
        try:
            return httpx.get(f"{url}/livez", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return HealthApiProcess("health-api", command, full_env, log_path, ready, url=url)


class StackClients:
    """What tests and the demo use around a running stack: its settings, producer, Redis and decision log."""

    name: str
    env: dict[str, str]

    def _init_clients(self) -> None:
        self.settings = settings_from_env(self.env)
        self.keys = Keys(self.settings.key_prefix)
        self._producer: EventProducer | None = None
        self._redis: redis.Redis[bytes] | None = None

    def producer(self) -> EventProducer:
        """An :class:`EventProducer` sending to this stack's process queue (kept and closed with the stack)."""
        if self._producer is None:
            self._producer = EventProducer.from_settings(self.settings)
        return self._producer

    def redis(self) -> redis.Redis[bytes]:
        """A Redis client on this stack's cache URL."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.effective_cache_url, socket_timeout=5)
        return self._redis

    def decisions(self) -> DecisionLog:
        """The process worker's decision log in this stack's Redis namespace."""
        return DecisionLog(self.redis(), self.keys)

    def _close_clients(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None


def isolated_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus a key prefix and queue names of its own (derived from ``name``) unless ``env`` sets them."""
    return {
        env_name("key_prefix"): f"pp-{name}",
        env_name("process_queue"): f"{name}.process",
        env_name("trigger_queue"): f"{name}.trigger",
        **env,
    }


class ServiceStack(StackClients):
    """Process worker + trigger worker (+ the health API) sharing one environment, isolated from other stacks.

    Unless ``env`` sets them, the stack picks its own ``POSTPROCESS_KEY_PREFIX``, ``POSTPROCESS_PROCESS_QUEUE``
    and ``POSTPROCESS_TRIGGER_QUEUE`` (from ``name``), so stacks sharing one Redis never take each other's tasks.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        logs_dir: Path,
        name: str | None = None,
        with_api: bool = True,
        process_args: Sequence[str] = (),
        trigger_args: Sequence[str] = (),
    ) -> None:
        self.name = name or f"stack-{uuid.uuid4().hex[:8]}"
        self.env = isolated_env(self.name, env)
        self._init_clients()
        self.logs_dir = logs_dir
        self.process_worker = celery_worker(
            "process", self.env, logs_dir / f"{self.name}-process-worker.log", extra_args=process_args
        )
        self.trigger_worker = celery_worker(
            "trigger", self.env, logs_dir / f"{self.name}-trigger-worker.log", extra_args=trigger_args
        )
        self.api: HealthApiProcess | None = (
            health_api(self.env, logs_dir / f"{self.name}-health-api.log") if with_api else None
        )

    @property
    def programs(self) -> list[ManagedProcess]:
        """The stack's programs."""
        return [p for p in (self.process_worker, self.trigger_worker, self.api) if p is not None]

    @property
    def api_url(self) -> str:
        """The health API's base URL."""
        if self.api is None:
            raise RuntimeError("this stack runs without the health API")
        return self.api.url

    def start(self, timeout: float = 60.0) -> ServiceStack:
        """Start every program (all at once), then wait until each is ready; stops them all on failure."""
        try:
            for program in self.programs:
                program.start(wait=False)
            for program in self.programs:
                program.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info(
            "service stack %s ready: queues %s / %s, key prefix %s%s",
            self.name,
            self.settings.process_queue,
            self.settings.trigger_queue,
            self.settings.key_prefix,
            f", health API {self.api_url}" if self.api is not None else "",
        )
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every program (warm shutdown, then SIGKILL) and close this stack's clients."""
        for program in reversed(self.programs):
            program.stop(timeout)
        self._close_clients()

    def __enter__(self) -> ServiceStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def read_logs(self) -> dict[str, str]:
        """Every program's whole log, by program name."""
        return {program.name: program.read_log() for program in self.programs}

    def log_report(self, max_chars: int = 6000) -> str:
        """The end of each program's log, for a failing test's report."""
        parts = [f"----- {p.name} ({p.log_path}) -----\n{p.read_log()[-max_chars:]}" for p in self.programs]
        return "\n".join(parts)


@contextmanager
def running_stack(env: Mapping[str, str], *, logs_dir: Path, **options: Any) -> Iterator[ServiceStack]:
    """Start a :class:`ServiceStack`, yield it, stop it."""
    stack = ServiceStack(env, logs_dir=logs_dir, **options)
    with stack:
        yield stack
