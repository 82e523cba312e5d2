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


def _strings(node, path: str = ""):
    """(JSON-pointer-like path, string) for every key and string value in a table."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}/{key}", str(key)
            yield from _strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}/{i}")
    elif isinstance(node, str):
        yield path, node


def test_every_data_table_is_under_mappings():
    """No table of codes outside mappings/ (the demo cohort's generator inputs and the web pages' static
    files, such as the browser's import map, are not code tables)."""
    root = mappings.MAPPINGS_DIR.parent
    elsewhere = [
        str(p.relative_to(root))
        for package in ("gateway", "translators")
        for pattern in ("*.json", "*.tsv", "*.yaml", "*.csv")
        for p in (root / package).rglob(pattern)
        if "demo" not in p.parts and "__pycache__" not in p.parts and "static" not in p.parts
    ]
    assert not elsewhere, f"data tables outside mappings/: {elsewhere}"


@pytest.mark.parametrize("path", mappings.data_tables(), ids=lambda p: str(p.relative_to(mappings.MAPPINGS_DIR)))
def test_every_data_table_notes_its_source_and_version_and_uses_declared_curies(path):
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert any(line.startswith("# source:") for line in header), f"{path.name}: no '# source:' line in the header"
    assert any(line.startswith("# version:") for line in header), f"{path.name}: no '# version:' line in the header"
    table = load_yaml(path)
    name = str(path.relative_to(mappings.MAPPINGS_DIR).with_suffix(""))
    assert mappings.load_table(name) == table
    checked = 0
    for where, text in _strings(table):
        # URIs are not CURIEs; `target` (loinc_answers.yaml) names how answers map, e.g. "enum:Sex".
        if "://" in text or where.endswith("/target") or not CURIE_RE.match(text):
            continue
        assert_curie(text, f"{path.name}{where}")
        checked += 1
    if path.name not in (
        "sex.yaml",
        "record_counts.yaml",
        "validator_ids.yaml",
        "code_systems.yaml",
        "chromosomes.yaml",
    ):
        assert checked, f"{path.name}: a code table without a single CURIE?"


def test_the_one_chromosome_table_serves_reader_and_translator():
    from gateway.variants.normalise import normalise_reference_name, refseq_accession

    chromosomes = load_tables().chromosomes
    assert chromosomes["NC_000022"] == "22" and chromosomes["NC_000023"] == "X" and chromosomes["NC_012920"] == "M"
    assert normalise_reference_name("NC_000022.11") == "22"
    assert normalise_reference_name("NC_012920.1") == "MT"
    assert refseq_accession("22", "GRCh37") == "NC_000022.10"


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


def test_a_namespace_family_takes_every_member_system_and_writes_it_back():
    registry = load_registry()
    uri = "https://www.medizininformatik-initiative.de/fhir/ext/modul-onko/CodeSystem/mii-cs-onko-grading"
    curie = registry.curie(uri, "3")
    assert curie == "MII:ext/modul-onko/CodeSystem/mii-cs-onko-grading#3"
    assert registry.curie(uri.replace("https://www.", "http://"), "3") == curie  # spelling does not matter
    system = registry.system_for_prefix("MII")
    assert (system.fhir_system(curie), system.fhir_code(curie)) == (uri, "3")
    assert registry.curie("https://www.medizininformatik-initiative.de/fhir", "3") is None  # no member named
    assert registry.curie(uri, "two words") is None
    assert registry.prefix_for("https://example.org/fhir/CodeSystem/x") is None
    assert registry.curie("http://terminology.hl7.org/CodeSystem/icd-o-3", "8140/3") == "ICDO:8140/3"
    assert registry.curie("https://www.uicc.org/resources/tnm", "pT3c") == "TNM:pT3c"
