"""Genomics Reporting STU3 and later (3.0.0, 4.0.0 ballot): the shapes that changed since STU2 (2.0.0, the
version in ../shared/reference). Small hand-written inputs with the facts (codes, component slices) of the IG's
published examples `variant-with-molec-consequences`, `molec-conseq1` and the SMN1/SMN2 copy-number example.
"""

from __future__ import annotations

from mappings import load_profile
from tests.translators.conftest import NOW, TEST_IDS
from tests.translators.test_fhir_variants import collection, descriptors, extensions, genomic, resolves
from translators.fhir_to_phenopacket import translate_bundle

LOINC = "http://loinc.org"
HGVS = "http://varnomen.hgvs.org"
TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
SO = "http://www.sequenceontology.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-02-03"}


def concept(system: str, code: str, display: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}


def component(code: str, **value) -> dict:
    return {"code": concept(LOINC, code), **value}


def variant(*components: dict, id_: str = "v1") -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": concept(LOINC, "69548-6", "Genetic variant assessment"),
        "subject": {"reference": "Patient/p1"},
        "valueCodeableConcept": concept(LOINC, "LA9633-4", "Present"),
        "component": list(components),
    }


def run(*resources: dict):
    bundle = collection(PATIENT, *resources)
    result = translate_bundle(bundle, profile=load_profile("generic"), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    return bundle, packet


def test_an_hgvs_expression_given_as_the_variation_code_is_kept():
    """STU3 names the variant by 81252-9 ("Discrete genetic variant", the variation-code slice) with an HGVS
    coding; only its ClinVar / dbSNP codings were read: the g.HGVS vanished without a word."""
    _, packet = run(
        variant(
            component("48013-7", valueCodeableConcept=concept("http://www.ncbi.nlm.nih.gov/refseq", "NC_000001.10")),
            component("81252-9", valueCodeableConcept=concept(HGVS, "NC_000001.10:g.86852621A>G")),
            component(
                "81252-9",
                valueCodeableConcept={
                    "coding": [
                        {"system": "http://www.ncbi.nlm.nih.gov/clinvar", "code": "12345"},
                        {"system": HGVS, "code": "NM_000059.4:c.68_69del"},
                    ]
                },
            ),
        )
    )
    (descriptor,) = descriptors(packet)
    assert {"syntax": "hgvs.g", "value": "NC_000001.10:g.86852621A>G"} in descriptor["expressions"]
    assert {"syntax": "hgvs.c", "value": "NM_000059.4:c.68_69del"} in descriptor["expressions"]
    assert descriptor["xrefs"] == ["ClinVar:12345"]
    assert not [i for i in packet.issues if i.severity.value == "warning"], packet.issues


def test_a_variation_code_already_given_as_genomic_hgvs_is_not_repeated():
    expression = "NC_000001.10:g.86852621A>G"
    _, packet = run(
        variant(
            component("81290-9", valueCodeableConcept=concept(HGVS, expression)),
            component("81252-9", valueCodeableConcept=concept(HGVS, expression)),
        )
    )
    (descriptor,) = descriptors(packet)
    assert descriptor["expressions"] == [{"syntax": "hgvs.g", "value": expression}]


def test_a_variation_code_in_an_unknown_system_is_warned_at_its_coding():
    bundle, packet = run(
        variant(
            component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:1100")),
            component("81252-9", valueCodeableConcept=concept("http://example.org/lab-variant-ids", "LV-77")),
        )
    )
    (descriptor,) = descriptors(packet)
    assert "xrefs" not in descriptor
    (warning,) = [i for i in packet.issues if i.severity.value == "warning"]
    assert warning.location == "/entry/1/resource/component/1/valueCodeableConcept/coding/0"
    assert resolves(bundle, warning.location)


def test_a_cosmic_variation_code_is_a_cross_reference():
    _, packet = run(
        variant(
            component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:1097")),
            component(
                "81252-9",
                valueCodeableConcept=concept("http://cancer.sanger.ac.uk/cancergenome/projects/cosmic", "COSM476"),
            ),
        )
    )
    (descriptor,) = descriptors(packet)
    assert descriptor["xrefs"] == ["COSMIC:COSM476"]
    assert not [i for i in packet.issues if i.severity.value == "warning"], packet.issues


def derived(code: str, *components: dict, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": code,
        "status": "final",
        "code": concept(TBD, code),
        "subject": {"reference": "Patient/p1"},
        "derivedFrom": [{"reference": "Observation/v1"}],
        "component": list(components),
        **extra,
    }


def splice_donor_consequence() -> dict:
    """An STU3 molecular-consequence Observation (transcript, SO feature consequence, SnpEff impact) of variant v1."""
    return derived(
        "molecular-consequence",
        component("51958-7", valueCodeableConcept=concept("http://www.ncbi.nlm.nih.gov/refseq", "NM_001395525.1")),
        {
            "code": concept(TBD, "feature-consequence"),
            "valueCodeableConcept": concept(SO, "SO:0001575", "splice_donor_variant"),
        },
        interpretation=[concept("http://example.org/snpeff-impact", "HIGH", "High")],
    )


def test_a_molecular_consequence_observation_is_carried_on_the_variant_it_derives_from():
    """STU3 moved the molecular consequence out of the variant into an Observation of its own (derivedFrom the
    variant): was 'Observation is neither an HPO finding, a measurement nor a variant', its facts lost."""
    consequence = splice_donor_consequence()
    _, packet = run(
        variant(component("81290-9", valueCodeableConcept=concept(HGVS, "NC_000001.10:g.86852621A>G"))),
        consequence,
    )
    (descriptor,) = descriptors(packet)
    found = extensions(descriptor)
    assert found["molecular-consequence feature-consequence"] == ["SO:0001575 splice_donor_variant"]
    assert found["molecular-consequence 51958-7"] == ["http://www.ncbi.nlm.nih.gov/refseq|NM_001395525.1"]
    assert found["molecular-consequence interpretation"] == ["http://example.org/snpeff-impact|HIGH High"]
    assert not [i for i in packet.issues if i.severity.value == "warning"], packet.issues
    assert 2 in packet.entry_indexes  # the consequence is one of the packet's sources (provenance, deletes)


def test_a_therapeutic_implication_is_carried_on_its_variants_and_an_orphan_one_is_warned():
    implication = derived(
        "therapeutic-implication",
        component("51963-7", valueCodeableConcept={"text": "nusinersen (antisense oligonucleotide)"}),
    )
    _, packet = run(
        variant(component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:11117"))),
        implication,
    )
    (descriptor,) = descriptors(packet)
    assert extensions(descriptor)["therapeutic-implication 51963-7"] == ["nusinersen (antisense oligonucleotide)"]

    orphan = {**implication, "derivedFrom": [{"reference": "Observation/elsewhere"}]}
    _, packet = run(orphan)
    assert [(i.severity.value, i.location) for i in packet.issues if "names no mapped variant" in i.message] == [
        ("warning", "/entry/1/resource")
    ]


def test_a_repeat_expansion_keeps_its_motif_and_number_of_repeats():
    """STU3 repeat expansions (PABPN1 GCN repeat): 'repeat-motif' and 'repeat-number' had no phenopacket target."""
    _, packet = run(
        variant(
            component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:8565")),
            component("48004-6", valueCodeableConcept=concept(HGVS, "NM_004643.3:c.3GGC[14]")),
            {"code": concept(TBD, "repeat-motif"), "valueString": "GGC"},
            {"code": concept(TBD, "repeat-number"), "valueQuantity": {"value": 14}},
        )
    )
    (descriptor,) = descriptors(packet)
    assert extensions(descriptor)["repeat-motif"] == ["GGC"]
    assert extensions(descriptor)["repeat-number"] == ["14"]
    assert not [i for i in packet.issues if i.severity.value == "warning"], packet.issues


def test_the_stu3_variant_slices_have_a_home():
    """Slices of the STU3 Variant profile had none: ISCN nomenclature (81291-7), variant inheritance (94186-4) and
    its basis (82309-6), population allele frequency (92821-8), protein reference sequence."""
    _, packet = run(
        variant(
            component("81291-7", valueCodeableConcept={"text": "seq[GRCh37] del(1)(p36.33p36.32)"}),
            component("94186-4", valueCodeableConcept=concept(LOINC, "LA26757-7", "Maternal")),
            component("82309-6", valueCodeableConcept=concept(LOINC, "LA26753-6", "Family history")),
            component("92821-8", valueQuantity={"value": 0.327, "system": "http://unitsofmeasure.org", "code": "1"}),
            {"code": concept(TBD, "protein-ref-seq"), "valueCodeableConcept": {"text": "NP_000035.2"}},
        )
    )
    (descriptor,) = descriptors(packet)  # the ISCN alone describes the variant
    found = extensions(descriptor)
    assert found["cytogenomic-nomenclature"] == ["seq[GRCh37] del(1)(p36.33p36.32)"]
    assert found["variant-inheritance"] == ["LOINC:LA26757-7 Maternal"]
    assert found["variant-inheritance-basis"] == ["LOINC:LA26753-6 Family history"]
    assert found["population-allele-frequency"] == ["0.327"]
    assert found["protein-reference-sequence"] == ["NP_000035.2"]
    assert not [i for i in packet.issues if i.severity.value == "warning"], packet.issues


def _placement_warnings(packet) -> list[str]:
    return [i.location for i in packet.issues if "no genomic placement" in i.message]


def test_a_variant_placed_only_on_a_transcript_is_warned_at_each_placement_component():
    """A variant given by its gene, a transcript (NM_), a position on it and the reference allele, with no HGVS,
    SPDI or genomic placement, came out as "some CFTR variant" with no word: the position and alleles were gone."""
    gene = component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:1884", "CFTR"))
    transcript = component("48013-7", valueCodeableConcept=concept("http://www.ncbi.nlm.nih.gov/refseq", "NM_000492.4"))
    position = component("81254-5", valueRange={"low": {"value": 1521}, "high": {"value": 1523}})
    reference = component("69547-8", valueString="CTT")
    _, packet = run(variant(gene, transcript, position, reference))
    (descriptor,) = descriptors(packet)
    assert "vcfRecord" not in descriptor and "expressions" not in descriptor
    assert _placement_warnings(packet) == [f"/entry/1/resource/component/{k}" for k in (1, 2, 3)]
    assert all(i.severity.value == "warning" for i in packet.issues if "no genomic placement" in i.message)


def test_placement_components_beside_an_expression_or_a_vcf_record_are_not_warned():
    gene = component("48018-6", valueCodeableConcept=concept("http://www.genenames.org/geneId", "HGNC:1884", "CFTR"))
    reference = component("69547-8", valueString="CTT")
    cdna = component("48004-6", valueCodeableConcept=concept(HGVS, "NM_000492.4:c.1521_1523del"))
    _, packet = run(variant(gene, cdna, reference))
    assert _placement_warnings(packet) == []  # the expression says the change; the allele only restates it
    placed = variant(
        gene,
        component("48013-7", valueCodeableConcept=concept("http://www.ncbi.nlm.nih.gov/refseq", "NC_000007.14")),
        component("92822-6", valueCodeableConcept=concept(LOINC, "LA30102-0", "1-based character counting")),
        component("81254-5", valueRange={"low": {"value": 117559590}}),
        component("69547-8", valueString="ATCT"),
        component("69551-0", valueString="A"),
    )
    _, packet = run(placed)
    (descriptor,) = descriptors(packet)
    assert descriptor["vcfRecord"]["pos"] == "117559590" and _placement_warnings(packet) == []


def _round_trip(packet):
    from translators.phenopacket_to_fhir import translate_phenopacket

    exported = translate_phenopacket(packet.phenopacket)
    back = translate_bundle(exported.bundle, profile=load_profile("generic"), ids=TEST_IDS, now=NOW)
    (again,) = back.packets
    return exported, again


def test_findings_about_a_variant_go_back_to_fhir_as_observations_derived_from_it():
    """The FHIR export warned "extension 'molecular-consequence 51958-7' is not exported" for every fact of a
    molecular consequence or therapeutic implication: they were read, kept, and lost on the way back."""
    consequence = splice_donor_consequence()
    implication = derived("therapeutic-implication", component("51963-7", valueCodeableConcept={"text": "nusinersen"}))
    implication["id"] = "t1"
    _, packet = run(
        variant(component("81290-9", valueCodeableConcept=concept(HGVS, "NC_000001.10:g.86852621A>G"))),
        consequence,
        implication,
    )
    exported, again = _round_trip(packet)
    assert not [i for i in exported.issues if "not exported" in i.message], exported.issues
    derived_codes = sorted(
        e["resource"]["code"]["coding"][0]["code"]
        for e in exported.bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"].get("derivedFrom")
    )
    assert derived_codes == ["molecular-consequence", "therapeutic-implication"]
    (before,), (after,) = descriptors(packet), descriptors(again)
    assert extensions(after) == extensions(before)
    assert not [i for i in again.issues if i.severity.value == "warning"], again.issues


def test_a_diagnostic_implications_other_components_go_back_with_it():
    evidence = {"code": concept(LOINC, "93044-6", "Level of evidence"), "valueCodeableConcept": {"text": "Level A"}}
    implication = {
        "resourceType": "Observation",
        "id": "di1",
        "status": "final",
        "code": concept(TBD, "diagnostic-implication"),
        "subject": {"reference": "Patient/p1"},
        "derivedFrom": [{"reference": "Observation/v1"}],
        "component": [
            component("53037-8", valueCodeableConcept=concept(LOINC, "LA6668-3", "Pathogenic")),
            evidence,
        ],
    }
    _, packet = run(
        variant(component("81290-9", valueCodeableConcept=concept(HGVS, "NC_000001.10:g.86852621A>G"))), implication
    )
    (before,) = descriptors(packet)
    assert extensions(before) == {"diagnostic-implication 93044-6": ["Level A"]}
    exported, again = _round_trip(packet)
    assert not [i for i in exported.issues if "not exported" in i.message], exported.issues
    (after,) = descriptors(again)
    assert extensions(after) == extensions(before)
    assert genomic(again)[0]["variantInterpretation"]["acmgPathogenicityClassification"] == "PATHOGENIC"
