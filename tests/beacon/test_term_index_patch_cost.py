"""What a term-index patch touches: a node ingests while it is queried, so a patch must cost the change, not the store.

A replacement re-reads one row: only the position lists of that row's terms are new, every other list is the old
snapshot's own array. The mask cache survives a patch: each carried mask equals one built on the patched snapshot,
and an append shares the old buffer (the old snapshot still reads its own bits). A patch that is slow on a loaded
machine makes a waiting request go to SQL alone, never start a full read of the store.
"""

from __future__ import annotations

import threading

import numpy as np

from gateway.beacon import term_index
from gateway.beacon.individuals import current_snapshot
from gateway.beacon.term_index import Snapshot, patched, snapshot_from
from gateway.services.ingest import ingest_phenopackets
from tests.beacon.test_term_index_patch import _content, _hold_patches, _node, _seeded

TERMS = [f"HP:{i:07d}" for i in range(40)]


def _store(n: int) -> tuple[list[tuple], list[tuple[str, int]]]:
    """n rows (pk, dataset, sex, subject, row version) and their (term, pk) rows: each pk holds 3 of TERMS."""
    rows = [(pk, "d1" if pk % 5 else "d2", "MALE" if pk % 2 else "FEMALE", f"s{pk}", 1) for pk in range(1, n + 1)]
    terms = [(TERMS[(pk * k) % len(TERMS)], pk) for pk in range(1, n + 1) for k in (1, 3, 7)]
    return rows, sorted(set(terms))


def _patch(old: Snapshot, rows: list[tuple], terms: list[tuple[str, int]], changed: list[int]) -> Snapshot | None:
    """`old` patched to the store `rows`/`terms`, told that the pks `changed` were written (as the change log
    tells patch_from)."""
    by_pk = {r[0]: r for r in rows}

    def fetch(wanted: list[int]):
        grouped: dict[str, list[int]] = {}
        for term, pk in terms:
            if pk in wanted:
                grouped.setdefault(term, []).append(pk)
        return [by_pk[pk] for pk in wanted], grouped

    pks = np.array(sorted(by_pk), dtype=np.int64)
    versions = np.array([by_pk[pk][4] for pk in pks.tolist()], dtype=np.int64)
    return patched(old, 2, pks, versions, fetch, reread=np.array(changed, dtype=np.int64))


def _warm_masks(snapshot: Snapshot) -> list:
    """Cache a mask of each kind (datasets, sex, term sets) and return their keys."""
    snapshot.dataset_mask(["d1"])
    snapshot.sex_mask(["MALE"])
    for i in range(0, len(TERMS), 4):
        snapshot.terms_mask(frozenset(TERMS[i : i + 4]))
    return [key for key, _ in snapshot.cached_masks()]


def _built_afresh(snapshot: Snapshot, key) -> np.ndarray:
    """The mask `key` as a snapshot without a cache builds it."""
    bare = Snapshot(
        snapshot.version,
        snapshot.pks,
        snapshot.dataset_codes,
        snapshot.dataset_code,
        snapshot.sex_codes,
        snapshot.sex_code,
        snapshot.postings,
    )
    kind, what = key
    if kind == "terms":
        return bare.terms_mask(what)
    names = {code: name for name, code in (snapshot.dataset_code if kind == "datasets" else snapshot.sex_code).items()}
    chosen = [names[c] for c in what]
    return bare.dataset_mask(chosen) if kind == "datasets" else bare.sex_mask(chosen)


def test_a_replacement_patch_makes_new_lists_only_for_the_terms_of_the_replaced_row():
    rows, terms = _store(500)
    old = snapshot_from(1, rows, terms)
    replaced = 123
    before = {t for t, pk in terms if pk == replaced}
    after = {"HP:0000001", "HP:0000002", "HP:9999999"}  # one shared with others, one new to the store
    rows[replaced - 1] = (replaced, "d1", "FEMALE", f"s{replaced}", 2)
    terms = sorted({(t, pk) for t, pk in terms if pk != replaced} | {(t, replaced) for t in after})
    fresh = _patch(old, rows, terms, [replaced])
    assert fresh is not None
    renewed = {t for t in fresh.postings if fresh.postings[t] is not old.postings.get(t)}
    assert renewed == before | after
    assert _content(fresh) == _content(snapshot_from(2, rows, terms))


def test_an_empty_snapshot_is_patched_with_the_rows_written_since():
    """Was: IndexError (a 500 on the next query) when the change log named rows and the snapshot held none."""
    old = snapshot_from(1, [], [])
    rows, terms = _store(20)
    fresh = _patch(old, rows, terms, [3, 7])
    assert fresh is not None
    assert _content(fresh) == _content(snapshot_from(2, rows, terms))


