"""`gateway verify URL`: exit 0 when the node passes every check, 1 on any failure, 2 for usage errors."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlsplit

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_verify_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "verify",
        help="check a remote Beacon v2 node (informational endpoints, entry types, pagination, errors)",
        description="Verify a Beacon v2 node; URL is its Beacon root (e.g. https://node.example.org/api).",
    )
    parser.add_argument("url", metavar="URL")
    parser.add_argument("--token", help="bearer token for a protected node")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=cmd_verify)
    return parser


def cmd_verify(args: argparse.Namespace) -> int:
    from gateway.conformance.verify import verify

    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        print(f"gateway verify: {args.url!r} is not an http(s) URL", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.timeout <= 300:
        print("gateway verify: --timeout must be between 0 and 300 seconds", file=sys.stderr)
        return EXIT_USAGE
    report = verify(args.url, token=args.token, timeout=args.timeout)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report.to_text())
    return EXIT_OK if report.ok else EXIT_FAILED
