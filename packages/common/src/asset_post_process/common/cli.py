"""``postprocess``: the operator CLI of asset-post-process.

Commands: ``enqueue``, ``explain``, ``queues``, ``dead-letters list|show|replay|purge``, ``keygen``, ``encrypt-key``.
Settings come from the same ``POSTPROCESS_*`` variables as the workers; ``POSTPROCESS_APIKEY_KEYS`` is needed only
by the commands that encrypt (``enqueue``, ``encrypt-key``). Tables by default, ``--json`` for scripts.

Exit codes: 0 done, 1 nothing found, 2 bad usage or input, 3 a setting is missing or invalid, 4 Redis or the
broker did not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.cli_format import (
    human_duration,
    parse_duration,
    safe_url,
    table,
    to_json,
    utc_time,
)
from asset_post_process.common.contract import ASSET_ID_PATTERN, EventType
from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken, generate_key
from asset_post_process.common.deadletters import DeadLetter, DeadLetterFilter, DeadLetterStore
from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.figures import Figures, read_figures
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import OUTCOMES
from asset_post_process.common.operator_settings import OperatorSettings, load_operator_settings
from asset_post_process.common.producer import EventProducer
from asset_post_process.common.redis_client import connect
from asset_post_process.common.settings import ConfigurationError

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

#: Where ``enqueue`` finds the plaintext API key when neither --apikey-file nor --apikey-stdin is given.
APIKEY_ENV = "POSTPROCESS_APIKEY"
REDIS_TIMEOUT_SECONDS = 3.0


class CliError(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Context:
    """Settings and clients of one invocation, each built on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._settings: OperatorSettings | None = None
        self._redis: redis.Redis[bytes] | None = None
        self._broker: redis.Redis[bytes] | None = None

    @property
    def settings(self) -> OperatorSettings:
        """The ``POSTPROCESS_*`` settings (the Fernet keys only when a command asks for them)."""
        if self._settings is None:
            self._settings = load_operator_settings(OperatorSettings)
        return self._settings

    @property
    def keys(self) -> Keys:
        """Redis key names."""
        return Keys(self.settings.key_prefix)

    @property
    def cache(self) -> redis.Redis[bytes]:
        """The cache Redis (dead letters, decisions, heartbeats, metrics)."""
        if self._redis is None:
            self._redis = connect(self.settings.effective_cache_url, socket_timeout=REDIS_TIMEOUT_SECONDS)
        return self._redis

    @property
    def broker(self) -> redis.Redis[bytes]:
        """The broker Redis (queue lists); the cache client when both are one URL."""
        if self.settings.effective_broker_url == self.settings.effective_cache_url:
            return self.cache
        if self._broker is None:
            self._broker = connect(self.settings.effective_broker_url, socket_timeout=REDIS_TIMEOUT_SECONDS)
        return self._broker

    @property
    def dead_letters(self) -> DeadLetterStore:
        """The dead-letter store."""
        return DeadLetterStore(self.cache, self.keys, self.settings.dead_letter_max)

    def out(self, data: Any, human: str) -> None:
        """Print ``data`` as JSON with ``--json``, else ``human``."""
        print(to_json(data) if self.args.json else human)

    def close(self) -> None:
        """Release the clients."""
        for client in (self._redis, self._broker):
            if client is not None:
                client.close()


# --- keys -------------------------------------------------------------------------------------------------------


def cmd_keygen(ctx: Context) -> int:
    """Print a new Fernet key."""
    key = generate_key()
    ctx.out({"key": key}, key)
    return EXIT_OK


def cmd_encrypt_key(ctx: Context) -> int:
    """Encrypt the API key on standard input with the newest configured key."""
    plaintext = sys.stdin.readline().strip()
    if not plaintext:
        raise CliError("no API key on standard input")
    token = ApiKeyCipher(ctx.settings.fernet_keys).encrypt(plaintext)
    ctx.out({"token": token}, token)
    return EXIT_OK


# --- enqueue ------------------------------------------------------------------------------------------------------


def _read_json_file(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{what}: cannot read {path!r} ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what}: {path!r} is not JSON ({exc.msg}, line {exc.lineno})") from None


