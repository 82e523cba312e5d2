"""`gateway convert phenopacket --to fhir` and `gateway convert beacon-response --to fhir`.

Each prints ONE FHIR R4 collection Bundle on stdout (every input document's resources in it) and the
issues on stderr as `FILE: SEVERITY [code] at /json/pointer: message`. A document whose Bundle fails the
gateway's FHIR validation is left out and the exit code is 1; nothing invalid is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.issues import Issue, Report

EXIT_OK, EXIT_REJECTED = 0, 1


def add_export_parsers(convert) -> None:
    """The two subcommands, under the existing `convert` subparsers."""
    pxf = convert.add_parser(
        "phenopacket", help="phenopackets (or Family messages) → one FHIR R4 collection Bundle on stdout"
    )
    pxf.add_argument("files", nargs="+", metavar="FILE", help="phenopacket JSON, a JSON array of them, or '-'")
    pxf.add_argument("--to", required=True, choices=["fhir"])
    pxf.add_argument("--profile", help="national flavour of the FHIR (default: the node's profile, else generic)")
    pxf.set_defaults(func=cmd_convert_phenopacket)
    beacon = convert.add_parser(
        "beacon-response", help="Beacon v2 record-level responses → one FHIR R4 collection Bundle on stdout"
    )
    beacon.add_argument("files", nargs="+", metavar="FILE", help="Beacon response JSON, or '-'")
    beacon.add_argument("--to", required=True, choices=["fhir"])
    beacon.add_argument("--profile", help="national flavour of the FHIR (default: the node's profile, else generic)")
    beacon.set_defaults(func=cmd_convert_beacon_response)


def _documents(paths, max_depth: int):
    """(path, document or None, the issue that stopped reading it or None) for each path ('-' = stdin)."""
    from gateway.jsonio import JSONInputError, loads_strict

    for path in paths:
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
            yield path, loads_strict(data, max_depth=max_depth, require_object=False), None
        except OSError as exc:
            yield path, None, Issue.error("io", f"cannot read: {exc.strerror}")
        except JSONInputError as exc:
            yield path, None, exc.issue


def _print_issues(source: str, issues) -> None:
    text = Report(list(issues)).to_text(source)
    if text:
        print(text, file=sys.stderr)


def _run(args: argparse.Namespace, export_one) -> int:
    from gateway.config import load_config

    cfg = load_config()
    profile = args.profile or cfg.profile
    entries, rejected = [], False
    for path, doc, issue in _documents(args.files, cfg.max_json_depth):
        if issue:
            _print_issues(path, [issue])
            rejected = True
            continue
        for prefix, outcome in export_one(doc, profile):
            _print_issues(path, [i.at(prefix) if i.target == "input" else i for i in outcome.report])
            if outcome.ok:
                entries.extend(outcome.bundle.get("entry", []))
            else:
                rejected = True
    bundle: dict[str, object] = {"resourceType": "Bundle", "type": "collection"}
    if entries:
        bundle["entry"] = entries
    json.dump(bundle, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_REJECTED if rejected else EXIT_OK


def cmd_convert_phenopacket(args: argparse.Namespace) -> int:
    from gateway.services.fhir_export import export_phenopacket

    def export_one(doc, profile):
        docs = doc if isinstance(doc, list) else [doc]
        for n, packet in enumerate(docs):
            yield (f"/{n}" if isinstance(doc, list) else ""), export_phenopacket(packet, profile=profile)

    return _run(args, export_one)


def cmd_convert_beacon_response(args: argparse.Namespace) -> int:
    from gateway.services.fhir_export import export_beacon_response

    def export_one(doc, profile):
        yield "", export_beacon_response(doc, profile=profile)

    return _run(args, export_one)
