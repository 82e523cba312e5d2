"""Operator-only JSON for the operator page (`/ui/operator`): what the rest of the API does not list.

- `GET /operator/datasets`: every dataset (configured or stored) with its sizes, security level, DUO terms
  and the policy in force;
- `GET /operator/jobs?limit=`: the most recent VCF ingest jobs, newest first, as `GET /jobs/{id}` shows one;
- `POST /operator/verify` starts `gateway verify` of this node in a background thread (every request bounded
  by a timeout) and `GET /operator/verify` reads its last report. Not inside the request: a synchronous
  worker waiting for answers from its own server could be the only one able to give them.

The audit chain (`/admin/audit/verify`) and health (`/ready`) already have endpoints; the page calls those.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import closing, suppress
from pathlib import Path

from flask import Blueprint, request

from gateway.api.auth import Unauthorised, bearer_token, require_operator
from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.services.genomic import JOBS_DIR, read_job

log = logging.getLogger(__name__)
MAX_JOBS = 100
VERIFY_REQUEST_TIMEOUT_S = 5  # per request of the verifier
VERIFY_DEADLINE_S = 300  # a run still "running" after this is reported as failed (its worker was stopped)
_JOB_FIELDS_HIDDEN = {"upload", "data_dir", "sample_map", "pid"}  # as GET /jobs/{id}


def _policy_summary(policy) -> dict:
    return {
        "ceilings": {tier: dict(per_entry) for tier, per_entry in policy.ceilings.items()},
        "countThreshold": policy.count_threshold,
        "rounding": policy.rounding,
        "minPublicSize": policy.min_public_size,
        "rareAlleleMaxCount": policy.rare_allele_max_count,
        "allowAnonymousPhenotypeVariant": policy.allow_anonymous_phenotype_variant,
    }


def _variant_sizes(data_dir: Path, dataset_id: str) -> dict | None:
    """Sample and variant counts of the dataset's live variant version, read-only; None without one."""
    from gateway.variants.layout import current_version, dataset_dir
    from gateway.variants.partitions import read_partitions

    folder = dataset_dir(data_dir, dataset_id)
    version = current_version(folder)
    if version is None:
        return None
    try:
        with closing(sqlite3.connect(f"file:{folder / version}?mode=ro&immutable=1", uri=True)) as conn:
            samples = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
            linked = conn.execute("SELECT count(*) FROM samples WHERE individual_id IS NOT NULL").fetchone()[0]
            assembly = conn.execute("SELECT value FROM meta WHERE key='assembly'").fetchone()
            units = read_partitions(conn, folder)
            # A partitioned version's manifest holds no variant rows: its units' counts (recorded in the manifest
            # at publish) are summed per sample batch, and the largest batch's sum reported: exact for batches cut
            # from one joint call set (each holds every site), a lower bound otherwise (the union needs a merge).
            by_batch: dict[int, int] = {}
            for unit in units:
                by_batch[unit.batch] = by_batch.get(unit.batch, 0) + unit.variants
            variants = (
                max(by_batch.values(), default=0)
                if units
                else conn.execute("SELECT count(*) FROM variants").fetchone()[0]
            )
    except sqlite3.Error:  # switched or removed meanwhile: report it as unknown, not as an error page
        return None
    return {
        "version": version,
        "samples": samples,
        "linkedSamples": linked,
        "variants": variants,
        "partitions": len(units),
        "sampleBatches": len(by_batch),
        "assembly": assembly[0] if assembly else None,
    }


def _datasets() -> list[dict]:
    from gateway.beacon.collections import duo_terms
    from gateway.security.caller import dataset_config
    from gateway.security.policy import policy_for

    svc = services()
    stored = {row["id"]: row for row in svc.store.list_datasets()}
    ids = [d.id for d in svc.config.datasets] + sorted(set(stored) - {d.id for d in svc.config.datasets})
    out = []
    for dataset_id in ids:
        declared = svc.config.dataset(dataset_id)
        effective = dataset_config(svc.config, dataset_id)  # undeclared datasets get the defaults
        row = stored.get(dataset_id, {})
        out.append(
            {
                "id": dataset_id,
                "name": (declared.name if declared else None) or row.get("name") or dataset_id,
                "declared": declared is not None,
                "securityLevel": effective.security_level,
                "dataUseConditions": duo_terms(effective.data_use_conditions or ()),
                "policy": _policy_summary(policy_for(svc.config, dataset_id)),
                "phenopackets": int(row.get("phenopackets") or 0),
                "variantStore": _variant_sizes(Path(svc.config.data_dir), dataset_id),
                "updated": row["updated_at"].isoformat() if row.get("updated_at") else None,
            }
        )
    return out


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:  # removed between listing and reading
        return None


