"""End to end over HTTP on the real variant store: answers equal a direct pysam scan of the VCF."""

from __future__ import annotations

import random

import pysam
import pytest

from gateway.variants.normalise import chromosome_length, normalise_reference_name
from tests.beacon.conftest import OPEN, make_client

SAMPLES = [f"S{i:02d}" for i in range(12)]
CONTIGS = ("chr21", "chr22")
BASES = "ACGT"


def _write_vcf(path, seed: int = 7) -> None:
    """A seeded cohort VCF: SNPs (some multi-allelic), deletions, insertions; diploid genotypes."""
    rng = random.Random(seed)
    lines = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']
    lines += [f"##contig=<ID={c},length={chromosome_length(c, 'GRCh38')}>" for c in CONTIGS]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(SAMPLES))
    for contig in CONTIGS:
        pos = 10_000
        for i in range(150):
            pos += rng.randint(5, 400)
            ref = rng.choice(BASES)
            kind = rng.random()
            if kind < 0.6:
                alts = [rng.choice([b for b in BASES if b != ref])]
            elif kind < 0.75:
                alts = rng.sample([b for b in BASES if b != ref], 2)
            elif kind < 0.9:
                ref, alts = ref + "".join(rng.choices(BASES, k=rng.randint(1, 4))), [ref]
            else:
                alts = [ref + "".join(rng.choices(BASES, k=rng.randint(1, 5)))]
            gts = []
            for _ in SAMPLES:
                a, b = (rng.choice([0, 0, 0, *range(1, len(alts) + 1)]) for _ in range(2))
                gts.append(f"{a}/{b}")
            ident = f"rs{1000 + i}" if i % 3 == 0 else "."
            lines.append(f"{contig}\t{pos}\t{ident}\t{ref}\t{','.join(alts)}\t50\tPASS\t.\tGT\t" + "\t".join(gts))
            pos += len(ref)
    path.write_text("\n".join(lines) + "\n")


ERASED = "S03"  # the sample of the individual erased in the "erased-…" cohorts


def _truth(path, without: frozenset[str] = frozenset()) -> list[dict]:
    """Every (split) allele of the file, in Beacon coordinates, with its carriers, read by pysam; the samples
    `without` left out (an allele none of the others carries is then not observed)."""
    out = []
    with pysam.VariantFile(str(path)) as vcf:
        for rec in vcf:
            for index, alt in enumerate(rec.alts, start=1):
                carriers = {s for s in SAMPLES if index in (rec.samples[s]["GT"] or ()) and s not in without}
                if without and not carriers:
                    continue
                start = rec.pos - 1
                out.append({"chrom": normalise_reference_name(rec.chrom), "start": start, "end": start + len(rec.ref),
                            "ref": rec.ref, "alt": alt, "carriers": carriers})  # fmt: skip
    return out


def _vclass(v: dict) -> str:
    if len(v["ref"]) == len(v["alt"]) == 1:
        return "SNP"
    return "DEL" if len(v["ref"]) > len(v["alt"]) else "INS"


@pytest.fixture(
    scope="module",
    params=["one-file", "two-sample-batches", "erased-pending", "erased-pending-older-units", "erased-purged"],
)
def cohort(tmp_path_factory, request):
    """The cohort as one ingest of the file, and as two VCFs of its samples (the second added with add_samples);
    "erased-…": the two batches with the individual of sample S03 erased, answered while the erasure is pending
    (gateway/variants/pending.py: a new manifest only, the units unchanged) and after its purge (units rewritten):
    both must equal a pysam scan without S03. "older-units": units written before the homozygous reverse index
    (sample_hom), whose erasure delta is read from the carrier rows instead."""
    from gateway.variants.distributed_ingest import ingest_partitioned
    from gateway.variants.ingest import ingest_vcf
    from gateway.variants.store import VariantStore
    from tests.variants.vcfgen import split_by_samples

    root = tmp_path_factory.mktemp("truth")
    vcf = root / "cohort.vcf"
    _write_vcf(vcf)
    if request.param == "one-file":
        ingest_vcf(vcf, dataset_id="cohort", data_dir=root / "data", assembly="GRCh38")
    else:
        common = {"dataset_id": "cohort", "data_dir": root / "data", "assembly": "GRCh38", "span": 10_000,
                  "sample_map": {ERASED: "P-erased", "S07": "P-kept"}}  # fmt: skip
        ingest_partitioned(split_by_samples(vcf, root / "a.vcf.gz", SAMPLES[:5]), **common)
        ingest_partitioned(split_by_samples(vcf, root / "b.vcf.gz", SAMPLES[5:]), add_samples=True, **common)
    store = VariantStore(root / "data")
    without: frozenset[str] = frozenset()
    if request.param.startswith("erased-"):
        if request.param == "erased-pending-older-units":
            _drop_hom_index(root / "data")
        assert store.erase_individual("P-erased") == 1
        if request.param == "erased-purged":
            assert store.purge_erased() == 1
        without = frozenset({ERASED})
    client = make_client(store, datasets=[{"id": "cohort", "name": "Cohort", **OPEN}])
    yield client, _truth(vcf, without)
    store.close()


