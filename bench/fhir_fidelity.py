"""FHIR -> Phenopacket fidelity: facts in the input against facts in the output, per fact class.

    python bench/fhir_fidelity.py [--json bench/out/fhir_fidelity.json]

Not a test: it prints a table (recall and precision per fact class and folder of
../shared/reference/fhir) for the README. The input facts are read from the FHIR JSON by the small
extractors below, which share nothing with the translator (own system table, own rules), so that
the translator is measured against an independent reading of the same files.

Input: each Bundle as it is; single-resource files grouped by the Patient they name (the Patient
of the same folder, by `Patient/<id>`), as a hospital would send them together. Resources whose
patient is not in the folder are counted under "no patient" and not scored.

Fact classes and how each side is read:
- sex, age, vital status: Patient.gender / birthDate / deceased[x] (or a vital-status Observation,
  LOINC 67162-8, or a cause-of-death one, 69453-9 / 79378-6) -> subject.sex / timeAtLastEncounter / vitalStatus
  (one fact per patient each)
- phenotypes: HPO codes (with presence) of Observations and Conditions -> phenotypicFeatures
- diseases: disease codes of non-HPO Conditions that are not entered-in-error -> diseases (term and
  alternate codings) or, for unconfirmed ones, interpretation diagnoses
- variants: variant Observations (LOINC 69548-6, also contained) -> variationDescriptors
- specimens, procedures, medications, measurements: one fact per resource -> biosamples,
  medicalActions procedures / treatments, measurements (a MedicationRequest that recommends, intent
  proposal or option, records no medication of the patient)
- a resource coded in the IPS "absent and unknown" system (no-medication-info, no-known-problems) states
  that there is nothing, and is no fact of any class
- family history: FamilyMemberHistory -> the relatives of the patient's Phenopacket Family
A fact class is scored by counts matched per patient; for phenotypes and diseases by the set of codes
per patient. A resource whose Patient is not in its folder (vcf2fhir reports, resources sent after
their patient) is scored with a bare Patient of that id, as the patient sent earlier would be.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.security.pseudonym import id_functions  # noqa: E402
from mappings import detect_profile, load_profile  # noqa: E402
from translators.fhir_to_phenopacket import translate_bundle  # noqa: E402

REFERENCE = (ROOT / ".." / "shared" / "reference" / "fhir").resolve()
CLASSES = (
    "sex",
    "age",
    "vital status",
    "phenotypes",
    "diseases",
    "variants",
    "specimens",
    "procedures",
    "medications",
    "measurements",
    "family history",
)
CODED = ("phenotypes", "diseases")
# The bench's own reading of code systems (deliberately not mappings/code_systems.yaml).
DISEASE_SYSTEMS = {
    "orpha.net": "ORPHA",
    "omim.org": "OMIM",
    "purl.obolibrary.org/obo/mondo.owl": "MONDO",
    "hl7.org/fhir/sid/icd-10": "ICD10",
    "hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "fhir.de/codesystem/bfarm/icd-10-gm": "ICD10GM",
    "fhir.de/codesystem/dimdi/icd-10-gm": "ICD10GM",
    "fhir.de/codesystem/bfarm/alpha-id": "ALPHAID",
    "snomed.info/sct": "SNOMEDCT",
    "terminology.hl7.org/codesystem/icd-o-3": "ICDO",  # a tumour's morphology is a coding of the disease
}
HPO_SYSTEMS = {"human-phenotype-ontology.org", "purl.obolibrary.org/obo/hp.owl", "hpo.jax.org/app"}
MEDICATIONS = {"MedicationStatement", "MedicationRequest", "MedicationAdministration"}
NOT_A_MEDICATION = {"entered-in-error", "not-taken", "cancelled", "draft", "not-done"}
SEVERITY = "HP:0012824"
VITAL_STATUS = "67162-8"  # LOINC "Vital status": a vital status fact, not a measurement
CAUSE_OF_DEATH = {"69453-9", "79378-6"}  # LOINC cause of death: the person died (vital status), not a measurement
ABSENCE = "hl7.org/fhir/uv/ips/codesystem/absent-unknown-uv-ips"  # "no known ...": a statement of no fact
GENOMIC_CODES = {"69548-6", "51968-6", "84413-4", "84414-2", "53041-0", "82120-7", "55233-1"}


def system_key(uri: object) -> str:
    key = str(uri or "").lower().split("://", 1)[-1]
    return key.removeprefix("www.").rstrip("/")


def codes(concept: object, table: dict[str, str]) -> set[str]:
    out = set()
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else ():
        prefix = table.get(system_key(coding.get("system")))
        code = str(coding.get("code") or "").split(":")[-1]
        if prefix and code:
            out.add(f"{prefix}:{code}")
    return out


def hpo_codes(concept: object) -> set[str]:
    found = set()
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else ():
        if system_key(coding.get("system")) in HPO_SYSTEMS and coding.get("code"):
            found.add("HP:" + str(coding["code"]).split(":")[-1])
    return found


def loinc(concept: object) -> set[str]:
    return {
        str(c.get("code"))
        for c in (concept or {}).get("coding", [])
        if isinstance(concept, dict) and "loinc.org" in str(c.get("system"))
    }


def states_absence(resource: dict) -> bool:
    """A resource coded "no known medications" / "no problem information": it records no fact."""
    concepts = [resource.get(k) for k in ("code", "medicationCodeableConcept")]
    return any(
        system_key(c.get("system")) == ABSENCE
        for concept in concepts
        if isinstance(concept, dict)
        for c in concept.get("coding", [])
    )


def assay(concept: object) -> bool:
    """A code that names something measured: LOINC or SNOMED CT."""
    systems = (
        {system_key(c.get("system")) for c in (concept or {}).get("coding", [])} if isinstance(concept, dict) else set()
    )
    return bool(systems & {"loinc.org", "snomed.info/sct"})


# --- input facts --------------------------------------------------------------------------------------


def input_facts(patient: dict, resources: list[dict]) -> dict[str, Counter]:
    """Facts of one patient, read from the FHIR JSON (resources include contained ones)."""
    facts: dict[str, Counter] = defaultdict(Counter)
    if patient.get("gender"):
        facts["sex"]["sex"] += 1
    if patient.get("birthDate"):
        facts["age"]["age"] += 1
    vital_observed = any(
        r.get("resourceType") == "Observation" and loinc(r.get("code")) & ({VITAL_STATUS} | CAUSE_OF_DEATH)
        for r in resources
    )
    if any(k.startswith("deceased") for k in patient) or vital_observed:
        facts["vital status"]["vital"] += 1  # one per patient, however many sources say it
    for resource in resources:
        kind = resource.get("resourceType")
        if states_absence(resource):
            continue
        for inner in resource.get("contained") or ():
            if isinstance(inner, dict) and inner.get("resourceType") == "Observation":
                observation_facts(inner, facts)
        if kind == "Observation":
            observation_facts(resource, facts)
        elif kind == "Condition":
            status = [c.get("code") for c in (resource.get("verificationStatus") or {}).get("coding", [])]
            if "entered-in-error" in status:
                continue
            hpo = hpo_codes(resource.get("code"))
            disease = codes(resource.get("code"), DISEASE_SYSTEMS)
            profiles = " ".join((resource.get("meta") or {}).get("profile") or ())
            if hpo and (not disease or "symptom" in profiles):
                facts["phenotypes"].update(hpo)
            elif disease:
                facts["diseases"].update(disease | hpo)  # every coding of the condition
        elif kind == "Specimen":
            facts["specimens"]["specimen"] += 1
        elif kind == "Procedure" and resource.get("status") in ("completed", "in-progress"):
            facts["procedures"]["procedure"] += 1
        elif kind in MEDICATIONS and resource.get("status") not in NOT_A_MEDICATION:
            # a recommendation (intent proposal / option) records no medication of the patient
            if resource.get("intent") not in ("proposal", "option"):
                facts["medications"]["medication"] += 1
        elif kind == "FamilyMemberHistory":
            facts["family history"]["relative"] += 1
    return facts


def observation_facts(obs: dict, facts: dict[str, Counter]) -> None:
    if obs.get("status") in ("entered-in-error", "cancelled"):
        return
    code = obs.get("code")
    hpo = hpo_codes(code) | {h for c in obs.get("component") or () for h in hpo_codes(c.get("code"))}
    hpo -= {SEVERITY}  # the component that carries a finding's severity is not a finding
    if hpo:
        facts["phenotypes"].update(hpo)
    elif loinc(code) & {"69548-6"} or (
        loinc(code) & {"55233-1"} and any(loinc(c.get("code")) & {"48018-6"} for c in obs.get("component") or ())
    ):
        present = [c.get("code") for c in (obs.get("valueCodeableConcept") or {}).get("coding", [])]
        if "LA9634-2" not in present:  # "absent"
            facts["variants"]["variant"] += 1
    elif not (loinc(code) & (GENOMIC_CODES | {VITAL_STATUS} | CAUSE_OF_DEATH)) and assay(code):
        valued = [obs, *(c for c in obs.get("component") or () if assay(c.get("code")))]
        facts["measurements"]["measurement"] += sum(
            1 for v in valued if {"valueQuantity", "valueCodeableConcept", "valueInteger"} & set(v)
        )  # a blood pressure is two measurements


# --- output facts -------------------------------------------------------------------------------------


def output_facts(packet: dict, family: dict | None = None) -> dict[str, Counter]:
    facts: dict[str, Counter] = defaultdict(Counter)
    facts["family history"]["relative"] += len((family or {}).get("relatives", ()))
    subject = packet.get("subject", {})
    if subject.get("sex"):
        facts["sex"]["sex"] += 1
    if subject.get("timeAtLastEncounter"):
        facts["age"]["age"] += 1
    if subject.get("vitalStatus"):
        facts["vital status"]["vital"] += 1
    facts["phenotypes"].update(f["type"]["id"] for f in packet.get("phenotypicFeatures", ()))
    alternates = {r["id"] for r in packet.get("metaData", {}).get("externalReferences", ())}
    diseases = {d["term"]["id"] for d in packet.get("diseases", ())} | alternates
    for interpretation in packet.get("interpretations", ()):
        diagnosis = interpretation.get("diagnosis", {})
        if diagnosis.get("disease", {}).get("id") != "MONDO:0000001":
            diseases.add(diagnosis["disease"]["id"])
        facts["variants"]["variant"] += len(diagnosis.get("genomicInterpretations", ()))
    facts["diseases"].update(diseases)
    facts["specimens"]["specimen"] += len(packet.get("biosamples", ()))
    actions = packet.get("medicalActions", ())
    facts["procedures"]["procedure"] += sum(1 for a in actions if "procedure" in a)
    facts["medications"]["medication"] += sum(1 for a in actions if "treatment" in a)
    facts["measurements"]["measurement"] += len(packet.get("measurements", ()))
    return facts


# --- inputs -------------------------------------------------------------------------------------------


def patient_documents(folder: Path):
    """(name, bundle) per Bundle file and per Patient of the folder's single-resource files."""
    singles, patients = [], {}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("resourceType") == "Bundle" and doc.get("type") in (
            "transaction",
            "batch",
            "collection",
            "document",
        ):
            entries = [{k: v for k, v in e.items() if k != "request"} for e in doc.get("entry", [])]
            yield path.name, {**doc, "type": "collection", "entry": entries}
        elif doc.get("resourceType") == "Patient":
            patients[doc.get("id")] = doc
        elif doc.get("resourceType") != "Bundle":
            singles.append(doc)
    grouped = defaultdict(list)
    orphans = 0
    for resource in singles:
        owner = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
        pid = owner.split("/")[-1] if owner.startswith("Patient/") else None
        if pid and pid not in patients:
            patients[pid] = {"resourceType": "Patient", "id": pid}  # the patient sent earlier
        if pid:
            grouped[pid].append(resource)
        else:
            orphans += 1
    for pid, resources in grouped.items():
        entries = [{"fullUrl": f"https://bench.example/fhir/Patient/{pid}", "resource": patients[pid]}]
        for r in resources:
            url = f"https://bench.example/fhir/{r['resourceType']}/{r.get('id') or id(r)}"
            entries.append({"fullUrl": url, "resource": r})
        yield (
            f"Patient/{pid} + {len(resources)} resources",
            {"resourceType": "Bundle", "type": "collection", "entry": entries},
        )
    if orphans:
        yield f"{orphans} resources that name no patient (not scored)", None


