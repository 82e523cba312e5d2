"""Genomics Reporting STU3 and later (3.0.0, 4.0.0 ballot): the shapes that changed since STU2 (2.0.0, the
version in ../shared/reference). Small hand-written inputs with the facts (codes, component slices) of the IG's
published examples `variant-with-molec-consequences`, `molec-conseq1` and the SMN1/SMN2 copy-number example.
"""

from __future__ import annotations

from mappings import load_profile
from tests.translators.conftest import NOW, TEST_IDS
from tests.translators.test_fhir_variants import collection, descriptors, resolves
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