def _apikey(args: argparse.Namespace, from_file: Any) -> str:
    """The API key (plaintext or token) from --apikey-file, --apikey-stdin, the environment or the event file."""
    if args.apikey_file:
        try:
            key = Path(args.apikey_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"--apikey-file: cannot read {args.apikey_file!r} ({exc.strerror})") from None
        source = "--apikey-file"
    elif args.apikey_stdin:
        key, source = sys.stdin.readline().strip(), "standard input"
    elif os.environ.get(APIKEY_ENV):
        key, source = os.environ[APIKEY_ENV].strip(), APIKEY_ENV
    elif isinstance(from_file, str):
        key, source = from_file.strip(), "the event file"
    else:
        raise CliError(f"no API key: give --apikey-file PATH or --apikey-stdin, or set {APIKEY_ENV}")
    if not key:
        raise CliError(f"the API key from {source} is empty")
    return key


def _event_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.file:
        loaded = _read_json_file(args.file, "--file")
        if not isinstance(loaded, dict):
            raise CliError("--file: the event must be a JSON object")
        fields.update(loaded)
    if args.asset_id is not None:
        fields["asset_id"] = args.asset_id
    if args.event_type is not None:
        fields["event_type"] = args.event_type
    if args.addons:
        fields["addons"] = args.addons
    if args.force:
        fields["force_processing"] = True
    if args.event_id is not None:
        fields["event_id"] = args.event_id
    if args.asset_data is not None:
        fields["asset_data"] = _read_json_file(args.asset_data, "--asset-data")
    for required in ("asset_id", "event_type"):
        if required not in fields:
            raise CliError(f"--{required.replace('_', '-')} is required (or give it in --file)")
    return fields


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'event'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def cmd_enqueue(ctx: Context) -> int:
    """Validate an event, encrypt its API key and send it to the process queue."""
    args = ctx.args
    fields = _event_fields(args)
    apikey = _apikey(args, fields.pop("apikey", None))
    known = {"asset_id", "event_type", "addons", "force_processing", "asset_data", "event_id"}
    producer = EventProducer.from_settings(ctx.settings)
    try:
        try:
            message = producer.build_message(apikey=apikey, **{k: v for k, v in fields.items() if k in known})
        except ValidationError as exc:
            raise CliError(f"invalid event: {_validation_text(exc)}") from None
        except InvalidApiKeyToken:
            raise CliError("the API key is a Fernet token that none of POSTPROCESS_APIKEY_KEYS opens") from None
        queue = ctx.settings.process_queue
        if args.dry_run:
            shown = {**message, "apikey": "<encrypted>"}
            ctx.out({"sent": False, "queue": queue, "message": shown}, f"would send to {queue}:\n{to_json(shown)}")
            return EXIT_OK
        event_id = producer.send_message(message)
    finally:
        producer.close()
    ctx.out(
        {"sent": True, "queue": queue, "event_id": event_id, "asset_id": message["asset_id"]},
        f"enqueued event {event_id} ({message['event_type']}, asset {message['asset_id']}) on {queue}",
    )
    return EXIT_OK


# --- explain ------------------------------------------------------------------------------------------------------


def _explain_text(asset_id: str, entries: Sequence[dict[str, Any]]) -> str:
    blocks = [f"latest decisions for asset {asset_id}, newest first"]
    for item in entries:
        head = (
            f"\n{utc_time(item.get('at'))}  {item.get('event_type', '?')}  event {item.get('event_id', '?')}  "
            f"attempt {item.get('attempt', 0)}{'  force' if item.get('force_processing') else ''}\n"
            f"  outcome: {item.get('outcome', '?')} ({item.get('reason_code', '?')}): {item.get('reason', '')}"
        )
        decisions = item.get("decisions") or []
        if decisions:
            rows = [
                [d.get("addon"), d.get("run"), d.get("action"), d.get("outcome"), d.get("reason_code"), d.get("reason")]
                for d in decisions
            ]
            body = table(["addon", "run", "action", "outcome", "code", "reason"], rows)
            head += "\n" + "\n".join(f"  {line}" for line in body.splitlines())
        blocks.append(head)
    return "\n".join(blocks)


def cmd_explain(ctx: Context) -> int:
    """Show the latest planning decisions for an asset and why they were made."""
    asset_id = ctx.args.asset_id
    if not re.match(ASSET_ID_PATTERN, asset_id):
        raise CliError(f"not an asset id: {asset_id!r} (32 hex characters, or the 36-character UUID form)")
    settings = ctx.settings
    log = DecisionLog(ctx.cache, ctx.keys, per_asset=settings.decisions_per_asset)
    entries = log.latest(asset_id, limit=ctx.args.limit)
    if not entries:
        days = settings.decisions_ttl_seconds / 86400
        ctx.out(
            {"asset_id": asset_id, "entries": []},
            f"no decisions recorded for asset {asset_id} (they are kept {days:g} days)",
        )
        return EXIT_NOT_FOUND
    ctx.out({"asset_id": asset_id, "entries": entries}, _explain_text(asset_id, entries))
    return EXIT_OK


