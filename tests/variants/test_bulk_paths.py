"""The bulk paths: sites-only blocks, far duplicates, exact AN after erasure, packed zygosity, END before POS."""

from __future__ import annotations

from pathlib import Path

import pysam
import pytest

from gateway.variants.ingest import VCFRejected, ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore

from .conftest import pysam_truth
from .vcfgen import header, records, write_vcf


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def site(chrom: str, pos: int, ref: str = "A", alt: str = "G", info: str = ".") -> str:
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", info])


def stored(store: VariantStore) -> dict[tuple, object]:
    hits, total = store.search(VariantQuery(), limit=100_000)
    assert total == len(hits) == store.count(VariantQuery())
    return {(h.reference_name, h.start, h.end, h.reference_bases, h.alternate_bases): h for h in hits}


def test_sites_only_blocks_match_pysam(tmp_path):
    # Mostly simple sites (the block path), with multi-allelics, symbolic alleles, annotations, repeated
    # positions, a contig switch back, CRLF and INFO allele counts mixed in (the per-line path).
    body = []
    for i, line in enumerate(records(11, 600, 0)):
        cols = line.split("\t")
        counts = f"AC={','.join(str(3 + k) for k in range(len(cols[4].split(','))))};AN=40"
        if i % 3:  # most lines lose their annotations: runs of simple sites
            cols[7] = counts if cols[7].startswith("ANN=") or cols[7] == "." else cols[7].split(";ANN=")[0]
        elif cols[7] == ".":
            cols[7] = counts
        body.append("\t".join(cols))
    body.insert(50, site("chr1", 5))  # before the chr1 records around it: unsorted, per-line path
    body[120] += "\r"
    body.append(site("chr1", 999_999_000, "ACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTAC", "A"))  # hashed key
    counts_header = [
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">',
    ]
    path = write(tmp_path / "sites.vcf", header([], extra=counts_header) + body)
    summary = ingest_vcf(path, dataset_id="sites", data_dir=tmp_path / "data")
    truth = pysam_truth(path)
    store = VariantStore(tmp_path / "data")
    hits = stored(store)
    assert summary.records_written == len(truth) == len(hits)
    with pysam.VariantFile(str(path)) as vf:
        counts = {}
        for r in vf:
            for a, alt in enumerate(r.alts or (), start=1):
                ac = r.info["AC"][a - 1] if "AC" in r.info else 0
                counts.setdefault((r.start, r.ref, alt), (ac, r.info.get("AN", 0)))
    for t in truth:
        h = hits[(t.chrom, t.start, t.end, t.ref, t.alt)]
        assert set(h.genes) == t.genes
        assert (h.allele_count, h.allele_number) == counts[(t.start, t.ref, t.alt)], t
        assert store.get(h.variant_id) == h
    assert any(i.code == "vcf-unsorted" for i in summary.report)
    store.close()


def test_sites_only_bad_record_located(tmp_path):
    body = [site("chr1", p) for p in range(100, 5000, 7)]
    body[300] = site("chr1", 2200, ref="AXG")
    path = write(tmp_path / "bad.vcf", header([]) + body)
    with pytest.raises(VCFRejected) as err:
        ingest_vcf(path, dataset_id="s", data_dir=tmp_path / "data")
    line = len(header([])) + 301
    assert [(i.code, i.location) for i in err.value.report.errors] == [("vcf-ref", f"bad.vcf:{line}")]


