"""Every mapping file: well-formed, no duplicate keys, every target a CURIE of a declared prefix."""

import phenopackets
import pytest

import mappings
from mappings import CURIE_RE, DuplicateKeyError, load_registry, load_tables, load_yaml


def assert_curie(value: str, where: str) -> None:
    match = CURIE_RE.match(value)
    assert match, f"{where}: {value!r} is not a CURIE"
    system = load_registry().system_for_prefix(match.group(1))
    assert system is not None and system.prefix == match.group(1), f"{where}: prefix of {value!r} not declared"
    assert system.local_id.match(match.group(2)), f"{where}: {value!r} does not match {system.local_id.pattern}"


@pytest.mark.parametrize("path", mappings.mapping_files(), ids=lambda p: p.name)
def test_every_file_loads_without_duplicate_keys(path):
    assert load_yaml(path)


def test_duplicate_keys_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(DuplicateKeyError):
        load_yaml(bad)


def test_registry_declares_complete_resources():
    registry = load_registry()
    for prefix, system in registry.systems.items():
        resource = system.resource()
        assert all(resource.values()), prefix
        assert resource["namespacePrefix"] == prefix
    for uri, expected in [
        ("http://human-phenotype-ontology.org", "HP"),
        ("http://purl.obolibrary.org/obo/hp.owl", "HP"),
        ("https://hpo.jax.org/app/", "HP"),
        ("http://purl.obolibrary.org/obo/hp", "HP"),
        ("http://www.orpha.net", "ORPHA"),
        ("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "ICD10GM"),
        ("http://fhir.de/CodeSystem/bfarm/alpha-id", "ALPHAID"),
    ]:
        assert registry.prefix_for(uri) == expected, uri
    assert registry.curie("http://www.orpha.net", "558") == "ORPHA:558"
    assert registry.curie("http://www.orpha.net", "ORPHA:558") == "ORPHA:558"
    assert registry.curie("http://omim.org", "154700") == "OMIM:154700"
    assert registry.curie("http://omim.org", "not-a-code") is None


def test_answer_tables_targets():
    tables = load_tables()
    raw = load_yaml(mappings.MAPPINGS_DIR / "loinc_answers.yaml")
    for section, body in raw.items():
        target = body["target"]
        for answer, value in body["answers"].items():
            assert_curie(answer, f"{section} key")
            if target == "curie":
                assert_curie(value["id"], section)
                assert value["label"]
            elif target.startswith("enum:"):
                enum = getattr(phenopackets, target.split(":", 1)[1])
                assert value in list(enum.keys()), f"{section}: {value}"
            else:
                assert target == "keyword" and isinstance(value, str)
    for code, sex in tables.gender_to_sex.items():
        assert sex in list(phenopackets.Sex.keys()), code
    for key, tissue in tables.sampled_tissue.items():
        assert "|" in key
        assert_curie(tissue["id"], key)


@pytest.mark.parametrize("name", mappings.profile_names())
def test_every_profile_loads_and_names_declared_prefixes(name):
    profile = mappings.load_profile(name)
    declared = load_registry().prefixes
    for field in (
        "disease_coding_priority",
        "phenotype_prefixes",
        "procedure_coding_priority",
        "medication_coding_priority",
    ):
        for prefix in getattr(profile, field):
            assert prefix in declared, f"{name}.{field}: {prefix}"
    for curie in (
        profile.variant_observation_codes | profile.presence_component_codes | profile.severity_component_codes
    ):
        assert_curie(curie, name)
    for codes in profile.sex_extensions.values():
        assert set(codes.values()) <= set(phenopackets.Sex.keys())
    assert profile.identifier_systems


def test_unknown_profile_lists_known_names():
    with pytest.raises(KeyError, match="generic"):
        mappings.load_profile("atlantis")


def test_detect_profile():
    mii_url = "https://www.medizininformatik-initiative.de/fhir/core/modul-person/StructureDefinition/Patient"
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Patient", "meta": {"profile": [mii_url]}}}],
    }
    assert mappings.detect_profile(bundle) == "mii"
    assert mappings.detect_profile({"resourceType": "Bundle", "entry": []}) == "generic"


def test_implementation_guides_come_from_the_profiles():
    """National quirks are data: the CapabilityStatement's IG list is the union of the profile files."""
    from mappings import implementation_guides, load_profile

    guides = implementation_guides()
    assert guides[0].startswith("http://hl7.org/fhir/uv/genomics-reporting/")
    assert any("medizininformatik-initiative.de" in g for g in guides)
    assert len(guides) == len(set(guides))
    assert load_profile("generic").transcript_reference_prefixes == ()
    assert "NM_" in load_profile("mii").transcript_reference_prefixes
