"""The security subcommands of `gateway`: keys rotate, erase, erasure purge / status, audit verify / export.

The CLI acts locally as the operator; what it changes is audited like an HTTP call
(caller `cli`, the login name of the process owner as issuer). The stores and key come from
the node's own wiring (`app.build_services`), handed in by gateway.cli as `open_node`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.config import Config, load_config
from gateway.security.purge_jobs import FAILED, STATUSES, PurgeRun, jobs, pending_count, run_due

if TYPE_CHECKING:
    from gateway.store.metadata import MetadataStore
    from gateway.variants.protocol import VariantStore


class LocalNode(Protocol):
    """What these commands use of the node's services (gateway.api.context.Services has it)."""

    @property
    def store(self) -> MetadataStore: ...

    @property
    def variants(self) -> VariantStore | None: ...

    @property
    def key(self) -> bytes: ...


OpenNode = Callable[[Config], LocalNode]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
AUDITED_COMMANDS = ("ingest", "erase", "keys")


def _audit(cfg):
    from gateway.security.audit import AuditLog

    return AuditLog(cfg.data_dir)


def _who() -> dict:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"caller": "cli", "issuer": f"local:{user}"}


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.security.rotation import RotationError, rotate_keys

    cfg = load_config()
    store = args.open_node(cfg).store
    try:
        result = rotate_keys(cfg.data_dir, store, _audit(cfg))
    except RotationError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    print(
        f"rotated: {result['phenopackets']} phenopacket(s), {result['linked_samples']} linked sample(s); "
        f"key chain length {result['chain_length']}. Restart the node's workers now."
    )
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    from gateway.security.erasure import erase_dataset, erase_subject

    cfg = load_config()
    node = args.open_node(cfg)
    store, variants, key = node.store, node.variants, node.key
    try:
        if args.subject:
            result = erase_subject(store, variants, args.subject, key=key, audit=_audit(cfg), **_who())
            print(
                f"erased subject ({result.reference}): {result.phenopackets} phenopacket(s), {result.samples} sample(s), "
                f"{result.families} family record(s)"
            )
        else:
            result = erase_dataset(store, variants, args.dataset, key=key, audit=_audit(cfg), **_who())
            print(f"withdrew dataset {args.dataset}: {result.phenopackets} phenopacket(s)")
        # A command-line erasure is no request: its second phase runs here, before the command returns.
        run = run_due(store, variants, audit=_audit(cfg), max_attempts=cfg.erasure_purge_max_attempts, **_who())
        if result.purge_job not in run.done + run.failed:
            print(f"purge job {result.purge_job} queued (a running node's purge worker has it)")
        return _report_purge(run)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()