def _drop_hom_index(data_dir) -> None:
    import sqlite3

    for unit in sorted(data_dir.glob("variants/cohort/parts-*/*.sqlite")):
        conn = sqlite3.connect(unit)
        try:
            conn.execute("DROP TABLE sample_hom")
            conn.commit()
        finally:
            conn.close()


def _count(client, params: dict) -> dict:
    body = {"query": {"requestParameters": params, "requestedGranularity": "count"}}
    response = client.post("/api/g_variants", json=body)
    assert response.status_code == 200, response.json
    return response.json


def test_random_queries_equal_a_pysam_scan(cohort, official):
    client, truth = cohort
    rng = random.Random(11)
    for _ in range(120):
        v = rng.choice(truth)
        kind = rng.choice(["sequence", "range", "range-type", "bracket"])
        if kind == "sequence":
            params = {"referenceName": rng.choice([v["chrom"], "chr" + v["chrom"]]), "start": [v["start"]],
                      "referenceBases": v["ref"], "alternateBases": v["alt"]}  # fmt: skip
            expected = [t for t in truth if (t["chrom"], t["start"], t["ref"], t["alt"]) ==
                        (v["chrom"], v["start"], v["ref"], v["alt"])]  # fmt: skip
        elif kind in ("range", "range-type"):
            start = max(v["start"] - rng.randint(0, 3000), 0)
            end = start + rng.randint(1, 10_000)
            params = {"referenceName": v["chrom"], "start": [start], "end": [end]}
            expected = [t for t in truth if t["chrom"] == v["chrom"] and t["start"] < end and t["end"] > start]
            if kind == "range-type":
                vtype = rng.choice(["SNP", "DEL", "INS"])
                params["variantType"] = vtype
                expected = [t for t in expected if _vclass(t) == vtype]
        else:
            s0 = max(v["start"] - rng.randint(0, 500), 0)
            e0 = v["end"] - rng.randint(0, 3)
            params = {"referenceName": v["chrom"], "start": [s0, v["start"] + 200], "end": [e0, v["end"] + 200]}
            expected = [t for t in truth if t["chrom"] == v["chrom"] and s0 <= t["start"] <= v["start"] + 200
                        and e0 <= t["end"] <= v["end"] + 200]  # fmt: skip
        body = _count(client, params)
        assert body["responseSummary"]["numTotalResults"] == len(expected), (kind, params)
        carriers = set().union(*(t["carriers"] for t in expected)) if expected else set()
        assert body["info"]["carrierCount"] == len(carriers), (kind, params)
    assert official(body) == []


def test_records_match_the_file(cohort, official):
    client, truth = cohort
    chrom = "22"
    on_chrom = [t for t in truth if t["chrom"] == chrom]
    body = {"query": {"requestParameters": {"referenceName": chrom, "start": [0], "end": [10**8]},
                      "requestedGranularity": "record", "pagination": {"skip": 0, "limit": 1000}}}  # fmt: skip
    response = client.post("/api/g_variants", json=body).json
    assert official(response) == []
    (rs,) = response["response"]["resultSets"]
    assert rs["resultsCount"] == len(rs["results"]) == len(on_chrom)
    by_position = {}
    for record in rs["results"]:
        interval = record["variation"]["location"]["interval"]
        by_position.setdefault(interval["start"]["value"], []).append(record)
    for t in on_chrom:
        prefix = 1 if len(t["ref"]) != len(t["alt"]) else 0  # VCF indels carry one shared base
        (record,) = [r for r in by_position[t["start"] + prefix]
                     if r["variation"]["state"]["sequence"] == t["alt"][prefix:]]  # fmt: skip
        assert len(record.get("caseLevelData", [])) == len(t["carriers"])
        assert record["variation"]["location"]["sequence_id"] == "refseq:NC_000022.11"
