"""Pages of the stored sets, decoded without decoding the whole set.

A variant's carriers are stored as one `encode_set` blob (a uint32 list when sparse, a bitmap over the samples when
dense) and its zygosity codes as one `pack_codes` blob in the same order (layout.py). A record shows at most a page of
them, and a cross-link pages over them: these functions turn only that page into numbers, so building a page costs the
page (and, for a bitmap, one vectorised pass over its bytes), not one Python object per carrier of the cohort.
"""

from __future__ import annotations

import numpy as np

_EMPTY = np.empty(0, dtype="<u4")


def set_size(blob: bytes) -> int:
    """How many members an encode_set blob holds (no member decoded)."""
    if blob[:1] == b"B":
        return int.from_bytes(blob[1:], "little").bit_count()
    return max(len(blob) - 1, 0) // 4


def set_page(blob: bytes, skip: int = 0, limit: int | None = None) -> np.ndarray:
    """Members skip … skip+limit-1 (ascending) of an encode_set blob."""
    if limit is not None and limit <= 0:
        return _EMPTY
    if blob[:1] != b"B":
        n = max(len(blob) - 1, 0) // 4
        first = min(skip, n)
        count = n - first if limit is None else min(limit, n - first)
        return np.frombuffer(blob, dtype="<u4", count=count, offset=1 + 4 * first) if count > 0 else _EMPTY
    data = np.frombuffer(blob, dtype=np.uint8, offset=1)
    if limit is None:
        members = np.flatnonzero(np.unpackbits(data, bitorder="little")).astype("<u4")
        return members[skip:]
    return _bitmap_page(data, skip, limit)


def _bitmap_page(data: np.ndarray, skip: int, limit: int) -> np.ndarray:
    """Members skip … skip+limit-1 of a bitmap, read from its start in growing blocks of bytes: a first page of
    100 carriers reads a few hundred bytes however many samples the bitmap covers."""
    found: list[np.ndarray] = []
    seen = position = 0
    step = 64
    while position < len(data) and limit > 0:
        block = data[position : position + step]
        members = np.flatnonzero(np.unpackbits(block, bitorder="little"))
        if seen + len(members) > skip:
            taken = members[max(skip - seen, 0) :][:limit] + 8 * position
            found.append(taken)
            limit -= len(taken)
        seen += len(members)
        position += step
        step = min(step * 2, 1 << 16)
    return np.concatenate(found).astype("<u4") if found else _EMPTY


def codes_page(blob: bytes, skip: int, count: int) -> np.ndarray:
    """Zygosity codes skip … skip+count-1 of a pack_codes blob (or of an unpacked one, written before packing)."""
    if count <= 0:
        return np.empty(0, dtype=np.uint8)
    if blob[:1] != b"P":
        return np.frombuffer(blob, dtype=np.uint8)[skip : skip + count]
    first, last = skip // 4, (skip + count + 3) // 4
    packed = np.frombuffer(blob, dtype=np.uint8, offset=1)[first:last]
    codes = (packed[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8) & 3).reshape(-1)
    return codes[skip - 4 * first : skip - 4 * first + count]


def positions_of(blob: bytes, samples: np.ndarray) -> np.ndarray:
    """The positions in an encode_set blob (as codes_page counts them) of those of `samples` (ascending uint32) it
    holds, found without decoding the set: a binary search in a list; in a bitmap a bit test, and the rank from
    one vectorised popcount of the bytes up to the last one held (an erasure's delta: pending.py)."""
    if blob[:1] != b"B":
        members = np.frombuffer(blob, dtype="<u4", offset=1) if len(blob) > 1 else _EMPTY
        at = np.searchsorted(members, samples)
        held = at < len(members)
        held[held] = members[at[held]] == samples[held]
        return at[held]
    data = np.frombuffer(blob, dtype=np.uint8, offset=1)
    byte = (samples >> 3).astype(np.int64)
    inside = byte < len(data)
    held = np.zeros(len(samples), dtype=bool)
    held[inside] = (data[byte[inside]] >> (samples[inside] & 7).astype(np.uint8)) & 1 == 1
    found = samples[held].astype(np.int64)
    if not len(found):
        return found
    ranks = np.cumsum(np.unpackbits(data[: int(found[-1] >> 3) + 1], bitorder="little"))
    return ranks[found] - 1
