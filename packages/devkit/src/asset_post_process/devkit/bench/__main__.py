"""``python -m asset_post_process.devkit.bench``: run every measurement and print the table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from asset_post_process.devkit.bench.runner import Bench
from asset_post_process.devkit.bench.scenarios import Sizes, rows_of, run_all
from asset_post_process.devkit.bench.table import render_markdown, render_text
from asset_post_process.devkit.redis_provision import provision_redis
from asset_post_process.devkit.simulator import run_simulator


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the bench, print the table (and write JSON/Markdown when asked)."""
    parser = argparse.ArgumentParser(prog="python -m asset_post_process.devkit.bench", description=__doc__)
    defaults = Sizes()
    parser.add_argument("--events", type=int, default=defaults.events, help="events per throughput run")
    parser.add_argument("--capped-events", type=int, default=defaults.capped_events)
    parser.add_argument("--backend-events", type=int, default=defaults.backend_events)
    parser.add_argument("--latency-seconds", type=float, default=defaults.latency_seconds)
    parser.add_argument("--memory-events", type=int, default=defaults.memory_events)
    parser.add_argument("--addon-latency", type=float, default=defaults.addon_latency, help="seconds (slow run)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks every path, figures meaningless")
    parser.add_argument("--logs-dir", type=Path, default=None, help="worker logs (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here as Markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sizes = (
        Sizes.quick()
        if args.quick
        else Sizes(
            events=args.events,
            capped_events=args.capped_events,
            backend_events=args.backend_events,
            latency_seconds=args.latency_seconds,
            memory_events=args.memory_events,
            addon_latency=args.addon_latency,
        )
    )
    logs_dir = args.logs_dir or Path(tempfile.mkdtemp(prefix="postprocess-bench-"))
    logs_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (
        provision_redis(kinds=("redis-server", "embedded")) as redis,
        run_simulator(in_process=False, log_path=logs_dir / "simulator.log") as simulator,
    ):
        results = run_all(Bench(redis, simulator, logs_dir), sizes)
    rows = rows_of(results)
    print()
    print(render_text(rows))
    print(f"\n({time.monotonic() - started:.0f}s; worker logs in {logs_dir})")
    if args.json:
        args.json.write_text(json.dumps(results.as_json(), indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(render_markdown(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