def listed_without_subject(bundle: dict, mine: list[dict]) -> list[dict]:
    """Resources with no subject of their own that the patient's reports list as results (or their
    panels as members): Genomics Reporting names the patient once, on the report."""
    by_ref = {}
    for e in bundle["entry"]:
        r = e["resource"]
        by_ref[f"{r['resourceType']}/{r.get('id')}"] = r
        if e.get("fullUrl"):
            by_ref[e["fullUrl"]] = r
    found, todo = [], list(mine)
    while todo:
        r = todo.pop()
        for item in (r.get("result") or []) + (r.get("hasMember") or []):
            target = by_ref.get(item.get("reference", "")) if isinstance(item, dict) else None
            if target is not None and "subject" not in target and "patient" not in target and target not in found:
                found.append(target)
                todo.append(target)
    return found


def score(folder: Path, ids, now) -> dict[str, list[int]]:
    """class -> [input facts, output facts, matched]."""
    totals = {c: [0, 0, 0] for c in CLASSES}
    for _name, bundle in patient_documents(folder):
        if bundle is None:
            continue
        result = translate_bundle(bundle, profile=load_profile(detect_profile(bundle)), ids=ids, now=now)
        by_index = {p.entry_indexes[0]: p for p in result.packets}
        for i, entry in enumerate(bundle["entry"]):
            patient = entry.get("resource") or {}
            if patient.get("resourceType") != "Patient" or i not in by_index:
                continue
            mine = [
                e["resource"]
                for e in bundle["entry"]
                if (e["resource"].get("subject") or e["resource"].get("patient") or {}).get("reference", "")
                in (f"Patient/{patient.get('id')}", entry.get("fullUrl"))
            ]
            mine += listed_without_subject(bundle, mine)
            made = output_facts(by_index[i].phenopacket, by_index[i].family)
            given = input_facts(patient, mine)
            for c in CODED:  # a code counts once per patient, however many resources repeat it
                given[c], made[c] = Counter(set(given[c])), Counter(set(made[c]))
            for c in CLASSES:
                totals[c][0] += sum(given[c].values())
                totals[c][1] += sum(made[c].values())
                totals[c][2] += sum((given[c] & made[c]).values())
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args()
    ids, now = id_functions(b"fidelity-bench-key-not-a-secret!"), datetime.now(UTC)
    table = {}
    for folder in sorted(p for p in REFERENCE.iterdir() if p.is_dir()):
        table[folder.name] = score(folder, ids, now)
    overall = {c: [sum(t[c][k] for t in table.values()) for k in range(3)] for c in CLASSES}
    print("| fact class | facts in | facts out | recall | precision |")
    print("|---|---|---|---|---|")
    for c in CLASSES:
        given, made, matched = overall[c]
        recall = f"{matched / given:.0%}" if given else "n/a"
        precision = f"{matched / made:.0%}" if made else "n/a"
        print(f"| {c} | {given} | {made} | {recall} | {precision} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"folders": table, "overall": overall}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
