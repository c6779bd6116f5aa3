"""``python -m asset_post_process.devkit.simulator --port N``: serve the FileSpin simulator until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from asset_post_process.devkit.simulator.app import create_app
from asset_post_process.devkit.simulator.server import uvicorn_config


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m asset_post_process.devkit.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind (default: 8900)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn_config(create_app(), host=args.host, port=args.port, log_level=args.log_level)
    print(f"FileSpin simulator on http://{args.host}:{args.port} (control plane under /_sim/)", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
