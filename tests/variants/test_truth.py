"""Store answers against an independent pysam scan of the same file, for many random queries."""

from __future__ import annotations

import random

import pytest

from gateway.variants.ingest import ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore

from .conftest import pysam_truth
from .vcfgen import GENES, write_vcf

ZYG = {"GENO:0000135": "het", "GENO:0000136": "hom", "GENO:0000134": "hemi"}


def key(v) -> tuple:
    if hasattr(v, "reference_bases"):
        return (v.reference_name, v.start, v.end, v.reference_bases, v.alternate_bases)
    return (v.chrom, v.start, v.end, v.ref, v.alt)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truth")
    path = write_vcf(tmp / "gen.vcf", seed=7, n_records=900, n_samples=16)
    summary = ingest_vcf(path, dataset_id="gen", data_dir=tmp / "data")
    store = VariantStore(tmp / "data")
    truth = pysam_truth(path)
    assert any(not t.observed for t in truth), "the generated file has sites no sample carries"
    yield path, summary, store, truth
    store.close()


def observed(truth):
    """Only sites with an observed alternate allele are answered (AC = 0 → not found)."""
    return [t for t in truth if t.observed]


def all_hits(store, q):
    hits, total = store.search(q, limit=100_000)
    assert total == len(hits) == store.count(q)
    assert store.exists(q) == (total > 0)
    return hits


def assert_every_allele_counted(store, truth):
    """Every observed allele of the pysam scan is stored once, with its AC, AN, carrier count and genes."""
    hits = {key(h): h for h in all_hits(store, VariantQuery())}
    assert set(hits) == {key(t) for t in observed(truth)}
    for t in observed(truth):
        h = hits[key(t)]
        assert (h.allele_count, h.allele_number, h.carrier_count) == (t.ac, t.an, len(t.carriers)), t
        assert set(h.genes) == t.genes


def test_every_allele_is_stored_with_counts(generated):
    _, summary, store, truth = generated
    assert summary.assembly == "GRCh38"  # from the ##contig lengths
    assert summary.records_written == len(truth)
    assert summary.split > 0
    assert_every_allele_counted(store, truth)


def test_exact_queries(generated):
    _, _, store, truth = generated
    truth = observed(truth)
    rng = random.Random(1)
    for t in rng.sample(truth, 150):
        q = VariantQuery(reference_name=t.chrom, start=t.start, reference_bases=t.ref, alternate_bases=t.alt)
        expected = {key(x) for x in truth if (x.chrom, x.start, x.ref, x.alt) == (t.chrom, t.start, t.ref, t.alt)}
        assert {key(h) for h in all_hits(store, q)} == expected
        # "N" stands for any base
        wild = VariantQuery(reference_name=t.chrom, start=t.start, alternate_bases="N" * len(t.alt))
        expected_wild = {
            key(x)
            for x in truth
            if (x.chrom, x.start) == (t.chrom, t.start) and len(x.alt) == len(t.alt) and "<" not in x.alt
        }
        if "<" not in t.alt:
            assert {key(h) for h in all_hits(store, wild)} == expected_wild
    assert not store.exists(VariantQuery(reference_name="1", start=5, reference_bases="A", alternate_bases="T"))


def test_range_queries(generated):
    _, _, store, truth = generated
    truth = observed(truth)
    rng = random.Random(2)
    for _ in range(150):
        t = rng.choice(truth)
        qs = max(0, t.start - rng.choice([0, 10, 1000, 100_000]))
        qe = qs + rng.choice([1, 50, 5_000, 500_000, 3_000_000])
        q = VariantQuery(reference_name=t.chrom, start=qs, end=qe)
        expected = {key(x) for x in truth if x.chrom == t.chrom and x.start < qe and x.end > qs}
        assert {key(h) for h in all_hits(store, q)} == expected
        typed = VariantQuery(reference_name=t.chrom, start=qs, end=qe, variant_types=("SNP",))
        snps = {key(x) for x in truth if key(x) in expected and len(x.ref) == len(x.alt) == 1}
        assert {key(h) for h in all_hits(store, typed)} == snps


