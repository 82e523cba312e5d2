"""The `g_variants` entry type: request parameters → VariantQuery, hits → genomicVariations records.

Coordinates are Beacon's (0-based, half-open) end to end; the only 1-based numbers are
the HGVS positions in `genomicAlleleShortForm`, converted here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from functools import cache, lru_cache
from typing import Any, cast

from gateway.beacon.registry import EntryType, ParsedParameters
from gateway.beacon.request import BeaconRequestError, read_int, read_list, read_string
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.issues import Issue
from gateway.security.pseudonym import derived_id
from gateway.variants.normalise import (
    assembly_of_accession,
    normalise_assembly,
    normalise_reference_name,
    refseq_accession,
)
from gateway.variants.protocol import CarrierRow, VariantReader
from gateway.variants.query import Carrier, VariantHit, VariantQuery
from mappings import load_table

_BASES = re.compile(r"[ACGTUNRYSWKMBDHV]*")
_CONTIG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_GENE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_AA_CHANGE = re.compile(r"(p\.)?\(?[A-Za-z*]{1,3}\d{1,6}[A-Za-z*=]{0,3}(_[A-Za-z]{1,3}\d{1,6})?[A-Za-z0-9*=]{0,40}\)?")
_DBSNP = re.compile(r"rs\d+")
_VARIANT_ID = re.compile(r"[A-Za-z0-9][^\s/\\]{0,299}")  # the store's ids: dataset:assembly:key
_HGVS = re.compile(
    r"(?:refseq:)?(?P<acc>NC_\d{6}\.\d{1,2}):g\."
    r"(?P<start>\d{1,10})(?:_(?P<end>\d{1,10}))?"
    r"(?:(?P<ref>[ACGTN]+)>(?P<alt>[ACGTN]+)|(?P<delins>delins)(?P<ins_seq>[ACGTN]+)|(?P<del>del)[ACGTN]*"
    r"|(?P<ins>ins)(?P<seq>[ACGTN]+))"
)
MAX_CASE_LEVEL = 100  # carriers listed per record; the full number is in the record's info
PARAMETERS = (
    "referenceName",
    "start",
    "end",
    "referenceBases",
    "alternateBases",
    "variantType",
    "variantMinLength",
    "variantMaxLength",
    "geneId",
    "aminoacidChange",
    "genomicAlleleShortForm",
    "assemblyId",
    "mateName",
)


def _fail(message: str, where: str) -> BeaconRequestError:
    return BeaconRequestError([Issue.error("beacon-request", message, where)])


@cache
def _variant_types() -> tuple[dict[str, tuple[str, ...]], dict[str, dict]]:
    table = load_table("beacon/variant_types")
    vcf = {k.upper(): tuple(v) for k, v in table["vcf"].items()}
    ontology = {k.upper(): v for k, v in table["ontology"].items()}
    return vcf, ontology


@cache
def ontology_labels() -> dict[str, str]:
    return {k: v for k, v in load_table("beacon/ontology_labels").items() if not k.startswith("_")}


def variant_classes(value: str) -> tuple[str, ...] | None:
    """The store's variant classes for a Beacon variantType (VCF-style name or SO/EFO id); None if unknown."""
    vcf, ontology = _variant_types()
    key = value.strip().upper()
    if key in vcf:
        return vcf[key]
    entry = ontology.get(key)
    return tuple(entry["classes"]) if entry else None


# --- request parameters ------------------------------------------------------------------


def _coordinates(raw: Any, where: str, name: str, minimum: int) -> list[int]:
    items = read_list(raw, where, name, max_items=16)
    if not 1 <= len(items) <= 2:
        raise _fail(f"{name} takes one value or two ([min,max]) for a bracket query", where)
    return [read_int(v, where, name, minimum) for v in items]


def _bases(raw: Any, where: str, name: str) -> str:
    if not isinstance(raw, str):
        raise _fail(f"{name} must be a string of IUPAC nucleotide codes", where)
    text = raw.strip().upper()
    if text in (".", "-"):
        return ""
    if len(text) > 10_000 or not _BASES.fullmatch(text):
        raise _fail(f"{name} must hold only IUPAC nucleotide codes (ACGTUNRYSWKMBDHV), got {raw[:40]!r}", where)
    return text


def _reference_name(raw: Any, where: str) -> tuple[str, str | None]:
    """(internal chromosome name, assembly implied by a versioned RefSeq accession or None)."""
    text = read_string(raw, where, "referenceName", _CONTIG, 64)
    return normalise_reference_name(text), assembly_of_accession(text)


