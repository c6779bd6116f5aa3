"""Redis provisioning: the real servers are started, answered, restarted and cleaned up."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asset_post_process.devkit.ports import wait_for
from asset_post_process.devkit.redis_provision import (
    RedisUnavailable,
    docker_engine_answers,
    embedded_binary,
    provision_redis,
    redis_answers,
    safe_url,
)


@pytest.fixture(autouse=True)
def _no_outside_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")
def test_picks_redis_server_on_path_and_cleans_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="asset_post_process.devkit.redis_provision")
    with provision_redis() as provisioned:
        assert provisioned.kind == "redis-server"
        assert provisioned.server is not None
        pid = provisioned.server.pid
        workdir = provisioned.server.workdir
        assert pid is not None
        client = redis.Redis.from_url(provisioned.url)
        assert client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert not _alive(pid)
    assert not workdir.exists()
    assert "kind=redis-server" in caplog.text


def test_embedded_valkey_from_the_wheel_runs_here() -> None:
    assert embedded_binary() is not None
    with provision_redis(kinds=["embedded"]) as provisioned:
        assert provisioned.kind == "embedded"
        assert redis_answers(provisioned.url)


def test_falls_through_to_embedded_without_redis_server_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with provision_redis() as provisioned:
        assert provisioned.kind == "embedded"


def test_test_redis_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    with provision_redis(kinds=["embedded"]) as outer:
        monkeypatch.setenv("TEST_REDIS_URL", outer.url)
        with provision_redis() as provisioned:
            assert provisioned.kind == "env"
            assert provisioned.url == outer.url
            assert not provisioned.restartable
            with pytest.raises(RuntimeError, match="cannot be restarted"):
                provisioned.restart()


def test_redis_url_is_honoured_after_test_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with provision_redis(kinds=["embedded"]) as outer:
        monkeypatch.setenv("REDIS_URL", outer.url)
        with provision_redis() as provisioned:
            assert (provisioned.kind, provisioned.detail, provisioned.url) == ("env", "REDIS_URL", outer.url)
        monkeypatch.setenv("TEST_REDIS_URL", outer.url)
        with provision_redis() as provisioned:
            assert provisioned.detail == "TEST_REDIS_URL"


def test_test_redis_url_that_does_not_answer_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisUnavailable, match="TEST_REDIS_URL"), provision_redis():
        pass


def test_persistent_server_keeps_data_across_a_kill_and_restart_on_the_same_port() -> None:
    with provision_redis(persistent=True, kinds=["redis-server", "embedded"]) as provisioned:
        port = provisioned.port
        client = redis.Redis.from_url(provisioned.url)
        client.set("survives", "yes")
        provisioned.kill()
        assert not redis_answers(provisioned.url)
        provisioned.start()
        assert provisioned.port == port
        assert client.get("survives") == b"yes"
        client.close()


def test_volatile_server_loses_data_on_restart() -> None:
    with provision_redis(kinds=["redis-server", "embedded"]) as provisioned:
        client = redis.Redis.from_url(provisioned.url)
        client.set("gone", "soon")
        provisioned.restart()
        assert client.get("gone") is None
        client.close()


@pytest.fixture
def fake_docker_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket answering Docker's ``/_ping`` like an engine does."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    yield path
    thread.join(timeout=2)
    server.close()


def test_docker_probe(monkeypatch: pytest.MonkeyPatch, fake_docker_socket: Path) -> None:
    assert not docker_engine_answers()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake_docker_socket}")
    assert docker_engine_answers()


def test_safe_url_masks_the_password() -> None:
    assert safe_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_server_does_not_outlive_a_killed_test_run() -> None:
    script = (
        "import time\n"
        "from asset_post_process.devkit.redis_provision import provision_redis\n"
        "with provision_redis(kinds=['redis-server', 'embedded']) as r:\n"
        "    print(r.server.pid, flush=True)\n"
        "    time.sleep(120)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        server_pid = int(runner.stdout.readline())
        assert _alive(server_pid)
        runner.kill()  # SIGKILL: no clean-up code runs in the runner
        runner.wait(10)
        assert wait_for(lambda: not _alive(server_pid), timeout=10)
    finally:
        runner.kill()
        runner.wait(10)
