"""The facts a phenopacket states, per class, as comparable sets: what a round trip must keep.

Pure. Identifiers the translators derive (phenopacket, subject, variant and biosample ids) are not
facts: they change on every pass by design (pseudonyms). Spelling variants of one fact are made equal
(`hg38` = `GRCh38`, `chr2` = `2`), since the FHIR side has one spelling for each.

Each fact is a tuple; `FACT_CLASSES` names the classes in the order reports print them, and
`fact_pointers` says where each fact is stated in the phenopacket: the element naming it (a term's
`id`, a variant's vcfRecord, expressions or label), so that a lost fact can be matched to a warning
at that element or above it.
"""

from __future__ import annotations

from typing import Any

from mappings import load_tables

FACT_CLASSES = (
    "sex",
    "vital status",
    "phenotypes",
    "diseases",
    "variants",
    "genes",
    "zygosity",
    "ACMG",
    "diagnoses",
    "biosamples",
    "measurements",
    "treatments",
    "procedures",
)
ASSEMBLY_ALIASES = {"hg19": "GRCh37", "hg38": "GRCh38"}


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def variant_identity(descriptor: dict) -> tuple:
    """What names a variant across translations: its VCF record, else its HGVS, else its label."""
    vcf = _dict(descriptor.get("vcfRecord"))
    if vcf.get("chrom") and vcf.get("pos"):
        assembly = vcf.get("genomeAssembly")
        chrom = str(vcf["chrom"]).removeprefix("chr")
        chrom = load_tables().chromosomes.get(chrom.split(".", 1)[0], chrom)  # NC_000013.11 = 13
        chrom = {"MT": "M"}.get(chrom, chrom)  # chrM and chrMT are one chromosome
        return ("vcf", ASSEMBLY_ALIASES.get(assembly, assembly), chrom, str(vcf["pos"]), vcf.get("ref"), vcf.get("alt"))
    expressions = {_dict(e).get("syntax"): _dict(e).get("value") for e in _list(descriptor.get("expressions"))}
    for syntax in ("hgvs.g", "hgvs.c", "hgvs.p"):
        if expressions.get(syntax):
            return (syntax, expressions[syntax])
    if descriptor.get("label"):
        return ("label", descriptor["label"])
    return ("gene", _dict(descriptor.get("geneContext")).get("valueId"))


def fact_pointers(packet: dict) -> dict[str, dict[tuple, tuple[str, ...]]]:
    """class -> {fact -> JSON pointers of the elements stating it} (first occurrence wins)."""
    out: dict[str, dict[tuple, tuple[str, ...]]] = {name: {} for name in FACT_CLASSES}

    def put(name: str, fact: tuple, pointer: str | tuple[str, ...]) -> None:
        out[name].setdefault(fact, pointer if isinstance(pointer, tuple) else (pointer,))

    subject = _dict(packet.get("subject"))
    if subject.get("sex") not in (None, "UNKNOWN_SEX"):
        put("sex", (subject["sex"],), "/subject/sex")
    status = _dict(subject.get("vitalStatus")).get("status")
    if status not in (None, "UNKNOWN_STATUS"):
        put("vital status", (status,), "/subject/vitalStatus/status")
    for i, feature in enumerate(_list(packet.get("phenotypicFeatures"))):
        feature = _dict(feature)
        term = _dict(feature.get("type")).get("id")
        put("phenotypes", (term, feature.get("excluded") is True), f"/phenotypicFeatures/{i}/type/id")
    for i, disease in enumerate(_list(packet.get("diseases"))):
        disease = _dict(disease)
        put(
            "diseases",
            (_dict(disease.get("term")).get("id"), disease.get("excluded") is True),
            f"/diseases/{i}/term/id",
        )
    for i, interpretation in enumerate(_list(packet.get("interpretations"))):
        diagnosis = _dict(_dict(interpretation).get("diagnosis"))
        disease = _dict(diagnosis.get("disease")).get("id")
        for g, item in enumerate(_list(diagnosis.get("genomicInterpretations"))):
            item = _dict(item)
            where = f"/interpretations/{i}/diagnosis/genomicInterpretations/{g}/variantInterpretation"
            variant = _dict(item.get("variantInterpretation"))
            descriptor = _dict(variant.get("variationDescriptor"))
            if not descriptor:
                continue
            identity = variant_identity(descriptor)
            named_by = {"vcf": "/vcfRecord", "label": "/label", "gene": "/geneContext"}.get(identity[0], "/expressions")
            put("variants", identity, where + "/variationDescriptor" + named_by)
            gene = _dict(descriptor.get("geneContext")).get("valueId")
            # A variant named only by its label (structural variants) is still the same gene's variant:
            # its gene, zygosity and class are facts of their own even when the label is lost.
            key = identity if identity[0] != "label" else ("gene", gene)
            if gene:
                put("genes", (key, gene), where + "/variationDescriptor/geneContext/valueId")
            state = _dict(descriptor.get("allelicState")).get("id")
            if state:
                put("zygosity", (key, state), where + "/variationDescriptor/allelicState/id")
            acmg = variant.get("acmgPathogenicityClassification")
            if acmg not in (None, "NOT_PROVIDED"):
                put("ACMG", (key, acmg), where + "/acmgPathogenicityClassification")
            status = item.get("interpretationStatus")
            # a diagnosis is stated by both ends of the link: the disease and the variant
            disease_id = f"/interpretations/{i}/diagnosis/disease/id"
            put("diagnoses", (disease, key, status), (disease_id, where + "/variationDescriptor"))
    for i, sample in enumerate(_list(packet.get("biosamples"))):
        sample = _dict(sample)
        fact = (_dict(sample.get("sampledTissue")).get("id"), _dict(sample.get("sampleType")).get("id"))
        put("biosamples", fact, f"/biosamples/{i}/sampledTissue/id")
    for i, measurement in enumerate(_list(packet.get("measurements"))):
        measurement = _dict(measurement)
        value = _dict(measurement.get("value"))
        quantity = _dict(value.get("quantity"))
        shown = quantity.get("value") if quantity else _dict(value.get("ontologyClass")).get("id")
        put("measurements", (_dict(measurement.get("assay")).get("id"), shown), f"/measurements/{i}/assay/id")
    for i, action in enumerate(_list(packet.get("medicalActions"))):
        action = _dict(action)
        if "treatment" in action:
            agent = _dict(_dict(action["treatment"]).get("agent")).get("id")
            put("treatments", (agent,), f"/medicalActions/{i}/treatment/agent/id")
        if "procedure" in action:
            code = _dict(_dict(action["procedure"]).get("code")).get("id")
            put("procedures", (code,), f"/medicalActions/{i}/procedure/code/id")
    return out


def facts(packet: dict) -> dict[str, set[tuple]]:
    """class -> the set of facts of that class the phenopacket states."""
    return {name: set(found) for name, found in fact_pointers(packet).items()}