def _public_base(ctx) -> str:
    """The node's URL as the caller reached it (gateway.api.public_url), or the configured one."""
    return (ctx.config.node.base_url or ctx.public_base_url or "").rstrip("/")


def parse_parameters(raw: Mapping[str, Any], prefix: str) -> ParsedParameters:
    """Flat g_variant request parameters → (VariantQuery, echo). Every value is checked and typed."""

    def at(name: str) -> str:
        return prefix + name

    unknown = [k for k in raw if k not in PARAMETERS]
    if unknown:
        raise _fail(f"unknown g_variants parameter {unknown[0]!r}; known: {', '.join(PARAMETERS)}", at(unknown[0]))
    if "mateName" in raw:
        raise _fail("mateName (fusion queries) is not supported by this node", at("mateName"))
    q: dict[str, Any] = {}
    echo: dict[str, Any] = {}
    implied_assembly: tuple[str, str] | None = None  # (assembly, parameter that implied it)

    if "assemblyId" in raw:
        text = read_string(raw["assemblyId"], at("assemblyId"), "assemblyId", max_len=64)
        assembly = normalise_assembly(text)
        if assembly is None:
            raise _fail(
                f"assemblyId {text!r} is not a supported assembly (GRCh37, GRCh38 and their aliases)", at("assemblyId")
            )
        q["assembly"] = echo["assemblyId"] = assembly
    if "referenceName" in raw:
        chrom, implied = _reference_name(raw["referenceName"], at("referenceName"))
        q["reference_name"] = echo["referenceName"] = chrom
        if implied:
            implied_assembly = (implied, "referenceName")
    if "genomicAlleleShortForm" in raw:
        _apply_hgvs(raw, q, echo, at("genomicAlleleShortForm"))
        implied = assembly_of_accession(echo["genomicAlleleShortForm"].split(":")[0])
        if implied:
            implied_assembly = (implied, "genomicAlleleShortForm")
    if implied_assembly:
        assembly, source = implied_assembly
        if q.setdefault("assembly", assembly) != assembly:
            raise _fail(f"assemblyId {q['assembly']} contradicts {source}, which names {assembly}", at("assemblyId"))
        echo.setdefault("assemblyId", assembly)

    if "start" in raw or "end" in raw:
        _apply_coordinates(raw, q, echo, at)
    for name, field in (("referenceBases", "reference_bases"), ("alternateBases", "alternate_bases")):
        if name in raw:
            value = _bases(raw[name], at(name), name)
            if q.get(field, value) != value:
                raise _fail(f"{name} contradicts genomicAlleleShortForm", at(name))
            q[field] = echo[name] = value
    if "variantType" in raw:
        text = read_string(raw["variantType"], at("variantType"), "variantType", max_len=32)
        classes = variant_classes(text)
        if classes is None:
            raise _fail(
                f"variantType {text!r} is not known: use SNP, MNP, INS, DEL, INDEL, DUP, CNV, INV, or an "
                "SO/EFO id such as SO:0001483 or EFO:0030067",
                at("variantType"),
            )
        q["variant_types"] = classes
        echo["variantType"] = text.upper() if ":" not in text else text
    if "variantMinLength" in raw:
        q["min_length"] = echo["variantMinLength"] = read_int(
            raw["variantMinLength"], at("variantMinLength"), "variantMinLength", 0
        )
    if "variantMaxLength" in raw:
        q["max_length"] = echo["variantMaxLength"] = read_int(
            raw["variantMaxLength"], at("variantMaxLength"), "variantMaxLength", 1
        )
    if q.get("min_length") is not None and q.get("max_length") is not None and q["min_length"] > q["max_length"]:
        raise _fail("variantMinLength is greater than variantMaxLength", at("variantMinLength"))
    if "geneId" in raw:
        q["gene_id"] = echo["geneId"] = read_string(raw["geneId"], at("geneId"), "geneId", _GENE, 64)
    if "aminoacidChange" in raw:
        if "geneId" not in raw:
            raise _fail("aminoacidChange needs geneId", at("aminoacidChange"))
        q["aa_change"] = echo["aminoacidChange"] = read_string(
            raw["aminoacidChange"], at("aminoacidChange"), "aminoacidChange", _AA_CHANGE, 64
        )
    _check_query_shape(raw, q, at)
    return ParsedParameters(VariantQuery(**q), echo)


