"""Ingest: validation with file:line, hostile input contained, all-or-nothing versions, linking and erasure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pysam
import pytest

from gateway.validation.vcf import validate_vcf
from gateway.variants.ingest import VCFRejected, ingest_vcf
from gateway.variants.normalise import normalise_reference_name, refseq_accession
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore

from .conftest import pysam_truth
from .vcfgen import header, records, write_vcf

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def lines_of(samples=("A", "B"), body=(), **kw) -> list[str]:
    return [*header(list(samples), **kw), *body]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def rec(pos="100", ref="A", alt="G", gts=("0/1", "1/1"), chrom="chr1", info=".") -> str:
    return "\t".join([chrom, pos, ".", ref, alt, ".", "PASS", info, "GT", *gts])


def ingest(path, data_dir, **kw):
    return ingest_vcf(path, dataset_id=kw.pop("dataset_id", "ds"), data_dir=data_dir, **kw)


@pytest.fixture
def good(tmp_path) -> Path:
    return write(tmp_path / "good.vcf", lines_of(body=[rec("100"), rec("200", alt="T,C", gts=("1/2", "0/2"))]))


def count_all(data_dir: Path) -> int:
    store = VariantStore(data_dir)
    try:
        return store.count(VariantQuery())
    finally:
        store.close()


# --- reference names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("22", "22"), ("chr22", "22"), ("NC_000022.11", "22"), ("refseq:NC_000022.11", "22"), ("NC_000022.10", "22"),
     ("chrM", "MT"), ("MT", "MT"), ("chrX", "X"), ("x", "X"), ("chr01", "1"), ("GL000220.1", "GL000220.1")],
)  # fmt: skip
def test_reference_names(name, expected):
    assert normalise_reference_name(name) == expected


def test_refseq_accessions_round_trip():
    assert refseq_accession("22", "GRCh38") == "NC_000022.11"
    assert refseq_accession("chr22", "GRCh37") == "NC_000022.10"
    assert refseq_accession("X", "GRCh38") == "NC_000023.11"
    with pytest.raises(ValueError):
        refseq_accession("GL000220.1", "GRCh38")


# --- structural faults and invalid records ------------------------------------------------


def test_structural_faults_reject_with_location(tmp_path, good):
    ingest(good, tmp_path / "data")
    before = count_all(tmp_path / "data")
    no_format = write(tmp_path / "nofmt.vcf", lines_of(body=[rec()])[1:])
    with pytest.raises(VCFRejected) as err:
        ingest(no_format, tmp_path / "data")
    assert any(i.code in ("vcf-fileformat", "vcf-header") for i in err.value.report.errors)
    short_row = lines_of(body=[rec("100"), rec("150", gts=("0/1",))])
    with pytest.raises(VCFRejected) as err:
        ingest(write(tmp_path / "short.vcf", short_row), tmp_path / "data")
    (issue,) = err.value.report.errors
    assert issue.code == "vcf-columns" and issue.location == f"short.vcf:{len(short_row)}"
    assert count_all(tmp_path / "data") == before  # nothing changed


@pytest.mark.parametrize(
    "bad, code",
    [(rec("0"), "vcf-pos"), (rec(ref="AXG"), "vcf-ref"), (rec(alt="G!"), "vcf-alt"), (rec(gts=("0/3", "0/1")), "vcf-gt"),
     (rec(gts=("0/x", "0/1")), "vcf-gt")],
)  # fmt: skip
def test_invalid_record_rejects_or_is_skipped(tmp_path, bad, code):
    lines = lines_of(body=[rec("100"), bad, rec("300")])
    path = write(tmp_path / "bad.vcf", lines)
    with pytest.raises(VCFRejected) as err:
        ingest(path, tmp_path / "data")
    assert [(i.code, i.location) for i in err.value.report.errors] == [(code, f"bad.vcf:{len(lines) - 1}")]
    assert count_all(tmp_path / "data") == 0
    summary = ingest(path, tmp_path / "data", skip_invalid=True)
    assert summary.records_written == 2
    assert [(i.code, i.location) for i in summary.skipped] == [(code, f"bad.vcf:{len(lines) - 1}")]
    report = validate_vcf(path)
    assert [(i.code, i.location) for i in report.errors] == [(code, f"bad.vcf:{len(lines) - 1}")]


def test_validate_lists_every_bad_record_and_stores_nothing(tmp_path):
    lines = lines_of(body=[rec("0"), rec("100", ref="Q"), rec("300")])
    report = validate_vcf(write(tmp_path / "two.vcf", lines))
    assert [i.location for i in report.errors] == [f"two.vcf:{len(lines) - 2}", f"two.vcf:{len(lines) - 1}"]
    assert not (tmp_path / "variants").exists()


def test_assembly_from_header_and_contradiction(tmp_path, good):
    assert ingest(good, tmp_path / "d1").assembly == "GRCh38"
    with pytest.raises(VCFRejected) as err:
        ingest(good, tmp_path / "d2", assembly="GRCh37")
    assert err.value.report.errors[0].code == "vcf-assembly-conflict"
    no_contigs = write(tmp_path / "nc.vcf", lines_of(body=[rec()], contigs=False))
    with pytest.raises(VCFRejected):
        ingest(no_contigs, tmp_path / "d3")  # no assembly anywhere
    summary = ingest(no_contigs, tmp_path / "d3", assembly="hg19")
    assert summary.assembly == "GRCh37"
    assert "vcf-no-contigs" in [i.code for i in summary.report.warnings]


def test_breakends_skipped_and_symbolic_kept(tmp_path):
    body = [
        rec("100", alt="G]chr2:3000]"),
        rec("200", alt="<DEL>", info="END=5200;SVTYPE=DEL;SVLEN=-5000"),
        rec("300", alt="*,T", gts=("0/1", "2/2")),
    ]
    summary = ingest(write(tmp_path / "sv.vcf", lines_of(body=body)), tmp_path / "data")
    assert [i.code for i in summary.skipped] == ["vcf-breakend-skipped"]
    store = VariantStore(tmp_path / "data")
    hits, total = store.search(VariantQuery(reference_name="1", start_range=(190, 210), end_range=(5000, 5300)))
    assert total == 1 and hits[0].alternate_bases == "<DEL>" and (hits[0].start, hits[0].end) == (199, 5200)
    assert hits[0].extra["length"] == 5000
    (star_site,), _ = store.search(VariantQuery(reference_name="1", start=299))
    assert star_site.alternate_bases == "T" and star_site.allele_count == 2  # the "*" allele is not stored
    store.close()


# --- hostile input -------------------------------------------------------------------


def test_truncated_bgzf_is_a_clear_error(tmp_path):
    plain = write_vcf(tmp_path / "big.vcf", seed=3, n_records=3000, n_samples=20)
    pysam.tabix_compress(str(plain), str(tmp_path / "big.vcf.gz"))
    data = (tmp_path / "big.vcf.gz").read_bytes()
    for cut in (len(data) // 2, 100):
        truncated = tmp_path / f"trunc{cut}.vcf.gz"
        truncated.write_bytes(data[:cut])
        with pytest.raises(VCFRejected) as err:
            ingest(truncated, tmp_path / "data")
        assert err.value.report.errors[0].code in ("vcf-compression", "vcf-header", "vcf-unreadable")
        assert "trunc" in err.value.report.errors[0].location or err.value.report.errors[0].location.startswith(
            f"trunc{cut}"
        )
    assert count_all(tmp_path / "data") == 0


def test_huge_info_field_and_garbage_header(tmp_path):
    huge = rec("100", info="NOTE=" + "x" * 10_000_000)
    summary = ingest(write(tmp_path / "huge.vcf", lines_of(body=[huge, rec("200")])), tmp_path / "data")
    assert summary.records_written == 2
    crafted = [
        "##fileformat=VCFv4.2",
        "##INFO=<ID=AC,Number=A,Type=NoSuchType,Description=" + "\x01" * 1000,
        "##contig=<ID=chr1,length=99999999999999999999999>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA",
        "chr1\t5\t.\tA\tG\t.\t.\tAC=1\tGT\t0/1",
    ]
    with pytest.raises(VCFRejected) as err:
        ingest(write(tmp_path / "crafted.vcf", crafted), tmp_path / "data2", assembly="GRCh38")
    assert err.value.report.errors and err.value.report.errors[0].message
    binary = tmp_path / "binary.vcf.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x04" + os.urandom(5000))
    with pytest.raises(VCFRejected):
        ingest(binary, tmp_path / "data3")


# --- versions -------------------------------------------------------------------------


def test_reingest_replaces_previous_version(tmp_path):
    data = tmp_path / "data"
    first = write_vcf(tmp_path / "a.vcf", seed=1, n_records=90, n_samples=4)
    second = write_vcf(tmp_path / "b.vcf", seed=2, n_records=30, n_samples=4)
    ingest(first, data)
    ingest(second, data)
    assert count_all(data) == len([t for t in pysam_truth(second) if t.observed])
    files = sorted(p.name for p in (data / "variants" / "ds").iterdir())
    assert len(files) == 2 and "CURRENT" in files  # the pointer and one live version
    store = VariantStore(data)
    store.delete_dataset("ds")
    assert store.datasets() == [] and not (data / "variants" / "ds").exists()


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gateway.variants.ingest import ingest_vcf
    if __name__ == "__main__":
        ingest_vcf(sys.argv[1], dataset_id="ds", data_dir=Path(sys.argv[2]))
    """
)


