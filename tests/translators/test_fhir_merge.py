"""translators.fhir.merge: what it merges as one translation would, and where it declines (None).
The golden test over every real Bundle is tests/store/test_fhir_resources.py; these are the edges."""

from __future__ import annotations

from translators.fhir.merge import Join, Part, merge_or_join, merge_parts

META = {"created": "2026-11-30T12:00:00Z", "createdBy": "t", "phenopacketSchemaVersion": "2.0.2", "resources": []}


def _base(**subject):
    return {"id": "phenopacket-1", "subject": {"id": "pid-1", **subject}, "metaData": dict(META)}


def _part(sources, **elements):
    packet = {**_base(), **elements}
    if "subject" in elements:
        packet["subject"] = {"id": "pid-1", **elements["subject"]}
    return Part(packet, tuple(sources))


def _disease(term, **more):
    return {"term": {"id": term, "label": term}, **more}


def test_the_earlier_condition_wins_a_shared_disease_and_takes_the_later_ones_missing_elements():
    later = _part([("Condition", "b")], diseases=[_disease("ORPHA:558", onset={"age": {"iso8601duration": "P30Y"}})])
    earlier = _part([("Condition", "a")], diseases=[_disease("ORPHA:558", primarySite={"id": "X:1", "label": "x"})])
    merged = merge_parts(_base(), [later, earlier])
    assert merged["diseases"] == [
        _disease("ORPHA:558", primarySite={"id": "X:1", "label": "x"}, onset={"age": {"iso8601duration": "P30Y"}})
    ]


def test_a_clash_with_a_part_of_several_conditions_is_left_to_one_translation():
    several = _part([("Condition", "a"), ("Condition", "c")], diseases=[_disease("ORPHA:558")])
    one = _part([("Condition", "b")], diseases=[_disease("ORPHA:558", excluded=False)])
    assert merge_parts(_base(), [several, one]) is None


def test_the_latest_age_at_last_encounter_and_one_vital_status():
    young = _part([("Observation", "a")], subject={"timeAtLastEncounter": {"age": {"iso8601duration": "P29Y"}}})
    old = _part([("Procedure", "b")], subject={"timeAtLastEncounter": {"age": {"iso8601duration": "P31Y"}}})
    dead = _part([("Condition", "c")], subject={"vitalStatus": {"status": "DECEASED"}})
    merged = merge_parts(_base(), [young, old, dead])
    assert merged["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P31Y"}}
    assert merged["subject"]["vitalStatus"] == {"status": "DECEASED"}
    alive = _part([("Observation", "d")], subject={"vitalStatus": {"status": "ALIVE"}})
    assert merge_parts(_base(), [dead, alive]) is None  # two parts say: which came last is not known here


