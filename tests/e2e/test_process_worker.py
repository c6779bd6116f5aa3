"""The process worker end to end: events through the real ``celery worker`` programs, checked at the simulator.

Events are enqueued with the public producer (or pushed raw, for the bad ones) onto the session stack's process
queue; the trigger worker calls the addons; the FileSpin simulator records every call. Each test uses its own
account and assets, so tests share the running stack without seeing each other's calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.contract import PROCESS_ASSET_TASK
from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import (
    ASSET_DATA,
    FACE_DELETE,
    SETTINGS,
    RecordedCall,
    SimulatorClient,
    Step,
)

FR, SCENE, EMOTION = "FACE_RECOGNITION", "SCENE_CLASSIFICATION", "EMOTION_RECOGNITION"
MARKERS = {FR: "_filespin_fr_count", SCENE: "_filespin_scene_labels", EMOTION: "_filespin_emotion_labels"}


class Bench:
    """The session stack plus what these tests do with it: send events, wait for decisions, read calls."""

    def __init__(
        self, stack: ServiceStack, producer: EventProducer, sim: SimulatorClient, wait: Callable[..., Any]
    ) -> None:
        self.stack = stack
        self.producer = producer
        self.sim = sim
        self.wait = wait
        self.raw = make_producer(stack.settings)
        self.dead = DeadLetterStore(stack.redis(), stack.keys)

    def close(self) -> None:
        self.raw.close()

    # -- sending
    def event(self, account: factory.Account, asset: dict[str, Any], event_type: str, **fields: Any) -> str:
        if event_type == "file-deleted":
            fields.setdefault("asset_data", asset)
        return self.producer.enqueue_asset_event(
            apikey=account.apikey, asset_id=asset["id"], event_type=event_type, **fields
        )

    def send_raw(self, *args: Any) -> None:
        """Send ``process_asset`` with whatever arguments (Celery JSON), bypassing the producer's validation."""
        self.raw.send_task(PROCESS_ASSET_TASK, args=list(args), queue=self.stack.settings.process_queue)

    # -- reading
    def entries(self, asset_id: str, event_id: str) -> list[dict[str, Any]]:
        return [e for e in self.stack.decisions().latest(asset_id, 50) if e.get("event_id") == event_id]

    def decided(self, asset_id: str, event_id: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until ``count`` decision-log entries of the event exist (oldest first)."""
        found = self.wait(
            lambda: (lambda es: es if len(es) >= count else None)(self.entries(asset_id, event_id)),
            timeout=30,
            message=lambda: f"{count} decision entries for {event_id}: {self.entries(asset_id, event_id)}",
        )
        return list(reversed(found))

    def addon_calls(self, asset_id: str, expected: int) -> list[RecordedCall]:
        """Wait until ``expected`` answered addon calls for ``asset_id`` arrived; returns them (sorted by addon)."""
        calls = self.sim.wait_for_calls(expected, asset_id=asset_id, timeout=30)
        addon_calls = [c for c in calls if c.addon is not None]
        return sorted(addon_calls, key=lambda c: c.path)

    def called_addons(self, asset_id: str) -> list[str]:
        return sorted(str(c.addon) for c in self.sim.calls(asset_id=asset_id) if c.addon is not None)

    def jobs_settled(self) -> bool:
        """Both queues empty and nothing waiting for a retry (so no further call can still come)."""
        r = self.stack.redis()
        s = self.stack.settings
        return r.llen(s.process_queue) == 0 and r.llen(s.trigger_queue) == 0 and r.zcard(self.stack.keys.delayed) == 0

    def dead_letters(self, marker: str) -> list[DeadLetter]:
        return [d for d in self.dead.list(limit=10_000) if marker in json.dumps(d.message, default=str)]


@pytest.fixture
def bench(
    service: ServiceStack, producer: EventProducer, sim: SimulatorClient, wait_until: Callable[..., Any]
) -> Iterator[Bench]:
    b = Bench(service, producer, sim, wait_until)
    yield b
    b.close()


def by_addon(entry: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {d["addon"]: (d["run"], d["reason_code"]) for d in entry["decisions"]}


# ------------------------------------------------------------------------------------------- content types


def test_image_video_and_document_assets(
    stack_factory: Callable[..., ServiceStack],
    producer: EventProducer,
    sim: SimulatorClient,
    new_account: Callable[..., factory.Account],
    wait_until: Callable[..., Any],
) -> None:
    # Addons are data: a video addon and a document addon added through the registry setting.
    registry = {
        "STORYBOARD": {"path": "/api/v1/assets/{asset_id}/addons/storyboard", "accepts": ["video/*"]},
        "DOC_TEXT": {"path": "/api/v1/assets/{asset_id}/addons/doc_text", "accepts": ["application/pdf"]},
    }
    stack = stack_factory({"POSTPROCESS_ADDON_REGISTRY": json.dumps(registry)})
    b = Bench(stack, stack.producer(), sim, wait_until)
    image, video, document = factory.image_asset(), factory.video_asset(), factory.document_asset()
    account = new_account(
        factory.user_settings(
            factory.addon(FR, events=["file-saved"], content_types=["image/*"]),
            factory.addon(SCENE, events=["file-saved"], content_types=["*/*"]),  # SCENE itself accepts images only
            factory.addon("STORYBOARD", events=["file-saved"], content_types=["video/*"]),
            factory.addon("DOC_TEXT", events=["file-saved"], content_types=["application/*"]),
        ),
        [image, video, document],
    )
    events = {a["id"]: b.event(account, a, "file-saved") for a in (image, video, document)}

    assert [c.addon for c in b.addon_calls(image["id"], 3)] == ["face_recognition", "scene_classification"]
    assert [c.addon for c in b.addon_calls(video["id"], 2)] == ["storyboard"]
    assert [c.addon for c in b.addon_calls(document["id"], 2)] == ["doc_text"]

    (image_entry,) = b.decided(image["id"], events[image["id"]])
    (video_entry,) = b.decided(video["id"], events[video["id"]])
    (doc_entry,) = b.decided(document["id"], events[document["id"]])
    assert by_addon(image_entry) == {
        FR: (True, "run"),
        SCENE: (True, "run"),
        "STORYBOARD": (False, "content_type_not_in_hook"),
        "DOC_TEXT": (False, "content_type_not_in_hook"),
    }
    assert by_addon(video_entry) == {
        FR: (False, "content_type_not_in_hook"),
        SCENE: (False, "content_type_not_accepted"),
        "STORYBOARD": (True, "run"),
        "DOC_TEXT": (False, "content_type_not_in_hook"),
    }
    assert by_addon(doc_entry)["DOC_TEXT"] == (True, "run")
    assert by_addon(doc_entry)[SCENE] == (False, "content_type_not_accepted")
    wait_until(b.jobs_settled, timeout=30, message="queues drained")
    assert b.called_addons(image["id"]) == ["face_recognition", "scene_classification"]
    assert b.called_addons(video["id"]) == ["storyboard"]
    assert b.called_addons(document["id"]) == ["doc_text"]
    b.close()


# ------------------------------------------------------------------------------------------- event types


def test_file_data_updated_follows_the_schema_criteria(
    bench: Bench, new_account: Callable[..., factory.Account]
) -> None:
    criteria = {"data_schema_id": 7, "fields": {"assetCode": "GM*", "originalAsset": "Y OR y"}}
    matching = factory.image_asset(data_schema_id=7, data={"assetCode": "GM-2024", "originalAsset": "Y"})
    other_field = factory.image_asset(data_schema_id=7, data={"assetCode": "GM-2024", "originalAsset": "N"})
    other_schema = factory.image_asset(data_schema_id=8, data={"assetCode": "GM-2024", "originalAsset": "Y"})
    account = new_account(
        factory.user_settings(
            factory.addon(SCENE, hooks={"file-data-updated": factory.hook(["image/*"], schema_criteria=criteria)}),
            factory.addon(EMOTION, hooks={"file-data-updated": factory.hook(["image/*"], schema_criteria={})}),
        ),
        [matching, other_field, other_schema],
    )
    ids = {a["id"]: bench.event(account, a, "file-data-updated") for a in (matching, other_field, other_schema)}
    entries = {asset_id: bench.decided(asset_id, event_id)[0] for asset_id, event_id in ids.items()}
    assert by_addon(entries[matching["id"]]) == {SCENE: (True, "run"), EMOTION: (True, "run")}
    assert by_addon(entries[other_field["id"]]) == {SCENE: (False, "schema_field_mismatch"), EMOTION: (True, "run")}
    assert by_addon(entries[other_schema["id"]]) == {SCENE: (False, "schema_id_mismatch"), EMOTION: (True, "run")}
    bench.addon_calls(matching["id"], 3)  # the data GET and two addon calls
    bench.addon_calls(other_field["id"], 2)
    bench.addon_calls(other_schema["id"], 2)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(matching["id"]) == ["emotion_recognition", "scene_classification"]
    assert bench.called_addons(other_field["id"]) == ["emotion_recognition"]
    assert bench.called_addons(other_schema["id"]) == ["emotion_recognition"]


def test_file_deleted_deletes_face_data_without_reading_the_asset(
    bench: Bench, sim: SimulatorClient, new_account: Callable[..., factory.Account]
) -> None:
    asset = factory.image_asset(data={"_filespin_fr_count": 2})
    account = new_account(factory.all_builtin_addons(events=["file-saved", "file-deleted"]), [asset])
    sim.delete_asset(asset["id"])  # purged already: only the message's asset_data describes it
    event_id = bench.event(account, asset, "file-deleted")
    (entry,) = bench.decided(asset["id"], event_id)
    assert by_addon(entry) == {
        FR: (True, "delete"),
        SCENE: (False, "no_delete_action"),
        EMOTION: (False, "no_delete_action"),
    }
    deletes = bench.wait(lambda: sim.calls(endpoint=FACE_DELETE), timeout=30, message="face data delete call")
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    deletes = [c for c in sim.calls(endpoint=FACE_DELETE) if asset["id"] in (c.json or {}).get("ids", [])]
    assert len(deletes) == 1
    assert deletes[0].json == {"ids": [asset["id"]]}
    assert deletes[0].header("X-FileSpin-Api-Key") == account.apikey
    assert sim.count(endpoint=ASSET_DATA, asset_id=asset["id"]) == 0  # never a GET of the asset
    assert bench.called_addons(asset["id"]) == []


def test_the_addons_list_narrows_the_candidates(bench: Bench, new_account: Callable[..., factory.Account]) -> None:
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(), [asset])
    event_id = bench.event(account, asset, "file-saved", addons=[SCENE, EMOTION, SCENE])
    (entry,) = bench.decided(asset["id"], event_id)
    assert [d["addon"] for d in entry["decisions"]] == [SCENE, EMOTION]
    bench.addon_calls(asset["id"], 3)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(asset["id"]) == ["emotion_recognition", "scene_classification"]


def test_force_processing_runs_an_already_processed_asset_again(
    bench: Bench, sim: SimulatorClient, new_account: Callable[..., factory.Account]
) -> None:
    asset = factory.image_asset(data={marker: 1 for marker in MARKERS.values()})
    account = new_account(factory.all_builtin_addons(), [asset])
    unforced = bench.event(account, asset, "file-saved")
    (entry,) = bench.decided(asset["id"], unforced)
    assert {code for _, code in by_addon(entry).values()} == {"already_processed"}
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(asset["id"]) == []

    forced = bench.event(account, asset, "file-saved", force_processing=True)
    (entry,) = bench.decided(asset["id"], forced)
    assert {code for _, code in by_addon(entry).values()} == {"forced"}
    assert entry["force_processing"] is True
    bench.addon_calls(asset["id"], 4)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(asset["id"]) == ["emotion_recognition", "face_recognition", "scene_classification"]


def test_a_duplicated_event_calls_each_addon_once(
    bench: Bench, sim: SimulatorClient, messages: factory.MessageFactory, new_account: Callable[..., factory.Account]
) -> None:
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(), [asset])
    message = messages.file_saved(account.apikey, asset)
    bench.producer.send_message(message)
    bench.producer.send_message(message)

    def both_planned() -> list[dict[str, Any]] | None:
        entries = bench.entries(asset["id"], message["event_id"])
        return entries if [e["outcome"] for e in entries].count("planned") == 2 else None

    # The two deliveries may run at the same time: the one that finds the other's mark "pending" defers that
    # addon and retries a moment later, when the mark says "sent". Either way each addon is dispatched once.
    entries = bench.wait(both_planned, timeout=30, message="both deliveries planned")
    dispatched = sorted(d["addon"] for e in entries for d in e["decisions"] if d["outcome"] == "dispatched")
    assert dispatched == [EMOTION, FR, SCENE]
    assert {e["outcome"] for e in entries} <= {"planned", "retry_scheduled"}
    bench.addon_calls(asset["id"], 4)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(asset["id"]) == ["emotion_recognition", "face_recognition", "scene_classification"]
    assert sim.count(endpoint=SETTINGS) == 1  # the settings came from the cache the second time


def test_a_mark_left_by_a_killed_dispatcher_is_taken_over(
    bench: Bench, messages: factory.MessageFactory, new_account: Callable[..., factory.Account]
) -> None:
    # What a process worker SIGKILLed between its dedup mark and its send leaves behind: a "pending" mark older
    # than the lease, and the job never sent. The redelivered event must send it, once.
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(), [asset])
    message = messages.file_saved(account.apikey, asset, addons=[FR, SCENE])
    r = bench.stack.redis()
    seconds, _ = r.time()
    r.set(bench.stack.keys.dedup(message["event_id"], FR), f"pending:{seconds - 3600}.000000:killed-worker")
    r.set(bench.stack.keys.dedup(message["event_id"], SCENE), "sent")  # this one did go out before the kill
    bench.producer.send_message(message)
    (entry,) = bench.decided(asset["id"], message["event_id"])
    assert {d["addon"]: d["outcome"] for d in entry["decisions"]} == {FR: "dispatched", SCENE: "already_dispatched"}
    bench.addon_calls(asset["id"], 2)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")
    assert bench.called_addons(asset["id"]) == ["face_recognition"]
    assert r.get(bench.stack.keys.dedup(message["event_id"], FR)) == b"sent"


# ------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_leave_the_worker_alive_and_dead_lettered(
    bench: Bench,
    sim: SimulatorClient,
    messages: factory.MessageFactory,
    new_account: Callable[..., factory.Account],
) -> None:
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(), [asset])
    pid = bench.stack.process_worker.pid
    marker = uuid.uuid4().hex
    valid = messages.file_saved(account.apikey, asset)

    # Malformed fields (Celery lets them through: our validation dead-letters them).
    bench.send_raw({**valid, "asset_id": "../../etc", "addons": "ALL", "marker": marker + "-fields"})
    # A tampered token.
    token = valid["apikey"]
    tampered = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]
    bench.send_raw({**valid, "apikey": tampered, "event_id": None, "marker": marker + "-token"})
    # A huge message (5 MB), invalid besides.
    bench.send_raw({**valid, "event_type": "file-huge", "padding": "x" * 5_000_000, "marker": marker + "-huge"})
    # Arguments that are not one object.
    bench.send_raw(f"{marker}-string")
    bench.send_raw({"marker": marker + "-two"}, "second argument")
    # A pickle-serialized message: Celery refuses it before our code runs (no dead letter: it never reached us).
    bench.raw.send_task(
        PROCESS_ASSET_TASK,
        args=[{**valid, "marker": marker + "-pickle"}],
        queue=bench.stack.settings.process_queue,
        serializer="pickle",
    )
    # A raw payload that is no Celery message at all, published through kombu, and one pushed straight into the list.
    queue = bench.stack.settings.process_queue
    with Connection(bench.stack.settings.effective_broker_url) as conn:
        Producer(conn).publish(
            f"not a celery message {marker}", exchange=Exchange(queue, type="direct"), routing_key=queue
        )
    bench.stack.redis().lpush(queue, f"garbage {marker}".encode())

    # The next valid event is processed by the same worker process.
    bench.producer.send_message(valid)
    bench.decided(asset["id"], valid["event_id"])
    bench.addon_calls(asset["id"], 4)

    expected = {
        "-fields": "invalid_message",
        "-token": "invalid_apikey",
        "-huge": "unknown_event_type",
        "-string": "invalid_message",
        "-two": "invalid_message",
    }

    def letters() -> dict[str, str] | None:
        found = {}
        for suffix in expected:
            hits = bench.dead_letters(marker + suffix)
            if hits:
                found[suffix] = hits[0].reason_code
        return found if len(found) == len(expected) else None

    assert bench.wait(letters, timeout=30, message="dead letters of the bad inputs") == expected
    assert bench.dead_letters(marker + "-pickle") == []
    huge = bench.dead_letters(marker + "-huge")[0]
    assert huge.replayable is False
    assert len(json.dumps(huge.message)) < 300_000
    token_letter = bench.dead_letters(marker + "-token")[0]
    assert token_letter.message["apikey"] == tampered  # kept encrypted (and useless), never decrypted
    assert bench.stack.process_worker.pid == pid
    assert bench.stack.process_worker.running
    log = bench.stack.process_worker.read_log()
    assert "pickle" in log  # Celery said why it refused the pickle message


# ------------------------------------------------------------------------------------------- secrets


def _redis_values(client: redis.Redis[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """Every key and every value of every key in the Redis, of every type."""
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()  # type: ignore[no-untyped-call]
        yield key, key
        if kind == "string":
            yield key, client.get(key) or b""
        elif kind == "list":
            for item in client.lrange(key, 0, -1):
                yield key, item
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield key, field
                yield key, value
        elif kind == "set":
            for member in client.smembers(key):
                yield key, member
        elif kind == "zset":
            for member in client.zrange(key, 0, -1):
                yield key, member
        elif kind == "stream":
            for _id, fields in client.xrange(key):
                for field, value in fields.items():
                    yield key, field
                    yield key, value


def test_no_plaintext_key_in_redis_or_logs(
    bench: Bench, sim: SimulatorClient, messages: factory.MessageFactory, new_account: Callable[..., factory.Account]
) -> None:
    asset, gone = factory.image_asset(), factory.image_asset(data={"_filespin_fr_count": 1})
    account = new_account(factory.all_builtin_addons(events=["file-saved", "file-deleted"]), [asset, gone])
    saved = bench.event(account, asset, "file-saved")
    deleted = bench.event(account, gone, "file-deleted")
    # A producer that forgot to encrypt: the plaintext key arrives in the message (and must not be kept).
    marker = uuid.uuid4().hex
    bench.send_raw({**messages.file_saved(account.apikey, asset), "apikey": account.apikey, "marker": marker})
    # A backend failure that gets retried (the retry waits in Redis with the message).
    sim.script_asset_data(Step(503), asset_id=gone["id"])
    retried = bench.event(account, gone, "file-saved")

    bench.decided(asset["id"], saved)
    bench.decided(gone["id"], deleted)
    bench.decided(gone["id"], retried)
    bench.wait(lambda: bench.dead_letters(marker), timeout=30, message="dead letter of the plaintext message")
    bench.addon_calls(asset["id"], 4)
    bench.wait(bench.jobs_settled, timeout=30, message="queues drained")

    secret = account.apikey.encode()
    leaks = [key for key, value in _redis_values(bench.stack.redis()) if secret in value]
    assert leaks == []
    (letter,) = bench.dead_letters(marker)
    assert letter.message["apikey"] == "[REDACTED]"
    for program, text in bench.stack.read_logs().items():
        assert account.apikey not in text, f"{program} logged the API key"
