"""``postprocess``: the operator CLI (key tools; more commands join as the service grows)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asset_post_process.common.crypto import ApiKeyCipher, generate_key
from asset_post_process.common.settings import ConfigurationError, get_settings

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 3


def _keygen(_: argparse.Namespace) -> int:
    print(generate_key())
    return EXIT_OK


def _encrypt_key(_: argparse.Namespace) -> int:
    plaintext = sys.stdin.readline().strip()
    if not plaintext:
        print("postprocess encrypt-key: no API key on standard input", file=sys.stderr)
        return EXIT_USAGE
    settings = get_settings()
    print(ApiKeyCipher(settings.fernet_keys).encrypt(plaintext))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``postprocess``."""
    parser = argparse.ArgumentParser(prog="postprocess", description="Operate asset-post-process.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("keygen", help="print a new Fernet key").set_defaults(run=_keygen)
    commands.add_parser(
        "encrypt-key",
        help="encrypt an API key read from standard input with the newest configured key",
        description="Reads the plaintext API key from standard input (never from the command line, where "
        "it would land in shell history and the process list) and prints its Fernet token.",
    ).set_defaults(run=_encrypt_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``postprocess``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigurationError as exc:
        print(f"postprocess: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