def _jobs(limit: int) -> list[dict]:
    data_dir = Path(services().config.data_dir)
    folder = data_dir / JOBS_DIR
    if not folder.is_dir():
        return []
    stamped = [(m, p) for p in folder.glob("*.json") if (m := _mtime(p)) is not None]
    jobs = []
    for modified, path in sorted(stamped, reverse=True):
        state = read_job(data_dir, path.stem)
        if state is None or state.get("kind") != "vcf-ingest":
            continue  # sample maps, and files replaced meanwhile
        state = {k: v for k, v in state.items() if k not in _JOB_FIELDS_HIDDEN}
        state["modified"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(modified))
        jobs.append(state)
        if len(jobs) >= limit:
            break
    return jobs


# --- gateway verify of the node itself -------------------------------------------------------


def _verify_file(data_dir: Path) -> Path:
    return Path(data_dir) / "ui" / "self-verify.json"


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def _run_verify(path: Path, url: str, token: str | None, started: str) -> None:
    """In a thread of the worker that was asked (which is then free to answer the verifier's requests)."""
    from gateway.conformance.verify import verify

    state: dict = {"status": "running", "url": url, "started": started}
    try:
        report = verify(url, token=token, timeout=VERIFY_REQUEST_TIMEOUT_S)
        state.update(status="done", ok=report.ok, report=report.to_json())
    except Exception as exc:  # the page must learn that it failed; the worker must not
        log.exception("self-verification failed")
        state.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
    state["finished"] = _now()
    _write_state(path, state)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _self_url() -> str:
    """The Beacon root to verify: `ui.self_url` when configured (behind a proxy), else the URL asked."""
    svc = services()
    configured = svc.config.ui.get("self_url")
    root = (configured or request.host_url).rstrip("/")
    return root + ("/local/api" if svc.config.network else "/api")


def operator_blueprint() -> Blueprint:
    bp = Blueprint("operator", __name__, url_prefix="/operator")

    @bp.errorhandler(Unauthorised)
    def unauthorised(exc: Unauthorised):
        return problem(exc.status, exc.message)

    @bp.get("/datasets")
    @require_operator
    def datasets():
        return json_response({"datasets": _datasets()})

    @bp.get("/jobs")
    @require_operator
    def jobs():
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            return problem(400, "limit must be a whole number")
        if not 1 <= limit <= MAX_JOBS:
            return problem(400, f"limit must be between 1 and {MAX_JOBS}")
        return json_response({"jobs": _jobs(limit)})

    @bp.get("/verify")
    @require_operator
    def verify_status():
        path = _verify_file(services().config.data_dir)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return json_response({"status": "never"})
        if state.get("status") == "running" and time.time() - path.stat().st_mtime > VERIFY_DEADLINE_S:
            state.update(status="failed", error=f"no report within {VERIFY_DEADLINE_S} s (was the worker stopped?)")
        return json_response(state)

    @bp.post("/verify")
    @require_operator
    def verify_start():
        path = _verify_file(services().config.data_dir)
        with suppress(FileNotFoundError, json.JSONDecodeError):
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("status") == "running" and time.time() - path.stat().st_mtime < VERIFY_DEADLINE_S:
                return json_response(state, 409)
        url = _self_url()
        started = _now()
        state = {"status": "running", "url": url, "started": started}
        _write_state(path, state)
        token = bearer_token()  # the verifier sees what this operator sees
        threading.Thread(target=_run_verify, args=(path, url, token, started), daemon=True).start()
        return json_response(state, 202)

    return bp
