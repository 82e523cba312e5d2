"""The `gateway` command: serve, ingest, variants, convert, validate, verify, erase, keys, audit.

Exit codes: 0 success, 1 input rejected, 2 usage error (argparse's own convention).
The CLI acts locally as the operator: it opens the store named by the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config, ConfigError, load_config
from gateway.errors import BadInput, GatewayError
from gateway.ids import check_dataset_id
from gateway.issues import Issue, Report
from gateway.jsonio import JSONInputError, loads_strict

if TYPE_CHECKING:
    from gateway.api.context import Services
    from gateway.services.fhir_resources import ConditionalCreates

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
Located = Callable[[Iterable[Issue]], list[Issue]]  # a file's issues as it places them (NDJSON: by line)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _print_issues(source: str, issues: Iterable[Issue]) -> None:
    text = Report(list(issues)).to_text(source)
    if text:
        _err(text)


def _read_json(path: str, max_depth: int) -> dict | list:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return loads_strict(data, max_depth=max_depth, require_object=False)


def _read_phenopacket_file(path: str, max_depth: int) -> object:
    """JSON; YAML for a file named *.yaml / *.yml, protobuf's binary form for *.pb (the forms phenopacket-tools
    also reads and writes)."""
    from gateway.validation.engine import PROTOBUF_SUFFIXES, protobuf_document

    if path.lower().endswith((".yaml", ".yml")):
        from gateway.yamlio import load_bounded

        # no aliases, bounded depth; a number stays its text where a field wants text (version: 2.0)
        return load_bounded(Path(path).read_bytes(), path, max_depth=max_depth, number_text=True)
    if path.lower().endswith(PROTOBUF_SUFFIXES):
        decoded = protobuf_document(Path(path).read_bytes())
        if decoded is None:
            message = "binary input is not a protobuf Phenopacket, Family or Cohort"
            raise JSONInputError(Issue.error("protobuf-parse", message))
        return decoded[1]
    return _read_json(path, max_depth)


def _services(cfg: Config) -> Services:
    """The node's services, wired exactly as `gateway serve` wires them (app.build_services)."""
    from app import build_services

    return build_services(cfg)


# --- serve -------------------------------------------------------------------------------