def test_kill_9_leaves_the_dataset_as_it_was(tmp_path):
    data = tmp_path / "data"
    small = write_vcf(tmp_path / "small.vcf", seed=4, n_records=60, n_samples=4)
    ingest(small, data)
    before = count_all(data)
    big = tmp_path / "big.vcf"
    big.write_text("\n".join(header([f"S{i}" for i in range(200)]) + records(9, 12_000, 200)) + "\n")
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(big), str(data)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    ds_dir = data / "variants" / "ds"
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".build-") for p in ds_dir.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None, "the ingest never started building"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert count_all(data) == before

    def leftovers() -> list[str]:
        return [p.name for p in ds_dir.iterdir() if p.name.startswith(".build-")]

    while leftovers():  # the parsing child dies with its parent a moment later; the next start cleans up
        assert time.monotonic() < deadline, "leftovers of the killed ingest were never cleaned"
        VariantStore(data).close()
        time.sleep(0.1)
    assert count_all(data) == before


# --- linking, reverse index, erasure ----------------------------------------------------


def test_linking_individual_variants_and_erasure(tmp_path):
    path = write_vcf(tmp_path / "l.vcf", seed=5, n_records=150, n_samples=6)
    truth = pysam_truth(path)
    sample_map = {"SAMPLE000": "patient-0", "SAMPLE001": "patient-1"}

    def link(identifier: str):
        return (f"pid-{identifier}", f"bs-{identifier}") if identifier.startswith("patient-") else (None, None)

    progress: list[tuple[int, int]] = []
    summary = ingest(
        path, tmp_path / "data", sample_map=sample_map, link_sample=link, progress=lambda n, p: progress.append((n, p))
    )
    assert summary.samples == 6 and summary.samples_linked == 2
    assert sorted(summary.unlinked_samples) == [f"SAMPLE00{i}" for i in range(2, 6)]
    assert progress[-1] == (summary.records_read, 100)
    store = VariantStore(tmp_path / "data")
    carried = [t for t in truth if "SAMPLE000" in t.carriers]
    hits, total = store.variants_of_individual("pid-patient-0", limit=1000)
    assert total == len(carried)
    assert {(h.start, h.reference_bases, h.alternate_bases) for h in hits} == {(t.start, t.ref, t.alt) for t in carried}
    page, total2 = store.variants_of_individual("pid-patient-0", skip=3, limit=4)
    assert total2 == total and page == hits[3:7]
    carrier = next(c for c in store.carriers(hits[0].variant_id) if c.sample_id == "SAMPLE000")
    assert (carrier.individual_id, carrier.biosample_id) == ("pid-patient-0", "bs-patient-0")

    assert store.erase_individual("pid-patient-0") == 1
    assert store.variants_of_individual("pid-patient-0") == ([], 0)
    after = {(h.start, h.reference_bases, h.alternate_bases): h for h in store.search(VariantQuery(), limit=10_000)[0]}
    for t in carried:
        if t.carriers == {"SAMPLE000"}:  # its only carrier erased: no longer observed, not found
            assert (t.start, t.ref, t.alt) not in after
            continue
        h = after[(t.start, t.ref, t.alt)]
        assert h.carrier_count == len(t.carriers) - 1
        assert "SAMPLE000" not in {c.sample_id for c in store.carriers(h.variant_id)}
    store.close()


