"""The health API under real Gunicorn (its shipped configuration) on a loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from asset_post_process.devkit.ports import free_port, wait_for

CONFIG_MODULE = "python:asset_post_process.health_api.gunicorn_conf"
APP = "asset_post_process.health_api.app:app"


@contextlib.contextmanager
def running_api(env: Mapping[str, str], workdir: Path, *, config: str = CONFIG_MODULE) -> Iterator[str]:
    """Start ``gunicorn -c <config>`` with ``env`` (POSTPROCESS_* settings); yield its base URL; stop it."""
    port = free_port()
    log_path = workdir / f"gunicorn-{port}.log"
    full_env = {
        **os.environ,
        "POSTPROCESS_HEALTH_BIND": f"127.0.0.1:{port}",
        "POSTPROCESS_HEALTH_WORKERS": "1",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", config, APP],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if process.poll() is not None:
                return True
            try:
                return httpx.get(f"{base_url}/livez", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_for(up, timeout=30, interval=0.1) or process.poll() is not None:
            raise RuntimeError(f"gunicorn did not start: {log_path.read_text(errors='replace')[-3000:]}")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
