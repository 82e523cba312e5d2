"""`gateway convert phenopacket --to fhir`, `gateway convert beacon-response --to fhir` and
`gateway export phenopacket ID… [--family] [--to fhir]`.

The convert commands each print ONE FHIR R4 collection Bundle on stdout (every input document's resources
in it) and the issues on stderr as `FILE: SEVERITY [code] at /json/pointer: message`. A document whose
Bundle fails the gateway's FHIR validation is left out and the exit code is 1; nothing invalid is printed.

`gateway export phenopacket` reads stored phenopackets (the operator's act, audited like ingest): a JSON
array of them, with `--family` the Phenopacket Family around each (proband, relatives, pedigree), or with
`--to fhir` one Bundle (a stored family history comes along as FamilyMemberHistory). An id not stored, or
without a family under `--family`, is named on stderr and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

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
    items, rejected = [], False
    for path, doc, issue in _documents(args.files, cfg.max_json_depth):
        if issue:
            _print_issues(path, [issue])
            rejected = True
        else:
            items.append((path, doc))
    status = _emit(items, args.profile or cfg.profile, export_one)
    return EXIT_REJECTED if rejected else status


def _emit(items: list[tuple[str, Any]], profile: str | None, export_one) -> int:
    """Print one collection Bundle of every document that exports; EXIT_REJECTED if one did not."""
    entries, rejected = [], False
    for path, doc in items:
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


def add_stored_export_parser(sub, open_services: Callable[[Any], Any]) -> None:
    """`gateway export phenopacket`: stored records out, through the node's own services."""
    export = sub.add_parser("export", help="stored phenopackets (and their families) out").add_subparsers(
        dest="kind", required=True
    )
    pxf = export.add_parser("phenopacket", help="stored phenopackets by id → a JSON array (or FHIR) on stdout")
    pxf.add_argument("ids", nargs="+", metavar="ID", help="phenopacket ids as stored (GET /phenopackets lists them)")
    pxf.add_argument("--family", action="store_true", help="the Phenopacket Family around each (relatives, pedigree)")
    pxf.add_argument("--to", choices=["phenopacket", "fhir"], default="phenopacket")
    pxf.add_argument("--profile", help="with --to fhir: national flavour (default: the node's profile, else generic)")
    pxf.set_defaults(func=partial(cmd_export_phenopacket, open_services=open_services))


def cmd_export_phenopacket(args: argparse.Namespace, open_services: Callable[[Any], Any]) -> int:
    from gateway.config import load_config
    from gateway.services.fhir_export import export_phenopacket

    cfg = load_config()
    store = open_services(cfg).store
    try:
        documents, missing = _stored_documents(store, args.ids, family=args.family, fhir=args.to == "fhir")
    finally:
        store.close()
    for packet_id in missing:
        what = "no family history stored for phenopacket" if args.family else "no phenopacket stored with id"
        _print_issues(packet_id, [Issue.error("not-found", f"{what} {packet_id!r}")])
    if args.to == "fhir":

        def export_one(doc, profile):
            yield "", export_phenopacket(doc, profile=profile)

        status = _emit(documents, args.profile or cfg.profile, export_one)
    else:
        json.dump([doc for _, doc in documents], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        status = EXIT_OK
    return EXIT_REJECTED if missing else status


def _stored_documents(store, ids: list[str], *, family: bool, fhir: bool) -> tuple[list[tuple[str, dict]], list[str]]:
    """(id, document) for each id asked for, and the ids without one.

    The document is the phenopacket; with `family` the Family around it; for FHIR, the Family whenever
    there is one (the EHR gets the family history with the patient, as from GET /phenopackets/{id}).
    """
    documents, missing = [], []
    for packet_id in ids:
        found = store.get_family(packet_id) if family or fhir else None
        if found is not None:
            documents.append((packet_id, found.document))
            continue
        stored = None if family else store.get_phenopacket(packet_id)
        if stored is None:
            missing.append(packet_id)
        else:
            documents.append((packet_id, stored.document))
    return documents, missing