def test_variants_linked_to_no_condition_stay_one_interpretation():
    def unlinked(n):
        genomic = {"subjectOrBiosampleId": "pid-1", "interpretationStatus": "UNKNOWN_STATUS", "n": n}
        diagnosis = {"disease": {"id": "MONDO:0000001", "label": "disease"}, "genomicInterpretations": [genomic]}
        return {"id": "interpretation-x", "progressStatus": "UNKNOWN_PROGRESS", "diagnosis": diagnosis}

    first = _part([("Observation", "a")], interpretations=[unlinked(1)])
    second = _part([("Observation", "b")], interpretations=[unlinked(2)])
    (merged,) = merge_parts(_base(), [first, second])["interpretations"]
    assert [g["n"] for g in merged["diagnosis"]["genomicInterpretations"]] == [1, 2]
    assert first.phenopacket["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["n"] == 1
    assert len(first.phenopacket["interpretations"][0]["diagnosis"]["genomicInterpretations"]) == 1  # untouched


def test_what_the_merge_cannot_order_it_names_the_parts_to_translate_as_one():
    several = _part([("Condition", "a"), ("Condition", "c")], diseases=[_disease("ORPHA:558")])
    other = _part([("Procedure", "p")])
    one = _part([("Condition", "b")], diseases=[_disease("ORPHA:558", excluded=False)])
    assert merge_or_join(_base(), [several, other, one]) == Join(frozenset({0, 2}))
    dead = _part([("Condition", "c")], subject={"vitalStatus": {"status": "DECEASED"}})
    alive = _part([("Observation", "d")], subject={"vitalStatus": {"status": "ALIVE"}})
    assert merge_or_join(_base(), [other, dead, alive]) == Join(frozenset({1, 2}))


def test_two_versions_of_one_code_system_from_interleaved_parts_are_joined():
    from mappings import load_registry

    icd = load_registry().system_for_prefix("ICD10GM")
    assert icd is not None

    def naming(sources, version):
        packet = {**_base(), "metaData": {**META, "resources": [icd.resource(version)]}}
        return Part(packet, tuple(sources))

    # Condition a … Observation z names 2021, Condition f (between them) names 2015: who came first is inside the first part
    first = naming([("Condition", "a"), ("Observation", "z")], "2021")
    between = naming([("Condition", "f")], "2015")
    assert merge_or_join(_base(), [first, _part([("Procedure", "p")]), between]) == Join(frozenset({0, 2}))
    # in order: decided without a joint translation
    later = naming([("Procedure", "x")], "2015")
    merged = merge_or_join(_base(), [first, later])
    assert isinstance(merged, dict) and merged["metaData"]["resources"] == [icd.resource("2021")]


def test_a_sender_naming_the_registrys_own_version_first_wins():
    """The translator keeps the first version a sender named, even when it is the registry's own:
    a part that names it (named_versions) counts, one that names nothing does not."""
    from mappings import load_registry

    icd = load_registry().system_for_prefix("ICD10GM")
    assert icd is not None

    def naming(sources, version, named):
        packet = {**_base(), "metaData": {**META, "resources": [icd.resource(version)]}}
        return Part(packet, tuple(sources), frozenset({"ICD10GM"}) if named else frozenset())

    registry_version = naming([("Condition", "a")], None, True)  # named explicitly, equal to the registry's
    later = naming([("Procedure", "x")], "2015", True)
    merged = merge_or_join(_base(), [registry_version, later], frozenset())
    assert isinstance(merged, dict) and merged["metaData"]["resources"] == [icd.resource()]
    unnamed = naming([("Condition", "a")], None, False)  # the registry's, because nobody named one
    merged = merge_or_join(_base(), [unnamed, later], frozenset())
    assert isinstance(merged, dict) and merged["metaData"]["resources"] == [icd.resource("2015")]


def test_a_disease_knows_its_conditions_so_parts_of_several_merge_unless_they_interleave():
    def made(sources, made_from, *diseases):
        packet = {**_base(), "diseases": list(diseases)}
        return Part(packet, tuple(sources), diseases_from=made_from)

    t1, t2, t3 = ({"id": f"TNM:{n}", "label": f"t{n}"} for n in (1, 2, 3))
    # Conditions a and b (ORPHA:558) with c (another disease) in one part; d (ORPHA:558) later, with its TNM findings
    early = made(
        [("Condition", "a"), ("Condition", "b"), ("Condition", "c"), ("Observation", "x")],
        ((("Condition", "a"), ("Condition", "b")), (("Condition", "c"),)),
        _disease("ORPHA:558", clinicalTnmFinding=[t1, t2]),
        _disease("ORPHA:98"),
    )
    late = made(
        [("Condition", "d"), ("Observation", "y")],
        ((("Condition", "d"),),),
        _disease("ORPHA:558", onset={"age": {"iso8601duration": "P30Y"}}, clinicalTnmFinding=[t2, t3]),
    )
    merged = merge_or_join(_base(), [late, early])
    assert isinstance(merged, dict)
    assert merged["diseases"] == [
        _disease("ORPHA:558", clinicalTnmFinding=[t1, t2, t3], onset={"age": {"iso8601duration": "P30Y"}}),
        _disease("ORPHA:98"),
    ]
    assert early.phenopacket["diseases"][0]["clinicalTnmFinding"] == [t1, t2]  # the cached part is untouched
    # b comes between a and c of one part's disease: which Condition's elements win is not known here
    between = made([("Condition", "b2")], ((("Condition", "b2"),),), _disease("ORPHA:558"))
    wide = made(
        [("Condition", "a"), ("Condition", "c")], ((("Condition", "a"), ("Condition", "c")),), _disease("ORPHA:558")
    )
    assert merge_or_join(_base(), [wide, between]) == Join(frozenset({0, 1}))


def test_two_parts_that_set_the_same_vital_status_agree_in_any_order():
    dead = {"status": "DECEASED", "causeOfDeath": {"id": "ICD10GM:C56", "label": "C56"}}
    first = _part([("Observation", "a")], subject={"vitalStatus": dead})
    second = _part([("Observation", "b")], subject={"vitalStatus": dead})
    merged = merge_or_join(_base(), [second, first])
    assert isinstance(merged, dict) and merged["subject"]["vitalStatus"] == dead


def test_a_version_named_at_a_known_place_needs_no_joint_translation():
    from mappings import load_registry

    icd = load_registry().system_for_prefix("ICD10GM")
    assert icd is not None

    def naming(sources, version, at):
        packet = {**_base(), "metaData": {**META, "resources": [icd.resource(version)]}}
        return Part(packet, tuple(sources), versions_from=(("ICD10GM", at),) if at else ())

    # Condition a (2021) and Observation z of one part, Condition f (2015) between them: a named it first
    first = naming([("Condition", "a"), ("Observation", "z")], "2021", (0, "Condition", "a"))
    between = naming([("Condition", "f")], "2015", (0, "Condition", "f"))
    merged = merge_or_join(_base(), [between, first])
    assert isinstance(merged, dict) and merged["metaData"]["resources"] == [icd.resource("2021")]
    # named by Observation z (after f): f's version is the first
    late = naming([("Condition", "a"), ("Observation", "z")], "2021", (1, "Observation", "z"))
    merged = merge_or_join(_base(), [late, between])
    assert isinstance(merged, dict) and merged["metaData"]["resources"] == [icd.resource("2015")]


def test_a_feature_knows_the_resource_that_made_it_so_parts_of_several_merge_in_the_translators_order():
    def made(sources, places, *features):
        packet = {**_base(), "phenotypicFeatures": list(features)}
        return Part(packet, tuple(sources), features_from=tuple(places))

    at = {"Condition": 0, "Observation": 1}  # assemble.PHASE: Conditions first, then Observations

    def place(rtype, rid):
        return (at[rtype], rtype, rid)

    mild, severe = {"id": "HP:0012825", "label": "Mild"}, {"id": "HP:0012828", "label": "Severe"}
    onset = {"age": {"iso8601duration": "P29Y"}}
    tall = {"id": "HP:0000098", "label": "Tall stature"}
    # a Condition (tall stature, with its onset) and the assessment its evidence names: one part of two sources
    visit = made(
        [("Condition", "c2"), ("Observation", "o2")],
        [place("Condition", "c2"), place("Observation", "o2")],
        {"type": tall, "onset": onset},
        {"type": tall, "excluded": True, "severity": mild},
    )
    # an earlier-named assessment of the same finding, present and severe: an Observation comes after every Condition
    assessed = made([("Observation", "o1")], [place("Observation", "o1")], {"type": tall, "severity": severe})
    merged = merge_or_join(_base(), [assessed, visit])
    assert isinstance(merged, dict)
    # present: the Condition's (its phase comes first), then the Observation's, which says more than it (a
    # severity): both kept, nothing merged (phenotypes.covers); excluded: the one there is
    assert merged["phenotypicFeatures"] == [
        {"type": tall, "onset": onset},
        {"type": tall, "severity": severe},
        {"type": tall, "excluded": True, "severity": mild},
    ]
    # an Observation between two of one part's sources of the same finding: which one the translator read first
    # decides, and the element's own place says it
    two = made(
        [("Observation", "o0"), ("Observation", "o9")],
        [place("Observation", "o0")],
        {"type": tall, "severity": mild},
    )
    merged = merge_or_join(_base(), [assessed, two])
    assert isinstance(merged, dict)
    assert merged["phenotypicFeatures"] == [{"type": tall, "severity": mild}, {"type": tall, "severity": severe}]
    # a repeat that says nothing more than the one read before it is dropped, whichever part it comes from
    bare = made([("Observation", "o5")], [place("Observation", "o5")], {"type": tall})
    merged = merge_or_join(_base(), [bare, assessed])
    assert isinstance(merged, dict) and merged["phenotypicFeatures"] == [{"type": tall, "severity": severe}]
    merged = merge_or_join(
        _base(), [assessed, made([("Observation", "o0")], [place("Observation", "o0")], {"type": tall})]
    )
    assert isinstance(merged, dict)
    assert merged["phenotypicFeatures"] == [{"type": tall}, {"type": tall, "severity": severe}]
    # a feature from a contained resource has no place of its own: one translation of both parts decides
    contained = made([("Observation", "o0")], [None], {"type": tall})
    assert merge_or_join(_base(), [assessed, contained]) == Join(frozenset({0, 1}))
    # parts translated without provenance keep the old rule: a part of several sources cannot be ordered
    unknown = Part({**_base(), "phenotypicFeatures": [{"type": tall}]}, (("Condition", "c"), ("Observation", "o")))
    assert merge_or_join(_base(), [assessed, unknown]) == Join(frozenset({0, 1}))