def test_bcf_input_equals_vcf(tmp_path):
    vcf = write_vcf(tmp_path / "x.vcf", seed=6, n_records=120, n_samples=5)
    bcf = tmp_path / "x.bcf"
    with pysam.VariantFile(str(vcf)) as src, pysam.VariantFile(str(bcf), "wb", header=src.header) as dst:
        for r in src:
            dst.write(r)
    ingest(vcf, tmp_path / "d", dataset_id="v")
    summary = ingest(bcf, tmp_path / "d", dataset_id="b")
    assert summary.records_written == len(pysam_truth(vcf))
    store = VariantStore(tmp_path / "d")

    def answers(ds):
        hits, _ = store.search(VariantQuery(dataset_ids=(ds,)), limit=10_000)
        return [(h.start, h.end, h.alternate_bases, h.allele_count, h.allele_number, h.carrier_count) for h in hits]

    assert answers("v") == answers("b")
    store.close()


def test_open_datasets_are_bounded(tmp_path, monkeypatch):
    import gateway.variants.store as store_module

    monkeypatch.setattr(store_module, "_MAX_OPEN_PER_THREAD", 2)
    path = write(tmp_path / "one.vcf", lines_of(body=[rec("100")]))
    for name in ("d1", "d2", "d3"):
        ingest(path, tmp_path / "data", dataset_id=name)
    store = VariantStore(tmp_path / "data")
    q = VariantQuery(reference_name="1", start=99, reference_bases="A", alternate_bases="G")
    for _ in range(2):
        assert store.count(q) == 3
        assert [store.get(f"{d}:GRCh38:1-100-A-G").dataset_id for d in ("d1", "d2", "d3")] == ["d1", "d2", "d3"]
    assert len(store._local.datasets) == 2
    store.close()


def test_one_request_says_what_to_ingest_and_how():
    """VcfIngestRequest: the keyword form of ingest_vcf/ingest_partitioned builds the same request; a misspelt
    field is refused before anything runs."""
    from gateway.variants.ingest import VcfIngestRequest

    request = VcfIngestRequest("cohort.vcf.gz", dataset_id="cohort", data_dir="data")  # paths as given: made Path
    assert request.path == Path("cohort.vcf.gz") and request.data_dir == Path("data") and not request.partitioned
    assert VcfIngestRequest.of(request, {}) is request
    assert VcfIngestRequest.of(request, {"workers": 2}).partitioned
    assert VcfIngestRequest.of("cohort.vcf.gz", {"dataset_id": "cohort", "data_dir": "data"}) == request
    with pytest.raises(TypeError):
        VcfIngestRequest.of("cohort.vcf.gz", {"dataset_id": "cohort", "data_dir": "data", "worker": 2})
