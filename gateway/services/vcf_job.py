"""A VCF ingest job in its own process: `python -m gateway.services.vcf_job JOB_FILE`.

HTTP uploads are ingested here, outside the server process, so a hostile file that
upsets htslib can end this process but never a server worker. The job file (JSON)
holds the arguments; progress and the result are written back to it atomically.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gateway.config import load_config
from gateway.services.genomic import write_job


def main(job_file: str) -> int:
    spec = json.loads(Path(job_file).read_text(encoding="utf-8"))
    cfg = load_config()  # data dir, store and key come from the environment the server set
    job_id, data_dir = spec["id"], Path(spec["data_dir"])
    state = {**spec, "status": "running", "started": time.time(), "records": 0, "percent": 0.0}
    write_job(data_dir, job_id, state)
    last = [0.0]

    def hook(records: int, percent: float) -> None:
        if time.monotonic() - last[0] > 1.0:
            last[0] = time.monotonic()
            write_job(data_dir, job_id, {**state, "records": records, "percent": round(percent, 1)})

    from gateway.security.keys import secret_key
    from gateway.services.genomic import sample_linker
    from gateway.store.metadata import MetadataStore
    from gateway.variants.ingest import VCFRejected, ingest_vcf

    store = MetadataStore.open(cfg.resolved_database_url, migrate=False)
    try:
        store.ensure_dataset(spec["dataset_id"])
        summary = ingest_vcf(
            spec["upload"],
            dataset_id=spec["dataset_id"],
            data_dir=data_dir,
            assembly=spec.get("assembly"),
            sample_map=spec.get("sample_map"),
            link_sample=sample_linker(store, secret_key(cfg)),
            skip_invalid=bool(spec.get("skip_invalid")),
            progress=hook,
        )
    except VCFRejected as exc:
        write_job(
            data_dir, job_id, {**state, "status": "rejected", "issues": exc.report.to_json(), "finished": time.time()}
        )
        return 1
    except Exception as exc:  # reported in the job, never raised into a server
        write_job(data_dir, job_id, {**state, "status": "failed", "error": type(exc).__name__, "finished": time.time()})
        return 1
    finally:
        store.close()
        Path(spec["upload"]).unlink(missing_ok=True)
    write_job(
        data_dir,
        job_id,
        {
            **state,
            "status": "done",
            "percent": 100.0,
            "finished": time.time(),
            "summary": summary.to_dict(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
