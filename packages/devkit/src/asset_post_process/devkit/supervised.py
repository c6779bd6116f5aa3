"""The three programs under the project's own ``supervisord.conf``, started the way the image starts them.

``python docker/entrypoint.py supervisord.conf`` with the stack's environment (its own queues and key prefix, the
health API on a free loopback port, a private run directory). Ready when both worker kinds beat and the API's
``/livez`` answers; stopped with SIGTERM (supervisord stops every program gracefully), and any program still
alive afterwards is killed, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from asset_post_process.common.settings import env_name
from asset_post_process.devkit.launcher import StackClients, child_env, isolated_env
from asset_post_process.devkit.ports import free_port
from asset_post_process.devkit.processes import ManagedProcess

CONFIG_NAME = "supervisord.conf"
ENTRYPOINT = Path("docker") / "entrypoint.py"


def repository_root() -> Path | None:
    """The checkout holding ``supervisord.conf`` and ``docker/entrypoint.py``: the working directory or above it,
    or the one this source file lives in."""
    here = Path(__file__).resolve()
    for candidate in (Path.cwd(), *Path.cwd().parents, *here.parents):
        if (candidate / CONFIG_NAME).is_file() and (candidate / ENTRYPOINT).is_file():
            return candidate
    return None


def supervisord_available() -> bool:
    """Whether the project's supervisord.conf, its entrypoint and the ``supervisor`` package are all here."""
    return repository_root() is not None and importlib.util.find_spec("supervisor") is not None


class SupervisedStack(StackClients):
    """The health API and both workers under supervisord, with one environment."""

    def __init__(self, env: dict[str, str], *, logs_dir: Path, name: str = "supervised") -> None:
        root = repository_root()
        if root is None:
            raise RuntimeError(f"no {CONFIG_NAME} with {ENTRYPOINT} found")
        self.name = name
        self.port = free_port()
        # A short private directory: a unix socket path must stay under ~100 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="pp-sv-"))
        self.env = {
            **isolated_env(name, env),
            env_name("health_bind"): f"127.0.0.1:{self.port}",
            env_name("health_workers"): "1",
            "POSTPROCESS_RUN_DIR": str(self.run_dir),
        }
        self._init_clients()
        self._program_pids: dict[str, int] = {}
        command = [sys.executable, str(root / ENTRYPOINT), str(root / CONFIG_NAME)]
        self.supervisord = ManagedProcess(
            "supervisord", command, child_env(self.env), logs_dir / f"{name}-supervisord.log", self._ready, cwd=root
        )

    @property
    def api_url(self) -> str:
        """The health API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _beating_since(self, kind: str, since: float) -> bool:
        try:
            return bool(self.redis().zrangebyscore(self.keys.heartbeats(kind), since - 1, "+inf"))
        except redis.RedisError:
            return False

    def _ready(self, process: ManagedProcess) -> bool:
        if not all(self._beating_since(kind, process.started_at) for kind in ("process", "trigger")):
            return False
        try:
            return httpx.get(f"{self.api_url}/livez", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def _rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

        transport = SupervisorTransport(None, None, f"unix://{self.run_dir / 'supervisor.sock'}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def start(self, timeout: float = 60.0) -> SupervisedStack:
        """Start supervisord (through the entrypoint) and wait until every program is ready."""
        try:
            self.supervisord.start(timeout)
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                self._program_pids = {i["name"]: i["pid"] for i in self._rpc().getAllProcessInfo() if i["pid"]}
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 80.0) -> None:
        """SIGTERM supervisord (graceful stop of every program), then kill whatever is left."""
        self.supervisord.stop(timeout)
        deadline = time.monotonic() + 5
        for pid in self._program_pids.values():  # supervisord gives each program its own process group
            while time.monotonic() < deadline and _group_alive(pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self._close_clients()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> SupervisedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def read_logs(self) -> dict[str, str]:
        """supervisord's log (every program writes to it)."""
        return {"supervisord": self.supervisord.read_log()}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
