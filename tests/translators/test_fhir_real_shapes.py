"""Shapes of real FHIR the project had not seen (US Core 4.0.0, mCODE 2.1.0, Synthea, MII Onkologie, MII
Mikrobiologie, CH Core examples), each rebuilt here as a small fixture of its own: what was refused, dropped or
distorted, and is not any more."""

from mappings import load_profile
from tests.translators.conftest import NOW, TEST_IDS
from tests.translators.test_fhir_clinical import LOINC, SCT, UCUM, bundle, cc, translate, warnings
from translators.fhir_to_phenopacket import translate_bundle


def observation(code: str, **value) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": cc(LOINC, code), **value}


# --- units --------------------------------------------------------------------------------------------


def test_a_ucum_annotation_with_spaces_is_the_unity_not_an_invalid_phenopacket():
    """US Core's urine specific gravity: code '{urine specific gravity}' made 'UCUM:{urine specific gravity}',
    which the output schema refuses: the whole patient was refused (422) for one lab value."""
    quantity = {"value": 1.02, "unit": "{urine specific gravity}", "system": UCUM, "code": "{urine specific gravity}"}
    packet = translate(bundle(observation("2965-2", valueQuantity=quantity)))  # validates the phenopacket
    (measurement,) = packet.phenopacket["measurements"]
    value = measurement["value"]["quantity"]
    assert value["value"] == 1.02
    assert value["unit"] == {"id": "UCUM:1", "label": "{urine specific gravity}"}


def test_a_ucum_annotation_with_spaces_beside_a_unit_is_that_unit():
    """IPS's alcohol use: '{wine glasses}/d' (was a CURIE with a space, hence an invalid phenopacket)."""
    quantity = {"value": 2, "system": UCUM, "code": "{wine glasses}/d"}
    packet = translate(bundle(observation("74013-4", valueQuantity=quantity)))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"]["quantity"]["unit"] == {"id": "UCUM:/d", "label": "{wine glasses}/d"}


def test_a_unit_text_that_is_only_a_ucum_annotation_is_the_unity():
    """MII Mikrobiologie's PCR cycle threshold: unit '{Ct_value}' with no system was 'not a UCUM unit', the
    value left out. Braces are UCUM's annotation syntax (an annotation alone is the unity), nothing else's."""
    quantity = {"value": 30, "unit": "{Ct_value}"}
    packet = translate(bundle(observation("94500-6", valueQuantity=quantity)))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"]["quantity"] == {"unit": {"id": "UCUM:{Ct_value}", "label": "{Ct_value}"}, "value": 30}
    spaced = {"value": 2, "unit": "{cycle threshold}"}
    (measurement,) = translate(bundle(observation("94500-6", valueQuantity=spaced))).phenopacket["measurements"]
    assert measurement["value"]["quantity"]["unit"] == {"id": "UCUM:1", "label": "{cycle threshold}"}


def test_a_unit_text_with_an_annotation_beside_an_unknown_unit_is_not_guessed():
    quantity = {"value": 2, "unit": "{Ct_value} cycles"}
    packet = translate(bundle(observation("94500-6", valueQuantity=quantity)))
    assert not packet.phenopacket.get("measurements")
    assert ("unmapped-code", "/entry/1/resource/valueQuantity/unit") in warnings(packet)


def test_a_ucum_code_with_spaces_that_is_no_annotation_is_warned_not_emitted():
    quantity = {"value": 3, "system": UCUM, "code": "mg / dL"}
    packet = translate(bundle(observation("2345-7", valueQuantity=quantity)))
    assert not packet.phenopacket.get("measurements")
    assert ("unmapped-code", "/entry/1/resource/valueQuantity/code") in warnings(packet)


def test_cell_counts_per_microlitre_written_as_unit_text_are_kept():
    """US Core's erythrocytes: unit '10*6/uL' with the UCUM system but no code was 'not a UCUM unit'."""
    quantity = {"value": 4.58, "unit": "10*6/uL", "system": UCUM}
    packet = translate(bundle(observation("789-8", valueQuantity=quantity)))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"]["quantity"]["unit"]["id"] == "UCUM:10*6/uL"
    assert not warnings(packet)


