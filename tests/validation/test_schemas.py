"""The project's own JSON Schemas: well-formed, loadable, and never looser than the protobuf definitions."""

from __future__ import annotations

import json

import jsonschema
import phenopackets
import pytest

import schemas
from gateway.validation.phenopacket import _DESCRIPTORS


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_registry_lists_every_schema_file():
    assert {"phenopacket-v2", "family-v2", "cohort-v2", "fhir-r4-resource-type"} <= set(schemas.schema_names())


@pytest.mark.parametrize("name", schemas.schema_names())
def test_each_schema_is_valid_draft_2020_12_and_compiles(name):
    doc = schemas.load_schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)
    assert schemas.validator(name) is schemas.validator(name)  # compiled once


def test_load_schema_returns_a_private_copy():
    schemas.load_schema("phenopacket-v2")["$defs"].clear()
    assert "OntologyClass" in schemas.load_schema("phenopacket-v2")["$defs"]


def test_unknown_schema_name_is_a_clear_error():
    with pytest.raises(KeyError, match="no schema named 'nope'"):
        schemas.load_schema("nope")


def test_schema_issues_locate_missing_fields_like_pxf(pxf_dir):
    doc = load(pxf_dir / "validate" / "base" / "missing-fields.json")
    issues = schemas.schema_issues("phenopacket-v2", doc)
    assert [(i.code, i.location) for i in issues] == [
        ("missing-field", "/id"),
        ("missing-field", "/subject/id"),
        ("missing-field", "/phenotypicFeatures/0/type/label"),
    ]
    assert issues[2].message == "`phenotypicFeatures[0].type.label` is missing but it is required"
    assert all(i.target == "output" and i.is_error for i in issues)
    assert schemas.schema_issues("phenopacket-v2", doc, target="input")[0].target == "input"


def test_pointer_escapes_rfc6901():
    assert schemas.pointer(["a/b", 0, "c~d"]) == "/a~1b/0/c~0d"
    assert schemas.dotted(["phenotypicFeatures", 0, "type", "label"]) == "phenotypicFeatures[0].type.label"


def _short_name_index() -> dict:
    by_short: dict = {}
    for full_name, descriptor in _DESCRIPTORS.items():
        by_short.setdefault(full_name.rsplit(".", 1)[1], descriptor)
    return by_short


def test_every_schema_property_is_a_protobuf_field():
    """A typo in the schema would silently accept wrong member names: every property must exist in protobuf."""
    defs = schemas.load_schema("phenopacket-v2")["$defs"]
    by_short = _short_name_index()
    checked = 0
    for name, definition in defs.items():
        descriptor = by_short.get("Phenopacket" if name in ("PhenopacketBody", "NestedPhenopacket") else name)
        if descriptor is None or "properties" not in definition:
            continue
        json_names = {f.json_name for f in descriptor.fields}
        assert set(definition["properties"]) <= json_names, name
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("path", "enum_type"),
    [
        (("Sex",), phenopackets.Sex),
        (("KaryotypicSex",), phenopackets.KaryotypicSex),
        (("VitalStatus", "properties", "status"), phenopackets.VitalStatus.Status),
        (("Interpretation", "properties", "progressStatus"), phenopackets.Interpretation.ProgressStatus),
        (
            ("GenomicInterpretation", "properties", "interpretationStatus"),
            phenopackets.GenomicInterpretation.InterpretationStatus,
        ),
        (
            ("VariantInterpretation", "properties", "acmgPathogenicityClassification"),
            phenopackets.AcmgPathogenicityClassification,
        ),
        (("VariantInterpretation", "properties", "therapeuticActionability"), phenopackets.TherapeuticActionability),
        (("VariationDescriptor", "properties", "moleculeContext"), phenopackets.MoleculeContext),
        (("Treatment", "properties", "drugType"), phenopackets.DrugType),
        (("TherapeuticRegimen", "properties", "regimenStatus"), phenopackets.TherapeuticRegimen.RegimenStatus),
        (("Person", "properties", "affectedStatus"), phenopackets.Pedigree.Person.AffectedStatus),
    ],
)
def test_enums_match_the_protobuf_enums(path, enum_type):
    node = schemas.load_schema("phenopacket-v2")["$defs"]
    for key in path:
        node = node[key]
    assert sorted(node["enum"]) == sorted(enum_type.keys())


def test_fhir_resource_type_list_is_r4():
    types = set(schemas.load_schema("fhir-r4-resource-type")["enum"])
    assert {"Patient", "Observation", "Bundle", "MedicinalProduct", "EffectEvidenceSynthesis"} <= types
    assert not {"SubscriptionTopic", "CodeableConcept", "Resource"} & types  # R4B-only, a datatype, abstract