def _apply_coordinates(raw: Mapping[str, Any], q: dict, echo: dict, at) -> None:
    if "start" not in raw:
        raise _fail("end needs start", at("end"))
    starts = _coordinates(raw["start"], at("start"), "start", 0)
    ends = _coordinates(raw["end"], at("end"), "end", 1) if "end" in raw else []
    if "start" in q and (len(starts) != 1 or starts[0] != q["start"]):
        raise _fail("start contradicts genomicAlleleShortForm", at("start"))
    echo["start"] = starts
    if ends:
        echo["end"] = ends
    if len(starts) == 2 or len(ends) == 2:
        if len(starts) != 2 or len(ends) != 2:
            raise _fail(
                "a bracket query needs two values in both start and end ([min,max])",
                at("start" if len(starts) != 2 else "end"),
            )
        if starts[0] > starts[1]:
            raise _fail(f"start range [{starts[0]},{starts[1]}] has min > max", at("start"))
        if ends[0] > ends[1]:
            raise _fail(f"end range [{ends[0]},{ends[1]}] has min > max", at("end"))
        q["start_range"], q["end_range"] = tuple(starts), tuple(ends)
        return
    q["start"] = starts[0]
    if ends:
        if ends[0] <= starts[0]:
            raise _fail(f"end ({ends[0]}) must be greater than start ({starts[0]}) (0-based, half-open)", at("end"))
        q["end"] = ends[0]


def _check_query_shape(raw: Mapping[str, Any], q: dict, at) -> None:
    positional = any(k in q for k in ("start", "start_range"))
    if positional and "reference_name" not in q:
        raise _fail("start/end need referenceName", at("referenceName"))
    sequence_query = "start" in q and "end" not in q
    if sequence_query and "alternate_bases" not in q and "variant_types" not in q:
        raise _fail("a sequence query (start without end) needs alternateBases or variantType", at("alternateBases"))


def _apply_hgvs(raw: Mapping[str, Any], q: dict, echo: dict, where: str) -> None:
    """`NC_000017.11:g.43045712G>A` and the del/ins/delins forms → a sequence or range query."""
    text = read_string(raw["genomicAlleleShortForm"], where, "genomicAlleleShortForm", max_len=512)
    m = _HGVS.fullmatch(text)
    if not m:
        raise _fail(
            f"genomicAlleleShortForm {text[:60]!r} is not a supported HGVS g. expression on a RefSeq "
            "chromosome accession (e.g. NC_000017.11:g.43045712G>A, g.100_102del, g.100_101insAT)",
            where,
        )
    accession = m["acc"]
    chrom = normalise_reference_name(accession)
    if chrom == accession:
        raise _fail(f"{accession} is not a chromosome accession of GRCh37 or GRCh38", where)
    if "referenceName" in raw and normalise_reference_name(str(raw["referenceName"])) != chrom:
        raise _fail("referenceName contradicts genomicAlleleShortForm", where)
    first = int(m["start"])
    last = int(m["end"]) if m["end"] else first
    if first < 1 or last < first:
        raise _fail("HGVS positions are 1-based and the range must not be reversed", where)
    q["reference_name"] = chrom
    if m["ref"] is not None:  # substitution: one base, or an MNV written ref>alt
        if len(m["ref"]) != last - first + 1:
            raise _fail("the reference bases do not match the HGVS range", where)
        q.update(start=first - 1, reference_bases=m["ref"], alternate_bases=m["alt"])
    elif m["del"] or m["delins"]:
        # VCF-style deletions carry the base before the deleted span: match it with the N wildcard.
        inserted = m["ins_seq"] or ""
        if m["delins"]:
            q.update(start=first - 1, reference_bases="N" * (last - first + 1), alternate_bases=inserted)
        else:
            q.update(start=first - 2, reference_bases="N" * (last - first + 2), alternate_bases="N")
        if q["start"] < 0:
            raise _fail("a deletion at the first base of a chromosome cannot be written in VCF form", where)
    else:  # insertion between first and last = first+1: VCF anchors it on `first`
        if last != first + 1:
            raise _fail("an HGVS insertion is written between two adjacent positions (e.g. g.100_101insAT)", where)
        q.update(start=first - 1, reference_bases="N", alternate_bases="N" + m["seq"])
    echo["genomicAlleleShortForm"] = text


# --- records -------------------------------------------------------------------------------


def _sequence_id(hit: VariantHit) -> str:
    try:
        return "refseq:" + refseq_accession(hit.reference_name, hit.assembly)
    except ValueError:  # an alt/decoy contig: name it in the assembly's namespace
        return f"{hit.assembly}:{hit.reference_name}"