# --- a disease that recurs ------------------------------------------------------------------------------

SINUSITIS = {"coding": [{"system": "http://snomed.info/sct", "code": "444814009", "display": "Viral sinusitis"}]}


def condition(code: dict, onset: str, abatement: str | None = None) -> dict:
    out = {"resourceType": "Condition", "code": code, "onsetDateTime": onset}
    return {**out, "abatementDateTime": abatement} if abatement else out


def test_two_episodes_of_a_recurring_disease_are_two_diseases():
    """Synthea: viral sinusitis at 40 (resolved) and again at 41 (resolved) became one disease with the dates
    of whichever came first: the other episode was lost, and which one depended on the order of arrival."""
    first = condition(SINUSITIS, "2020-03-01", "2020-03-20")
    second = condition(SINUSITIS, "2021-05-01", "2021-05-15")
    for order in ((first, second), (second, first)):
        packet = translate(bundle(*order))
        episodes = sorted(
            (d["onset"]["age"]["iso8601duration"], d["resolution"]["age"]["iso8601duration"])
            for d in packet.phenopacket["diseases"]
        )
        assert episodes == [("P40Y", "P40Y"), ("P41Y", "P41Y")]


def test_a_diagnosis_recorded_twice_without_an_end_is_still_one_disease():
    chronic = {"coding": [{"system": "http://snomed.info/sct", "code": "15777000", "display": "Prediabetes"}]}
    packet = translate(bundle(condition(chronic, "2020-03-01"), condition(chronic, "2020-03-01")))
    assert len(packet.phenopacket["diseases"]) == 1
    repeated = condition(SINUSITIS, "2020-03-01", "2020-03-20")
    assert len(translate(bundle(repeated, dict(repeated))).phenopacket["diseases"]) == 1


# --- variants ---------------------------------------------------------------------------------------------

HGNC = "http://www.genenames.org"


def gene_component(code: str, symbol: str) -> dict:
    return {"code": cc(LOINC, "48018-6"), "valueCodeableConcept": cc(HGNC, code, symbol)}


def test_a_fusions_second_gene_is_warned_where_it_is():
    """mCODE's BCR::ABL1 fusion names two genes studied: the second one (ABL1) vanished without a word."""
    variant = observation(
        "69548-6",
        valueCodeableConcept=cc(LOINC, "LA9633-4", "Present"),
        component=[gene_component("HGNC:1014", "BCR"), gene_component("HGNC:76", "ABL1")],
    )
    packet = translate(bundle(variant))
    (interpretation,) = packet.phenopacket["interpretations"]
    (genomic,) = interpretation["diagnosis"]["genomicInterpretations"]
    assert genomic["variantInterpretation"]["variationDescriptor"]["geneContext"]["symbol"] == "BCR"
    assert ("unmapped-element", "/entry/1/resource/component/1") in warnings(packet)


def test_a_component_repeated_with_the_same_value_is_no_warning():
    variant = observation(
        "69548-6",
        valueCodeableConcept=cc(LOINC, "LA9633-4", "Present"),
        component=[gene_component("HGNC:1100", "BRCA1"), gene_component("HGNC:1100", "BRCA1")],
    )
    assert not warnings(translate(bundle(variant)))