def test_bracket_queries(generated):
    _, _, store, truth = generated
    truth = observed(truth)
    svs = [t for t in truth if t.alt.startswith("<")]
    assert svs
    rng = random.Random(3)
    for _ in range(60):
        t = rng.choice(svs)
        smin, smax = t.start - rng.randint(0, 5000), t.start + rng.randint(0, 5000)
        emin, emax = t.end - rng.randint(0, 5000), t.end + rng.randint(0, 5000)
        q = VariantQuery(
            reference_name=t.chrom, start_range=(smin, smax), end_range=(emin, emax), variant_types=("DEL", "DUP")
        )
        expected = {
            key(x)
            for x in truth
            if (x.alt.startswith("<") or (len(x.alt) == 1 < len(x.ref) and x.ref.startswith(x.alt)))
            and x.chrom == t.chrom
            and smin <= x.start <= smax
            and emin <= x.end <= emax
        }
        assert {key(h) for h in all_hits(store, q)} == expected


def test_gene_and_carrier_queries(generated):
    _, _, store, truth = generated
    truth = observed(truth)
    for gene in GENES:
        q = VariantQuery(gene_id=gene)
        matching = [x for x in truth if gene in x.genes]
        assert {key(h) for h in all_hits(store, q)} == {key(x) for x in matching}
        assert store.carrier_count(q) == len(set().union(*(x.carriers for x in matching)))
    rng = random.Random(4)
    for t in rng.sample(truth, 40):
        hit = all_hits(
            store, VariantQuery(reference_name=t.chrom, start=t.start, reference_bases=t.ref, alternate_bases=t.alt)
        )
        hit = next(h for h in hit if key(h) == key(t))
        carriers = store.carriers(hit.variant_id)
        assert tuple(sorted((c.sample_id, ZYG[c.zygosity]) for c in carriers)) == t.zygosity
        assert store.get(hit.variant_id) == hit


def test_pagination_is_stable(generated):
    _, _, store, _ = generated
    q = VariantQuery(reference_name="1")
    every, total = store.search(q, limit=10_000)
    pages = []
    for skip in range(0, total, 37):
        page, n = store.search(q, skip=skip, limit=37)
        assert n == total
        pages += page
    assert pages == every


@pytest.mark.parametrize(
    "name",
    [
        "cyvcf2/test.vcf.gz",
        "cyvcf2/test-hemi.vcf",
        "cyvcf2/test-genotypes.vcf",
        "cyvcf2/test-multiallelic-homozygous-alt.vcf.gz",
        "cyvcf2/test.comp_het.3.vcf",
        "vcf2fhir/NB6TK328_filtered.vcf",
        "vcf2fhir/vcf_structural_variants.vcf",
        "vcf2fhir/HG00404_b37.vcf",
    ],
)
def test_real_files_match_pysam(name, vcf_reference, tmp_path):
    path = vcf_reference / name
    summary = ingest_vcf(
        path,
        dataset_id="real",
        data_dir=tmp_path,
        assembly=None if "NB6" in name or "struct" in name else "GRCh37",
        skip_invalid=True,
    )
    truth = pysam_truth(path)
    store = VariantStore(tmp_path)
    try:
        hits = {key(h): h for h in all_hits(store, VariantQuery())}
        assert summary.records_written == len(truth)
        truth = observed(truth)
        assert set(hits) == {key(t) for t in truth}
        for t in truth:
            assert (hits[key(t)].allele_count, hits[key(t)].carrier_count) == (t.ac, len(t.carriers)), t
        rng = random.Random(5)
        for _ in range(40):
            t = rng.choice(truth)
            qs, qe = t.start - rng.randint(0, 2000), t.start + rng.randint(1, 200_000)
            q = VariantQuery(reference_name=t.chrom, start=qs, end=qe)
            assert {key(h) for h in all_hits(store, q)} == {
                key(x) for x in truth if x.chrom == t.chrom and x.start < qe and x.end > qs
            }
    finally:
        store.close()
