"""`gateway keys rotate`: a new pseudonymisation key, chained onto the old ones.

No raw identifier is kept anywhere, so ids cannot be recomputed from scratch; instead
every stored pseudonym and derived id is carried forward: new = HMAC(new key, old id)
(gateway.security.pseudonym.chain_step). The new key is appended to the key chain in the
data directory, so later ingests compute first-key pseudonyms and apply the same steps:
the same patient meets their stored record. Run it with the node stopped (workers keep
their key in memory) — or restart the workers right after.

Order, so that a crash leaves a state the operator can see and finish: the new key is
written to `key-chain.pending` first; the metadata store is rewritten in one
transaction, the variant datasets as new versions; then the pending key joins the chain.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.errors import GatewayError
from gateway.security.keys import KEY_CHAIN_FILE, key_chain
from gateway.security.pseudonym import DERIVED, PSEUDONYM, chain_step

PENDING = KEY_CHAIN_FILE + ".pending"


class RotationError(GatewayError, RuntimeError):
    """A key rotation that cannot go on; nothing was half-changed."""


def _step_ids(value: Any, key: bytes) -> Any:
    """Every pseudonym or derived id inside a JSON document, carried one step forward."""
    if isinstance(value, str):
        return chain_step(key, value) if PSEUDONYM.fullmatch(value) or DERIVED.fullmatch(value) else value
    if isinstance(value, list):
        return [_step_ids(v, key) for v in value]
    if isinstance(value, dict):
        return {k: _step_ids(v, key) for k, v in value.items()}
    return value


def _step(key: bytes, value: str | None) -> str | None:
    if value is None:
        return None
    return chain_step(key, value) if PSEUDONYM.fullmatch(value) or DERIVED.fullmatch(value) else value


def rotate_metadata(store: Any, new_key: bytes) -> int:
    from gateway.store import fhir_resources
    from gateway.store.tables import biosamples, phenopacket_families, phenopackets

    changed = 0
    rotated_at = datetime.now(UTC)
    with store.transaction() as conn:
        rows = conn.execute(
            sa.select(
                phenopackets.c.pk,
                phenopackets.c.id,
                phenopackets.c.subject_id,
                phenopackets.c.document,
                phenopackets.c.subject_label,
            )
        ).all()
        # Two passes: ids are unique, so park them on temporary values first (no transient clash).
        for pk, *_ in rows:
            conn.execute(sa.update(phenopackets).where(phenopackets.c.pk == pk).values(id=f"rotating-{pk}"))
        for pk, pid, subject, document, label in rows:
            conn.execute(
                sa.update(phenopackets)
                .where(phenopackets.c.pk == pk)
                .values(
                    id=_step(new_key, pid),
                    subject_id=_step(new_key, subject),
                    document=_step_ids(document, new_key),
                    subject_label=_step(new_key, label),
                    revision=phenopackets.c.revision + 1,  # a replacement: what the term index's patches look for
                    updated_at=rotated_at,
                )
            )
            changed += 1
        # FHIR resources kept one by one hold pseudonyms too (identifiers at rest, the Patient's subject).
        fhir_resources.rotate_pseudonyms(conn, lambda value: _step(new_key, value) or value)
        for pk, bid in conn.execute(sa.select(biosamples.c.phenopacket_pk, biosamples.c.biosample_id)).all():
            conn.execute(
                sa.update(biosamples)
                .where(biosamples.c.phenopacket_pk == pk, biosamples.c.biosample_id == bid)
                .values(biosample_id=_step(new_key, bid))
            )
        families = phenopacket_families.c
        for pk, fid, document in conn.execute(sa.select(families.phenopacket_pk, families.id, families.document)).all():
            conn.execute(
                sa.update(phenopacket_families)
                .where(families.phenopacket_pk == pk)
                .values(id=_step(new_key, fid), document=_step_ids(document, new_key))
            )
    return changed


def rotate_variants(data_dir: Path, new_key: bytes) -> int:
    """Each variant dataset's sample links, as a new version (copy, change, switch)."""
    from gateway.variants.layout import DATASET_ID, current_version, switch_pointer

    root = Path(data_dir) / "variants"
    changed = 0
    if not root.is_dir():
        return 0
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir() and DATASET_ID.match(p.name)):
        version = current_version(ds_dir)
        if version is None:
            continue
        tmp = ds_dir / f".build-{os.getpid()}-{secrets.token_hex(4)}.sqlite"
        try:
            with (
                sqlite3.connect(f"file:{ds_dir / version}?mode=ro", uri=True) as source,
                sqlite3.connect(tmp) as target,
            ):
                source.backup(target)
            conn = sqlite3.connect(tmp, isolation_level=None)
            conn.execute("BEGIN")
            for idx, individual, biosample in conn.execute(
                "SELECT idx, individual_id, biosample_id FROM samples"
            ).fetchall():
                conn.execute(
                    "UPDATE samples SET individual_id=?, biosample_id=? WHERE idx=?",
                    (_step(new_key, individual), _step(new_key, biosample), idx),
                )
                changed += individual is not None
            conn.execute("COMMIT")
            conn.close()
            new_version = f"v{time.time_ns()}-{os.getpid()}.sqlite"
            os.replace(tmp, ds_dir / new_version)
            switch_pointer(ds_dir, new_version)
            (ds_dir / version).unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
    return changed


def rotate_keys(data_dir: Path, store: Any, audit: Any = None) -> dict:
    """Rotate: returns what was rewritten. Raises RotationError if an earlier rotation did not finish."""
    data_dir = Path(data_dir)
    pending = data_dir / PENDING
    if pending.exists():
        raise RotationError(
            f"{pending} exists: an earlier rotation stopped half-way; restore the backup of the store, "
            "remove the file, and rotate again"
        )
    if audit is not None:  # write-ahead: an unwritable audit log refuses the rotation before it starts
        audit.append(durable=True, phase="intent", decision="allowed", action="keys-rotate")
    new_key = secrets.token_bytes(32)
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(new_key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    phenopackets = rotate_metadata(store, new_key)
    samples = rotate_variants(data_dir, new_key)
    chain = data_dir / KEY_CHAIN_FILE
    previous = chain.read_text(encoding="utf-8") if chain.exists() else ""
    tmp = data_dir / f".{KEY_CHAIN_FILE}-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(previous + new_key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, chain)
    pending.unlink()
    result = {"phenopackets": phenopackets, "linked_samples": samples, "chain_length": len(key_chain(data_dir))}
    if audit is not None:
        audit.append(
            phase="outcome",
            decision="allowed",
            action="keys-rotate",
            reason=f"{phenopackets} phenopacket(s), {samples} sample link(s)",
        )
    return result