# --- warnings that say what happened --------------------------------------------------------------------

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def test_a_timing_with_bounds_only_is_warned_without_none():
    """mCODE's anastrozole order: a timing with only boundsPeriod.start gave "timing '1/NoneNone' is in no
    schedule table row" and claimed no dosage had a boundsPeriod."""
    order = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "authoredOn": "2018-09-30",
        "medicationCodeableConcept": cc(RXNORM, "84857", "anastrozole"),
        "dosageInstruction": [
            {
                "text": "1mg orally once daily",
                "timing": {"repeat": {"boundsPeriod": {"start": "2018-09-30"}}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg", "system": UCUM, "code": "mg"}}],
            }
        ],
    }
    packet = translate(bundle(order))
    assert packet.phenopacket["medicalActions"][0]["treatment"]["agent"]["id"] == "RXNORM:84857"
    assert not [i.message for i in packet.issues if "None" in i.message]
    timing = [i for i in packet.issues if i.location == "/entry/1/resource/dosageInstruction/0/timing"]
    assert [i.severity.value for i in timing] == ["warning"] and "period" in timing[0].message
    (order_date,) = [i for i in packet.issues if i.location.endswith("/authoredOn")]
    assert "start and an end" in order_date.message


def test_a_value_coding_without_a_system_is_named_so():
    """MII Onkologie's study participation: a value coding {code: 'J'} without a system was '(None)'."""
    obs = observation("8302-2", valueCodeableConcept={"coding": [{"code": "J"}]})
    obs["code"] = cc("http://snomed.info/sct", "70709491003", "Study participation")
    packet = translate(bundle(obs))
    (found,) = [i for i in packet.issues if i.location == "/entry/1/resource/valueCodeableConcept"]
    assert "None" not in found.message and "without a system" in found.message


def test_a_malformed_code_of_a_known_system_is_said_to_be_malformed():
    """MII Onkologie's doxorubicin coded ATC '01DB01' (L01DB01): 'no coding is in a code system this profile
    maps (…bfarm/atc)' though ATC is mapped."""
    statement = {
        "resourceType": "MedicationStatement",
        "status": "completed",
        "medicationCodeableConcept": cc("http://fhir.de/CodeSystem/bfarm/atc", "01DB01", "Doxorubicin"),
    }
    packet = translate(bundle(statement))
    (found,) = [i for i in packet.issues if i.location == "/entry/1/resource/medicationCodeableConcept"]
    assert "'01DB01' is not a well-formed code" in found.message


def test_a_lab_value_no_measurement_can_hold_is_warned_at_the_value():
    """US Core urine cells and MII Labor examples (valueRange, valueRatio), an IPS lab document ('< 3.0' as
    valueString): the warning said the Observation was 'neither ... a measurement', at its code."""
    cells = {
        "low": {"value": 1, "system": UCUM, "code": "/[HPF]"},
        "high": {"value": 5, "system": UCUM, "code": "/[HPF]"},
    }
    packet = translate(bundle(observation("5787-7", valueRange=cells), observation("1988-5", valueString="< 3.0")))
    found = {(i.code, i.location): i.message for i in packet.issues if i.severity.value == "warning"}
    assert set(found) == {
        ("no-phenopacket-target", "/entry/1/resource/valueRange"),
        ("no-phenopacket-target", "/entry/2/resource/valueString"),
    }
    assert not [m for m in found.values() if "neither" in m]


def test_a_quantity_warned_at_its_comparator_is_not_warned_again():
    quantity = {"value": 3, "comparator": "<", "unit": "mg/L", "system": UCUM, "code": "mg/L"}
    packet = translate(bundle(observation("1988-5", valueQuantity=quantity)))
    assert warnings(packet) == {("unmapped-element", "/entry/1/resource/valueQuantity/comparator")}


# --- specimens ---------------------------------------------------------------------------------------------

V2_0487 = "http://terminology.hl7.org/CodeSystem/v2-0487"
LEFT_BREAST = cc("http://snomed.info/sct", "80248007", "Left breast structure")


def specimen(type_code: str, site: dict | None = None) -> dict:
    out: dict = {"resourceType": "Specimen", "type": cc(V2_0487, type_code, type_code)}
    if site:
        out["collection"] = {"bodySite": site}
    return out


