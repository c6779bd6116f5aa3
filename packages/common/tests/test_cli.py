"""The ``postprocess`` CLI against a real Redis (and a real kombu producer on it)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from asset_post_process.common.cli import main
from asset_post_process.common.cli_format import human_duration, parse_duration, table
from asset_post_process.common.crypto import ApiKeyCipher, generate_key
from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.heartbeat import Heartbeat
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import Metrics

ASSET_ID = "0123456789abcdef0123456789abcdef"
PLAINTEXT = "cli-plaintext-key-0001"
TOKEN_LIKE = "gAAAAA" + "y" * 120


class Cli:
    """Runs ``postprocess`` in-process with an isolated environment; returns (exit code, stdout, stderr)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]):
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.env = env
        for name in list(os.environ):
            if name.startswith("POSTPROCESS_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str, stdin: str = "") -> Any:
        code, out, err = self(*argv, "--json", stdin=stdin)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def env(redis_url: str, keys: Keys, fernet_key: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "POSTPROCESS_REDIS_URL": redis_url,
        "POSTPROCESS_KEY_PREFIX": keys.prefix,
        "POSTPROCESS_PROCESS_QUEUE": f"cli-process-{suffix}",
        "POSTPROCESS_TRIGGER_QUEUE": f"cli-trigger-{suffix}",
        "POSTPROCESS_APIKEY_KEYS": fernet_key,
    }


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> Cli:
    return Cli(monkeypatch, capsys, env)


def queued(client: redis.Redis[bytes], queue: str) -> list[tuple[str, Any]]:
    """(task, first argument) of each message waiting in ``queue``."""
    result = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(envelope["body"]))
        result.append((envelope["headers"]["task"], args[0]))
    return result


# --- keys ---------------------------------------------------------------------------------------------------------


def test_keygen_prints_a_fernet_key(cli: Cli) -> None:
    code, out, _ = cli("keygen")
    assert code == 0
    Fernet(out.strip())
    Fernet(cli.json("keygen")["key"])


def test_encrypt_key_reads_stdin_and_round_trips(cli: Cli, fernet_key: str) -> None:
    code, out, _ = cli("encrypt-key", stdin=PLAINTEXT + "\n")
    assert code == 0
    assert ApiKeyCipher([fernet_key]).decrypt(out.strip()).reveal() == PLAINTEXT
    assert cli("encrypt-key", stdin="")[0] == 2


