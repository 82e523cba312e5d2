"""A dataset's variants as a sites-only VCF 4.3, streamed page by page from the variant store.

Sites with their allele counts (AC, AN) and, for symbolic alleles, END; no genotypes and no sample columns:
the Beacon dataset handover (gateway.beacon.handovers) to this export is for CONTROLLED callers. Only
observed sites are listed (the store's rule: an alternate allele counted), in the store's order.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.variants.query import VariantQuery

PAGE = 2000


def vcf_lines(store, dataset_id: str, source: str) -> Iterator[str]:
    """The VCF, one line (with its newline) at a time; `source` names the node in the header."""
    hits, total = store.search(VariantQuery(dataset_ids=(dataset_id,)), skip=0, limit=PAGE)
    assembly = hits[0].assembly if hits else ""
    yield "##fileformat=VCFv4.3\n"
    yield f"##source={source}\n"
    if assembly:
        yield f"##reference={assembly}\n"
    yield '##INFO=<ID=AC,Number=A,Type=Integer,Description="Alternate allele count in the dataset">\n'
    yield '##INFO=<ID=AN,Number=1,Type=Integer,Description="Number of called alleles in the dataset">\n'
    yield '##INFO=<ID=END,Number=1,Type=Integer,Description="End position of a symbolic allele">\n'
    yield "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    skip = 0
    while hits:
        for hit in hits:
            yield _line(hit)
        skip += len(hits)
        if skip >= total:
            break
        hits, total = store.search(VariantQuery(dataset_ids=(dataset_id,)), skip=skip, limit=PAGE)


def _line(hit) -> str:
    info = f"AC={hit.allele_count};AN={hit.allele_number}"
    if hit.alternate_bases.startswith("<"):
        info += f";END={hit.end}"  # the store keeps END as read (0-based exclusive = 1-based inclusive)
    identifiers = ";".join(hit.identifiers) or "."
    fields = [
        hit.reference_name,
        str(hit.start + 1),
        identifiers,
        hit.reference_bases,
        hit.alternate_bases,
        ".",
        "PASS",
        info,
    ]
    return "\t".join(fields) + "\n"