def test_a_snomed_collection_site_is_the_sampled_tissue():
    """mCODE's breast specimens: type TISS with a SNOMED CT collection site; the site was dropped and the
    warning pointed at the type."""
    packet = translate(bundle(specimen("TISS", LEFT_BREAST)))
    (sample,) = packet.phenopacket["biosamples"]
    assert sample["sampledTissue"] == {"id": "SNOMEDCT:80248007", "label": "Left breast structure"}
    assert not [w for w in warnings(packet) if w[1].startswith("/entry/1/resource/collection")]


def test_a_collection_site_beside_a_tissue_from_the_type_is_warned_where_it_is():
    packet = translate(bundle(specimen("BLD", LEFT_BREAST)))
    (sample,) = packet.phenopacket["biosamples"]
    assert sample["sampledTissue"]["id"] == "UBERON:0000178"
    assert ("unmapped-element", "/entry/1/resource/collection/bodySite") in warnings(packet)


def test_a_disease_code_sent_as_collection_site_is_not_a_tissue():
    """Genomics Reporting's oncology example codes the site with ICD-10-CM C16.0 (a disease): warned at the site."""
    packet = translate(bundle(specimen("TISS", cc("http://hl7.org/fhir/sid/icd-10-cm", "C16.0", "cardia"))))
    (sample,) = packet.phenopacket["biosamples"]
    assert "sampledTissue" not in sample
    assert ("unmapped-code", "/entry/1/resource/collection/bodySite") in warnings(packet)


# --- cause of death ---------------------------------------------------------------------------------------


def test_a_cause_of_death_observation_is_the_cause_of_death():
    """Synthea writes the cause as an Observation (LOINC 69453-9) valued 'Myocardial Infarction': it became a
    measurement, and vitalStatus.causeOfDeath stayed empty."""
    cause = observation(
        "69453-9", valueCodeableConcept=cc("http://snomed.info/sct", "22298006", "Myocardial Infarction")
    )
    dead = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1963-10-05"}
    source = bundle(cause)
    source["entry"][0]["resource"] = {**dead, "deceasedDateTime": "2008-12-14T03:11:33+00:00"}
    packet = translate(source)
    vital = packet.phenopacket["subject"]["vitalStatus"]
    assert vital["status"] == "DECEASED"
    assert vital["causeOfDeath"] == {"id": "SNOMEDCT:22298006", "label": "Myocardial Infarction"}
    assert vital["timeOfDeath"] == {"age": {"iso8601duration": "P45Y"}}
    assert not packet.phenopacket.get("measurements")
    assert not warnings(packet)


def test_an_onset_range_of_ages_is_an_age_range():
    """An IPS document (AU connectathon): onsetRange 35-40 years was 'no phenopacket equivalent: skipped'."""
    years = {"system": UCUM, "code": "a", "unit": "years"}
    onset = {"low": {"value": 35, **years}, "high": {"value": 40, **years}}
    asthma = {"resourceType": "Condition", "code": SINUSITIS, "onsetRange": onset}
    packet = translate(bundle(asthma))
    (disease,) = packet.phenopacket["diseases"]
    assert disease["onset"] == {"ageRange": {"start": {"iso8601duration": "P35Y"}, "end": {"iso8601duration": "P40Y"}}}
    open_ended = {"resourceType": "Condition", "code": SINUSITIS, "onsetRange": {"low": onset["low"]}}
    packet = translate(bundle(open_ended))
    assert "onset" not in packet.phenopacket["diseases"][0]
    assert ("unmapped-element", "/entry/1/resource/onsetRange") in warnings(packet)


def test_an_age_range_onset_is_written_back_as_an_onset_range():
    from translators.phenopacket_to_fhir import translate_phenopacket

    years = {"system": UCUM, "code": "a", "unit": "years"}
    onset = {"low": {"value": 35, **years}, "high": {"value": 40, **years}}
    packet = translate(bundle({"resourceType": "Condition", "code": SINUSITIS, "onsetRange": onset}))
    written, issues = translate_phenopacket(packet.phenopacket)
    (condition,) = [e["resource"] for e in written["entry"] if e["resource"]["resourceType"] == "Condition"]
    assert not [i for i in issues if "/onset" in i.location]
    assert [condition["onsetRange"][k]["value"] for k in ("low", "high")] == [35, 40]


