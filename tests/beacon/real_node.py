"""A node over real data for the Beacon tests: the 300 reference phenopackets (dataset `pxf`) ingested
through the real pipeline, and the synthetic demo cohort (FHIR + VCF, dataset `synthetic-demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.beacon.official_schemas import REFERENCE

PXF_DATASET = "pxf"
OPEN = {"security_level": "PUBLIC", "policy": {"profile": "open"}}


def reference_phenopackets() -> list[dict]:
    folder = REFERENCE / "phenopackets"
    docs = []
    for path in sorted(folder.glob("*/*.json")):
        if path.parent.name.startswith("_"):
            continue
        docs.append(json.loads(path.read_text()))
    return docs


def build_real_node(data_dir: Path):
    from gateway.services.ingest import ingest_phenopackets
    from tests.beacon.conftest import make_app

    app = make_app(
        None,
        datasets=[
            {"id": PXF_DATASET, "name": "Phenopacket store sample", "data_use_conditions": ["DUO:0000042"], **OPEN}
        ],
        data_dir=str(data_dir),
        demo=True,
    )
    services = app.extensions["gateway"]
    stored = 0
    for doc in reference_phenopackets():
        results, _ = ingest_phenopackets([doc], store=services.store, key=services.key, dataset_id=PXF_DATASET)
        stored += len(results)
    assert stored >= 250, stored  # nearly all reference files are valid phenopackets
    return app
