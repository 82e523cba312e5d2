"""Specimen -> biosamples (sampled tissue from bodySite or the specimen-type table, type, collection age)."""

from __future__ import annotations

from translators.fhir.common import HOMO_SAPIENS, codings
from translators.fhir.context import PatientContext


def biosample(ctx: PatientContext, i: int, spec: dict) -> dict:
    base = ctx.source.pointer(i)
    ctx.consumed.add(i)
    sample: dict = {"id": ctx.derived_id("biosample", ctx.source.entry_key(i)), "individualId": ctx.subject_id}
    spec_type = spec.get("type")
    tissue = None
    for coding in codings(spec_type):
        if isinstance(coding, dict):
            tissue = ctx.tables.sampled_tissue.get(f"{coding.get('system')}|{coding.get('code')}")
            if tissue:
                break
    collection = spec.get("collection") if isinstance(spec.get("collection"), dict) else {}
    body_site = ctx.ontology(collection.get("bodySite"), ("UBERON",), base + "/collection/bodySite")
    if body_site is not None:
        sample["sampledTissue"] = body_site
    elif tissue is not None:
        ctx.used.add("UBERON")
        sample["sampledTissue"] = dict(tissue)
    else:
        where = base + "/type" if "type" in spec else base
        ctx.warn("unmapped-code", "sampled tissue unknown (no mapped Specimen.type or UBERON bodySite)", where)
    sample_type = ctx.ontology(spec_type, None, base + "/type")
    if sample_type is not None:
        sample["sampleType"] = sample_type
    if "collectedDateTime" in collection:
        when = ctx.age_at(collection["collectedDateTime"], base + "/collection/collectedDateTime")
        if when:
            sample["timeOfCollection"] = when
    sample["taxonomy"] = dict(HOMO_SAPIENS)
    return sample