def test_a_c_hgvs_given_as_the_genomic_change_is_carried_as_hgvs_c():
    """mCODE's fusion gives 'NM_005157.6(ABL1):c.1076T>G' under 81290-9 (genomic DNA change): it was only a
    warning 'is not g.HGVS', and the variant kept no expression at all."""
    change = {
        "code": cc(LOINC, "81290-9"),
        "valueCodeableConcept": cc("http://varnomen.hgvs.org", "NM_005157.6(ABL1):c.1076T>G"),
    }
    variant = observation(
        "69548-6",
        valueCodeableConcept=cc(LOINC, "LA9633-4", "Present"),
        component=[gene_component("HGNC:76", "ABL1"), change],
    )
    packet = translate(bundle(variant))
    (interpretation,) = packet.phenopacket["interpretations"]
    descriptor = interpretation["diagnosis"]["genomicInterpretations"][0]["variantInterpretation"][
        "variationDescriptor"
    ]
    assert descriptor["expressions"] == [{"syntax": "hgvs.c", "value": "NM_005157.6(ABL1):c.1076T>G"}]
    assert not warnings(packet)


# --- family history ---------------------------------------------------------------------------------------


def test_a_relatives_sex_is_read_from_a_relationship_that_says_it():
    """mCODE's family histories name a maternal aunt and a paternal uncle without FamilyMemberHistory.sex:
    the relatives and their pedigree entries had no sex."""
    role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
    aunt = {
        "resourceType": "FamilyMemberHistory",
        "status": "completed",
        "relationship": cc(role, "MAUNT", "maternal aunt"),
    }
    uncle = {"resourceType": "FamilyMemberHistory", "status": "completed", "relationship": cc(role, "PUNCLE", "uncle")}
    cousin = {"resourceType": "FamilyMemberHistory", "status": "completed", "relationship": cc(role, "COUSN", "cousin")}
    stated = {**uncle, "sex": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]}}
    packet = translate(bundle(aunt, uncle, cousin, stated))
    sexes = [r["subject"].get("sex") for r in packet.family["relatives"]]
    assert sexes == ["FEMALE", "MALE", None, "FEMALE"]  # a stated sex wins; a cousin says none
    persons = packet.family["pedigree"]["persons"][1:]
    assert [p.get("sex", "UNKNOWN_SEX") for p in persons] == ["FEMALE", "MALE", "UNKNOWN_SEX", "FEMALE"]


def test_a_cpt_coded_procedure_is_a_procedure():
    """US Core's rehab Procedure is coded in CPT only: it was 'in no code system this profile maps', and dropped."""
    rehab = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": cc("http://www.ama-assn.org/go/cpt", "97763", "Orthotic mgmt and training"),
        "performedDateTime": "2021-01-01",
    }
    packet = translate(bundle(rehab))
    (action,) = packet.phenopacket["medicalActions"]
    assert action["procedure"]["code"]["id"] == "CPT:97763"
    assert "CPT" in {r["namespacePrefix"] for r in packet.phenopacket["metaData"]["resources"]}


def test_a_specimen_type_nothing_carries_is_warned_at_the_type():
    """mCODE's tumour specimens: Specimen.type v2-0487 TUMOR (no CURIE system) vanished without a word."""
    packet = translate(bundle(specimen("TUMOR", LEFT_BREAST)))
    (sample,) = packet.phenopacket["biosamples"]
    assert sample["sampledTissue"]["id"] == "SNOMEDCT:80248007"
    assert ("unmapped-code", "/entry/1/resource/type") in warnings(packet)


# --- cancer staging -----------------------------------------------------------------------------------------

AJCC = "http://cancerstaging.org"


