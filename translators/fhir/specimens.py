"""Specimen -> biosamples (sampled tissue from bodySite or the specimen-type table, type, collection age).

The sampled tissue is the collection's UBERON body site, else the tissue the specimen-type table names,
else the collection's body site in another anatomy system (SNOMED CT body structures, as mCODE writes them,
or an ICD-O-3 topography). A site in any other system (a disease code sent as a site) is warned, not taken."""

from __future__ import annotations

from translators.fhir.common import as_list, codings
from translators.fhir.context import PatientContext

BODY_SITE_PREFIXES = ("SNOMEDCT", "ICDO")  # systems whose codes can name a sampled tissue besides UBERON


def biosample(ctx: PatientContext, i: int, spec: dict) -> dict | None:
    base = ctx.source.pointer(i)
    for k, ext in enumerate(as_list(spec.get("extension"))):
        if isinstance(ext, dict) and str(ext.get("url", "")).split("|", 1)[0] in ctx.profile.specimen_source_extensions:
            # taken from another than the subject of record (the patient's animal, a device): no biosample of
            # the individual
            message = "the specimen was taken from another than the patient: no biosample of the patient"
            ctx.warn("no-phenopacket-target", message, f"{base}/extension/{k}")
            ctx.consumed.add(i)
            return None
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
    tissue_warned_at_type = False
    site_at = base + "/collection/bodySite"
    body_site = ctx.ontology(collection.get("bodySite"), ("UBERON",), site_at)
    if body_site is not None:
        sample["sampledTissue"] = body_site
    elif tissue is not None:
        ctx.used.add("UBERON")
        sample["sampledTissue"] = dict(tissue)
        if "bodySite" in collection:
            ctx.warn("unmapped-element", "the collection site has no place beside the sampled tissue", site_at)
    elif (site := ctx.ontology(collection.get("bodySite"), BODY_SITE_PREFIXES, site_at)) is not None:
        sample["sampledTissue"] = site  # a SNOMED CT body site (mCODE): the tissue sampled, in its own code
    elif "bodySite" in collection:
        ctx.warn("unmapped-code", "the collection site is in no anatomy code system the gateway maps", site_at)
    else:
        where = base + "/type" if "type" in spec else base
        ctx.warn("unmapped-code", "sampled tissue unknown (no mapped Specimen.type or body site)", where)
        tissue_warned_at_type = "type" in spec
    sample_type = ctx.ontology(spec_type, None, base + "/type")
    if sample_type is not None:
        sample["sampleType"] = sample_type
    elif tissue is None and codings(spec_type) and not tissue_warned_at_type:  # said, and nothing carries it
        ctx.warn(
            "unmapped-code",
            f"the specimen type is in no code system the gateway maps ({ctx.codings_described(spec_type)})",
            base + "/type",
        )
    if "collectedDateTime" in collection:
        when = ctx.age_at(collection["collectedDateTime"], base + "/collection/collectedDateTime")
        if when:
            sample["timeOfCollection"] = when
    if ctx.taxonomy is not None:
        sample["taxonomy"] = dict(ctx.taxonomy)
    return sample