# --- queues -------------------------------------------------------------------------------------------------------


def _figures_data(figures: Figures) -> dict[str, Any]:
    data = figures.to_dict()
    data["latency"] = {
        addon: {"calls": h.count, "mean_seconds": (h.total_seconds / h.count) if h.count else None}
        for addon, h in sorted(figures.latency.items())
    }
    return data


def _figures_text(figures: Figures) -> str:
    parts = [
        table(["queue", "waiting"], sorted(figures.queues.items())),
        f"in flight (unacked): {figures.unacked}   delayed retries: {figures.delayed} ({figures.delayed_due} due)"
        f"   dead letters: {figures.dead_letters}",
        table(
            ["workers", "live", "nodes"],
            [[kind, len(nodes), ", ".join(nodes) or None] for kind, nodes in figures.workers.items()],
        ),
    ]
    if figures.addons:
        rows = []
        for addon in figures.addons:
            histogram = figures.latency.get(addon)
            mean = f"{1000 * histogram.total_seconds / histogram.count:.0f}" if histogram and histogram.count else None
            counts = [figures.outcomes.get((addon, o), 0) for o in OUTCOMES]
            rows.append([addon, *counts, histogram.count if histogram else 0, mean])
        parts.append(table(["addon", *OUTCOMES, "calls", "mean_ms"], rows))
    else:
        parts.append("no addon outcomes recorded yet")
    return "\n\n".join(parts)


def cmd_queues(ctx: Context) -> int:
    """Show queue depths, delayed retries, dead letters, live workers and addon outcomes."""
    settings = ctx.settings
    figures = read_figures(
        ctx.cache,
        ctx.keys,
        [settings.process_queue, settings.trigger_queue],
        settings.heartbeat_ttl_seconds,
        broker=ctx.broker,
    )
    ctx.out(_figures_data(figures), _figures_text(figures))
    return EXIT_OK


# --- dead letters -------------------------------------------------------------------------------------------------


def _filter(args: argparse.Namespace) -> DeadLetterFilter:
    return DeadLetterFilter(
        addon=args.addon,
        reason_code=args.reason,
        task=args.task,
        older_than_seconds=args.older_than,
        newer_than_seconds=args.newer_than,
    )


def _letter_data(letter: DeadLetter, *, with_message: bool, now: float) -> dict[str, Any]:
    data = asdict(letter)
    if not with_message:
        data.pop("message")
    data["age_seconds"] = max(0.0, now - letter.failed_at)
    return data


def cmd_dl_list(ctx: Context) -> int:
    """List dead letters matching the filters, newest first."""
    store = ctx.dead_letters
    letters = store.list(_filter(ctx.args), limit=ctx.args.limit)
    now = time.time()
    total = store.count()
    rows = [
        [
            d.id,
            human_duration(now - d.failed_at),
            d.task,
            d.addon,
            d.reason_code,
            d.status_code,
            d.asset_id,
            d.attempts,
            d.replayable,
            (d.reason[:57] + "...") if len(d.reason) > 60 else d.reason,
        ]
        for d in letters
    ]
    human = (
        table(["id", "age", "task", "addon", "reason_code", "status", "asset", "tries", "replay", "reason"], rows)
        + f"\n{len(letters)} shown of {total} stored"
    )
    ctx.out(
        {
            "total": total,
            "count": len(letters),
            "items": [_letter_data(d, with_message=False, now=now) for d in letters],
        },
        human if letters else f"no dead letters match ({total} stored)",
    )
    return EXIT_OK


def cmd_dl_show(ctx: Context) -> int:
    """Show one dead letter with its message (the API key in it stays encrypted)."""
    letter = ctx.dead_letters.get(ctx.args.id)
    if letter is None:
        raise CliError(f"no dead letter {ctx.args.id}", EXIT_NOT_FOUND)
    data = _letter_data(letter, with_message=True, now=time.time())
    message = data.pop("message")
    shown = {
        **data,
        "failed_at": f"{utc_time(letter.failed_at)} UTC ({human_duration(data['age_seconds'])} ago)",
    }
    shown.pop("age_seconds")
    lines = [f"{name}: {'-' if value is None else value}" for name, value in shown.items()]
    ctx.out({**data, "message": message}, "\n".join(lines) + "\nmessage:\n" + to_json(message))
    return EXIT_OK