def test_ajcc_stage_and_tnm_values_are_carried():
    """mCODE codes stage groups and TNM categories in AJCC (http://cancerstaging.org): the Condition's stage
    and every TNM Observation were 'in no code system the gateway maps' and left out."""
    cancer = {
        "resourceType": "Condition",
        "code": cc("http://snomed.info/sct", "353431000119107", "Primary malignant neoplasm of female left breast"),
        "stage": [{"summary": {"coding": [{"system": AJCC, "code": "3C"}]}}],
    }
    tumour = observation("21905-5", valueCodeableConcept={"coding": [{"system": AJCC, "code": "cT3"}]})
    packet = translate(bundle(cancer, tumour))
    (disease,) = packet.phenopacket["diseases"]
    assert disease["diseaseStage"] == [{"id": "AJCC:3C", "label": "AJCC:3C"}]
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"]["ontologyClass"]["id"] == "AJCC:cT3"
    assert not [w for w in warnings(packet) if w[0] != "label-missing"]


# --- medications coded by a national product code ---------------------------------------------------------

GTIN = "urn:oid:2.51.1.1"  # CH Core: the Swiss article number (GTIN) of the packaged product


def product(gtin: str, *ingredients: tuple[str, str]) -> dict:
    return {
        "resourceType": "Medication",
        "id": "med",
        "code": {"coding": [{"system": GTIN, "code": gtin, "display": "TRIATEC Tabl 2.5 mg"}]},
        "ingredient": [{"itemCodeableConcept": cc(SCT, code, name)} for code, name in ingredients],
    }


def statement(medication: dict) -> dict:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "contained": [medication],
        "medicationReference": {"reference": "#med"},
    }


def test_a_product_coded_in_a_national_system_is_its_one_ingredient():
    """CH Core's medications are coded by GTIN (no mapped system) with their substance as a SNOMED CT ingredient:
    every MedicationStatement, Request and Administration was dropped ('no coding of the medication')."""
    packet = translate(bundle(statement(product("7680538751228", ("386872004", "Ramipril (substance)")))))
    (action,) = packet.phenopacket["medicalActions"]
    assert action["treatment"]["agent"] == {"id": "SNOMEDCT:386872004", "label": "Ramipril (substance)"}
    assert not warnings(packet)
    (note,) = [i for i in packet.issues if "ingredient" in i.message]
    assert note.severity.value == "information"
    assert note.location == "/entry/1/resource/contained/0/code"


def test_a_combination_product_in_a_national_system_is_not_reduced_to_one_ingredient():
    combination = product("7680000000000", ("386872004", "Ramipril"), ("387525002", "Hydrochlorothiazide"))
    packet = translate(bundle(statement(combination)))
    assert not packet.phenopacket.get("medicalActions")
    assert ("unmapped-code", "/entry/1/resource/contained/0/code") in warnings(packet)


def test_a_contained_medication_that_was_used_is_not_warned_and_an_unused_one_is():
    """Was: 'Medication has no phenopacket target' at every contained Medication, also those its statement
    had just made the treatment's agent of (CH Core contains each product in its statement)."""
    atc = {"resourceType": "Medication", "id": "med", "code": cc("http://www.whocc.no/atc", "C09AA05", "ramipril")}
    packet = translate(bundle(statement(atc)))
    assert packet.phenopacket["medicalActions"][0]["treatment"]["agent"]["id"] == "ATC:C09AA05"
    assert not warnings(packet)
    unused = {**statement(atc), "contained": [atc, {**atc, "id": "other"}]}
    result = translate_bundle(bundle(unused), profile=load_profile("generic"), ids=TEST_IDS, now=NOW)
    found = [(i.code, i.location) for i in [*result.issues, *result.packets[0].issues] if i.severity.value == "warning"]
    assert found == [("no-phenopacket-target", "/entry/1/resource/contained/1")]


