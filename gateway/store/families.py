"""Families stored around phenopackets: removing one relative from them (erasure of that person).

A proband's erasure removes their Family with their phenopacket (ON DELETE CASCADE). A relative is not
a phenopacket of their own: erasing the pseudonym of a relative takes them out of every Family that
names them — their relative phenopacket, their pedigree person, the parent links to them and their
file mapping — and a Family left without relatives goes. Plain functions over a caller's connection,
so that this happens in the erasure's own transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.store.tables import phenopacket_families

PARENT_LINKS = ("paternalId", "maternalId")


def erase_person(connection: sa.Connection, person_id: str, dataset_id: str | None = None) -> list[int]:
    """Take `person_id` out of every Family naming them as a relative; the changed Families' phenopacket pks."""
    families = phenopacket_families.c
    # A candidate set by text (the id is a keyed pseudonym: it occurs nowhere by chance), read exactly below.
    query = sa.select(families.phenopacket_pk, families.document).where(
        sa.cast(families.document, sa.Text).contains(f'"{person_id}"', autoescape=True)
    )
    if dataset_id is not None:
        query = query.where(families.dataset_id == dataset_id)
    changed = []
    for pk, document in connection.execute(query).all():
        remaining = without_person(document, person_id)
        if remaining == document:
            continue
        changed.append(pk)
        if not remaining.get("relatives"):
            connection.execute(sa.delete(phenopacket_families).where(families.phenopacket_pk == pk))
        else:
            connection.execute(
                sa.update(phenopacket_families)
                .where(families.phenopacket_pk == pk)
                .values(document=remaining, relatives=len(remaining["relatives"]))
            )
    return changed


def without_person(family: dict[str, Any], person_id: str) -> dict[str, Any]:
    """The Family (stored form: no proband) with one relative taken out wherever they are named."""
    out = dict(family)
    if "relatives" in family:
        out["relatives"] = [r for r in _list(family.get("relatives")) if _subject_id(r) != person_id]
    pedigree = family.get("pedigree")
    if isinstance(pedigree, dict):
        persons = []
        for person in _list(pedigree.get("persons")):
            if isinstance(person, dict) and person.get("individualId") == person_id:
                continue
            if isinstance(person, dict):
                person = {k: v for k, v in person.items() if not (k in PARENT_LINKS and v == person_id)}
            persons.append(person)
        out["pedigree"] = {**pedigree, "persons": persons}
    if "files" in family:
        out["files"] = [_without_file_key(f, person_id) for f in _list(family.get("files"))]
    return out


def _without_file_key(file: Any, person_id: str) -> Any:
    mapping = file.get("individualToFileIdentifiers") if isinstance(file, dict) else None
    if not isinstance(mapping, dict) or person_id not in mapping:
        return file
    return {**file, "individualToFileIdentifiers": {k: v for k, v in mapping.items() if k != person_id}}


def _subject_id(packet: Any) -> Any:
    subject = packet.get("subject") if isinstance(packet, dict) else None
    return subject.get("id") if isinstance(subject, dict) else None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