def _selection(args: argparse.Namespace) -> tuple[DeadLetterFilter, list[str] | None]:
    flt = _filter(args)
    ids: list[str] | None = args.ids or None
    if ids is None and flt == DeadLetterFilter() and not args.all:
        raise CliError(
            "select dead letters with --id, a filter (--addon, --reason, --task, --older-than, --newer-than) or --all"
        )
    return flt, ids


def _selected(store: DeadLetterStore, flt: DeadLetterFilter, ids: list[str] | None) -> list[DeadLetter]:
    if ids is not None:
        return [letter for letter in (store.get(i) for i in ids) if letter is not None]
    return list(store.iter(flt, newest_first=False))


def cmd_dl_replay(ctx: Context) -> int:
    """Send the selected dead letters back to their queue, then delete them."""
    flt, ids = _selection(ctx.args)
    store = ctx.dead_letters
    if ctx.args.dry_run:
        letters = [d for d in _selected(store, flt, ids) if d.replayable]
        ctx.out(
            {"replayed": 0, "would_replay": len(letters), "ids": [d.id for d in letters]},
            f"would replay {len(letters)} dead letter(s)",
        )
        return EXIT_OK
    producer = make_producer(ctx.settings)

    def send(task: str, queue: str, message: Any) -> None:
        producer.send_task(task, args=[message], queue=queue)

    try:
        replayed = store.replay(send, flt, ids=ids)
    finally:
        producer.close()
    ctx.out({"replayed": replayed}, f"replayed {replayed} dead letter(s)")
    return EXIT_OK