def test_a_route_coded_with_the_edqm_oid_is_the_edqm_term():
    """CH Core codes routes in EDQM Standard Terms by OID: was 'route of administration is in no known code system'."""
    oral = {"coding": [{"system": "urn:oid:0.4.0.127.0.16.1.1.2.1", "code": "20053000", "display": "Oral use"}]}
    taken = {**statement(product("7680538751228", ("386872004", "Ramipril"))), "dosage": [{"route": oral}]}
    (action,) = translate(bundle(taken)).phenopacket["medicalActions"]
    assert action["treatment"]["routeOfAdministration"] == {"id": "EDQM:20053000", "label": "Oral use"}


def test_a_dose_in_a_snomed_unit_of_presentation_is_carried():
    """CH Core doses are counted in SNOMED CT units of presentation (1 ampoule, 0.5 tablet): the dose was
    'not a UCUM unit' and left out, and with it the dose interval of an administration."""
    ampoule = {"value": 1, "system": SCT, "code": "732978007", "unit": "Ampule (unit of presentation)"}
    given = {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "contained": [product("7680539870027", ("373492002", "Fentanyl (substance)"))],
        "medicationReference": {"reference": "#med"},
        "effectiveDateTime": "2020-02-03T14:32:00+01:00",
        "dosage": {"dose": ampoule},
    }
    (action,) = translate(bundle(given)).phenopacket["medicalActions"]
    (interval,) = action["treatment"]["doseIntervals"]
    assert interval["quantity"] == {
        "unit": {"id": "SNOMEDCT:732978007", "label": "Ampule (unit of presentation)"},
        "value": 1,
    }


def test_a_medication_coded_in_nhs_dmd_is_its_snomed_ct_concept():
    """UK Core codes medications in dm+d (https://dmd.nhs.uk), whose ids are SNOMED CT ids: every such
    medication was dropped ('no coding of the medication is in a code system this profile maps')."""
    dmd = {"coding": [{"system": "https://dmd.nhs.uk", "code": "39687811000001107", "display": "Ciprofloxacin 500mg"}]}
    packet = translate(
        bundle({"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": dmd})
    )
    (action,) = packet.phenopacket["medicalActions"]
    assert action["treatment"]["agent"] == {"id": "SNOMEDCT:39687811000001107", "label": "Ciprofloxacin 500mg"}
    assert not warnings(packet)


# --- Dutch diagnoses ----------------------------------------------------------------------------------------


def test_dutch_icd_10_and_icpc_diagnoses_are_diseases():
    """nl-core (zib) Conditions coded only in ICD-10-NL or in the GP classification ICPC-1-NL were dropped ('no
    coding of the Condition is in a code system this profile maps')."""
    for system, code, curie in (
        ("http://hl7.org/fhir/sid/icd-10-nl", "G35", "ICD10NL:G35"),
        ("http://hl7.org/fhir/sid/icpc-1-nl", "T90.02", "ICPC1NL:T90.02"),
    ):
        packet = translate(bundle({"resourceType": "Condition", "code": cc(system, code, "x")}))
        assert [d["term"]["id"] for d in packet.phenopacket["diseases"]] == [curie]
        assert not warnings(packet)


def test_a_laterality_extension_on_the_body_site_is_the_disease_laterality():
    """nl-core writes the side as an extension of Condition.bodySite (ext-AnatomicalLocation.Laterality): it was
    dropped without a word."""
    side = {
        "url": "http://nictiz.nl/fhir/StructureDefinition/ext-AnatomicalLocation.Laterality",
        "valueCodeableConcept": cc(SCT, "7771000", "Links"),
    }
    oedema = {
        "resourceType": "Condition",
        "code": cc(SCT, "267038008", "Oedeem"),
        "bodySite": [{"extension": [side], "coding": [{"system": SCT, "code": "344001", "display": "Ankle"}]}],
    }
    (disease,) = translate(bundle(oedema)).phenopacket["diseases"]
    assert disease["primarySite"] == {"id": "SNOMEDCT:344001", "label": "Ankle"}
    assert disease["laterality"] == {"id": "HP:0012835", "label": "Left"}