def _location(sequence_id: str, start: int, end: int) -> dict:
    return {
        "type": "SequenceLocation",
        "sequence_id": sequence_id,
        "interval": {
            "type": "SequenceInterval",
            "start": {"type": "Number", "value": start},
            "end": {"type": "Number", "value": end},
        },
    }


def vrs_variation(hit: VariantHit) -> dict:
    """VRS 1.3: an Allele for sequence alleles (trimmed of shared bases), a CopyNumberChange for symbolic
    DEL/DUP, and the Beacon LegacyVariation for the other symbolic alleles (INS, INV, CNV, …)."""
    sequence_id = _sequence_id(hit)
    alt = hit.alternate_bases
    if alt.startswith("<"):
        location = _location(sequence_id, hit.start, hit.end)
        change = {"DEL": "efo:0030067", "DUP": "efo:0030070"}.get(hit.variant_type)
        if change:
            return {"type": "CopyNumberChange", "subject": location, "copy_change": change}
        return {
            "variantType": hit.variant_type,
            "referenceBases": hit.reference_bases[:1],
            "alternateBases": "N",
            "location": location,
        }
    ref = hit.reference_bases
    prefix = 0
    while prefix < min(len(ref), len(alt)) and ref[prefix] == alt[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(ref), len(alt)) - prefix and ref[-1 - suffix] == alt[-1 - suffix]:
        suffix += 1
    state = alt[prefix : len(alt) - suffix]
    start = hit.start + prefix
    end = hit.start + len(ref) - suffix
    return {
        "type": "Allele",
        "location": _location(sequence_id, start, end),
        "state": {"type": "LiteralSequenceExpression", "sequence": state},
    }


@lru_cache(maxsize=4096)
def _term(curie: str) -> dict:  # shared, read-only: responses are serialised, never mutated
    label = ontology_labels().get(curie)
    return {"id": curie, "label": label} if label else {"id": curie}


def _hgvs_id(hit: VariantHit) -> str | None:
    """HGVS g. for substitutions (single bases), the form genomicAlleleShortForm accepts back."""
    if len(hit.reference_bases) == 1 and len(hit.alternate_bases) == 1 and not hit.alternate_bases.startswith("<"):
        sequence_id = _sequence_id(hit)
        if sequence_id.startswith("refseq:"):
            return f"{sequence_id[7:]}:g.{hit.start + 1}{hit.reference_bases}>{hit.alternate_bases}"
    return None


def _identifiers(hit: VariantHit) -> dict:
    out: dict = {}
    hgvs = _hgvs_id(hit)
    if hgvs:
        out["genomicHGVSId"] = hgvs
    alternatives = []
    for identifier in hit.identifiers:
        if _DBSNP.fullmatch(identifier):
            alternatives.append(
                {"id": f"dbSNP:{identifier}", "reference": f"https://www.ncbi.nlm.nih.gov/snp/{identifier}"}
            )
        elif ":" in identifier:
            alternatives.append({"id": identifier})
    if alternatives:
        out["variantAlternativeIds"] = alternatives
    return out


_UNLINKED_IDS_MAX = 200_000  # remembered derived ids per dataset (one per VCF sample)


@lru_cache(maxsize=256)
def _unlinked_ids(key: bytes, dataset_id: str) -> dict[str, str]:
    """sample id → its derived biosample id, filled as samples are seen (one key hash per record, not per carrier)."""
    return {}


def _unlinked_biosample(key: bytes, dataset_id: str, sample_id: str) -> str:
    ids = _unlinked_ids(key, dataset_id)
    found = ids.get(sample_id)
    if found is None:
        found = derived_id(key, "biosample", dataset_id, sample_id)
        if len(ids) >= _UNLINKED_IDS_MAX:
            ids.clear()
        ids[sample_id] = found
    return found


def carrier_rows(store: VariantReader, variant_id: str, limit: int | None = MAX_CASE_LEVEL) -> list[CarrierRow]:
    """A variant's carriers as tuples (no object per carrier)."""
    return store.carrier_rows(variant_id, limit=limit)


def _as_row(carrier: Carrier | CarrierRow) -> CarrierRow:
    if isinstance(carrier, tuple):
        return carrier
    return (carrier.sample_id, carrier.biosample_id, carrier.individual_id, carrier.zygosity)


_UNSPECIFIED_ZYGOSITY = "GENO:0000137"


