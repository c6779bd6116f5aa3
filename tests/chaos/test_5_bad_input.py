"""5. Bad input at volume, mixed with valid events.

Malformed messages come from hypothesis strategies, drawn through ``@given`` with a fixed ``@seed`` (a run is
reproducible, and hypothesis biases its draws toward edge values: empty and huge strings, odd unicode, big
integers, nested junk; ``strategy.example()`` is meant for the REPL, not for generating data). Every draw is
checked against the contract (``AssetEvent`` / ``TriggerJob`` and the Fernet key) so that a draw that happens
to be valid is not counted as bad input.

Sent through Celery (JSON) to both queues: wrong types, missing fields, oversize strings and lists, bad tokens
(garbage, foreign key, tampered, a plaintext key), unknown event types, unsupported schema versions, non-objects,
wrong arity. Each must end in the dead-letter store with a reason. Sent with a forbidden content type (pickle,
YAML) or pushed raw into the queue's Redis list (garbage bytes, JSON that is no kombu envelope, envelopes naming
no or an unknown task): each must be refused by Celery/kombu before it reaches our code, logged, and dropped.
Meanwhile every valid event is processed, the workers keep their PIDs, and their memory stays flat.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from typing import Any

from cryptography.fernet import Fernet
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.contract import (
    PROCESS_ASSET_TASK,
    TRIGGER_ADDON_TASK,
    AssetEvent,
    EventType,
    TriggerJob,
)
from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken
from asset_post_process.devkit import factory
from asset_post_process.devkit.chaos import CallTally, push_raw, rss_kib, wait_all_called
from asset_post_process.devkit.waiting import wait_until

SEED = 20261203
#: A plaintext API key some malformed messages carry where the token belongs: it must never be stored or logged.
PLAINTEXT_IN_BAD_INPUT = f"fsk_chaos_plain_{uuid.uuid4().hex}"

#: Log lines of Celery and kombu refusing a message before any task code runs.
REFUSAL = re.compile(
    r"Refusing to deserialize|Received invalid task message|Can't decode message body|"
    r"Received and deleted unknown message|Received unregistered task|"
    r"dropped an item of the queue that is not a kombu message"
)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def _mutations(base: dict[str, Any], fields: list[str], required: list[str], tokens: list[str]) -> Any:
    """Malformed variants of the valid message ``base``, each tagged with its kind."""

    def put(name: str, value: Any) -> dict[str, Any]:
        return {**base, name: value}

    wrong_type = st.tuples(st.sampled_from(fields), junk).map(lambda fv: ("wrong_type", put(*fv)))
    missing = st.lists(st.sampled_from(required), min_size=1, unique=True).map(
        lambda names: ("missing_field", {k: v for k, v in base.items() if k not in names})
    )
    oversize_string = st.tuples(
        st.sampled_from([f for f in ("apikey", "asset_id", "event_type", "event_id", "job_id", "addon") if f in base]),
        st.integers(5_000, 200_000),
        st.sampled_from(["A", "é", "0", "\x00"]),
    ).map(lambda t: ("oversize_string", put(t[0], t[2] * t[1])))
    oversize_list = st.tuples(st.integers(65, 5_000), st.sampled_from(["FACE_RECOGNITION", "X", ""])).map(
        lambda t: ("oversize_list", put("addons", [f"{t[1]}{i}" if t[1] else "" for i in range(t[0])]))
    )
    bad_token = st.one_of(
        st.text(min_size=1, max_size=300),
        st.sampled_from(tokens),
        st.just(PLAINTEXT_IN_BAD_INPUT),
    ).map(lambda token: ("bad_token", put("apikey", token)))
    unknown_event = (
        st.text(max_size=30)
        .filter(lambda t: t not in {e.value for e in EventType})
        .map(lambda t: ("unknown_event", put("event_type", t)))
    )
    bad_version = st.integers().filter(lambda v: v != 1).map(lambda v: ("bad_schema_version", put("schema_version", v)))
    non_object = junk.map(lambda value: ("not_an_object", value))
    return st.one_of(
        wrong_type, missing, oversize_string, oversize_list, bad_token, unknown_event, bad_version, non_object
    )


def draw(strategy: Any, count: int) -> list[Any]:
    """``count`` draws of ``strategy`` through ``@given`` with a fixed seed (reproducible)."""
    out: list[Any] = []

    @seed(SEED)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def gather(value: Any) -> None:
        out.append(value)

    gather()
    return out


def _accepted_event(message: Any, cipher: ApiKeyCipher) -> bool:
    try:
        event = AssetEvent.model_validate(message)
        cipher.decrypt(event.apikey)
    except (ValidationError, InvalidApiKeyToken):
        return False
    return True


def _accepted_job(message: Any, cipher: ApiKeyCipher) -> bool:
    try:
        job = TriggerJob.model_validate(message)
        cipher.decrypt(job.apikey)
    except (ValidationError, InvalidApiKeyToken):
        return False
    return True


def _raw_payloads(rng: random.Random, count: int, queue: str) -> list[bytes]:
    """Things no Celery producer sends, for the queue's Redis list."""
    envelope = {
        "body": "W10=",  # base64 of "[]"
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "delivery_mode": 2,
            "delivery_tag": "",
            "priority": 0,
        },
    }
    payloads: list[bytes] = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            payloads.append(rng.randbytes(rng.randint(1, 2000)))
        elif kind == 1:
            payloads.append(json.dumps(rng.choice([{"foo": i}, [1, 2, i], "text", i, None])).encode())
        elif kind == 2:
            payloads.append(b"{not json at all" + str(i).encode())
        elif kind == 3:  # a kombu envelope naming no task
            env = json.loads(json.dumps(envelope))
            env["properties"]["delivery_tag"] = uuid.uuid4().hex
            payloads.append(json.dumps(env).encode())
        else:  # a kombu envelope naming a task nobody registered
            env = json.loads(json.dumps(envelope))
            env["properties"]["delivery_tag"] = uuid.uuid4().hex
            env["headers"] = {"task": f"no_such_task_{i}", "id": uuid.uuid4().hex, "lang": "py"}
            payloads.append(json.dumps(env).encode())
    return payloads