def test_commands_that_encrypt_name_the_missing_keys_setting(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTPROCESS_APIKEY_KEYS")
    for argv in (("encrypt-key",), ("enqueue", "--asset-id", ASSET_ID, "--event-type", "file-saved", "--apikey-stdin")):
        code, _, err = cli(*argv, stdin=PLAINTEXT)
        assert code == 3
        assert "POSTPROCESS_APIKEY_KEYS" in err
    # ... and only those: the read-only commands do not need it.
    assert cli("queues")[0] == 0
    assert cli("dead-letters", "list")[0] == 0


def test_an_invalid_setting_is_exit_3_naming_it(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTPROCESS_HEARTBEAT_TTL_SECONDS", "soon")
    code, _, err = cli("queues")
    assert code == 3
    assert "POSTPROCESS_HEARTBEAT_TTL_SECONDS" in err


# --- enqueue ------------------------------------------------------------------------------------------------------


def test_enqueue_from_flags_encrypts_the_key_and_sends(
    cli: Cli, env: dict[str, str], redis_client: redis.Redis[bytes], fernet_key: str
) -> None:
    result = cli.json(
        "enqueue",
        "--asset-id",
        ASSET_ID,
        "--event-type",
        "file-data-updated",
        "--addon",
        "FACE_RECOGNITION",
        "--addon",
        "SCENE_CLASSIFICATION",
        "--force",
        "--apikey-stdin",
        stdin=PLAINTEXT + "\n",
    )
    queue = env["POSTPROCESS_PROCESS_QUEUE"]
    assert result["sent"] is True
    [(task, message)] = queued(redis_client, queue)
    assert task == "process_asset"
    assert message["event_id"] == result["event_id"]
    assert message["addons"] == ["FACE_RECOGNITION", "SCENE_CLASSIFICATION"]
    assert message["force_processing"] is True
    assert ApiKeyCipher([fernet_key]).decrypt(message["apikey"]).reveal() == PLAINTEXT
    assert PLAINTEXT.encode() not in b"".join(redis_client.lrange(queue, 0, -1))


def test_enqueue_from_a_file_with_overrides_and_the_key_from_the_environment(
    cli: Cli, env: dict[str, str], redis_client: redis.Redis[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"asset_id": ASSET_ID, "event_type": "file-saved", "event_id": "from-file"}))
    monkeypatch.setenv("POSTPROCESS_APIKEY", PLAINTEXT)
    result = cli.json("enqueue", "--file", str(event), "--event-id", "from-flag")
    assert result["event_id"] == "from-flag"
    [(_, message)] = queued(redis_client, env["POSTPROCESS_PROCESS_QUEUE"])
    assert message["event_type"] == "file-saved"


def test_enqueue_key_from_a_file_and_dry_run_sends_nothing(
    cli: Cli, env: dict[str, str], redis_client: redis.Redis[bytes], tmp_path: Path
) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(PLAINTEXT + "\n")
    code, out, _ = cli(
        "enqueue", "--asset-id", ASSET_ID, "--event-type", "file-saved", "--apikey-file", str(keyfile), "--dry-run"
    )
    assert code == 0
    assert "would send" in out
    assert PLAINTEXT not in out
    assert redis_client.llen(env["POSTPROCESS_PROCESS_QUEUE"]) == 0


@pytest.mark.parametrize(
    ("argv", "stdin", "needle"),
    [
        (["--asset-id", "not-hex", "--event-type", "file-saved", "--apikey-stdin"], PLAINTEXT, "asset_id"),
        (["--event-type", "file-saved", "--apikey-stdin"], PLAINTEXT, "--asset-id is required"),
        (["--asset-id", ASSET_ID, "--event-type", "file-saved"], "", "no API key"),
        (["--asset-id", ASSET_ID, "--event-type", "file-saved", "--apikey-stdin"], "\n", "empty"),
        (["--asset-id", ASSET_ID, "--event-type", "file-deleted", "--apikey-stdin"], PLAINTEXT, "asset_data"),
        (["--file", "/nonexistent/event.json", "--apikey-stdin"], PLAINTEXT, "cannot read"),
    ],
)
def test_enqueue_refuses_bad_input_with_exit_2(
    cli: Cli, env: dict[str, str], redis_client: redis.Redis[bytes], argv: list[str], stdin: str, needle: str
) -> None:
    code, _, err = cli("enqueue", *argv, stdin=stdin)
    assert code == 2
    assert needle in err
    assert PLAINTEXT not in err
    assert redis_client.llen(env["POSTPROCESS_PROCESS_QUEUE"]) == 0


def test_enqueue_refuses_a_token_no_configured_key_opens(cli: Cli) -> None:
    foreign = ApiKeyCipher([generate_key()]).encrypt(PLAINTEXT)
    code, _, err = cli("enqueue", "--asset-id", ASSET_ID, "--event-type", "file-saved", "--apikey-stdin", stdin=foreign)
    assert code == 2
    assert "none of POSTPROCESS_APIKEY_KEYS" in err


# --- explain ------------------------------------------------------------------------------------------------------


def test_explain_shows_the_latest_decisions_and_reasons(cli: Cli, redis_client: redis.Redis[bytes], keys: Keys) -> None:
    log = DecisionLog(redis_client, keys)
    log.record(ASSET_ID, {"event_id": "e-old", "event_type": "file-saved", "at": 1.0, "outcome": "planned"})
    log.record(
        ASSET_ID,
        {
            "event_id": "e-new",
            "event_type": "file-data-updated",
            "at": time.time(),
            "attempt": 0,
            "outcome": "planned",
            "reason_code": "planned",
            "reason": "planned",
            "decisions": [
                {
                    "addon": "FACE_RECOGNITION",
                    "run": True,
                    "action": "process",
                    "outcome": "dispatched",
                    "reason_code": "run",
                    "reason": "hook enabled and content type matches",
                },
                {
                    "addon": "SCENE_CLASSIFICATION",
                    "run": False,
                    "action": "process",
                    "outcome": "skipped",
                    "reason_code": "already_processed",
                    "reason": "_filespin_scene_labels is set",
                },
            ],
        },
    )
    code, out, _ = cli("explain", ASSET_ID)
    assert code == 0
    assert out.index("e-new") < out.index("e-old")
    assert "SCENE_CLASSIFICATION" in out
    assert "_filespin_scene_labels is set" in out
    data = cli.json("explain", ASSET_ID, "--limit", "1")
    assert [e["event_id"] for e in data["entries"]] == ["e-new"]


def test_explain_unknown_asset_is_exit_1_and_a_bad_id_exit_2(cli: Cli) -> None:
    code, out, _ = cli("explain", "f" * 32)
    assert code == 1
    assert "no decisions" in out
    assert cli("explain", "../etc")[0] == 2


# --- queues -------------------------------------------------------------------------------------------------------


def test_queues_reports_depths_workers_dead_letters_and_outcomes(
    cli: Cli, env: dict[str, str], redis_client: redis.Redis[bytes], keys: Keys
) -> None:
    process_queue, trigger_queue = env["POSTPROCESS_PROCESS_QUEUE"], env["POSTPROCESS_TRIGGER_QUEUE"]
    redis_client.rpush(process_queue, b"a", b"b")
    Heartbeat(redis_client, keys, "trigger", "trigger@node1", 30).beat()
    DeadLetterStore(redis_client, keys).add(
        DeadLetter(task="trigger_addon", queue=trigger_queue, message={}, reason_code="http_403", reason="r")
    )
    Metrics(redis_client, keys).count_outcome("FACE_RECOGNITION", "done", 3)
    Metrics(redis_client, keys).observe_latency("FACE_RECOGNITION", 0.2)
    data = cli.json("queues")
    assert data["queues"] == {process_queue: 2, trigger_queue: 0}
    assert data["workers"] == {"process": [], "trigger": ["trigger@node1"]}
    assert data["dead_letters"] == 1
    assert data["outcomes"] == {"FACE_RECOGNITION": {"done": 3}}
    assert data["latency"]["FACE_RECOGNITION"]["calls"] == 1
    code, out, _ = cli("queues")
    assert code == 0
    assert process_queue in out
    assert "trigger@node1" in out
    assert "FACE_RECOGNITION" in out


def test_redis_unreachable_is_exit_4_naming_the_url(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTPROCESS_REDIS_URL", "redis://:secretpw@127.0.0.1:1/0")
    for argv in (("queues",), ("dead-letters", "list"), ("explain", ASSET_ID)):
        code, _, err = cli(*argv)
        assert code == 4, err
        assert "redis://:***@127.0.0.1:1/0 did not answer" in err
        assert "secretpw" not in err


# --- dead letters -------------------------------------------------------------------------------------------------


@pytest.fixture
def letters(redis_client: redis.Redis[bytes], keys: Keys, env: dict[str, str]) -> dict[str, DeadLetter]:
    store = DeadLetterStore(redis_client, keys)
    trigger_queue = env["POSTPROCESS_TRIGGER_QUEUE"]

    def add(name: str, **fields: Any) -> DeadLetter:
        values: dict[str, Any] = {
            "task": "trigger_addon",
            "queue": trigger_queue,
            "message": {"job_id": name, "apikey": TOKEN_LIKE},
            "reason_code": "http_403",
            "reason": f"{name} failed",
            "addon": "FACE_RECOGNITION",
            "asset_id": ASSET_ID,
            **fields,
        }
        return store.add(DeadLetter(**values))

    return {
        "old": add("old", failed_at=time.time() - 3 * 86400),
        "scene": add("scene", addon="SCENE_CLASSIFICATION", reason_code="http_404"),
        "face": add("face"),
    }


def test_dead_letters_list_filters(cli: Cli, letters: dict[str, DeadLetter]) -> None:
    def ids(*argv: str) -> list[str]:
        return [item["id"] for item in cli.json("dead-letters", "list", *argv)["items"]]

    assert ids() == [letters["face"].id, letters["scene"].id, letters["old"].id]
    assert ids("--addon", "SCENE_CLASSIFICATION") == [letters["scene"].id]
    assert ids("--reason", "http_403") == [letters["face"].id, letters["old"].id]
    assert ids("--older-than", "2d") == [letters["old"].id]
    assert ids("--newer-than", "1h", "--addon", "FACE_RECOGNITION") == [letters["face"].id]
    assert ids("--limit", "1") == [letters["face"].id]
    code, out, _ = cli("dead-letters", "list")
    assert code == 0
    assert "3 shown of 3 stored" in out
    assert "3d" in out


def test_dead_letters_show(cli: Cli, letters: dict[str, DeadLetter]) -> None:
    shown = cli.json("dead-letters", "show", letters["scene"].id)
    assert shown["message"] == {"job_id": "scene", "apikey": TOKEN_LIKE}
    assert shown["reason_code"] == "http_404"
    code, out, _ = cli("dead-letters", "show", letters["scene"].id)
    assert code == 0
    assert "reason_code: http_404" in out
    assert " UTC (" in out
    assert TOKEN_LIKE in out
    code, _, err = cli("dead-letters", "show", "0" * 32)
    assert code == 1
    assert "no dead letter" in err


def test_dead_letters_replay_sends_back_and_deletes(
    cli: Cli, letters: dict[str, DeadLetter], redis_client: redis.Redis[bytes], env: dict[str, str]
) -> None:
    trigger_queue = env["POSTPROCESS_TRIGGER_QUEUE"]
    dry = cli.json("dead-letters", "replay", "--addon", "FACE_RECOGNITION", "--dry-run")
    assert dry["would_replay"] == 2
    assert redis_client.llen(trigger_queue) == 0
    assert cli.json("dead-letters", "replay", "--addon", "FACE_RECOGNITION", "--older-than", "1d") == {"replayed": 1}
    assert queued(redis_client, trigger_queue) == [("trigger_addon", letters["old"].message)]
    assert cli.json("dead-letters", "replay", "--id", letters["scene"].id) == {"replayed": 1}
    remaining = cli.json("dead-letters", "list")["items"]
    assert [item["id"] for item in remaining] == [letters["face"].id]


def test_dead_letters_purge(cli: Cli, letters: dict[str, DeadLetter], redis_client: redis.Redis[bytes]) -> None:
    code, _, err = cli("dead-letters", "purge")
    assert code == 2
    assert "--all" in err
    assert cli.json("dead-letters", "purge", "--reason", "http_403", "--dry-run")["would_purge"] == 2
    assert cli.json("dead-letters", "purge", "--reason", "http_403") == {"purged": 2}
    assert cli.json("dead-letters", "purge", "--all") == {"purged": 1}
    assert cli.json("dead-letters", "list")["total"] == 0


def test_bad_durations_are_usage_errors(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dead-letters", "list", "--older-than", "yesterday"])
    assert exit_info.value.code == 2
    assert "not a duration" in capsys.readouterr().err


# --- formatting and the console script ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_human_duration_and_table() -> None:
    assert [human_duration(s) for s in (5, 125, 7300, 200000)] == ["5s", "2m", "2h", "2d"]
    assert table(["a", "bb"], [[1, None], [True, "x"]]).splitlines() == ["A    BB", "1    -", "yes  x"]


def test_the_console_script_helps(env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "postprocess"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    for command in ("enqueue", "explain", "queues", "dead-letters", "keygen", "encrypt-key"):
        assert command in result.stdout
    result = subprocess.run(
        [str(script), "queues", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("POSTPROCESS_")}, **env},
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["queues"]) == {
        env["POSTPROCESS_PROCESS_QUEUE"],
        env["POSTPROCESS_TRIGGER_QUEUE"],
    }