def _case_level(ctx, hit: VariantHit, carriers: list[CarrierRow] | list[Carrier]) -> list[dict]:
    ids = _unlinked_ids(ctx.key, hit.dataset_id)
    terms: dict[str, dict] = {}  # zygosity CURIE → its (shared, read-only) term
    out = []
    page = carriers[:MAX_CASE_LEVEL]
    # store rows are tuples already: no conversion per carrier
    rows = cast(list[CarrierRow], page) if not page or isinstance(page[0], tuple) else [_as_row(c) for c in page]
    for sample_id, biosample, individual, zygosity in rows:
        # An unlinked sample still gets a stable, non-identifying id.
        if not biosample:
            biosample = ids.get(sample_id) or _unlinked_biosample(ctx.key, hit.dataset_id, sample_id)
        zygosity = zygosity or _UNSPECIFIED_ZYGOSITY
        term = terms.get(zygosity)
        if term is None:
            term = terms[zygosity] = _term(zygosity)
        if individual:
            out.append({"biosampleId": biosample, "individualId": individual, "zygosity": term})
        else:
            out.append({"biosampleId": biosample, "zygosity": term})
    return out


def variant_record(ctx, hit: VariantHit, carriers: list[CarrierRow] | list[Carrier], dataset_name: str) -> dict:
    """A genomicVariations default-model record; `carriers` as Carrier objects or `carrier_rows` tuples."""
    record: dict = {"variantInternalId": hit.variant_id, "variation": vrs_variation(hit)}
    identifiers = _identifiers(hit)
    if identifiers:
        record["identifiers"] = identifiers
    molecular: dict = {}
    if hit.genes:
        molecular["geneIds"] = list(hit.genes)
    if hit.aa_changes:
        molecular["aminoacidChanges"] = list(hit.aa_changes)
    if hit.molecular_effects:
        molecular["molecularEffects"] = [_term(t) for t in hit.molecular_effects]
    if molecular:
        record["molecularAttributes"] = molecular
    if carriers:
        record["caseLevelData"] = _case_level(ctx, hit, carriers)
    if hit.allele_number > 0:
        record["frequencyInPopulations"] = [
            {
                "source": dataset_name,
                "sourceReference": f"{_public_base(ctx)}/api/datasets/{hit.dataset_id}",
                "frequencies": [
                    {"population": dataset_name, "alleleFrequency": round(hit.allele_count / hit.allele_number, 8)}
                ],
            }
        ]
    record["info"] = {
        "datasetId": hit.dataset_id,
        "assemblyId": hit.assembly,
        "variantType": hit.variant_type,
        "alleleCount": hit.allele_count,
        "alleleNumber": hit.allele_number,
        "carrierCount": max(hit.carrier_count, len(carriers)),
    }
    return record


# --- the handler ---------------------------------------------------------------------------


def check_variant_id(record_id: str) -> str:
    if not _VARIANT_ID.fullmatch(record_id):
        raise _fail("the variant id in the path is malformed", "/path/id")
    return record_id


def answer_g_variants(ctx, request, granularity: str, datasets: tuple[str, ...], record_id: str | None) -> EntryAnswer:
    store = ctx.variants
    if store is None:
        raise BeaconRequestError([Issue.error("not-found", "this node holds no genomic variants")])
    query: VariantQuery = request.parameters
    if record_id is not None:
        query = replace(query, variant_ids=(check_variant_id(record_id),))
    if not datasets:
        return EntryAnswer(exists=False, total=0)
    query = replace(query, dataset_ids=datasets)
    if granularity == "boolean":
        return EntryAnswer(exists=store.exists(query))
    if granularity == "count":
        total = store.count(query)
        return EntryAnswer(exists=total > 0, total=total, info={"carrierCount": store.carrier_count(query)})
    result_sets = []
    total = 0
    for dataset_id in datasets:
        hits, dataset_total = store.search(
            replace(query, dataset_ids=(dataset_id,)), skip=request.offset, limit=request.limit
        )
        dataset = ctx.config.dataset(dataset_id)
        name = dataset.name if dataset and dataset.name else dataset_id
        records = [variant_record(ctx, h, carrier_rows(store, h.variant_id), name) for h in hits]
        result_sets.append(ResultSet(id=dataset_id, count=dataset_total, records=records))
        total += dataset_total
    return EntryAnswer(exists=total > 0, total=total, result_sets=result_sets)


G_VARIANTS = EntryType(
    id="genomicVariant",
    path="g_variants",
    name="Genomic Variants",
    description="The valid and consistent set of variants observed in the node's VCF datasets.",
    schema_id="beacon-g_variant-v2.0.0",
    default_schema="genomicVariations/defaultSchema.json",
    ontology_term={"id": "SO:0000735", "label": "sequence_location"},
    parameter_group="g_variant",
    parse_parameters=parse_parameters,
    handler=answer_g_variants,
)
