"""The ``postprocess`` console script against the running service, as an operator uses it: enqueue an event,
see the failing addon's dead letter, replay it once the addon answers again, purge another, explain the asset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import SimulatorClient, Step

SCENE = "SCENE_CLASSIFICATION"
POSTPROCESS = str(Path(sys.executable).parent / "postprocess")


class Postprocess:
    """Runs the real console script with the stack's environment (and nothing else of ours)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("POSTPROCESS_")}, **env}

    def run(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTPROCESS, *argv], input=stdin, capture_output=True, text=True, env=self.env, timeout=60, check=False
        )

    def json(self, *argv: str, stdin: str = "") -> Any:
        result = self.run(*argv, "--json", stdin=stdin)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def failing_scene_event(
    cli: Postprocess, sim: SimulatorClient, new_account: Callable[..., factory.Account]
) -> tuple[factory.Account, str, str]:
    """An image whose scene classification answers 403, enqueued through the CLI; returns (account, asset, event)."""
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(events=["file-saved"], content_types=["image/*"]), [asset])
    sim.script_addon(asset["id"], SCENE, Step(403, body={"status": "ERROR", "error": "not in your plan"}))
    sent = cli.json(
        "enqueue",
        "--asset-id",
        asset["id"],
        "--event-type",
        "file-saved",
        "--addon",
        SCENE,
        "--apikey-stdin",
        stdin=account.apikey + "\n",
    )
    return account, str(asset["id"]), str(sent["event_id"])


def test_dead_letters_are_listed_replayed_and_purged_through_the_cli(
    service: ServiceStack,
    sim: SimulatorClient,
    new_account: Callable[..., factory.Account],
    wait_until: Callable[..., Any],
) -> None:
    cli = Postprocess(service.env)
    store = DeadLetterStore(service.redis(), service.keys)

    def letter_of(asset_id: str) -> DeadLetter | None:
        return next((d for d in store.list(limit=1000) if d.asset_id == asset_id), None)

    account, asset_id, event_id = failing_scene_event(cli, sim, new_account)
    wait_until(lambda: letter_of(asset_id), timeout=30, message="the 403 dead letter")

    # list: the letter with its reason, found by the filters an operator would use.
    listed = cli.json("dead-letters", "list", "--addon", SCENE, "--reason", "http_403", "--newer-than", "10m")
    [item] = [i for i in listed["items"] if i["asset_id"] == asset_id]
    assert (item["task"], item["status_code"], item["event_id"]) == ("trigger_addon", 403, event_id)
    assert "not in your plan" in item["reason"]
    table = cli.run("dead-letters", "list", "--addon", SCENE)
    assert table.returncode == 0
    assert item["id"] in table.stdout
    # show: the message, its key still encrypted.
    shown = cli.run("dead-letters", "show", item["id"], "--json")
    assert json.loads(shown.stdout)["message"]["asset_id"] == asset_id
    assert account.apikey not in shown.stdout

    # replay once the addon answers 200 again: one more call, a success, and the letter is gone.
    sim.script_addon(asset_id, SCENE, Step(200))
    assert cli.json("dead-letters", "replay", "--id", item["id"]) == {"replayed": 1}
    calls = wait_until(
        lambda: [c.status for c in sim.calls(asset_id=asset_id, addon=SCENE)] == [403, 200] or None,
        timeout=30,
        message=lambda: f"scene calls of {asset_id}: {[c.status for c in sim.calls(asset_id=asset_id)]}",
    )
    assert calls
    assert letter_of(asset_id) is None

    # purge another one: deleted, and the addon is not called again.
    _, other_asset, _ = failing_scene_event(cli, sim, new_account)
    wait_until(lambda: letter_of(other_asset), timeout=30, message="the second 403 dead letter")
    assert cli.json("dead-letters", "purge", "--addon", SCENE, "--reason", "http_403", "--dry-run")["would_purge"] >= 1
    assert cli.json("dead-letters", "purge", "--addon", SCENE, "--reason", "http_403")["purged"] >= 1
    assert letter_of(other_asset) is None
    assert [c.status for c in sim.calls(asset_id=other_asset, addon=SCENE)] == [403]

    # explain: the planning decision for the replayed asset, and why.
    explained = cli.json("explain", asset_id)
    [entry] = [e for e in explained["entries"] if e["event_id"] == event_id]
    assert [(d["addon"], d["run"]) for d in entry["decisions"]] == [(SCENE, True)]
    text = cli.run("explain", asset_id)
    assert text.returncode == 0
    assert SCENE in text.stdout


def test_queues_shows_the_running_workers(service: ServiceStack) -> None:
    figures = Postprocess(service.env).json("queues")
    assert figures["workers"] == {"process": [service.process_worker.node], "trigger": [service.trigger_worker.node]}
    assert set(figures["queues"]) == {service.settings.process_queue, service.settings.trigger_queue}


def test_unreachable_redis_and_missing_keys_are_clear_errors(service: ServiceStack) -> None:
    down = Postprocess({**service.env, "POSTPROCESS_REDIS_URL": "redis://127.0.0.1:1/0"})
    result = down.run("queues")
    assert result.returncode == 4
    assert "redis://127.0.0.1:1/0 did not answer" in result.stderr
    no_keys = Postprocess({k: v for k, v in service.env.items() if k != "POSTPROCESS_APIKEY_KEYS"})
    result = no_keys.run("enqueue", "--asset-id", "a" * 32, "--event-type", "file-saved", "--apikey-stdin", stdin="k")
    assert result.returncode == 3
    assert "POSTPROCESS_APIKEY_KEYS" in result.stderr
    assert no_keys.run("dead-letters", "list").returncode == 0
