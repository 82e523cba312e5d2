"""Issue 11, Genomics Reporting variants: every fact of a variant Observation reaches the phenopacket or
is warned at its exact JSON pointer; gene symbols resolve offline; a modifier is not causative.

Built on the real examples in ../shared/reference/fhir (read from there), each sent the way a hospital
holds it, plus small variations of them for the rules that the examples do not exercise.
"""

import copy
import json

import phenopackets
import pytest
from google.protobuf.json_format import ParseDict

from gateway.validation.phenopacket import validate_phenopacket
from mappings import detect_profile, load_gene_symbols, load_profile, load_table
from tests.translators.conftest import FHIR, NOW, TEST_IDS, read_fhir
from translators.fhir_to_phenopacket import translate_bundle
from translators.phenopacket_to_fhir import translate_phenopacket

GR = "genomics-reporting-2.0.0"
SELTENE = "mii-seltene-erkrankungen"


def collection(*resources: dict) -> dict:
    entries = [
        {"fullUrl": f"https://hospital.example/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def translate(bundle: dict, profile: str | None = None):
    name = profile or detect_profile(bundle)
    result = translate_bundle(bundle, profile=load_profile(name), ids=TEST_IDS, now=NOW)
    assert len(result.packets) == 1
    return result.packets[0]


def genomic(packet) -> list[dict]:
    return [
        g
        for i in packet.phenopacket.get("interpretations", ())
        for g in i["diagnosis"].get("genomicInterpretations", ())
    ]


def descriptors(packet) -> list[dict]:
    return [g["variantInterpretation"]["variationDescriptor"] for g in genomic(packet)]


def extensions(descriptor: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ext in descriptor.get("extensions", ()):
        out.setdefault(ext["name"], []).append(ext["value"])
    return out


def resolves(document: object, pointer: str) -> bool:
    node = document
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


# --- copy-number and structural variants ----------------------------------------------------------


@pytest.fixture(scope="module")
def structural():
    bundle = collection(
        read_fhir(f"{GR}/Patient-CGPatientExample01.json"),
        read_fhir(f"{GR}/Observation-ExampleGermlineCNV.json"),
        read_fhir(f"{GR}/Observation-ExampleGermlineINV.json"),
    )
    return bundle, translate(bundle, "generic")


def test_copy_number_variant_is_placed_with_its_copy_count(structural):
    """Was: 'variant Observation describes no variant' and four component warnings; the CNV was lost."""
    _, packet = structural
    cnv = next(d for d in descriptors(packet) if d.get("structuralType", {}).get("id") == "SO:0001019")
    assert cnv["vcfRecord"] == {
        "genomeAssembly": "GRCh37",  # NC_000022.10 names its assembly
        "chrom": "chr22",
        "pos": "42523949",
        "ref": "T",
        "alt": "<CNV>",
        "info": "SVTYPE=CNV;END=42533891",
    }
    copy_number = cnv["variation"]["copyNumber"]
    assert copy_number["number"] == {"value": "3"}
    interval = copy_number["derivedSequenceExpression"]["location"]["sequenceInterval"]
    assert interval == {"startNumber": {"value": "42523948"}, "endNumber": {"value": "42533891"}}  # interbase
    assert extensions(cnv)["genomic-source-class"] == ["LOINC:LA6683-2 Germline"]


def test_inversion_gets_a_symbolic_allele_and_no_component_is_silently_dropped(structural):
    _, packet = structural
    inversion = next(d for d in descriptors(packet) if d.get("structuralType", {}).get("id") == "SO:1000036")
    assert inversion["vcfRecord"]["alt"] == "<INV>"
    assert inversion["vcfRecord"]["info"] == "SVTYPE=INV;END=13448205"
    assert inversion["allelicState"]["id"] == "GENO:0000135"  # heterozygous
    assert not [i for i in packet.issues if "/component/" in i.location and i.severity == "warning"]


def test_copy_number_of_a_gene_becomes_a_vrs_copy_number_of_that_gene():
    """MII MTB: ERBB2 amplified to 12 copies (no coordinates): the copy number is on the gene."""
    bundle = as_patient_bundle(
        "mii-testdata", "mii-exa-test-data-mtb-patient-1", ["Observation-mii-exa-test-data-mtb-copy-number-variant-1"]
    )
    (erbb2,) = descriptors(translate(bundle, "mii"))
    assert erbb2["variation"]["copyNumber"] == {"gene": {"geneId": "hgnc:3430"}, "number": {"value": "12"}}
    assert extensions(erbb2)["relative-copy-number"] == ["3.8"]


def test_structural_and_copy_number_outputs_are_valid_phenopackets(structural):
    """VRS CopyNumber, symbolic alleles and extensions pass the protobuf classes and the gateway's validator."""
    gene_level = as_patient_bundle(
        "mii-testdata", "mii-exa-test-data-mtb-patient-1", ["Observation-mii-exa-test-data-mtb-copy-number-variant-1"]
    )
    for packet in (structural[1], translate(gene_level, "mii")):
        ParseDict(packet.phenopacket, phenopackets.Phenopacket())  # unknown fields are rejected
        assert validate_phenopacket(packet.phenopacket).ok


def as_patient_bundle(folder: str, patient_id: str, names: list[str]) -> dict:
    """The named resources of `folder` with a bare Patient of the id they name (sent last week)."""
    resources = [read_fhir(f"{folder}/{n}.json") for n in names]
    return collection({"resourceType": "Patient", "id": patient_id}, *resources)


# --- complex variants, molecular consequence, text-only variants -------------------------------------------


def test_complex_variant_names_its_member_variants():
    """Was: 'describes no variant' for the haplotype of the GR cgexample; 81263-6 had no home."""
    packet = translate(read_fhir(f"{GR}/Bundle-bundle-cgexample.json"), "generic")
    found = descriptors(packet)
    ids = {d["id"] for d in found}
    complex_variant = next(d for d in found if "complex-variant-type" in extensions(d))
    assert extensions(complex_variant)["complex-variant-type"] == ["LOINC:LA26218-0 Haplotype"]
    members = extensions(complex_variant)["complex-variant-member"]
    assert len(members) == 2 and set(members) <= ids


def test_molecular_consequence_is_kept_as_a_sequence_ontology_term():
    """Was: "variant component 'molecular-consequence' has no phenopacket target" (12 times)."""
    packet = translate(read_fhir(f"{GR}/Bundle-bundle-oncology-report-example.json"), "generic")
    consequences = [extensions(d).get("molecular-consequence") for d in descriptors(packet)]
    assert ["SO:0001583 missense_variant"] in consequences
    assert not [i for i in packet.issues if "molecular-consequence" in i.message]


def test_wild_type_result_is_not_a_variant_and_a_text_only_variant_keeps_its_text():
    """MII onko: 'KRAS Wildtyp' (interpretation W) found no variant; 'BRCA1 pathogene Variante
    nachgewiesen' is a variant described in words only."""
    bundle = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-onkologie-1.json")
    packet = translate(bundle, "mii")
    labels = [d.get("label") for d in descriptors(packet)]
    assert "BRCA1 pathogene Variante nachgewiesen" in labels
    assert not [label for label in labels if label and "KRAS" in label]
    wild = next(
        i
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["id"] == "mii-exa-test-data-onko-genetische-variante-2"
    )
    assert any(
        i.location == f"/entry/{wild}/resource/interpretation/0" and i.severity == "information" for i in packet.issues
    )


# --- genes given by symbol --------------------------------------------------------------------------


def test_gene_given_only_as_a_symbol_gets_its_hgnc_id():
    """GR oncology examples name JAK2, KDR, ERBB4 by display only: was 'gene is not an HGNC coding'."""
    packet = translate(read_fhir(f"{GR}/Bundle-bundle-oncologyexamples-r4.json"), "generic")
    genes = {d["geneContext"]["symbol"]: d["geneContext"]["valueId"] for d in descriptors(packet)}
    assert genes["JAK2"] == "HGNC:6192"
    assert genes["KDR"] == "HGNC:6307"
    assert not [i for i in packet.issues if "HGNC" in i.message and i.severity == "warning"]


def gene_bundle(symbol: str) -> dict:
    """The GR SNV example with its gene given as a bare symbol."""
    obs = copy.deepcopy(read_fhir(f"{GR}/Observation-SNVexample.json"))
    obs["subject"] = {"reference": "Patient/CGPatientExample01"}
    gene = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "48018-6")
    gene["valueCodeableConcept"] = {"text": symbol}
    return collection(read_fhir(f"{GR}/Patient-CGPatientExample01.json"), obs)


def test_previous_symbol_resolves_to_the_current_gene_with_a_note():
    packet = translate(gene_bundle("MLL"), "generic")
    (descriptor,) = descriptors(packet)
    assert descriptor["geneContext"] == {"valueId": "HGNC:7132", "symbol": "KMT2A", "alternateSymbols": ["MLL"]}
    assert [i.severity for i in packet.issues if i.code == "renamed-gene"] == ["information"]


def test_ambiguous_alias_is_warned_at_the_gene_and_not_guessed():
    packet = translate(gene_bundle("PSF1"), "generic")
    (descriptor,) = descriptors(packet)
    assert "geneContext" not in descriptor
    (warning,) = [i for i in packet.issues if "ambiguous" in i.message]
    assert "HGNC:43" in warning.message and "HGNC:28980" in warning.message
    assert warning.location.endswith("/valueCodeableConcept")
    assert resolves(gene_bundle("PSF1"), warning.location)


def test_hgnc_table_is_offline_dated_and_complete_enough():
    table = load_gene_symbols()
    assert table.version.startswith("20") and "HGNC" in table.source
    assert len(table.approved) > 40000
    assert table.resolve("brca1").ids == ("HGNC:1100",)  # case does not matter
    assert table.resolve("HER2").how == "alias" and table.resolve("HER2").ids == ("HGNC:3430",)
    assert table.resolve("NOT-A-GENE-XYZ") is None


# --- a modifier gene is not causative ---------------------------------------------------------------


def sma_bundle(cite: dict) -> dict:
    """The MII SMA patient whose confirmed SMA Condition cites SMN1 (deleted) and SMN2 ("Modifikator
    des Phänotyps" in its note) as evidence, in the way `cite` says."""
    patient = read_fhir(f"{SELTENE}/Patient-patient-sma-001.json")
    condition = copy.deepcopy(read_fhir(f"{SELTENE}/Condition-condition-sma-clinical.json"))
    condition["evidence"] = cite["evidence"]
    smn1 = read_fhir(f"{SELTENE}/Observation-variant-smn1-001.json")
    smn2 = copy.deepcopy(read_fhir(f"{SELTENE}/Observation-variant-smn2-001.json"))
    if cite.get("drop_note"):
        smn2.pop("note")
    return collection(patient, condition, smn1, smn2)


BOTH = [{"detail": [{"reference": "Observation/variant-smn1-001"}, {"reference": "Observation/variant-smn2-001"}]}]


def statuses(packet) -> dict[str, str]:
    return {
        g["variantInterpretation"]["variationDescriptor"]["geneContext"]["symbol"]: g["interpretationStatus"]
        for g in genomic(packet)
    }


def test_variant_its_sender_calls_a_phenotype_modifier_is_contributory_not_causative():
    """Was: SMN2, a phenotype modifier, came out CAUSATIVE for the confirmed SMA diagnosis."""
    packet = translate(sma_bundle({"evidence": BOTH}), "mii")
    assert statuses(packet) == {"SMN1": "CAUSATIVE", "SMN2": "CONTRIBUTORY"}


def test_nothing_is_inferred_without_an_explicit_modifier_statement():
    """A gene-level finding without a change is not demoted by its shape (the withdrawn rule did that)."""
    packet = translate(sma_bundle({"evidence": BOTH, "drop_note": True}), "mii")
    assert statuses(packet) == {"SMN1": "CAUSATIVE", "SMN2": "CAUSATIVE"}


@pytest.mark.parametrize(
    "note, expected",
    [
        ("No modifier found in the panel.", "CAUSATIVE"),
        ("Kein Modifikator nachweisbar.", "CAUSATIVE"),
        ("This is not a phenotype modifier.", "CAUSATIVE"),
        ("Acts as a modifier of disease severity.", "CONTRIBUTORY"),
    ],
)
def test_a_negated_modifier_statement_is_no_modifier(note, expected):
    """Was: any note naming the word made the variant CONTRIBUTORY, 'no modifier found' included."""
    bundle = sma_bundle({"evidence": BOTH})
    bundle["entry"][3]["resource"]["note"] = [{"text": note}]
    assert statuses(translate(bundle, "mii"))["SMN2"] == expected


def test_evidence_coded_contributory_makes_the_cited_variant_contributory():
    system, _, code = load_table("variants/variant_components")["contributory"]["codings"][0].partition("|")
    evidence = [
        {"detail": [{"reference": "Observation/variant-smn1-001"}]},
        {
            "code": [{"coding": [{"system": system, "code": code}]}],
            "detail": [{"reference": "Observation/variant-smn2-001"}],
        },
    ]
    packet = translate(sma_bundle({"evidence": evidence, "drop_note": True}), "mii")
    assert statuses(packet) == {"SMN1": "CAUSATIVE", "SMN2": "CONTRIBUTORY"}


def test_snpeff_modifier_impact_does_not_make_a_variant_contributory():
    """SnpEff's impact class MODIFIER (an Observation.interpretation) says nothing about phenotypes."""
    bundle = sma_bundle({"evidence": BOTH, "drop_note": True})
    smn2 = bundle["entry"][3]["resource"]
    smn2["interpretation"] = [
        {"coding": [{"system": "http://example.org/snpeff-impact", "code": "MOD", "display": "Modifier"}]}
    ]
    assert statuses(translate(bundle, "mii"))["SMN2"] == "CAUSATIVE"


@pytest.mark.parametrize("status", ["CONTRIBUTORY", "CAUSATIVE", "CANDIDATE", "REJECTED"])
def test_interpretation_status_survives_phenopacket_to_fhir_and_back(status):
    """The round trip of published packets: CAUSATIVE gene-level variants stay CAUSATIVE and
    CONTRIBUTORY comes back as CONTRIBUTORY (was: written provisional, read back CANDIDATE)."""
    packet = translate(sma_bundle({"evidence": BOTH}), "mii").phenopacket
    interpretation = next(i for i in packet["interpretations"] if i["diagnosis"].get("genomicInterpretations"))
    for item in interpretation["diagnosis"]["genomicInterpretations"]:
        item["interpretationStatus"] = status
    fhir, issues = translate_phenopacket(packet, profile="mii")
    assert not [i for i in issues if "interpretationStatus" in i.location]
    back = translate(fhir, "mii")
    assert set(statuses(back).values()) == {status}


# --- warnings: exact pointers, no false ones ------------------------------------------------------------


def test_component_without_a_value_is_information_and_an_unknown_one_a_warning_at_its_pointer():
    obs = copy.deepcopy(read_fhir(f"{GR}/Observation-SNVexample.json"))
    obs["subject"] = {"reference": "Patient/CGPatientExample01"}
    obs["component"].append({"code": {"coding": [{"system": "http://loinc.org", "code": "48002-0"}]}})
    obs["component"].append(
        {"code": {"coding": [{"system": "http://example.org/lab", "code": "x-1"}]}, "valueString": "kept?"}
    )
    bundle = collection(read_fhir(f"{GR}/Patient-CGPatientExample01.json"), obs)
    packet = translate(bundle, "generic")
    empty, unknown = len(obs["component"]) - 2, len(obs["component"]) - 1
    by_location = {i.location: i for i in packet.issues}
    assert by_location[f"/entry/1/resource/component/{empty}"].severity == "information"
    assert by_location[f"/entry/1/resource/component/{unknown}"].severity == "warning"
    assert "'x-1'" in by_location[f"/entry/1/resource/component/{unknown}"].message


def reference_bundles():
    for folder in sorted(p for p in FHIR.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("Bundle-*.json")):
            yield pytest.param(path, id=f"{folder.name}/{path.name}")


@pytest.mark.parametrize("path", list(reference_bundles()))
def test_every_variant_issue_has_a_pointer_that_resolves_in_the_input(path):
    bundle = json.loads(path.read_text(encoding="utf-8"))
    result = translate_bundle(bundle, profile=load_profile(detect_profile(bundle)), ids=TEST_IDS, now=NOW)
    for packet in result.packets:
        for issue in packet.issues:
            if "variant" in issue.message or "/component/" in issue.location or "gene" in issue.message:
                assert issue.location and resolves(bundle, issue.location), issue
                assert "None" not in issue.message, issue


def test_subjectless_variants_a_patients_report_lists_belong_to_that_patient():
    """Was: the GR PGx example's variant Observations carry no subject of their own (the DiagnosticReport that
    lists them as results, or the genotype that has them as members, names the patient); they were warned
    'names no subject' and dropped."""
    bundle = read_fhir("genomics-reporting-2.0.0/Bundle-bundle-pgxexample.json")
    result = translate_bundle(bundle, profile=load_profile(detect_profile(bundle)), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    subjectless = {
        i
        for i, entry in enumerate(bundle["entry"])
        if entry["resource"]["resourceType"] == "Observation"
        and "subject" not in entry["resource"]
        and "variant" in entry["resource"]["id"]
    }
    assert subjectless  # the real file holds such variants
    assert not [i for i in packet.issues + result.issues if "names no subject" in i.message]
    descriptors = [
        g["variantInterpretation"]["variationDescriptor"]
        for interpretation in packet.phenopacket.get("interpretations", ())
        for g in interpretation["diagnosis"].get("genomicInterpretations", ())
        if "variantInterpretation" in g
    ]
    assert len(descriptors) >= len(subjectless)
    assert subjectless <= set(packet.entry_indexes)


@pytest.mark.parametrize("path", list(reference_bundles()))
def test_every_warning_has_a_pointer_that_resolves_in_the_input(path):
    """Was: label warnings of specimens, structural types and condition body sites had an empty location."""
    bundle = json.loads(path.read_text(encoding="utf-8"))
    result = translate_bundle(bundle, profile=load_profile(detect_profile(bundle)), ids=TEST_IDS, now=NOW)
    for issue in [*result.issues, *(i for packet in result.packets for i in packet.issues)]:
        if issue.severity.value in ("warning", "error"):
            assert issue.location and resolves(bundle, issue.location), issue