SERVE_THREADS = 4  # bench/beacon_query.py: 2 sync workers spend their time waiting for PostgreSQL's answers


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {}
    if args.demo:
        overrides["demo"] = True
    if args.network:
        overrides["network"] = args.network
    bind = f"{args.host}:{args.port}"
    if args.workers <= 0:  # development server, one process
        from app import create_app

        create_app(overrides or None).run(host=args.host, port=args.port)
        return EXIT_OK
    from gunicorn.app.base import BaseApplication

    class GatewayServer(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", bind)
            self.cfg.set("workers", args.workers)
            # Threads per worker (gthread): a request waiting on the database does not hold up the next one.
            self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", "-")
            # gunicorn >= 25.1 opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl): two
            # nodes on one host (a national node and its network node) would share it, and `gunicornc` could
            # stop or resize the wrong one. The gateway does not use it.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            from app import create_app

            return create_app(overrides or None)

    load_config()  # fail early, in the parent, on a broken configuration
    GatewayServer().run()
    return EXIT_OK


# --- ingest / convert: FHIR ---------------------------------------------------------------


def _fhir_documents(
    paths: Sequence[str], max_depth: int, max_ndjson_bytes: int
) -> Iterator[tuple[str, dict | None, list[Issue], Located]]:
    """(path, its document — None: refused —, the issues that refused it, what places an issue in the file).

    A FHIR Bulk Data file (`.ndjson`, `.ndjson.gz`: a resource per line) is read as a transaction Bundle of its
    resources (gateway.services.fhir_ndjson); its issues then name the file's lines."""
    from gateway.services.fhir_ndjson import is_ndjson, read_ndjson
    from gateway.services.fhir_resources import supported_types

    for path in paths:
        try:
            if is_ndjson(path):
                found = read_ndjson(path, supported_types(), max_depth=max_depth, max_bytes=max_ndjson_bytes)
                errors = [i for i in found.issues if i.is_error]
                notes = [i for i in found.issues if not i.is_error]
                if notes:
                    _print_issues(path, notes)
                yield path, None if errors else found.bundle, errors, found.located
                continue
            doc = _read_json(path, max_depth)
            if not isinstance(doc, dict):
                raise JSONInputError(Issue.error("json-syntax", "a FHIR document must be a JSON object"))
            yield path, doc, [], list
        except (OSError, EOFError) as exc:
            yield path, None, [Issue.error("io", f"cannot read: {getattr(exc, 'strerror', None) or exc}")], list
        except JSONInputError as exc:
            yield path, None, [exc.issue], list


def cmd_convert_fhir(args: argparse.Namespace) -> int:
    from gateway.security.keys import secret_key
    from gateway.services.ingest import process_fhir

    cfg = load_config()
    dataset = check_dataset_id(args.dataset or cfg.default_dataset)
    key = secret_key(cfg)
    packets: list[dict] = []
    rejected = False
    for path, doc, refusal, located in _fhir_documents(args.files, cfg.max_json_depth, cfg.max_ndjson_bytes):
        if doc is None:
            _print_issues(path, refusal)
            rejected = True
            continue
        outcome = process_fhir(doc, key=key, dataset_id=dataset, profile=args.profile or cfg.profile)
        _print_issues(path, located(outcome.report))
        if not outcome.report.ok:
            rejected = True
            continue
        packets.extend(p.phenopacket for p in outcome.packets)
    json.dump(packets, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_REJECTED if rejected else EXIT_OK


def _ingest_summary(path: str, outcome, saved: list) -> str:
    """One line per file: what was stored, or why nothing was."""
    new = sum(1 for r in saved if r.created)
    refused = sum(1 for p in outcome.packets if p.saved is None)
    if saved:
        line = f"{path}: summary: {len(saved)} stored ({new} new, {len(saved) - new} updated)"
        return line + (f", {refused} patient(s) refused for errors" if refused else "")
    if not outcome.packets:
        return f"{path}: summary: nothing to store: the document holds no Patient to attach its resources to"
    return f"{path}: summary: nothing stored: every patient was refused for errors"


def _refused_entries(
    doc: dict, store, key: bytes, dataset: str
) -> tuple[dict[int, list[Issue]], ConditionalCreates | None]:
    """What `POST /fhir` refuses before anything is stored (gateway.api.fhir_requests): entry requests that
    cannot be done, DELETEs beside Patients, patient references that can never resolve (a document kept resource
    by resource), ifNoneExist that cannot be done. A transaction raises GatewayError with them all; a batch's
    refused entries are returned, {entry: issues}, with the ConditionalCreates (matched entries: not created)."""
    from gateway.api.fhir_requests import (
        check_conditional_creates,
        check_deletes,
        check_patient_links,
        check_requests,
        holds_a_patient,
    )
    from gateway.services.fhir_resources import conditional_creates

    refused = check_requests(doc)
    refused = check_deletes(doc) | refused
    if not holds_a_patient(doc):
        refused = check_patient_links(doc) | refused
        creates = None  # kept resource by resource: apply_document reads ifNoneExist itself
    else:
        creates = conditional_creates(doc, store=store, key=key, dataset_id=dataset)
        refused = check_conditional_creates(doc, creates.refused) | refused
    return {n: list(r.issues) for n, r in sorted(refused.items())}, creates


def cmd_ingest_fhir(args: argparse.Namespace) -> int:
    from gateway.services.fhir_resources import about_stored_patients, keeps_resources
    from gateway.services.ingest import process_fhir, source_identity, store_fhir_outcome

    cfg = load_config()
    dataset = check_dataset_id(args.dataset or cfg.default_dataset)  # before the key or the store is written
    services = _services(cfg)
    key, store = services.key, services.store
    profile = args.profile or cfg.profile
    rejected = False
    for path, doc, refusal, located in _fhir_documents(args.files, cfg.max_json_depth, cfg.max_ndjson_bytes):
        if doc is None:
            _print_issues(path, refusal)
            _err(f"{path}: rejected; nothing stored")
            rejected = True
            continue
        # What the entries ask must be doable before anything is stored, as for POST /fhir: a transaction is
        # refused whole, a batch's entries one by one (and the command exits 1 saying which).
        try:
            refused, creates = _refused_entries(doc, store, key, dataset)
        except GatewayError as refusal:
            _print_issues(path, located(refusal.issues or [Issue.error(refusal.code, refusal.message)]))
            _err(f"{path}: rejected; nothing stored")
            rejected = True
            continue
        rejected = rejected or bool(refused)
        if creates is None or keeps_resources(doc):  # no Patient inside: kept resource by resource
            kept = _ingest_resources(path, doc, services, dataset, profile, refused, located)
            rejected = not kept or rejected
            continue
        # ifNoneExist (conditional create): a matched entry is not created, the kept resource stands in its place
        keep = partial(
            _keep_bundle,
            creates.doc,
            services=services,
            dataset=dataset,
            profile=profile,
            cfg=cfg,
            matched=frozenset(creates.existing),
        )
        outcome = process_fhir(creates.doc, key=key, dataset_id=dataset, profile=profile)
        # what the translator said of a stand-in for another patient's match is not the sender's business;
        # what the matches were is (as POST /fhir answers them)
        outcome.report.issues = [*creates.sender_issues(outcome.report), *creates.match_issues()]
        for packet in outcome.packets:  # a batch's entry refused: its patient is not stored (as POST /fhir)
            packet.issues = creates.sender_issues(packet.issues)
            packet.issues.extend(i for n in packet.entry_indexes for i in refused.get(n, []))
        outcome = store_fhir_outcome(outcome, store=store, dataset_id=dataset, source=source_identity(doc), also=keep)
        if about_stored_patients(outcome.report):  # Patients, and references to Patients stored before
            rejected = not _ingest_resources(path, doc, services, dataset, profile, refused, located) or rejected
            continue
        _print_issues(path, located([*(i for found in refused.values() for i in found), *outcome.report]))
        saved = [p.saved for p in outcome.packets if p.saved]
        if outcome.rejected or not outcome.report.ok:
            rejected = True
        for packet in outcome.packets:
            if packet.saved:
                print(_stored_line(path, packet.saved, dataset, packet.family))
        if outcome.rejected:
            _err(f"{path}: rejected; nothing stored")
        else:
            print(_ingest_summary(path, outcome, saved))
    store.close()
    return EXIT_REJECTED if rejected else EXIT_OK


def _keep_bundle(
    doc: dict,
    connection,
    outcome,
    *,
    services: Services,
    dataset: str,
    profile: str,
    cfg,
    matched: frozenset[int] = frozenset(),
) -> None:
    """A stored Bundle's resources, kept in the same transaction: resources sent later meet its patients.
    `matched`: the entries whose ifNoneExist matched a kept resource, which are not written again."""
    from gateway.services.fhir_resources import keep_bundle, stored_entries

    keep_bundle(
        doc,
        [n for n in stored_entries(outcome) if n not in matched],
        store=services.store,
        key=services.key,
        dataset_id=dataset,
        profile=profile,
        pending_days=cfg.fhir_pending_days,
        cache=services.fhir_fragments,
        connection=connection,
    )


def _stored_line(path: str, result, dataset: str, family: dict | None) -> str:
    line = f"{path}: stored phenopacket {result.id} ({'new' if result.created else 'updated'}) in dataset {dataset}"
    if family is not None:
        relatives = family.get("relatives")
        line += f", with its family ({len(relatives) if isinstance(relatives, list) else 0} relatives)"
    return line


def _ingest_resources(
    path: str,
    doc: dict,
    services: Services,
    dataset: str,
    profile: str,
    refused: dict[int, list[Issue]],
    located: Located = list,
) -> bool:
    """Keep a file's resources (services.fhir_resources); one line per entry (a bulk NDJSON file: one summary
    line); False when refused. `refused`: a batch's entries refused before (printed already), not processed.
    `located`: issues as the file places them."""
    from gateway.services.fhir_ndjson import is_ndjson

    line_each = not is_ndjson(path)
    from gateway.services.fhir_resources import ResourceRejected, apply_document

    try:
        _, results = apply_document(
            doc,
            store=services.store,
            key=services.key,
            dataset_id=dataset,
            profile=profile,
            pending_days=services.config.fhir_pending_days,
            cache=services.fhir_fragments,
            set_aside=refused,
        )
    except ResourceRejected as rejection:
        _print_issues(path, located(rejection.issues))
        _err(f"{path}: rejected; nothing stored")
        return False
    for result in results:
        _print_issues(path, located(result.issues))
        change = result.change
        if change is None or not line_each:
            continue
        line = f"{path}: {change.resource_type}/{change.resource_id} {change.status} (version {change.version})"
        if change.pending:
            line += f" pending: its Patient is not in dataset {dataset} yet (gateway fhir pending)"
        elif change.phenopacket_id:
            line += f", phenopacket {change.phenopacket_id}"
        print(line)
    if not line_each:
        print(_resources_summary(path, [r.change for r in results if r.change is not None], dataset))
    return not any(i.is_error for r in results for i in r.issues)


def _resources_summary(path: str, changes: list, dataset: str) -> str:
    """One line for a bulk file's kept resources: how many of each status, how many wait, how many phenopackets."""
    statuses: dict[str, int] = {}
    for change in changes:
        statuses[change.status] = statuses.get(change.status, 0) + 1
    counted = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"
    pending = sum(1 for c in changes if c.pending)
    packets = len({c.phenopacket_id for c in changes if c.phenopacket_id})
    line = f"{path}: summary: {len(changes)} resource(s) kept ({counted}), into {packets} phenopacket(s)"
    if pending:
        line += f"; {pending} pending: their Patient is not in dataset {dataset} yet (gateway fhir pending)"
    return line


def cmd_fhir_pending(args: argparse.Namespace) -> int:
    from gateway.services.fhir_resources import pending_resources, purge_pending

    cfg = load_config()
    dataset = check_dataset_id(args.dataset) if args.dataset else None
    services = _services(cfg)
    if args.purge:  # audited like an ingest (gateway.security.cli.audit_cli_command)
        days = cfg.fhir_pending_days if args.older_than_days is None else args.older_than_days
        purged = purge_pending(services.store, dataset, older_than_days=days)
        for r in purged:
            print(f"{r.dataset_id}\t{r.resource_type}/{r.resource_id}\tversion {r.version}\tpurged")
        print(f"{len(purged)} pending resource(s) older than {days:g} days purged")
        services.store.close()
        return EXIT_OK
    found = pending_resources(services.store, dataset)
    for r in found:
        print(f"{r.dataset_id}\t{r.resource_type}/{r.resource_id}\tversion {r.version}\twaiting for {r.patient_ref}")
    print(f"{len(found)} pending resource(s)")
    services.store.close()
    return EXIT_OK


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    services = _services(load_config())

    def progress(changed: int, last: int) -> None:  # each batch is committed: an interrupted run resumes
        print(f"... {changed} rebuilt so far (rows up to {last} done)", file=sys.stderr, flush=True)

    changed = services.store.rebuild_index(
        dataset_id=check_dataset_id(args.dataset) if args.dataset else None, batch=args.batch, progress=progress
    )
    print(f"{changed} stored phenopacket(s) indexed again (the others' index was already current)")
    services.store.close()
    return EXIT_OK


def cmd_fhir_rekey_identifiers(args: argparse.Namespace) -> int:
    from gateway.services.fhir_resources import rekey_identifiers

    services = _services(load_config())

    def progress(
        changed: int, last: int
    ) -> None:  # each batch is committed: an interrupted run is resumed by running again
        print(f"... {changed} restated so far (rows up to {last} done)", file=sys.stderr, flush=True)

    changed = rekey_identifiers(services.store, services.key, batch=args.batch, progress=progress)
    print(f"{changed} kept resource(s) restated with pseudonymised identifiers")
    services.store.close()
    return EXIT_OK


def _json_files(paths: Sequence[str]) -> list[str]:
    """The files named, a directory standing for every `*.json` file under it (sorted)."""
    found: list[str] = []
    for path in paths:
        folder = Path(path)
        found.extend(sorted(str(f) for f in folder.rglob("*.json") if f.is_file()) if folder.is_dir() else [path])
    return found


def cmd_ingest_phenopacket(args: argparse.Namespace) -> int:
    from gateway.services.ingest import ingest_phenopacket_stream, phenopacket_documents

    cfg = load_config()
    dataset = check_dataset_id(args.dataset or cfg.default_dataset)
    services = _services(cfg)
    key, store = services.key, services.store
    unread = 0  # files that are not (an array of) phenopackets

    def documents() -> Iterator[tuple[str, dict]]:
        """Each file read when its turn comes (a collection of any size is never in memory at once)."""
        nonlocal unread
        for path in _json_files(args.files):  # a phenopacket, a Family, a Cohort or a JSON array of them
            try:
                found, notes = phenopacket_documents(_read_phenopacket_file(path, cfg.max_json_depth))
            except OSError as exc:
                found, notes = [], [Issue.error("io", f"cannot read: {exc.strerror}")]
            except JSONInputError as exc:
                found, notes = [], [exc.issue]
            _print_issues(path, notes)
            unread += any(i.is_error for i in notes)
            yield from ((f"{path}#{pointer}" if pointer else path, d) for pointer, d in found)

    # the documents are all checked before anything is stored; a file not read stores nothing (but with
    # --skip-invalid), and the others are still checked
    checked = ingest_phenopacket_stream(
        documents(),
        store=store,
        key=key,
        dataset_id=dataset,
        say=_print_issues,
        skip_invalid=args.skip_invalid,
        unreadable=lambda: unread > 0,
    )
    store.close()
    if not checked.stored:
        _err("rejected; nothing stored")
        return EXIT_REJECTED
    for path, result, relatives in checked.stored:
        print(_stored_line(path, result, dataset, None if relatives is None else {"relatives": [None] * relatives}))
    if unread or checked.refused:  # --skip-invalid: the rest is stored, and the exit status says not everything was
        new = sum(1 for _, r, _ in checked.stored if r.created)
        stored = len(checked.stored)
        counts = f"{stored} stored ({new} new, {stored - new} updated)"
        _err(f"summary: {counts}; left out: {checked.refused} document(s) with errors, {unread} file(s) not read")
        return EXIT_REJECTED
    return EXIT_OK


# --- ingest: VCF -------------------------------------------------------------------------


def _read_sample_map(path: str | None) -> dict[str, str] | None:
    if not path:
        return None
    mapping = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            raise ValueError(f"{path}:{number}: expected 'sample<TAB>identifier'")
        mapping[parts[0]] = parts[1]
    return mapping


def cmd_ingest_vcf(args: argparse.Namespace) -> int:
    from gateway.services.genomic import run_vcf_ingest
    from gateway.variants.ingest import VcfIngestRequest

    cfg = load_config()
    check_dataset_id(args.dataset)
    try:
        sample_map = _read_sample_map(args.sample_map)
    except (OSError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    request = VcfIngestRequest(
        path=args.file,
        dataset_id=args.dataset,
        data_dir=cfg.data_dir,
        assembly=args.assembly,
        sample_map=sample_map,
        skip_invalid=args.skip_invalid,
        workers=args.workers,
        cluster=args.cluster,
        add_regions=args.add_regions,
        add_samples=args.add_samples,
    )
    return run_vcf_ingest(cfg, request, show_progress=sys.stderr.isatty() or args.progress)


def cmd_variants_compact(args: argparse.Namespace) -> int:
    from gateway.services.genomic import run_compaction

    return run_compaction(load_config(), dataset_id=args.dataset)


def cmd_variants_sweep(args: argparse.Namespace) -> int:
    """`gateway variants sweep`: remove the unit folders no manifest names (interrupted ingests, erasures,
    compactions), older than the grace period (gateway/variants/layout.py sweep_unreferenced)."""
    from gateway.variants.layout import sweep_dataset

    check_dataset_id(args.dataset)
    try:
        removed = sweep_dataset(load_config().data_dir, args.dataset, grace_s=args.grace_hours * 3600)
    except FileNotFoundError as exc:
        _err(str(exc))
        return EXIT_REJECTED
    print(f"{args.dataset}: swept {', '.join(removed)}" if removed else f"{args.dataset}: nothing to sweep")
    return 0


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Genomic interoperability gateway (FHIR R4 / VCF → GA4GH)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node (gunicorn, or the development server with --workers 0)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (0: Flask development server)")
    serve.add_argument(
        "--threads",
        type=int,
        default=SERVE_THREADS,
        help=f"threads per gunicorn worker (default {SERVE_THREADS}; 1: one request at a time per worker)",
    )
    serve.add_argument("--demo", action="store_true", help="preload a synthetic demo cohort")
    serve.add_argument("--network", metavar="FILE", help="serve as a network node over the peers in FILE")
    serve.set_defaults(func=cmd_serve)

    ingest = sub.add_parser("ingest", help="validate, translate and store documents").add_subparsers(
        dest="kind", required=True
    )
    fhir = ingest.add_parser(
        "fhir", help="FHIR R4 Bundles or resources (JSON), or FHIR Bulk Data files (.ndjson, .ndjson.gz)"
    )
    fhir.add_argument("files", nargs="+", metavar="FILE")
    fhir.add_argument("--dataset")
    fhir.add_argument("--profile", help="national profile (default: detected)")
    fhir.set_defaults(func=cmd_ingest_fhir)
    fhir_tools = sub.add_parser("fhir", help="the FHIR resources kept per dataset").add_subparsers(
        dest="fhir_command", required=True
    )
    pending = fhir_tools.add_parser("pending", help="resources waiting for their Patient")
    pending.add_argument("--dataset", help="only this dataset (default: every dataset)")
    pending.add_argument("--purge", action="store_true", help="drop the pending resources older than --older-than-days")
    pending.add_argument(
        "--older-than-days", type=float, help="with --purge: age in days (default: fhir_pending_days; 0: all)"
    )
    pending.set_defaults(func=cmd_fhir_pending)
    rekey = fhir_tools.add_parser(
        "rekey-identifiers",
        help="pseudonymise the identifiers of resources kept before they were pseudonymised at rest (idempotent; "
        "one transaction per batch of rows, so an interrupted run is finished by running it again)",
    )
    rekey.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    rekey.set_defaults(func=cmd_fhir_rekey_identifiers)
    index = sub.add_parser("index", help="the index Beacon filters read").add_subparsers(
        dest="index_command", required=True
    )
    rebuild = index.add_parser(
        "rebuild",
        help="index every stored phenopacket again from its document (after an upgrade that indexes more)",
    )
    rebuild.add_argument("--dataset", help="only this dataset (default: every dataset)")
    rebuild.add_argument("--batch", type=int, default=500, help="phenopackets per transaction")
    rebuild.set_defaults(func=cmd_index_rebuild)
    pxf = ingest.add_parser("phenopacket", help="GA4GH Phenopacket v2 JSON (or YAML) files")
    pxf.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="JSON files (*.yaml, *.yml: YAML; *.pb: protobuf binary); a directory: every *.json file under it",
    )
    pxf.add_argument("--dataset")
    pxf.add_argument(
        "--skip-invalid",
        action="store_true",
        help="store the valid documents and leave out those with errors (listed; exit status 1), "
        "instead of storing nothing",
    )
    pxf.set_defaults(func=cmd_ingest_phenopacket)
    vcf = ingest.add_parser("vcf", help="a VCF/BCF file into a dataset's variant store")
    vcf.add_argument("file", metavar="FILE")
    vcf.add_argument("--dataset", required=True)
    vcf.add_argument("--assembly", choices=["GRCh37", "GRCh38"])
    vcf.add_argument("--sample-map", metavar="TSV", help="sample<TAB>patient identifier (system|value or value)")
    vcf.add_argument("--skip-invalid", action="store_true", help="skip invalid records instead of rejecting the file")
    vcf.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
    vcf.add_argument(
        "--workers",
        type=int,
        default=0,
        help="partitioned ingest of a BGZF VCF by region: N local Dask worker processes (1: one after the other)",
    )
    vcf.add_argument("--cluster", metavar="ADDRESS", help="partitioned ingest on the Dask scheduler at ADDRESS")
    vcf.add_argument(
        "--add-regions",
        action="store_true",
        help="with --workers/--cluster: add the file's regions to the live version",
    )
    vcf.add_argument(
        "--add-samples",
        action="store_true",
        help="add the file's samples (new ones only) to the live partitioned version as a new sample batch",
    )
    vcf.set_defaults(func=cmd_ingest_vcf)
    variants = sub.add_parser("variants", help="maintenance of a dataset's variant store").add_subparsers(
        dest="kind", required=True
    )
    compact = variants.add_parser(
        "compact", help="merge a partitioned dataset's sample batches into one unit per region (no VCF read)"
    )
    compact.add_argument("--dataset", required=True)
    compact.set_defaults(func=cmd_variants_compact)
    sweep = variants.add_parser(
        "sweep", help="remove unit folders no version names (interrupted ingests, erasures, compactions)"
    )
    sweep.add_argument("--dataset", required=True)
    sweep.add_argument(
        "--grace-hours", type=float, default=1.0, help="only folders unchanged this long, the live version as old"
    )
    sweep.set_defaults(func=cmd_variants_sweep)

    convert = sub.add_parser("convert", help="translate without storing").add_subparsers(dest="kind", required=True)
    cfhir = convert.add_parser("fhir", help="FHIR R4 → JSON array of phenopackets on stdout, issues on stderr")
    cfhir.add_argument("files", nargs="+", metavar="FILE")
    cfhir.add_argument("--profile")
    cfhir.add_argument("--dataset", help="namespace of the phenopacket ids (default: the node's default dataset)")
    cfhir.set_defaults(func=cmd_convert_fhir)
    from gateway.export_cli import add_export_parsers, add_stored_export_parser

    add_export_parsers(convert)  # convert phenopacket / beacon-response --to fhir
    add_stored_export_parser(sub, _services)  # export phenopacket ID… [--family] [--to fhir]

    from gateway.conformance.cli import add_verify_parser
    from gateway.validation.cli import add_validate_parser

    add_validate_parser(sub)
    add_verify_parser(sub)
    from gateway.security.cli import add_security_parsers

    add_security_parsers(sub, _services)  # keys rotate, erase, audit verify / export: the same wiring
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # whatever the CLI writes into the data directory is private to its user (files 0600)
    args = build_parser().parse_args(argv)
    try:
        from gateway.security.cli import audit_cli_command

        try:
            audit_cli_command(args, None)  # write-ahead: the intent is on disk before anything changes
        except OSError as exc:
            _err(f"the audit log cannot be written ({exc.strerror or exc}); nothing was changed")
            return EXIT_REJECTED
        status = args.func(args)
        audit_cli_command(args, status)  # every CLI access to stored data is audited
        return status
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return EXIT_USAGE
    except BadInput as exc:  # e.g. a malformed dataset id: refused before anything was written
        _err(exc.message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted; nothing half-written was kept")
        return 130


if __name__ == "__main__":
    sys.exit(main())
