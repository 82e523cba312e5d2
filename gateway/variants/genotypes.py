"""Vectorised GT decoding straight from the sample columns of a VCF line.

The VCF spec puts GT first in FORMAT, so each sample's call sits at the start of its
field. One numpy pass finds the field starts; the common calls (haploid or diploid,
single-digit alleles, "." for missing) are decoded from the bytes at fixed offsets;
anything else (multi-digit alleles, polyploidy, GT not first) goes through a per-sample
parse. Output: an int16 array (samples x ploidy) with -1 for a missing allele and -2
for "no such allele" (a haploid call in a diploid record), like htslib's vector end.
"""

from __future__ import annotations

import re

import numpy as np

from gateway.errors import GatewayError  # the one exception root

_TAB, _COLON, _SLASH, _PIPE, _DOT, _ZERO, _NINE = 9, 58, 47, 124, 46, 48, 57
_SPLIT_GT = re.compile(rb"[/|]")


class GenotypeError(GatewayError, ValueError):
    pass


# Byte → allele value (-1 for ".", -3 for "not an allele character"), and byte classes, as lookup tables.
_ALLELE = np.full(256, -3, dtype=np.int16)
_ALLELE[_ZERO : _NINE + 1] = np.arange(10)
_ALLELE[_DOT] = -1
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[_SLASH, _PIPE]] = True
_FIELD_END = np.zeros(256, dtype=bool)
_FIELD_END[[_COLON, _TAB]] = True


def decode_gt(blob: bytes, n_samples: int, gt_index: int = 0) -> np.ndarray:
    """Alleles of every sample from the tab-separated sample columns of one record (no trailing newline)."""
    if gt_index == 0 and len(blob) + 1 == 4 * n_samples:
        # FORMAT "GT" with every call diploid and single-digit ("0|1"): fixed 4-byte cells.
        cells = np.frombuffer(blob + b"\t", dtype=np.uint8).reshape(n_samples, 4)
        a0 = _ALLELE[cells[:, 0]]
        a1 = _ALLELE[cells[:, 2]]
        if (cells[:, 3] == _TAB).all() and _SEPARATOR[cells[:, 1]].all() and (a0 > -3).all() and (a1 > -3).all():
            return np.column_stack((a0, a1))
    if gt_index == 0:
        buf = np.frombuffer(blob + b"\t\0\0\0\0", dtype=np.uint8)
        ends = np.flatnonzero(buf[: len(blob) + 1] == _TAB)
        if len(ends) != n_samples:
            raise GenotypeError(f"{len(ends)} sample columns, but the header names {n_samples} samples")
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        a0 = _ALLELE[buf[starts]]
        c1 = buf[starts + 1]
        a1 = _ALLELE[buf[starts + 2]]
        diploid = _SEPARATOR[c1] & (a1 > -3) & _FIELD_END[buf[starts + 3]]
        if (a0 > -3).all() and (diploid | _FIELD_END[c1]).all():
            if diploid.all():
                return np.column_stack((a0, a1))
            return np.column_stack((a0, np.where(diploid, a1, -2).astype(np.int16)))
    else:
        fields = blob.split(b"\t")
        if len(fields) != n_samples:
            raise GenotypeError(f"{len(fields)} sample columns, but the header names {n_samples} samples")
    return _decode_slow(blob, n_samples, gt_index)


def _decode_slow(blob: bytes, n_samples: int, gt_index: int) -> np.ndarray:
    calls: list[list[int]] = []
    for field in blob.split(b"\t"):
        parts = field.split(b":")
        gt = parts[gt_index] if gt_index < len(parts) else b"."
        alleles = []
        for allele in _SPLIT_GT.split(gt):
            if allele == b".":
                alleles.append(-1)
            elif allele.isdigit():
                alleles.append(int(allele))
            else:
                raise GenotypeError(f"GT {gt[:20].decode('ascii', 'replace')!r} is not a genotype")
        calls.append(alleles)
    if len(calls) != n_samples:
        raise GenotypeError(f"{len(calls)} sample columns, but the header names {n_samples} samples")
    ploidy = max(len(c) for c in calls) if calls else 2
    out = np.full((n_samples, max(ploidy, 2)), -2, dtype=np.int16)
    for i, call in enumerate(calls):
        out[i, : len(call)] = call
    return out


_HOM_REF_CELLS = np.array([int.from_bytes(b"0|0\t", "little"), int.from_bytes(b"0/0\t", "little")], dtype="<u4")