@pytest.mark.parametrize("samples", [[], ["S1", "S2", "S3"]])
def test_far_duplicates_rejected_with_location_or_skipped(tmp_path, samples):
    gts = ["0/1", "1/1", "0/0"] if samples else []

    def row(chrom, pos, alt="G", calls=gts):
        return "\t".join([site(chrom, pos, alt=alt), *(["GT", *calls] if samples else [])])

    body = [row("chr1", 100), row("chr1", 200), row("chr2", 50), row("chr1", 100, calls=["1/1", "0/0", "0/1"])]
    lines = header(samples) + body
    path = write(tmp_path / "dup.vcf", lines)
    with pytest.raises(VCFRejected) as err:
        ingest_vcf(path, dataset_id="d", data_dir=tmp_path / "data")
    first, again = len(lines) - 3, len(lines)
    errors = err.value.report.errors
    assert [(i.code, i.location) for i in errors] == [("vcf-duplicate-variant", f"dup.vcf:{again}")]
    assert f"dup.vcf:{first}" in errors[0].message
    assert not (tmp_path / "data" / "variants" / "d").exists()

    summary = ingest_vcf(
        path, dataset_id="d", data_dir=tmp_path / "data", skip_invalid=True, sample_map={s: f"p-{s}" for s in samples}
    )
    assert summary.records_written == 3
    assert [(i.code, i.location) for i in summary.skipped] == [("vcf-duplicate-variant", f"dup.vcf:{again}")]
    store = VariantStore(tmp_path / "data")
    hits = stored(store)
    assert len(hits) == 3
    if samples:  # the first record is kept, and the reverse index holds no trace of the dropped one
        kept = hits[("1", 99, 100, "A", "G")]
        assert [(c.sample_id, c.zygosity) for c in store.carriers(kept.variant_id)] == [
            ("S1", "GENO:0000135"),
            ("S2", "GENO:0000136"),
        ]
        assert store.variants_of_individual("p-S3") == ([], 0)
        assert store.variants_of_individual("p-S2")[1] == 3
    store.close()


def test_erasure_fixes_allele_number_at_every_variant(tmp_path):
    # The truth: the same file without the erased sample's column, read by pysam. Missing and haploid calls
    # (vcfgen) make AN differ from 2 x samples, carried or not.
    full = write_vcf(tmp_path / "full.vcf", seed=9, n_records=240, n_samples=7)
    lines = full.read_text().splitlines()
    without = [
        line if line.startswith("##") else "\t".join(line.split("\t")[:9] + line.split("\t")[10:]) for line in lines
    ]
    truth = pysam_truth(write(tmp_path / "without.vcf", without))
    ingest_vcf(full, dataset_id="e", data_dir=tmp_path / "data", sample_map={"SAMPLE000": "patient-0"})
    store = VariantStore(tmp_path / "data")
    assert store.erase_individual("patient-0") == 1
    hits = stored(store)
    truth = [t for t in truth if t.observed]  # a site only the erased sample carried is no longer found
    assert len(hits) == len(truth)
    for t in truth:
        h = hits[(t.chrom, t.start, t.end, t.ref, t.alt)]
        assert (h.allele_count, h.allele_number, h.carrier_count) == (t.ac, t.an, len(t.carriers)), t
        zygosity = {"GENO:0000135": "het", "GENO:0000136": "hom", "GENO:0000134": "hemi"}
        assert tuple(sorted((c.sample_id, zygosity[c.zygosity]) for c in store.carriers(h.variant_id))) == t.zygosity
    store.close()


def test_symbolic_end_before_pos_is_invalid(tmp_path):
    lines = [
        *header(["A"]),
        "\t".join(["chr1", "100", ".", "A", "<DEL>", ".", "PASS", "END=50;SVTYPE=DEL", "GT", "0/1"]),
        "\t".join(["chr1", "200", ".", "A", "G", ".", "PASS", ".", "GT", "0/1"]),
    ]
    path = write(tmp_path / "end.vcf", lines)
    with pytest.raises(VCFRejected) as err:
        ingest_vcf(path, dataset_id="x", data_dir=tmp_path / "data")
    assert [(i.code, i.location) for i in err.value.report.errors] == [("vcf-end", f"end.vcf:{len(lines) - 1}")]
    assert ingest_vcf(path, dataset_id="x", data_dir=tmp_path / "data", skip_invalid=True).records_written == 1