def test_patched_masks_equal_masks_built_on_the_patched_snapshot():
    rows, terms = _store(500)
    old = snapshot_from(1, rows, terms)
    keys = _warm_masks(old)
    old_bits = {key: np.array(old._masks[key][1]) for key in keys}
    # an append of two rows (one in a new dataset, one of a new sex) and a replacement with other terms and sex
    rows += [(501, "d1", "FEMALE", "s501", 1), (502, "d3", "OTHER_SEX", "s502", 1)]
    rows[9] = (10, "d2", "FEMALE", "s10", 2)
    terms = sorted({(t, pk) for t, pk in terms if pk != 10} | {(TERMS[0], 10), (TERMS[5], 501), (TERMS[9], 502)})
    fresh = _patch(old, rows, terms, [10, 501, 502])
    assert fresh is not None
    assert fresh.cached_masks() == []  # the patch carried nothing yet: each mask is carried when asked for
    for key in keys:
        carried = fresh.held_mask(key)
        assert carried is not None and carried.tolist() == _built_afresh(fresh, key).tolist(), key
        assert np.array_equal(old._masks[key][1], old_bits[key]), key  # the old snapshot reads what it read
    assert [key for key, _ in fresh.cached_masks()] == keys  # kept once carried
    assert _content(fresh) == _content(snapshot_from(2, rows, terms))


def test_an_append_shares_each_mask_buffer_and_a_second_child_copies():
    rows, terms = _store(300)
    old = snapshot_from(1, rows, terms)
    keys = _warm_masks(old)
    one = _patch(old, [*rows, (301, "d1", "MALE", "s301", 1)], [*terms, (TERMS[2], 301)], [301])
    assert one is not None
    for key in keys:
        assert one.held_mask(key) is not None
    assert all(one._masks[key][0] is old._masks[key][0] for key in keys)  # no copy: the new bit written past 300
    # Another patch of the same old snapshot (a snapshot replaced meanwhile): the buffers' room is taken.
    two = _patch(old, [*rows, (301, "d2", "FEMALE", "s301", 1)], [*terms, (TERMS[3], 301)], [301])
    assert two is not None
    for key in keys:
        assert two.held_mask(key) is not None
    assert not any(two._masks[key][0] is old._masks[key][0] for key in keys)
    for child in (one, two):
        for key in keys:
            assert child._masks[key][1].tolist() == _built_afresh(child, key).tolist(), key


def _patches(first: Snapshot, rows: list[tuple], terms: list[tuple[str, int]], n: int) -> list[Snapshot]:
    """`first` and n snapshots patched one from the other: each appends a row, every other one also replaces an old
    row with other terms and sex (its bits inside change)."""
    snapshots = [first]
    for pk in range(len(rows) + 1, len(rows) + 1 + n):
        rows = [*rows, (pk, "d1" if pk % 2 else "d2", "MALE" if pk % 3 else "FEMALE", f"s{pk}", 1)]
        terms = sorted({*terms, (TERMS[pk % len(TERMS)], pk)})
        old_pk = pk % 300 + 1
        if pk % 2:
            rows[old_pk - 1] = (old_pk, "d1", "FEMALE", f"s{old_pk}", 2)
            terms = sorted({(t, p) for t, p in terms if p != old_pk} | {(TERMS[1], old_pk)})
        fresh = _patch(snapshots[-1], rows, terms, [pk, old_pk])
        assert fresh is not None
        snapshots.append(fresh)
    return snapshots


def test_masks_are_carried_across_several_patches_when_first_asked_for():
    """Patches follow one another faster than every mask is used: a mask first asked for MASK_ORIGINS patches later
    is carried through all of them (equal to a build on the newest snapshot); one patch more and the oldest link is
    dropped (the older snapshots may go): a mask no linked snapshot holds is built anew, and equal too."""
    rows, terms = _store(300)
    first = snapshot_from(1, rows, terms)
    keys = _warm_masks(first)
    snapshots = _patches(first, rows, terms, term_index.MASK_ORIGINS)
    newest = snapshots[-1]
    assert all(s.cached_masks() == [] for s in snapshots[1:])  # no patch carried a mask
    for key in keys:
        carried = newest.held_mask(key)
        assert carried is not None and carried.tolist() == _built_afresh(newest, key).tolist(), key
    first = snapshot_from(1, rows, terms)
    keys = _warm_masks(first)
    snapshots = _patches(first, rows, terms, term_index.MASK_ORIGINS + 1)
    newest = snapshots[-1]
    assert snapshots[1]._origin is None and all(newest.held_mask(key) is None for key in keys)
    assert newest.sex_mask(["MALE"]).tolist() == _built_afresh(newest, ("sex", (newest.sex_code["MALE"],))).tolist()


def test_postgres_a_slow_patch_sends_the_waiting_request_to_sql_without_a_full_read(postgres_url, monkeypatch):
    """A patch in flight longer than PATCH_WAIT_SECONDS (a loaded machine): the waiting request answers on SQL,
    and no full read of the store starts (at 100,000 individuals that is seconds of every request on SQL)."""
    monkeypatch.setattr(term_index, "PATCH_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(term_index, "INLINE_BUILD_MAX_ROWS", 0)  # a large store: a read would run in the background
    with _node(postgres_url, "gw_term_slow") as app:
        s, ctx, index, docs, _ = _seeded(app)  # the first read is inline, whatever the store's size
        reads = []
        real_read = index.source.read
        monkeypatch.setattr(index.source, "read", lambda *args: reads.append(1) or real_read(*args))
        gate, entered = _hold_patches(index, monkeypatch)
        ingest_phenopackets(docs[20:21], store=s.store, key=s.key, dataset_id="d1")  # this process's write
        patcher = threading.Thread(target=current_snapshot, args=(ctx,))
        patcher.start()
        try:
            assert entered.wait(timeout=60)
            assert current_snapshot(ctx, exact=True) is None  # waited in vain: SQL for this request
            assert not reads and not index._building
        finally:
            gate.set()
            patcher.join()