def decode_calls(blob: bytes, n_samples: int, gt_index: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(indexes of the samples whose call is not homozygous reference, their alleles, called alleles in all).

    Cohort files are mostly "0|0": those cells are recognised as 4-byte words in one pass and
    only the others are decoded, so the cost follows the number of non-reference calls.
    """
    other, alleles, an, _ = decode_calls_counted(blob, n_samples, gt_index)
    return other, alleles, an


CalledExceptions = tuple[np.ndarray, np.ndarray]  # samples whose call has other than 2 called alleles, and how many


def decode_calls_counted(
    blob: bytes, n_samples: int, gt_index: int = 0
) -> tuple[np.ndarray, np.ndarray, int, CalledExceptions]:
    """decode_calls, plus the samples with other than 2 called alleles (for exact AN after an erasure)."""
    if gt_index == 0 and len(blob) + 1 == 4 * n_samples:
        padded = blob + b"\t"
        words = np.frombuffer(padded, dtype="<u4")
        other = np.flatnonzero((words != _HOM_REF_CELLS[0]) & (words != _HOM_REF_CELLS[1]))
        cells = np.frombuffer(padded, dtype=np.uint8).reshape(n_samples, 4)[other]
        a0 = _ALLELE[cells[:, 0]]
        a1 = _ALLELE[cells[:, 2]]
        if (cells[:, 3] == _TAB).all() and _SEPARATOR[cells[:, 1]].all() and (a0 > -3).all() and (a1 > -3).all():
            alleles = np.column_stack((a0, a1)) if len(other) else np.empty((0, 2), dtype=np.int16)
            called = (a0 >= 0).view(np.int8) + (a1 >= 0).view(np.int8)
            odd = np.flatnonzero(called != 2)
            an = 2 * n_samples - (len(other) * 2 - int(called.sum()))
            return other.astype("<u4"), alleles, an, (other[odd].astype("<u4"), called[odd].astype(np.uint8))
    full = decode_gt(blob, n_samples, gt_index)
    other = np.flatnonzero(((full != 0) & (full != -2)).any(axis=1))
    called = (full >= 0).sum(axis=1)
    odd = np.flatnonzero(called != 2)
    return other.astype("<u4"), full[other], int(called.sum()), (odd.astype("<u4"), called[odd].astype(np.uint8))


# AN, AC, carrier indexes, zygosity codes, max allele, samples with other than 2 called alleles
BiallelicCalls = tuple[int, int, np.ndarray, np.ndarray, int, CalledExceptions]


def decode_biallelic_batch(blobs: list[bytes], n_samples: int, het: int, hom: int) -> list[BiallelicCalls | None]:
    """Decode many "GT"-only, fixed-width diploid records at once (one numpy pass per step for the whole batch).

    Amortises numpy's per-call cost over the batch; an entry is None when its record is not of that shape
    (the caller then decodes it alone). The max allele lets the caller reject GTs naming a missing ALT.
    """
    m = len(blobs)
    cells = np.frombuffer(b"\t".join(blobs) + b"\t", dtype=np.uint8).reshape(m, n_samples, 4)
    a0 = _ALLELE[cells[:, :, 0]]
    a1 = _ALLELE[cells[:, :, 2]]
    row_ok = (_SEPARATOR[cells[:, :, 1]] & (cells[:, :, 3] == _TAB) & (a0 > -3) & (a1 > -3)).all(axis=1)
    called = (a0 >= 0).view(np.int8) + (a1 >= 0).view(np.int8)
    an = called.sum(axis=1)
    odd_rows, odd_cols = np.nonzero(called != 2)
    odd_counts = called[odd_rows, odd_cols].astype(np.uint8)
    odd_cols = odd_cols.astype("<u4")
    odd_bounds = np.searchsorted(odd_rows, np.arange(m + 1)).tolist()
    count = (a0 == 1).view(np.int8) + (a1 == 1).view(np.int8)
    ac = count.sum(axis=1)
    max_allele = np.maximum(a0.max(axis=1), a1.max(axis=1))
    rows, cols = np.nonzero(count)
    zygosity = np.where(count[rows, cols] == 2, hom, het).astype(np.uint8)
    cols = cols.astype("<u4")
    bounds = np.searchsorted(rows, np.arange(m + 1)).tolist()
    an_list, ac_list, max_list, ok_list = an.tolist(), ac.tolist(), max_allele.tolist(), row_ok.tolist()
    return [
        (
            an_list[i],
            ac_list[i],
            cols[bounds[i] : bounds[i + 1]],
            zygosity[bounds[i] : bounds[i + 1]],
            max_list[i],
            (odd_cols[odd_bounds[i] : odd_bounds[i + 1]], odd_counts[odd_bounds[i] : odd_bounds[i + 1]]),
        )
        if ok_list[i]
        else None
        for i in range(m)
    ]