def cmd_dl_purge(ctx: Context) -> int:
    """Delete the selected dead letters."""
    flt, ids = _selection(ctx.args)
    store = ctx.dead_letters
    if ctx.args.dry_run:
        letters = _selected(store, flt, ids)
        ctx.out(
            {"purged": 0, "would_purge": len(letters), "ids": [d.id for d in letters]},
            f"would purge {len(letters)} dead letter(s)",
        )
        return EXIT_OK
    purged = store.remove(ids) if ids is not None else store.purge(flt)
    ctx.out({"purged": purged}, f"purged {purged} dead letter(s)")
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``postprocess``."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")

    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("filters (every one given must hold)")
    group.add_argument("--addon", metavar="KEY", help="addon key, e.g. FACE_RECOGNITION")
    group.add_argument("--reason", metavar="CODE", help="reason code, e.g. http_403")
    group.add_argument("--task", choices=["process_asset", "trigger_addon"], help="the task that failed")
    group.add_argument("--older-than", type=_duration, metavar="AGE", help="at least this old: 90s, 15m, 2h, 3d")
    group.add_argument("--newer-than", type=_duration, metavar="AGE", help="at most this old")

    selection = argparse.ArgumentParser(add_help=False, parents=[filters])
    chosen = selection.add_argument_group("selection (give --id, a filter, or --all)")
    chosen.add_argument("--id", dest="ids", action="append", metavar="ID", help="a dead-letter id (repeatable)")
    chosen.add_argument("--all", action="store_true", help="every dead letter")
    chosen.add_argument("--dry-run", action="store_true", help="only say how many would be affected")

    parser = argparse.ArgumentParser(
        prog="postprocess",
        formatter_class=_Formatter,
        description="Operate asset-post-process: enqueue events, explain decisions, watch queues and workers,\n"
        "replay or purge dead letters, make keys.",
        epilog="Settings come from the POSTPROCESS_* environment variables (or POSTPROCESS_<NAME>_FILE), as for\n"
        "the workers. POSTPROCESS_APIKEY_KEYS is needed only by enqueue and encrypt-key.\n\n"
        "exit codes: 0 done, 1 nothing found, 2 bad usage or input, 3 bad or missing setting,\n"
        "            4 Redis or the broker did not answer",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Callable[[Context], int], help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=kwargs.pop("description", help_text), formatter_class=_Formatter, **kwargs
        )
        sub.set_defaults(run=run)
        return sub

    enqueue = add(
        "enqueue",
        cmd_enqueue,
        "send an asset event to the process queue",
        parents=[output],
        description="Validate an asset event and send it to the process queue, its API key encrypted with the\n"
        "newest of POSTPROCESS_APIKEY_KEYS. The event comes from flags, or from a JSON file (a process_asset\n"
        "message) that flags override. The API key is read from --apikey-file, --apikey-stdin, $POSTPROCESS_APIKEY\n"
        "or the file's apikey field; never from the command line, where it would stay in shell history.",
        epilog="example:\n"
        "  postprocess enqueue --asset-id 5f2a...e9 --event-type file-saved --addon FACE_RECOGNITION \\\n"
        "      --apikey-file ~/.filespin-key",
    )
    enqueue.add_argument("--file", metavar="PATH", help="the event as a JSON object ('-' for standard input)")
    enqueue.add_argument("--asset-id", metavar="ID", help="32 hex characters (or the 36-character UUID form)")
    event_types = [e.value for e in EventType]
    enqueue.add_argument(
        "--event-type", choices=event_types, metavar="TYPE", help=f"the event: {', '.join(event_types)}"
    )
    enqueue.add_argument(
        "--addon", dest="addons", action="append", metavar="KEY", help="an addon (repeatable; none = all)"
    )
    enqueue.add_argument("--force", action="store_true", help="run even where the addon already processed the asset")
    enqueue.add_argument("--event-id", metavar="ID", help="the event's id (default: derived from the message)")
    enqueue.add_argument("--asset-data", metavar="PATH", help="the asset JSON (file-deleted needs it)")
    keysrc = enqueue.add_mutually_exclusive_group()
    keysrc.add_argument("--apikey-file", metavar="PATH", help="read the API key (plaintext or token) from a file")
    keysrc.add_argument("--apikey-stdin", action="store_true", help="read the API key from standard input")
    enqueue.add_argument("--dry-run", action="store_true", help="validate and print the message; send nothing")

    explain = add(
        "explain",
        cmd_explain,
        "show the latest decisions for an asset and why",
        parents=[output],
        description="Show the latest planning decisions for an asset, newest first: for each event, which addons\n"
        "were run or skipped, and the reason.",
    )
    explain.add_argument("asset_id", metavar="ASSET_ID")
    explain.add_argument("--limit", type=_positive_int, default=10, help="events to show (default 10)")

    add(
        "queues",
        cmd_queues,
        "show queue depths, workers seen and dead letters",
        parents=[output],
        description="Show messages waiting per queue, in flight and delayed for a retry, dead letters, the worker\n"
        "nodes with a fresh heartbeat, and per-addon outcomes and call latency (cluster-wide, from Redis).",
    )

    dead = commands.add_parser(
        "dead-letters",
        help="list, show, replay or purge dead letters",
        description="Messages the service gave up on, with the reason. Replay sends them back to their queue.",
        formatter_class=_Formatter,
    )
    dl = dead.add_subparsers(dest="dl_command", required=True, metavar="ACTION")
    dl_list = dl.add_parser(
        "list", help="list dead letters, newest first", parents=[output, filters], formatter_class=_Formatter
    )
    dl_list.add_argument("--limit", type=_positive_int, default=50, help="letters to show (default 50)")
    dl_list.set_defaults(run=cmd_dl_list)
    dl_show = dl.add_parser("show", help="show one dead letter with its message", parents=[output])
    dl_show.add_argument("id", metavar="ID")
    dl_show.set_defaults(run=cmd_dl_show)
    dl.add_parser(
        "replay",
        help="send dead letters back to their queue, then delete them",
        parents=[output, selection],
        formatter_class=_Formatter,
    ).set_defaults(run=cmd_dl_replay)
    dl.add_parser(
        "purge", help="delete dead letters", parents=[output, selection], formatter_class=_Formatter
    ).set_defaults(run=cmd_dl_purge)

    add("keygen", cmd_keygen, "print a new Fernet key (for POSTPROCESS_APIKEY_KEYS)", parents=[output])
    add(
        "encrypt-key",
        cmd_encrypt_key,
        "encrypt an API key read from standard input with the newest configured key",
        parents=[output],
        description="Reads the plaintext API key from standard input (never from the command line, where it\n"
        "would land in shell history and the process list) and prints its Fernet token.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``postprocess``; returns the exit code."""
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return int(args.run(ctx))
    except CliError as exc:
        print(f"postprocess: {exc}", file=sys.stderr)
        return exc.code
    except ConfigurationError as exc:
        print(f"postprocess: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except redis.RedisError as exc:
        urls = sorted({safe_url(ctx.settings.effective_cache_url), safe_url(ctx.settings.effective_broker_url)})
        print(f"postprocess: Redis at {' or '.join(urls)} did not answer ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except OperationalError as exc:
        url = ctx.settings.effective_broker_url
        print(f"postprocess: the broker at {safe_url(url)} did not answer ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
