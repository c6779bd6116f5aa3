"""Serving the simulator with uvicorn on 127.0.0.1: in a background thread, or as a separate process."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from asset_post_process.devkit.ports import free_port, wait_for
from asset_post_process.devkit.simulator.app import SimulatorApp, create_app
from asset_post_process.devkit.simulator.client import SimulatorClient

log = logging.getLogger(__name__)


def uvicorn_config(
    app: SimulatorApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> uvicorn.Config:
    """The uvicorn settings the simulator runs with (no access log: quieter, and no URL ever reaches a log)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        backlog=4096,
        timeout_keep_alive=30,
    )


class SimulatorThread:
    """The simulator served by uvicorn in a daemon thread of this process, on a socket bound before start."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        self.app = create_app()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn_config(self.app, log_level=log_level))
        self._thread = threading.Thread(target=self._run, name=f"filespin-simulator-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``): what ``POSTPROCESS_FILESPIN_API_URL`` points at."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts requests."""
        self._thread.start()
        if not wait_for(lambda: self._server.started or not self._thread.is_alive(), timeout=timeout):
            raise RuntimeError("the FileSpin simulator did not start")
        if not self._server.started:
            raise RuntimeError("the FileSpin simulator thread died while starting")
        log.info("FileSpin simulator serving on %s (in-process thread)", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


class SimulatorProcess:
    """The simulator as ``python -m asset_post_process.devkit.simulator`` in its own process (no shared GIL)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait until ``/_sim/health`` answers."""
        command = [sys.executable, "-m", "asset_post_process.devkit.simulator", "--host", self.host]
        command += ["--port", str(self.port)]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log_path and not isinstance(out, int):
                out.close()
        process = self._process
        if not wait_for(lambda: process.poll() is not None or _healthy(self.url), timeout=timeout):
            self.stop()
            raise RuntimeError(f"the FileSpin simulator process did not answer on {self.url}")
        if process.poll() is not None:
            raise RuntimeError(f"the FileSpin simulator process exited with {process.returncode}")
        log.info("FileSpin simulator serving on %s (process %d)", self.url, process.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_sim/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def run_simulator(*, in_process: bool = True, log_path: Path | None = None) -> Iterator[SimulatorClient]:
    """Serve a fresh simulator on a free loopback port; yield a :class:`SimulatorClient` bound to it.

    ``in_process=True`` serves from a thread of this process; ``False`` from a child process (for benchmarks,
    so the simulator does not share this process's GIL).
    """
    server: SimulatorThread | SimulatorProcess = (
        SimulatorThread() if in_process else SimulatorProcess(log_path=log_path)
    )
    server.start()
    client = SimulatorClient(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()
