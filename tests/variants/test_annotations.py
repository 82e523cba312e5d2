"""ANN (SnpEff) and CSQ (VEP) parsing, and gene / protein-change queries through the store."""

from __future__ import annotations

from gateway.variants.annotations import annotation_format, parse_annotations, short_protein_change
from gateway.variants.genotypes import decode_biallelic_batch, decode_calls, decode_gt
from gateway.variants.ingest import ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore

from .vcfgen import ANN_HEADER, header

CSQ_HEADER = (
    '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
    'Format: Allele|Consequence|IMPACT|SYMBOL|Gene|HGVSp">'
)


def test_short_protein_change():
    assert short_protein_change("p.Val600Glu") == "V600E"
    assert short_protein_change("p.(Arg12Cys)") == "R12C"
    assert short_protein_change("p.Gly13=") == "G13G"
    assert short_protein_change("p.Val600_Lys601delinsGlu") is None


def test_ann_and_csq_select_the_allele():
    ann = annotation_format(ANN_HEADER)
    value = "T|missense_variant|MODERATE|BRAF|BRAF|transcript|NM_004333.6|protein_coding|15/18|c.1799T>A|p.Val600Glu,C|synonymous_variant|LOW|KRAS|KRAS|transcript|NM_1|protein_coding|1/2|c.1A>C|p.Gly12="
    assert parse_annotations(ann, value, "A", "T", 2) == (["BRAF"], ["p.Val600Glu"], ["SO:0001583"])
    csq = annotation_format(CSQ_HEADER)
    value = "-|frameshift_variant&splice_region_variant|HIGH|TP53|ENSG1|ENSP1:p.Arg175fs,G|missense_variant|MODERATE|EGFR|ENSG2|ENSP2:p.Leu858Arg"
    assert parse_annotations(csq, value, "AC", "A", 2) == (["TP53"], ["p.Arg175fs"], ["SO:0001589", "SO:0001630"])
    assert parse_annotations(csq, value, "A", "G", 2) == (["EGFR"], ["p.Leu858Arg"], ["SO:0001583"])


def test_genotype_decoders_agree():
    blob = b"0|0\t0/1\t1|1\t./.\t0\t1:35\t10/2\t.|1"
    slow = decode_gt(blob, 8)
    assert slow.tolist() == [[0, 0], [0, 1], [1, 1], [-1, -1], [0, -2], [1, -2], [10, 2], [-1, 1]]
    other, alleles, an = decode_calls(blob, 8)
    assert other.tolist() == [1, 2, 3, 5, 6, 7] and an == 11
    assert alleles.tolist() == [slow[i].tolist() for i in other]
    batch = decode_biallelic_batch([b"0|0\t0/1\t1|1\t./.", b"0|1\t0|2\t1/.\t0|0"], 4, 1, 2)
    assert batch[0][0:2] == (6, 3) and batch[0][2].tolist() == [1, 2] and batch[0][3].tolist() == [1, 2]
    assert batch[1][4] == 2  # the max allele lets the caller reject a GT naming a missing ALT


def test_gene_and_protein_queries(tmp_path):
    lines = header(["A", "B"], extra=[CSQ_HEADER.replace("CSQ", "CSQ_UNUSED")])
    body = [
        "chr1\t100\trs1\tT\tA\t.\tPASS\tANN=A|missense_variant|MODERATE|BRAF|BRAF|transcript|NM_1|protein_coding|15/18|c.1799T>A|p.Val600Glu\tGT\t0/1\t0/0",
        "chr1\t200\t.\tG\tC,T\t.\tPASS\tANN=C|synonymous_variant|LOW|BRAF|BRAF|transcript|NM_1|protein_coding|1/2|c.1G>C|,T|stop_gained|HIGH|TP53|TP53|transcript|NM_2|protein_coding|1/2|c.1G>T|p.Arg213Ter\tGT\t1/2\t2/2",
    ]
    path = tmp_path / "ann.vcf"
    path.write_text("\n".join(lines + body) + "\n")
    ingest_vcf(path, dataset_id="ann", data_dir=tmp_path / "data")
    store = VariantStore(tmp_path / "data")
    braf, n = store.search(VariantQuery(gene_id="BRAF"))
    assert n == 2 and {(h.start, h.alternate_bases) for h in braf} == {(99, "A"), (199, "C")}
    for change in ("p.Val600Glu", "V600E"):
        (hit,), _ = store.search(VariantQuery(gene_id="BRAF", aa_change=change))
        assert hit.identifiers == ("rs1",) and hit.molecular_effects == ("SO:0001583",)
    (tp53,), _ = store.search(VariantQuery(gene_id="TP53"))
    assert (tp53.alternate_bases, tp53.aa_changes, tp53.allele_count, tp53.carrier_count) == (
        "T",
        ("p.Arg213Ter",),
        3,
        2,
    )
    assert store.carrier_count(VariantQuery(gene_id="BRAF")) == 1
    store.close()
