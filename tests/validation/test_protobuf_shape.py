"""gateway.validation.protobuf_shape vouches only for what protobuf's strict ParseDict accepts: real
phenopackets take the fast path, and no mutation of them that ParseDict rejects is vouched for;
the validation's findings (code, pointer) are ParseDict's as before."""

from __future__ import annotations

import copy
import json
import random

import phenopackets
import pytest
from google.protobuf import json_format

from gateway.validation import validate_phenopacket
from gateway.validation.protobuf_shape import plainly_parses

from .json_places import holder, places

PACKET = phenopackets.Phenopacket.DESCRIPTOR


def _strict(doc) -> bool:
    try:
        json_format.ParseDict(doc, phenopackets.Phenopacket(), ignore_unknown_fields=False)
    except Exception:
        return False
    return True


def _real(phenopacket_dir):
    files = sorted(phenopacket_dir.glob("*/PMID_*.json"))
    assert len(files) == 300
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def _set(doc, path, value):
    holder(doc, path[:-1])[path[-1]] = value


# Replacements of one value that ParseDict may or may not accept: the fast path must never say
# yes where ParseDict says no.
ODD_VALUES = [
    None,
    1,
    -1,
    2**70,
    "12",
    "-3",
    "1e3",
    " 7",
    str(2**70),
    1.5,
    float("nan"),
    True,
    "",
    "x",
    "NOT_AN_ENUM",
    "\ud800",
    [],
    {},
    ["x"],
    [{}],
]


def test_real_phenopackets_take_the_fast_path(phenopacket_dir):
    assert all(plainly_parses(doc, PACKET) for doc in _real(phenopacket_dir))


def test_no_mutation_protobuf_rejects_is_vouched_for(phenopacket_dir):
    rng = random.Random(11)
    docs = _real(phenopacket_dir)
    tried = rejected = 0
    for doc in rng.sample(docs, 40):
        spots = list(places(doc))[1:]
        for path, value in rng.sample(spots, min(25, len(spots))):
            mutations = [lambda d, p=path, v=v: _set(d, p, v) for v in rng.sample(ODD_VALUES, 4)]
            parent = path[:-1]
            holder = doc
            for step in parent:
                holder = holder[step]
            if isinstance(holder, dict):
                key = path[-1]
                mutations.append(lambda d, p=parent: _set(d, (*p, "unknownField"), 1) if p else d.update(x=1))
                # the same field under its other spelling (camelCase and snake_case both name it)
                snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in str(key))
                if snake != key:
                    mutations.append(lambda d, p=parent, s=snake, v=value: _set(d, (*p, s), copy.deepcopy(v)))
            for mutate in mutations:
                changed = copy.deepcopy(doc)
                mutate(changed)
                tried += 1
                if not _strict(changed):
                    rejected += 1
                    assert not plainly_parses(changed, PACKET), (path, changed)
    assert tried > 1000 and rejected > 300  # the mutations do reach protobuf's refusals


@pytest.mark.parametrize(
    ("change", "code", "location"),
    [
        (lambda d: d["subject"].update(nickname="x"), "unknown-field", "/subject/nickname"),
        (lambda d: d["phenotypicFeatures"][0].update(excluded="yes"), None, "/phenotypicFeatures/0/excluded"),
        (lambda d: d["subject"].update(sex="SOMETIMES"), None, "/subject/sex"),
        (lambda d: d["metaData"].update(created="yesterday"), None, "/metaData/created"),
    ],
)
def test_rejections_still_point_at_the_element(phenopacket_dir, change, code, location):
    doc = next(d for d in _real(phenopacket_dir) if d.get("phenotypicFeatures") and "sex" in d.get("subject", {}))
    doc = copy.deepcopy(doc)
    change(doc)
    assert not plainly_parses(doc, PACKET)
    errors = [i for i in validate_phenopacket(doc, target="input") if i.is_error]
    assert errors and any(i.location == location for i in errors), [(i.code, i.location) for i in errors]
    if code is not None:
        assert any(i.code == code and i.location == location for i in errors)


def test_two_members_of_one_oneof_are_not_vouched_for():
    doc = {"id": "p", "subject": {"id": "s", "timeAtLastEncounter": {"age": {"iso8601duration": "P1Y"}}}}
    assert plainly_parses(doc, PACKET) and _strict(doc)
    both = copy.deepcopy(doc)
    both["subject"]["timeAtLastEncounter"]["timestamp"] = "2020-01-01T00:00:00Z"
    assert not _strict(both) and not plainly_parses(both, PACKET)