def test_bad_input_at_volume(chaos: Any, profile: Any, figures: Any) -> None:
    stack, sim = chaos.stack, chaos.sim
    settings_ = stack.settings
    cipher = ApiKeyCipher(settings_.fernet_keys)
    rng = random.Random(SEED)
    account = chaos.new_account()
    chaos.apikeys.append(PLAINTEXT_IN_BAD_INPUT)
    producer = stack.producer()

    # Warm up with valid events so that the memory baseline has every code path loaded.
    tally = CallTally(sim)
    warm = [factory.image_asset() for _ in range(20)]
    for asset in warm:
        sim.put_asset(account.apikey, asset)
        producer.enqueue_asset_event(apikey=account.apikey, asset_id=asset["id"], event_type="file-saved")
    warm_pairs = [(a["id"], addon) for a in warm for addon in chaos.addon_paths]
    assert wait_all_called(tally, warm_pairs, timeout=120), "warm-up events not processed"
    pids = {p.name: p.pid for p in stack.programs}
    rss_before = {p.name: rss_kib(p.pid) for p in stack.programs if p.pid}
    dl_before = chaos.dead_letters().count()
    log_offsets = {p.name: len(p.read_log()) for p in stack.programs}

    # The malformed messages.
    asset = factory.image_asset()
    sim.put_asset(account.apikey, asset)
    valid = factory.MessageFactory(settings_.fernet_keys).file_saved(account.apikey, asset)
    foreign = Fernet(Fernet.generate_key())
    token = valid["apikey"]
    tokens = [
        foreign.encrypt(account.apikey.encode()).decode(),  # a key we do not hold
        token[:-10],  # truncated
        token[:50] + ("A" if token[50] != "A" else "B") + token[51:],  # tampered
        "gAAAAA" + "x" * 120,  # token-shaped garbage
    ]
    event_fields = ["apikey", "asset_id", "event_type", "addons", "force_processing", "asset_data", "event_id"]
    job = TriggerJob(
        job_id="chaos:FACE_RECOGNITION",
        event_id="chaos-job",
        asset_id=asset["id"],
        addon="FACE_RECOGNITION",
        action="process",
        apikey=token,
    ).model_dump(mode="json")
    job_fields = ["job_id", "event_id", "asset_id", "addon", "action", "apikey", "disposition", "force_processing"]

    n_events = int(profile.malformed * 0.7)
    n_jobs = int(profile.malformed * 0.2)
    n_other = profile.malformed - n_events - n_jobs  # content types, raw pushes, wrong arity
    events = [
        (kind, m)
        for kind, m in draw(_mutations(valid, event_fields, ["apikey", "asset_id", "event_type"], tokens), n_events)
        if not _accepted_event(m, cipher)
    ]
    jobs = [
        (kind, m)
        for kind, m in draw(
            _mutations(job, job_fields, ["job_id", "event_id", "asset_id", "addon", "action", "apikey"], tokens),
            n_jobs,
        )
        if not _accepted_job(m, cipher)
    ]
    n_pickle = n_yaml = max(1, n_other // 5)
    n_arity = max(1, n_other // 10)
    n_raw = max(5, n_other - n_pickle - n_yaml - n_arity)

    # Valid events to mix in.
    valid_assets = [factory.image_asset() for _ in range(profile.valid_in_mix)]
    for a in valid_assets:
        sim.put_asset(account.apikey, a)
    valid_pairs = [(a["id"], addon) for a in valid_assets for addon in chaos.addon_paths]

    sends: list[tuple[str, Any]] = (
        [("event", m) for _, m in events]
        + [("job", m) for _, m in jobs]
        + [("pickle", None)] * n_pickle
        + [("yaml", None)] * n_yaml
        + [("arity", None)] * n_arity
        + [("valid", a) for a in valid_assets]
    )
    rng.shuffle(sends)
    app = make_producer(settings_)
    started = time.time()
    try:
        for what, payload in sends:
            if what == "event":
                app.send_task(PROCESS_ASSET_TASK, args=[payload], queue=settings_.process_queue)
            elif what == "job":
                app.send_task(TRIGGER_ADDON_TASK, args=[payload], queue=settings_.trigger_queue)
            elif what == "pickle":
                app.send_task(PROCESS_ASSET_TASK, args=[valid], queue=settings_.process_queue, serializer="pickle")
            elif what == "yaml":
                app.send_task(TRIGGER_ADDON_TASK, args=[job], queue=settings_.trigger_queue, serializer="yaml")
            elif what == "arity":
                app.send_task(PROCESS_ASSET_TASK, args=[valid, valid], kwargs={"x": 1}, queue=settings_.process_queue)
            else:
                producer.enqueue_asset_event(apikey=account.apikey, asset_id=payload["id"], event_type="file-saved")
        raw = _raw_payloads(rng, n_raw, settings_.process_queue)
        half = len(raw) // 2
        push_raw(chaos.client(), settings_.process_queue, raw[:half])
        push_raw(chaos.client(), settings_.trigger_queue, raw[half:])
    finally:
        app.close()
    sent_at = time.time()

    expected_letters = len(events) + len(jobs) + n_arity
    expected_refusals = n_pickle + n_yaml + len(raw)
    all_called = wait_all_called(tally, valid_pairs, timeout=profile.recovery_timeout)
    wait_until(
        lambda: chaos.dead_letters().count() - dl_before >= expected_letters and chaos.idle(),
        timeout=profile.recovery_timeout,
        interval=0.5,
        message=lambda: f"dead letters {chaos.dead_letters().count() - dl_before}/{expected_letters}, "
        f"broker {chaos.broker_state()}",
    )
    drained_at = time.time()
    letters = list(chaos.dead_letters().iter())[: chaos.dead_letters().count() - dl_before]
    new_logs = {p.name: p.read_log()[log_offsets[p.name] :] for p in stack.programs}
    refusals = sum(1 for text in new_logs.values() for line in text.splitlines() if REFUSAL.search(line))
    rss_after = {p.name: rss_kib(p.pid) for p in stack.programs if p.pid}
    kinds = Counter(kind for kind, _ in events) + Counter(f"job:{kind}" for kind, _ in jobs)
    reasons = Counter(letter.reason_code for letter in letters)
    figures(
        "5. bad input at volume",
        malformed_sent=expected_letters + expected_refusals,
        malformed_by_kind=", ".join(f"{k}={v}" for k, v in sorted(kinds.items())),
        pickle_sent=n_pickle,
        yaml_sent=n_yaml,
        wrong_arity_sent=n_arity,
        raw_redis_pushes=len(raw),
        valid_events_mixed_in=len(valid_assets),
        valid_pairs_called=len(valid_pairs) - len(tally.missing(valid_pairs)),
        dead_letters_expected=expected_letters,
        dead_letters_stored=chaos.dead_letters().count() - dl_before,
        dead_letters_by_reason=", ".join(f"{k}={v}" for k, v in sorted(reasons.items())),
        refusals_expected=expected_refusals,
        refusals_logged=refusals,
        seconds_to_drain=drained_at - sent_at,
        seconds_to_send=sent_at - started,
        rss_mib_before=", ".join(f"{k}={v / 1024:.0f}" for k, v in rss_before.items()),
        rss_mib_after=", ".join(f"{k}={v / 1024:.0f}" for k, v in rss_after.items()),
        workers_restarted=sum(1 for p in stack.programs if p.pid != pids[p.name]),
    )
    assert all_called, f"valid events not processed: {tally.missing(valid_pairs)[:5]}"
    assert {p.name: p.pid for p in stack.programs} == pids, "a program died"
    assert chaos.dead_letters().count() - dl_before == expected_letters
    assert all(letter.reason and letter.reason_code for letter in letters)
    assert refusals == expected_refusals, {name: REFUSAL.findall(text)[:3] for name, text in new_logs.items()}
    for name, before in rss_before.items():
        growth = rss_after[name] - before
        assert growth <= max(64 * 1024, before // 2), f"{name}: RSS grew from {before} KiB to {rss_after[name]} KiB"
