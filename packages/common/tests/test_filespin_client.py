"""The FileSpin client against a real HTTP server on 127.0.0.1 that answers what each test scripts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from asset_post_process.common.crypto import PlainApiKey
from asset_post_process.common.filespin import FileSpinClient, FileSpinError, parse_retry_after

KEY = PlainApiKey("client-test-key-42")


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Server:
    url: str
    answers: dict[str, Answer] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.received.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )
            answer = state.answers.get(self.path, Answer(404, {"status": "ERROR"}))
            time.sleep(answer.delay)
            payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def client(server: Server, **kwargs: Any) -> FileSpinClient:
    return FileSpinClient(server.url, **kwargs)


def test_user_settings_with_the_service_headers(server: Server) -> None:
    settings = {"status": "OK", "data": {"addons": {"FACE_RECOGNITION": {"added": True, "enabled": True}}}}
    server.answers["/api/v1/user/settings"] = Answer(200, settings)
    parsed = client(server).get_user_settings(KEY)
    assert parsed.addons["FACE_RECOGNITION"]["added"] is True
    headers = {k.lower(): v for k, v in server.received[0]["headers"].items()}
    assert headers["x-filespin-api-key"] == KEY.reveal()
    assert headers["x-filespin-internal-request"] == "true"


def test_asset_data(server: Server) -> None:
    asset = {"id": "a" * 32, "status": "OK", "content_type": "image/jpeg", "data": {"_filespin_fr_count": 2}}
    server.answers[f"/api/v1/assets/{'a' * 32}/data"] = Answer(200, asset)
    parsed = client(server).get_asset_data(KEY, "a" * 32)
    assert parsed.content_type == "image/jpeg"
    assert parsed.data == {"_filespin_fr_count": 2}


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (405, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_status_classification(server: Server, status: int, transient: bool) -> None:
    server.answers["/api/v1/user/settings"] = Answer(status, {"status": "ERROR", "key": KEY.reveal()})
    with pytest.raises(FileSpinError) as caught:
        client(server).get_user_settings(KEY)
    assert caught.value.transient is transient
    assert caught.value.status_code == status
    assert caught.value.code == f"http_{status}"
    assert KEY.reveal() not in str(caught.value)  # the answer's excerpt is redacted


def test_retry_after_is_honoured(server: Server) -> None:
    server.answers["/api/v1/user/settings"] = Answer(429, {}, {"Retry-After": "7"})
    with pytest.raises(FileSpinError) as caught:
        client(server).get_user_settings(KEY)
    assert caught.value.retry_after == 7.0


def test_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_timeout_is_transient(server: Server) -> None:
    server.answers["/api/v1/user/settings"] = Answer(200, {}, delay=1.0)
    with pytest.raises(FileSpinError) as caught:
        client(server, read_timeout=0.2).get_user_settings(KEY)
    assert caught.value.transient
    assert caught.value.code == "timeout"


def test_connection_refused_is_transient() -> None:
    with pytest.raises(FileSpinError) as caught:
        FileSpinClient("http://127.0.0.1:9", connect_timeout=0.5).get_user_settings(KEY)
    assert caught.value.transient
    assert caught.value.code == "connection_error"


def test_non_json_answer_is_transient(server: Server) -> None:
    server.answers["/api/v1/user/settings"] = Answer(200, b"<html>gateway</html>")
    with pytest.raises(FileSpinError) as caught:
        client(server).get_user_settings(KEY)
    assert caught.value.transient
    assert caught.value.code == "bad_answer"


def test_malformed_settings_are_permanent(server: Server) -> None:
    server.answers["/api/v1/user/settings"] = Answer(200, {"status": "OK", "data": {"addons": ["not", "a", "map"]}})
    with pytest.raises(FileSpinError) as caught:
        client(server).get_user_settings(KEY)
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("status", "body", "job_id", "already"),
    [(200, {}, None, False), (202, {"job_id": "j-9"}, "j-9", False), (409, {"status": "CONFLICT"}, None, True)],
)
def test_addon_success_forms(server: Server, status: int, body: Any, job_id: str | None, already: bool) -> None:
    path = "/api/v1/assets/abc/addons/scene_classification"
    server.answers[path] = Answer(status, body)
    result = client(server).post_addon(KEY, server.url + path, {"disposition": {"x": 1}}, "scene")
    assert (result.status_code, result.job_id, result.already_processed) == (status, job_id, already)
    assert server.received[0]["body"] == {"disposition": {"x": 1}}


def test_face_data_delete(server: Server) -> None:
    path = "/api/v1/assets/addons/face_recognition/delete"
    server.answers[path] = Answer(202, {})
    result = client(server).delete_addon_data(KEY, server.url + path, ["a" * 32], "face delete")
    assert result.status_code == 202
    assert server.received[0]["body"] == {"ids": ["a" * 32]}
    with pytest.raises(ValueError, match="100"):
        client(server).delete_addon_data(KEY, server.url + path, ["x"] * 101, "face delete")