def _report_purge(run: PurgeRun) -> int:
    if run.done:
        print(f"old copies of the deleted rows purged (purge job(s) {', '.join(map(str, run.done))})")
    if run.failed:
        print(f"purge failed, job(s) {', '.join(map(str, run.failed))}: {run.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_erasure_purge(args: argparse.Namespace) -> int:
    cfg = load_config()
    node = args.open_node(cfg)
    store = node.store
    try:
        attempts = cfg.erasure_purge_max_attempts
        run = run_due(store, node.variants, audit=_audit(cfg), force=True, max_attempts=attempts, **_who())
        if not run.done and not run.failed:
            print("no erasure purge pending")
        return _report_purge(run)
    finally:
        store.close()


def cmd_erasure_status(args: argparse.Namespace) -> int:
    cfg = load_config()
    store = args.open_node(cfg).store
    try:
        print(f"{pending_count(store)} purge job(s) pending, {pending_count(store, FAILED)} failed")
        for job in jobs(store, status=args.status, limit=args.limit):
            error = f"\t{job['last_error']}" if job["last_error"] else ""
            print(
                f"{job['id']}\t{job['status']}\t{job['action']}\t{job['reference']}\tattempts {job['attempts']}\t"
                f"queued {job['created_at']}\tdone {job['done_at'] or '-'}{error}"
            )
    finally:
        store.close()
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    result = _audit(load_config()).verify()
    print(("OK: " if result.ok else f"TAMPERED ({result.problem}): ") + result.message)
    if result.ok and result.head:  # keep this line somewhere else: it pins the log against a key holder
        print(f"head: seq {result.head['seq']} hash {result.head['hash']}")
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_audit_export(args: argparse.Namespace) -> int:
    log = _audit(load_config())
    if args.output == "-":
        log.export(sys.stdout, since=args.since)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            n = log.export(out, since=args.since)
        print(f"{n} record(s) written to {args.output}", file=sys.stderr)
    return EXIT_OK


def add_security_parsers(sub: argparse._SubParsersAction, open_node: OpenNode) -> None:
    keys = sub.add_parser("keys", help="the pseudonymisation key").add_subparsers(dest="keys_command", required=True)
    rotate = keys.add_parser("rotate", help="chain a new key onto the old ones and carry every stored id forward")
    rotate.set_defaults(func=cmd_keys_rotate, open_node=open_node)

    erase = sub.add_parser("erase", help="erase a subject (consent withdrawn) or withdraw a dataset")
    what = erase.add_mutually_exclusive_group(required=True)
    what.add_argument("--subject", metavar="PSEUDONYM", help="the subject's pseudonym (pid-…)")
    what.add_argument("--dataset", metavar="ID")
    erase.set_defaults(func=cmd_erase, open_node=open_node)

    erasure = sub.add_parser("erasure", help="the erasures' second phase: purging the deleted rows' old copies")
    erasure_sub = erasure.add_subparsers(dest="erasure_command", required=True)
    purge = erasure_sub.add_parser(
        "purge", help="run every pending purge now, and the failed ones again; exit 1 when it fails"
    )
    purge.set_defaults(func=cmd_erasure_purge, open_node=open_node)
    status = erasure_sub.add_parser("status", help="the purge jobs, newest first")
    status.add_argument("--status", choices=STATUSES)
    status.add_argument("--limit", type=int, default=50)
    status.set_defaults(func=cmd_erasure_status, open_node=open_node)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 when broken")
    verify.set_defaults(func=cmd_audit_verify)
    export = audit.add_parser("export", help="write the records as JSON lines")
    export.add_argument("--output", "-o", default="-")
    export.add_argument("--since", help="ISO time: only records from then on")
    export.set_defaults(func=cmd_audit_export)


def audit_cli_command(args: argparse.Namespace, status: int | None) -> None:
    """Audit a CLI command that changes or exports stored data (ingest, export, fhir pending --purge,
    fhir rekey-identifiers, index rebuild, variants compact; erase and keys audit themselves).

    Called twice: with `status=None` before the command (the intent, fsynced: an OSError refuses the
    command before it changes anything) and with its exit status after (the outcome).
    """
    command = getattr(args, "command", None)
    purge = command == "fhir" and getattr(args, "purge", False)
    rekey = command == "fhir" and getattr(args, "fhir_command", None) == "rekey-identifiers"
    if command not in ("ingest", "export", "variants", "index") and not purge and not rekey:
        return
    cfg = load_config()
    dataset = getattr(args, "dataset", None) or (cfg.default_dataset if command == "ingest" else None)
    _audit(cfg).append(
        durable=status is None,
        phase="intent" if status is None else "outcome",
        decision="allowed" if not status else "denied",
        action="cli fhir pending --purge"
        if purge
        else "cli fhir rekey-identifiers"
        if rekey
        else "cli index rebuild"
        if command == "index"
        else f"cli {command} {getattr(args, 'kind', '')}".strip(),
        datasets=[dataset] if dataset else (["*"] if purge or rekey or command == "index" else []),
        status=status,
        **_who(),
    )


__all__ = ["add_security_parsers", "audit_cli_command"]
