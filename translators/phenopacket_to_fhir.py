"""GA4GH Phenopacket v2 (protobuf JSON form) -> FHIR R4 `collection` Bundle: the way back to the EHR.

Pure: dicts in, a Bundle dict and `Issue`s out (locations are JSON pointers into the *input* phenopacket).
The code tables are the ones the forward direction (translators/fhir_to_phenopacket.py) reads, read
backwards by `mappings.load_reverse_tables()`; where a table is not one-to-one it names the answer this
direction writes. The node's profile (`mappings.load_export_profile`) picks meta.profile URLs, where an
HPO finding's presence goes, code-system URIs and national extensions.

What goes where:
- subject -> Patient carrying the pseudonym only (one identifier of type ANON; no name, no birth date:
  ages cannot become dates, so timeAtLastEncounter is reported as not carried); sex -> gender
  (+ the profile's gender extension), vitalStatus -> deceasedBoolean.
- phenotypicFeatures -> Observations coded with HPO; present/excluded as the LOINC presence answer
  (in the value, or in the presence component for MII); severity as the HP:0012824 component.
- diseases -> Conditions (verificationStatus confirmed/refuted, onset/abatement as Age); the alternative
  codings the forward direction kept in metaData.externalReferences come back as extra codings.
- interpretations -> Genomics Reporting variant Observations and diagnostic-implication Observations
  (ACMG class, associated disease), all in one DiagnosticReport; the diagnosis is a Condition whose
  evidence names the variants (the link the forward direction reads).
- measurements -> Observations; medicalActions -> MedicationStatements / Procedures;
  biosamples -> Specimens; a Family message's relatives -> FamilyMemberHistory.
Everything else becomes a warning at its pointer (information when only wording is lost).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gateway.issues import Issue
from mappings import (
    CodeSystemRegistry,
    ExportProfile,
    ReverseTables,
    load_export_profile,
    load_registry,
    load_reverse_tables,
    load_variant_components,
)
from translators.fhir.variant_parts import says_contributory

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
HGVS = "http://varnomen.hgvs.org"
REFSEQ = "http://www.ncbi.nlm.nih.gov/refseq"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PSEUDONYM_SYSTEM = "https://ga4gh-gateway.example.org/fhir/sid/pseudonym"
ANONYMOUS_ID_TYPE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ANON", "display": "Anonymous identifier"}
    ]
}
# Entry ids are name-based UUIDs: the same phenopacket always gives the same Bundle.
ID_NAMESPACE = uuid.UUID("6f1c8c52-6a55-4a43-9a7e-3d0f3c4b2e11")

# Genomics Reporting component codes (LOINC), the same the forward direction reads.
GENE_STUDIED = ("48018-6", "Gene studied [ID]")
CDNA_HGVS = ("48004-6", "DNA change (c.HGVS)")
PROTEIN_HGVS = ("48005-3", "Amino acid change (pHGVS)")
GENOMIC_HGVS = ("81290-9", "Genomic DNA change (gHGVS)")
DISCRETE_VARIANT = ("81252-9", "Discrete genetic variant")
ASSEMBLY = ("62374-4", "Human reference sequence assembly version")
ALLELIC_STATE = ("53034-5", "Allelic state")
CLINICAL_SIGNIFICANCE = ("53037-8", "Genetic variation clinical significance [Imp]")
ALLELE_START_END = ("81254-5", "Genomic allele start-end")
COORDINATE_SYSTEM = ("92822-6", "Genomic coordinate system [Type]")
REF_ALLELE = ("69547-8", "Genomic ref allele [ID]")
ALT_ALLELE = ("69551-0", "Genomic alt allele [ID]")
GENOMIC_REF_SEQ = ("48013-7", "Genomic reference sequence [ID]")
TRANSCRIPT_REF_SEQ = ("51958-7", "Transcript reference sequence [ID]")
DNA_CHANGE_TYPE = ("48019-4", "DNA change type")
ASSOCIATED_PHENOTYPE = ("81259-4", "Associated phenotype")
VARIANT_ASSESSMENT = ("69548-6", "Genetic variant assessment")
GENETIC_REPORT = ("51969-4", "Genetic analysis report")

# GenomicInterpretation.interpretationStatus -> Condition.verificationStatus. The forward direction
# reads confirmed -> CAUSATIVE, refuted -> REJECTED and anything else -> CANDIDATE, so these three
# come back unchanged. CONTRIBUTORY: the diagnosis is confirmed, and the variant is cited under an
# evidence entry coded CONTRIBUTORY (mappings/variants/variant_components.yaml), which the forward
# direction reads back as CONTRIBUTORY.
INTERPRETATION_VERIFICATION = {
    "CAUSATIVE": "confirmed",
    "REJECTED": "refuted",
    "CANDIDATE": "provisional",
    "CONTRIBUTORY": "confirmed",
}
# The disease the forward direction files variants under when the source tied them to none.
UNSPECIFIED_DISEASE = "MONDO:0000001"
ISO_DURATION_RE = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
ALTERNATE_RE = re.compile(r"^alternative coding of (\S+) in the source record$")
HGVS_ACCESSION_RE = re.compile(r"^((?:NC|NG|NM|NR|XM|XR|ENST|LRG)_?[A-Za-z0-9.]*?):[cgnmrp]\.")
SUBJECT_IGNORED = ("id", "sex", "vitalStatus", "taxonomy")
# VariationDescriptor elements written (the rest is warned about; `id` is the sender's own name for it).
DESCRIPTOR_KEYS_WRITTEN = frozenset(
    {
        "id",
        "geneContext",
        "expressions",
        "vcfRecord",
        "xrefs",
        "allelicState",
        "structuralType",
        "label",
        "moleculeContext",
        "extensions",
        "alternateLabels",
    }
)
# Extensions the forward direction makes from Observation elements rather than components.
OBSERVATION_EXTENSIONS = {"observation-interpretation": "interpretation", "observation-method": "method"}


def stated_status(status: object, descriptor: dict) -> str | None:
    """The status the Condition's evidence must state for the forward direction to read `status` back:
    CONTRIBUTORY always; CAUSATIVE when the variant's own words would read as a modifier."""
    if status == "CONTRIBUTORY":
        return "CONTRIBUTORY"
    texts = [t for t in (descriptor.get("label"), descriptor.get("description")) if isinstance(t, str)]
    if status == "CAUSATIVE" and says_contributory([], texts):
        return "CAUSATIVE"
    return None


def evidence_status_code(status: str) -> dict:
    """The Condition.evidence code that states a cited variant's status (mappings/variants/variant_components.yaml)."""
    table = load_variant_components()["evidence_status"]
    key = next(k for k, v in table.items() if v == status)
    system, _, code = key.partition("|")
    return {"coding": [{"system": system, "code": code, "display": status}]}


def extension_codes() -> dict[str, dict]:
    """Extension name (and the target `alternate_label`) -> the component code the forward direction reads."""
    out: dict[str, dict] = {}
    for key, rule in load_variant_components()["components"].items():
        if key.startswith("text:"):
            code: dict = {"text": key.removeprefix("text:")}
        elif key.startswith("LOINC:"):
            code = {"coding": [{"system": LOINC, "code": key.removeprefix("LOINC:")}]}
        else:
            system, _, local = key.partition("|")
            code = {"coding": [{"system": system, "code": local}]}
        out.setdefault(rule["name"], code)
        if rule["target"] == "alternate_label":
            out.setdefault("alternate_label", code)
    return out


class FhirTranslation(NamedTuple):
    bundle: dict
    issues: list[Issue]


def translate_phenopacket(
    packet: dict, *, profile: str | ExportProfile = "generic", now: datetime | None = None
) -> FhirTranslation:
    """One phenopacket as a FHIR R4 collection Bundle (see the module docstring)."""
    export = profile if isinstance(profile, ExportProfile) else load_export_profile(profile)
    writer = BundleWriter(export)
    if not isinstance(packet, dict) or not isinstance(packet.get("subject"), dict):
        writer.issues.append(Issue.error("not-phenopacket", "expected a phenopacket with a subject", ""))
        return FhirTranslation(writer.bundle(now), writer.issues)
    PacketWriter(writer, packet, "").write()
    return FhirTranslation(writer.bundle(now), writer.issues)


def translate_family(
    family: dict, *, profile: str | ExportProfile = "generic", now: datetime | None = None
) -> FhirTranslation:
    """A Family message: the proband as `translate_phenopacket`, each relative as a FamilyMemberHistory."""
    export = profile if isinstance(profile, ExportProfile) else load_export_profile(profile)
    writer = BundleWriter(export)
    proband = family.get("proband") if isinstance(family, dict) else None
    if not isinstance(proband, dict) or not isinstance(proband.get("subject"), dict):
        writer.issues.append(Issue.error("not-phenopacket", "expected a Family with a proband", "/proband"))
        return FhirTranslation(writer.bundle(now), writer.issues)
    proband_writer = PacketWriter(writer, proband, "/proband")
    proband_writer.write()
    pedigree = {
        _text(p.get("individualId")): p
        for p in _list(_dict(family.get("pedigree")).get("persons"))
        if isinstance(p, dict) and _text(p.get("individualId"))
    }
    for r, relative in enumerate(_list(family.get("relatives"))):
        if isinstance(relative, dict):
            proband_writer.relative(relative, f"/relatives/{r}", pedigree)
        else:
            writer.warn("unmapped-element", "a relative must be a phenopacket", f"/relatives/{r}")
    return FhirTranslation(writer.bundle(now), writer.issues)


# --- small helpers ------------------------------------------------------------------------------


IMPLICATION_KIND = "diagnostic-implication"  # the forward direction's name for an implication's other parts
TBD_WORD = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # a Genomics Reporting tbd code, e.g. feature-consequence
LOINC_CODE = re.compile(r"\d{1,8}-\d")


def annotation_codes(profile: Any) -> dict[str, str]:
    """Name of a finding about variants (profile `variant_annotation_codes`) -> the first "<system>|<code>" of it."""
    out: dict[str, str] = {}
    for key, name in profile.variant_annotation_codes.items():
        out.setdefault(name, key)
    return out


def _annotation_component(part: str, value: str, system: str) -> dict | None:
    """A component from an extension "<kind> <part>": `part` is the code name the forward direction gave it
    (a LOINC code, a code of the finding's own code system, or the code's text); its value as text."""
    if part == "interpretation":
        return None  # the Observation's interpretation, not a component
    if LOINC_CODE.fullmatch(part):
        code: dict = {"coding": [{"system": LOINC, "code": part}]}
    elif TBD_WORD.fullmatch(part):
        code = {"coding": [{"system": system, "code": part}]}
    else:
        code = {"text": part}
    return {"code": code, "valueString": value}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """The value when it is a non-empty string (JSON of the wrong type is read as absent, never used as a key)."""
    return value if isinstance(value, str) and value else None


def _loinc(code: tuple[str, str]) -> dict:
    return {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]}


def iso_to_fhir_age(duration: Any) -> dict | None:
    """An ISO 8601 age as a FHIR Age in one UCUM unit (years, months, weeks or days), None if not exact."""
    match = ISO_DURATION_RE.match(duration) if isinstance(duration, str) else None
    if not match or not any(match.groups()):
        return None
    years, months, weeks, days = (int(g) if g else 0 for g in match.groups())
    if weeks or days:
        if years or months or (weeks and days):
            return None  # years and days do not add up to one exact unit
        value, code, unit = (weeks, "wk", "weeks") if weeks else (days, "d", "days")
    elif months:
        value, code, unit = years * 12 + months, "mo", "months"
    else:
        value, code, unit = years, "a", "years"
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _rfc3339(now: datetime) -> str:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the bundle ---------------------------------------------------------------------------------


class BundleWriter:
    """Collects the entries of one collection Bundle (one or more patients) and the issues."""

    def __init__(self, export: ExportProfile, registry: CodeSystemRegistry | None = None):
        self.export = export
        self.registry = registry or load_registry()
        self.tables: ReverseTables = load_reverse_tables()
        self.entries: list[dict] = []
        self.issues: list[Issue] = []
        self.written: dict[str, dict] = {}  # fullUrl -> the resource in the Bundle (still open to additions)
        self.seed = ""

    def add(self, resource: dict, kind: str, key: str) -> str:
        """Append `resource` (its id derived from `key`), tagged with the profile's URLs for `kind`: its fullUrl."""
        rid = str(uuid.uuid5(ID_NAMESPACE, f"{self.seed}|{key}"))
        entry: dict = {"resourceType": resource["resourceType"], "id": rid}
        profiles = self.export.meta_profiles.get(kind)
        if profiles:
            entry["meta"] = {"profile": list(profiles)}
        entry.update((k, v) for k, v in resource.items() if k != "resourceType")
        full_url = f"urn:uuid:{rid}"
        self.entries.append({"fullUrl": full_url, "resource": entry})
        self.written[full_url] = entry
        return full_url

    def bundle(self, now: datetime | None) -> dict:
        bundle: dict = {"resourceType": "Bundle", "type": "collection"}
        if now is not None:
            bundle["timestamp"] = _rfc3339(now)
        if self.entries:
            bundle["entry"] = self.entries
        return bundle

    # codes
    def coding(self, term: Any, location: str, what: str) -> dict | None:
        """An OntologyClass as a FHIR Coding, None (with a warning) when its prefix is not in the registry."""
        term = _dict(term)
        curie = term.get("id")
        prefix, sep, _ = curie.partition(":") if isinstance(curie, str) else ("", "", "")
        system = self.registry.system_for_prefix(prefix) if sep else None
        if system is not None and system.namespace is not None and system.fhir_system(curie) is None:
            system = None  # a namespace family's CURIE that names no member system
        if system is None:
            self.issues.append(
                Issue.warning(
                    "unmapped-code",
                    f"{what} {curie!r} is not in a code system the gateway maps to FHIR: kept as text only",
                    location + "/id",
                )
            )
            return None
        coding = {"system": self.export.system_uri(system, curie), "code": system.fhir_code(curie)}
        if isinstance(term.get("label"), str) and term["label"]:
            coding["display"] = term["label"]
        return coding

    def concept(self, term: Any, location: str, what: str, extra: list[dict] = ()) -> dict:
        coding = self.coding(term, location, what)
        label = _dict(term).get("label")
        out: dict = {}
        if coding is not None or extra:
            out["coding"] = ([coding] if coding else []) + list(extra)
        if coding is None and isinstance(label, str) and label:
            out["text"] = label
        return out

    def readable(self, term: Any, prefixes, location: str, what: str) -> None:
        """Warn when a term's code system is one this profile's own forward reading ignores for `what`."""
        curie = _dict(term).get("id")
        prefix = curie.split(":", 1)[0] if isinstance(curie, str) and ":" in curie else None
        system = self.registry.system_for_prefix(prefix) if prefix else None
        if system is not None and system.prefix not in prefixes:
            self.warn(
                "unmapped-code",
                f"{what} {curie} is written, but profile {self.export.name} codes {what}s only in "
                f"{', '.join(sorted(prefixes))}: a receiver on this profile may not recognise it",
                location + "/id",
            )

    def answer(self, section: str, target: Any, display: Any = None) -> dict | None:
        """The LOINC/SNOMED answer the reverse table gives for a phenopacket value, as a CodeableConcept."""
        curie = self.tables.answers[section].get(_text(target))
        display = _text(display)
        if curie is None:
            return None
        prefix, _, code = curie.partition(":")
        system = self.registry.system_for_prefix(prefix)
        coding = {"system": self.export.system_uri(system), "code": code}
        if display:
            coding["display"] = display
        return {"coding": [coding]}

    def variant_code(self) -> dict:
        """Observation.code of a variant: the profile's first variant code (LOINC 69548-6)."""
        prefix, _, code = self.export.variant_code.partition(":")
        system = self.registry.system_for_prefix(prefix)
        coding = {"system": self.export.system_uri(system), "code": code}
        if code == VARIANT_ASSESSMENT[0]:
            coding["display"] = VARIANT_ASSESSMENT[1]
        return {"coding": [coding]}

    def warn(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.warning(code, message, location))

    def note(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.info(code, message, location))


# --- one phenopacket ----------------------------------------------------------------------------


class PacketWriter:
    def __init__(self, writer: BundleWriter, packet: dict, base: str):
        self.w = writer
        self.packet = packet
        self.base = base
        self.subject = _dict(packet.get("subject"))
        writer.seed = f"{packet.get('id')}|{self.subject.get('id')}"
        self.patient_ref = ""
        self.specimen_refs: dict[str, str] = {}
        self.report_results: list[str] = []
        self.disease_conditions: dict[tuple[str, str], dict] = {}  # (term id, verification) -> Condition
        self.condition_urls: dict[int, str] = {}  # id() of a Condition written -> its fullUrl
        self.tnm_focus: dict[str, list[tuple[str, str]]] = {}  # TNM finding id -> [(Condition fullUrl, pointer)]
        # variant fullUrl -> its findings' extensions by kind, in order ([(part, value)]), and its descriptor's pointer
        self.findings: dict[str, tuple[dict[str, list[tuple[str, str]]], str]] = {}

    def ref(self, full_url: str) -> dict:
        return {"reference": full_url}

    def subject_ref(self) -> dict:
        return self.ref(self.patient_ref)

    def write(self) -> None:
        packet, base = self.packet, self.base
        self.patient()
        for i, feature in enumerate(_list(packet.get("phenotypicFeatures"))):
            self.phenotype(_dict(feature), f"{base}/phenotypicFeatures/{i}")
        for i, sample in enumerate(_list(packet.get("biosamples"))):
            self.biosample(_dict(sample), f"{base}/biosamples/{i}")
        alternates = self.alternate_codings()
        for i, disease in enumerate(_list(packet.get("diseases"))):
            self.disease(_dict(disease), f"{base}/diseases/{i}", alternates)
        for i, interpretation in enumerate(_list(packet.get("interpretations"))):
            self.interpretation(_dict(interpretation), f"{base}/interpretations/{i}")
        for i, measurement in enumerate(_list(packet.get("measurements"))):
            self.measurement(_dict(measurement), f"{base}/measurements/{i}", self.subject_ref())
        for curie, focused in self.tnm_focus.items():  # findings no measurement carried
            for _, location in focused:
                self.w.warn(
                    "unmapped-element",
                    f"TNM finding {curie} has no measurement (assay and time) to write as an Observation",
                    location,
                )
        for i, action in enumerate(_list(packet.get("medicalActions"))):
            self.medical_action(_dict(action), f"{base}/medicalActions/{i}")
        if self.report_results:
            self.w.add(
                {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "category": [
                        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE"}]}
                    ],
                    "code": _loinc(GENETIC_REPORT),
                    "subject": self.subject_ref(),
                    "result": [self.ref(r) for r in self.report_results],
                },
                "report",
                "report",
            )
        if packet.get("files"):
            self.w.warn("unmapped-element", "files have no FHIR target in this export", f"{base}/files")

    # --- subject ---
    def patient(self) -> None:
        subject, base = self.subject, f"{self.base}/subject"
        w = self.w
        patient: dict = {"resourceType": "Patient"}
        if isinstance(subject.get("id"), str) and subject["id"]:
            patient["identifier"] = [{"type": ANONYMOUS_ID_TYPE, "system": PSEUDONYM_SYSTEM, "value": subject["id"]}]
        else:
            w.warn("unmapped-element", "subject has no id: the Patient carries no pseudonym", base + "/id")
        sex = subject.get("sex")
        if sex is not None:
            gender = w.tables.sex_to_gender.get(_text(sex))
            if gender is None:
                w.warn("unmapped-code", f"sex {sex!r} has no administrative gender", base + "/sex")
            else:
                patient["gender"] = gender
                extension = w.export.sex_extension
                if extension and sex in extension["codes"]:
                    coding = {"system": extension["system"], "code": extension["codes"][sex]}
                    patient["_gender"] = {"extension": [{"url": extension["url"], "valueCoding": coding}]}
        status = _dict(subject.get("vitalStatus")).get("status")
        if status in ("DECEASED", "ALIVE"):
            patient["deceasedBoolean"] = status == "DECEASED"
        for key in ("timeOfDeath", "causeOfDeath", "survivalTimeInDays"):
            if key in _dict(subject.get("vitalStatus")):
                w.warn("unmapped-element", f"vitalStatus.{key} is not exported", f"{base}/vitalStatus/{key}")
        for key, value in subject.items():
            if key in SUBJECT_IGNORED or value in (None, "", [], {}):
                continue
            if key == "timeAtLastEncounter":
                message = "an age cannot become a date without the birth date, which is never exported"
            elif key in ("dateOfBirth", "alternateIds"):
                message = f"{key} is identifying and never exported (the Patient carries the pseudonym only)"
            else:
                message = f"subject.{key} has no FHIR target in this export"
            w.warn("unmapped-element", message, f"{base}/{key}")
        taxonomy = _dict(subject.get("taxonomy")).get("id")
        if taxonomy not in (None, "NCBITaxon:9606"):
            w.warn("unmapped-element", f"taxonomy {taxonomy!r}: a FHIR Patient is a human", base + "/taxonomy")
        self.patient_ref = w.add(patient, "patient", "subject")

    # --- phenotypes ---
    def phenotype(self, feature: dict, location: str) -> None:
        w = self.w
        excluded = feature.get("excluded") is True
        answer = w.answer("presence", "absent" if excluded else "present", "Absent" if excluded else "Present")
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "exam", "display": "Exam"}]}],
            "code": w.concept(feature.get("type"), location + "/type", "phenotype"),
            "subject": self.subject_ref(),
        }
        w.readable(feature.get("type"), w.export.profile.phenotype_prefixes, location + "/type", "phenotype")
        components = []
        if w.export.phenotype_presence == "component":
            prefix, _, code = w.export.presence_component.partition(":")
            system = w.registry.system_for_prefix(prefix)
            components.append(
                {
                    "code": {"coding": [{"system": w.export.system_uri(system), "code": system.fhir_code(code)}]},
                    "valueCodeableConcept": answer,
                }
            )
        else:
            obs["valueCodeableConcept"] = answer
        if feature.get("severity"):
            prefix, _, code = w.export.severity_component.partition(":")
            system = w.registry.system_for_prefix(prefix)
            severity = {"system": w.export.system_uri(system), "code": system.fhir_code(w.export.severity_component)}
            components.append(
                {
                    "code": {"coding": [{**severity, "display": "Severity"}]},
                    "valueCodeableConcept": w.concept(feature["severity"], location + "/severity", "severity"),
                }
            )
        # modifiers and an onset term as the components the forward direction reads (profile data)
        written = set()
        modifiers = feature.get("modifiers") if isinstance(feature.get("modifiers"), list) else []
        if modifiers and w.export.modifier_component:
            code = self.component_code(w.export.modifier_component, "Clinical modifier")
            for k, modifier in enumerate(modifiers):
                value = w.concept(modifier, f"{location}/modifiers/{k}", "modifier")
                components.append({"code": code, "valueCodeableConcept": value})
            written.add("modifiers")
        onset_term = _dict(feature.get("onset")).get("ontologyClass")
        if onset_term and w.export.onset_component:
            code = self.component_code(w.export.onset_component, "Onset")
            value = w.concept(onset_term, location + "/onset/ontologyClass", "onset")
            components.append({"code": code, "valueCodeableConcept": value})
            written.add("onset")
        if components:
            obs["component"] = components
        notes = []
        if isinstance(feature.get("description"), str) and feature["description"]:
            notes.append(feature["description"])
        onset = feature.get("onset")
        if onset and "onset" not in written:
            notes.append(f"onset: {self.time_text(onset)}")
            w.warn(
                "unmapped-element",
                "the onset of a finding has no age-valued element in an Observation: written as a note only",
                location + "/onset",
            )
        for key in ("modifiers", "resolution", "evidence"):
            if feature.get(key) and key not in written:
                w.warn("unmapped-element", f"phenotypicFeature.{key} is not exported", f"{location}/{key}")
        if notes:
            obs["note"] = [{"text": n} for n in notes]
        w.add(obs, "phenotype", location)

    def component_code(self, curie: str, display: str) -> dict:
        """The CodeableConcept of a component code given as a CURIE of the profile's data."""
        w = self.w
        prefix = curie.partition(":")[0]
        system = w.registry.system_for_prefix(prefix)
        return {
            "coding": [{"system": w.export.system_uri(system), "code": system.fhir_code(curie), "display": display}]
        }

    @staticmethod
    def time_text(element: Any) -> str:
        element = _dict(element)
        if "age" in element:
            return str(_dict(element["age"]).get("iso8601duration"))
        if "ontologyClass" in element:
            term = _dict(element["ontologyClass"])
            return f"{term.get('label')} ({term.get('id')})"
        if "gestationalAge" in element:
            return f"gestational age {_dict(element['gestationalAge']).get('weeks')} weeks"
        if "timestamp" in element:
            return str(element["timestamp"])
        return str(element)

    # --- diseases ---
    def alternate_codings(self) -> dict[str, list[str]]:
        """term id -> the sender's other codes that the forward direction kept as external references."""
        out: dict[str, list[str]] = {}
        for reference in _list(_dict(self.packet.get("metaData")).get("externalReferences")):
            reference = _dict(reference)
            match = ALTERNATE_RE.match(str(reference.get("description", "")))
            if match and isinstance(reference.get("id"), str):
                out.setdefault(match.group(1), []).append(reference["id"])
        return out

    def condition_time(self, cond: dict, stem: str, element: Any, location: str) -> None:
        element = _dict(element)
        if "age" in element:
            age = iso_to_fhir_age(_dict(element["age"]).get("iso8601duration"))
            if age is not None:
                cond[f"{stem}Age"] = age
                return
        elif "timestamp" in element:
            cond[f"{stem}DateTime"] = element["timestamp"]
            return
        elif "ageRange" in element:
            ends = [
                iso_to_fhir_age(_dict(_dict(element["ageRange"]).get(k)).get("iso8601duration"))
                for k in ("start", "end")
            ]
            if ends[0] is not None and ends[1] is not None:
                cond[f"{stem}Range"] = {"low": ends[0], "high": ends[1]}
                return
        elif "ontologyClass" in element or "gestationalAge" in element:
            cond[f"{stem}String"] = self.time_text(element)
            self.w.note("unmapped-element", f"{stem} written as text (FHIR has no coded {stem})", location)
            return
        self.w.warn("unmapped-element", f"this {stem} has no FHIR form", location)

    def disease(self, disease: dict, location: str, alternates: dict[str, list[str]]) -> None:
        w = self.w
        term = _dict(disease.get("term"))
        extra = []
        for curie in alternates.get(_text(term.get("id")), []):
            coding = w.coding({"id": curie}, location + "/term", "alternative coding")
            if coding:
                extra.append(coding)
        verification = "refuted" if disease.get("excluded") is True else "confirmed"
        w.readable(term, w.export.profile.disease_coding_priority, location + "/term", "disease")
        cond = self.condition(term, verification, location, extra)
        if disease.get("onset"):
            self.condition_time(cond, "onset", disease["onset"], location + "/onset")
        if disease.get("resolution"):
            self.condition_time(cond, "abatement", disease["resolution"], location + "/resolution")
            if any(k.startswith("abatement") for k in cond):
                cond["clinicalStatus"] = {"coding": [{"system": CLINICAL_SYSTEM, "code": "resolved"}]}
        for k, stage in enumerate(_list(disease.get("diseaseStage"))):
            summary = w.concept(stage, f"{location}/diseaseStage/{k}", "stage")
            cond.setdefault("stage", []).append({"summary": summary})
        if disease.get("primarySite"):
            site = w.concept(disease["primarySite"], location + "/primarySite", "body site")
            cond.setdefault("bodySite", []).append(site)
        if disease.get("laterality"):
            self.laterality(cond, _dict(disease["laterality"]), location + "/laterality")
        # FHIR holds TNM categories as Observations whose focus is the Condition (the form the FHIR ->
        # phenopacket direction reads): the measurement with that value is written with the focus.
        for k, finding in enumerate(_list(disease.get("clinicalTnmFinding"))):
            curie = _text(_dict(finding).get("id"))
            where = f"{location}/clinicalTnmFinding/{k}"
            if curie is None:
                w.warn("unmapped-element", "a TNM finding without an id", where)
                continue
            self.tnm_focus.setdefault(curie, []).append((self.condition_urls[id(cond)], where))

    def laterality(self, cond: dict, side: dict, location: str) -> None:
        """Disease.laterality -> a Condition.bodySite coded with the side (mappings/translators/laterality.yaml)."""
        key = self.w.tables.laterality.get(_text(side.get("id")) or "")
        if key is None:
            self.w.warn("unmapped-code", "laterality has no FHIR side coding", location)
            return
        system, _, code = key.partition("|")
        coding = {"system": system, "code": code}
        if _text(side.get("label")):
            coding["display"] = side["label"]
        cond.setdefault("bodySite", []).append({"coding": [coding]})

    def condition(self, term: dict, verification: str, location: str, extra: list[dict] = ()) -> dict:
        """The Condition for (disease, verification status), created on first use and shared after."""
        key = (str(term.get("id")), verification)
        if key in self.disease_conditions:
            return self.disease_conditions[key]
        cond: dict = {
            "resourceType": "Condition",
            "verificationStatus": {"coding": [{"system": VERIFICATION_SYSTEM, "code": verification}]},
            "code": self.w.concept(term, location + "/term", "disease", extra),
            "subject": self.subject_ref(),
        }
        full_url = self.w.add(cond, "disease", location)
        self.disease_conditions[key] = self.w.written[full_url]
        self.condition_urls[id(self.disease_conditions[key])] = full_url
        return self.disease_conditions[key]

    # --- interpretations ---
    def interpretation(self, interpretation: dict, location: str) -> None:
        w = self.w
        diagnosis = _dict(interpretation.get("diagnosis"))
        disease = _dict(diagnosis.get("disease"))
        if disease.get("id") != UNSPECIFIED_DISEASE:
            w.readable(disease, w.export.profile.disease_coding_priority, location + "/diagnosis/disease", "disease")
        for g, item in enumerate(_list(diagnosis.get("genomicInterpretations"))):
            item, where = _dict(item), f"{location}/diagnosis/genomicInterpretations/{g}"
            variant = _dict(item.get("variantInterpretation"))
            if not variant:
                w.warn("unmapped-element", "only variant interpretations are exported (not gene ones)", where)
                continue
            variant_ref = self.variant(variant, where + "/variantInterpretation", item.get("subjectOrBiosampleId"))
            if variant_ref is None:
                continue
            self.variant_findings(variant, variant_ref, disease, where + "/variantInterpretation")
            status = item.get("interpretationStatus", "UNKNOWN_STATUS")
            if disease.get("id") == UNSPECIFIED_DISEASE and status == "UNKNOWN_STATUS":
                continue  # the forward direction's "no disease given": the variant stays unlinked
            verification = INTERPRETATION_VERIFICATION.get(_text(status))
            if verification is None:
                w.warn(
                    "unmapped-element",
                    f"interpretationStatus {status!r} has no Condition verification status: written provisional",
                    where + "/interpretationStatus",
                )
                verification = "provisional"
            cond = self.condition(disease, verification, location + "/diagnosis/disease")
            self.evidence(cond, variant_ref, stated_status(status, _dict(variant.get("variationDescriptor"))))
        if not _list(diagnosis.get("genomicInterpretations")) and disease.get("id") != UNSPECIFIED_DISEASE:
            # A diagnosis under consideration without variants (the forward direction's home of a
            # provisional / differential / unconfirmed Condition): a provisional Condition.
            self.condition(disease, "provisional", location + "/diagnosis/disease")

    def evidence(self, cond: dict, variant_ref: str, status: str | None) -> None:
        """Cite a variant as the Condition's evidence; one whose status must be stated, under an entry coded so."""
        evidence = cond.setdefault("evidence", [])
        code = [evidence_status_code(status)] if status else None
        entry = next((e for e in evidence if e.get("code") == code), None)
        if entry is None:
            entry = {"code": code, "detail": []} if code else {"detail": []}
            evidence.append(entry)
        entry["detail"].append(self.ref(variant_ref))

    def component(self, code: tuple[str, str], **value) -> dict:
        return {"code": _loinc(code), **value}

    def variant(self, variant: dict, location: str, subject_or_sample: Any) -> str | None:
        """A Genomics Reporting variant Observation; its fullUrl, or None when nothing describes a variant."""
        w = self.w
        vd = _dict(variant.get("variationDescriptor"))
        base = location + "/variationDescriptor"
        components: list[dict] = []
        gene = _dict(vd.get("geneContext"))
        if gene.get("valueId"):
            coding = w.coding({"id": gene["valueId"], "label": gene.get("symbol")}, base + "/geneContext", "gene")
            if coding:
                components.append(self.component(GENE_STUDIED, valueCodeableConcept={"coding": [coding]}))
        expressions, accession = self.expression_components(vd, base)
        components.extend(expressions)
        components.extend(self.vcf_components(_dict(vd.get("vcfRecord")), base + "/vcfRecord", accession))
        xrefs = [x for x in _list(vd.get("xrefs")) if isinstance(x, str)]
        rs_id = _dict(vd.get("vcfRecord")).get("id")
        if isinstance(rs_id, str) and re.fullmatch(r"rs\d+", rs_id) and f"dbSNP:{rs_id}" not in xrefs:
            xrefs.append(f"dbSNP:{rs_id}")
        discrete = [c for x in xrefs if (c := w.coding({"id": x}, base + "/xrefs", "variant cross-reference"))]
        if discrete:
            components.append(self.component(DISCRETE_VARIANT, valueCodeableConcept={"coding": discrete}))
        state = _dict(vd.get("allelicState"))
        if state:
            answer = w.answer("allelic_state", state.get("id"), state.get("label"))
            if answer is None:
                w.warn(
                    "unmapped-code", f"allelic state {state.get('id')!r} has no LOINC answer", base + "/allelicState"
                )
            else:
                components.append(self.component(ALLELIC_STATE, valueCodeableConcept=answer))
        notes = []
        if vd.get("structuralType"):
            change = w.concept(vd["structuralType"], base + "/structuralType", "structural type")
            components.append(self.component(DNA_CHANGE_TYPE, valueCodeableConcept=change))
        annotations: dict[str, list[tuple[str, str]]] = {}
        components.extend(self.extension_components(vd, base, extras := {}, annotations))
        if isinstance(vd.get("label"), str) and vd["label"]:
            notes.append(vd["label"])  # the forward direction reads the first note back as the label
            if isinstance(vd.get("description"), str) and vd["description"]:
                notes.append(vd["description"])  # ... and the further notes as the description
        for key, value in vd.items():
            if value and key not in DESCRIPTOR_KEYS_WRITTEN:
                w.warn("unmapped-element", f"variationDescriptor.{key} is not exported", f"{base}/{key}")
        if not components:
            w.warn("unmapped-element", "the variant has nothing FHIR Genomics Reporting can describe", location)
            return None
        if not (gene.get("valueId") or vd.get("expressions") or vd.get("vcfRecord")):
            w.warn(
                "unmapped-element",
                "no gene, HGVS or VCF record: nothing in this variant Observation names the variant",
                location,  # the whole interpretation (class, zygosity) goes with it
            )
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": w.variant_code(),
            "subject": self.subject_ref(),
            "valueCodeableConcept": w.answer("presence", "present", "Present"),
            "component": components,
        }
        if isinstance(subject_or_sample, str) and subject_or_sample in self.specimen_refs:
            obs["specimen"] = self.ref(self.specimen_refs[subject_or_sample])
        if notes:
            obs["note"] = [{"text": n} for n in notes]
        obs.update(extras)
        full_url = w.add(obs, "variant", location)
        self.report_results.append(full_url)
        self.findings[full_url] = (annotations, base)
        return full_url

    def variant_findings(self, variant: dict, variant_ref: str, disease: dict, location: str) -> None:
        """The Observations derived from a variant, in the order their extensions came (so that reading them
        back gives the same descriptor): the diagnostic implication and the other findings about it."""
        annotations, base = self.findings.pop(variant_ref, ({}, location))
        if IMPLICATION_KIND not in annotations:
            self.implication(variant, variant_ref, disease, location, [])
        for kind, carried in annotations.items():
            if kind == IMPLICATION_KIND:
                self.implication(variant, variant_ref, disease, location, carried)
            else:
                self.annotation(kind, carried, variant_ref, base)

    def annotation(self, kind: str, carried: list[tuple[str, str]], variant_ref: str, base: str) -> None:
        """A finding about the variant the forward direction read from an Observation of its own (profile
        `variant_annotation_codes`: a molecular consequence, a therapeutic implication), written back as one,
        derived from the variant; its components and interpretation from the extensions named after it."""
        w = self.w
        system, _, code = annotation_codes(w.export.profile)[kind].partition("|")
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": self.subject_ref(),
            "derivedFrom": [self.ref(variant_ref)],
        }
        components = [c for part, value in carried if (c := _annotation_component(part, value, system)) is not None]
        interpretations = [{"text": value} for part, value in carried if part == "interpretation"]
        if components:
            obs["component"] = components
        if interpretations:
            obs["interpretation"] = interpretations
        w.add(obs, kind.replace("-", "_"), f"{base}/extensions/{kind}")  # the key of its id: one per kind

    def extension_components(
        self, vd: dict, base: str, extras: dict, annotations: dict[str, list[tuple[str, str]]]
    ) -> list[dict]:
        """Descriptor extensions and alternate labels back into the components (or Observation elements)
        the forward direction made them from (mappings/variants/variant_components.yaml); values as text.
        Extensions named "<kind> <part>" after a finding of its own (`annotation_codes`) go to `annotations`."""
        codes = extension_codes()
        kinds = annotation_codes(self.w.export.profile)
        out = []
        for e, ext in enumerate(_list(vd.get("extensions"))):
            name, value = _text(_dict(ext).get("name")), _text(_dict(ext).get("value"))
            kind, _, part = (name or "").partition(" ")
            if value and part and (kind in kinds or kind == IMPLICATION_KIND) and name not in codes:
                annotations.setdefault(kind, []).append((part, value))
            elif name in OBSERVATION_EXTENSIONS and value:
                element = OBSERVATION_EXTENSIONS[name]
                if element == "method":
                    extras["method"] = {"text": value}
                else:
                    extras.setdefault(element, []).append({"text": value})
            elif name in codes and value:
                out.append({"code": codes[name], "valueString": value})
            else:
                self.w.warn("unmapped-element", f"extension {name!r} is not exported", f"{base}/extensions/{e}")
        for label in _list(vd.get("alternateLabels")):
            if _text(label) and "alternate_label" in codes:
                out.append({"code": codes["alternate_label"], "valueString": label})
        return out

    def expression_components(self, vd: dict, base: str) -> tuple[list[dict], str | None]:
        """The c./g./p.HGVS components, the transcript, and the genomic accession the g.HGVS names."""
        out: list[dict] = []
        accession = transcript = None
        for e, expression in enumerate(_list(vd.get("expressions"))):
            expression = _dict(expression)
            syntax, value = expression.get("syntax"), expression.get("value")
            code = {"hgvs.c": CDNA_HGVS, "hgvs.g": GENOMIC_HGVS, "hgvs.p": PROTEIN_HGVS}.get(_text(syntax))
            if code is None or not _text(value):
                self.w.warn(
                    "unmapped-element", f"expression syntax {syntax!r} is not exported", f"{base}/expressions/{e}"
                )
                continue
            head = HGVS_ACCESSION_RE.match(value)
            if head and syntax == "hgvs.g":
                accession = head.group(1)
            if head and syntax == "hgvs.c":
                transcript = head.group(1)
            out.append(self.component(code, valueCodeableConcept={"coding": [{"system": HGVS, "code": value}]}))
        if transcript:
            refseq = {"coding": [{"system": REFSEQ, "code": transcript}]}
            out.append(self.component(TRANSCRIPT_REF_SEQ, valueCodeableConcept=refseq))
        return out, accession

    def vcf_components(self, vcf: dict, base: str, accession: str | None) -> list[dict]:
        if not vcf:
            return []
        w = self.w
        out = []
        assembly = _text(vcf.get("genomeAssembly"))
        assembly = w.tables.assembly_aliases.get(assembly, assembly)
        answer = w.answer("genome_assembly", assembly, assembly)
        if answer is None:
            w.warn("unmapped-code", f"genome assembly {assembly!r} has no LOINC answer", base + "/genomeAssembly")
        else:
            out.append(self.component(ASSEMBLY, valueCodeableConcept=answer))
        chrom = str(vcf.get("chrom", "")).removeprefix("chr")
        nc = w.tables.chromosomes.get((assembly, chrom))
        if nc is None and chrom.split(".", 1)[0] in w.tables.chromosome_names:
            nc = chrom  # the record names its chromosome by RefSeq accession already
        elif nc is None and accession and w.tables.chromosome_names.get(accession.split(".", 1)[0]) == chrom:
            nc = accession  # assembly unknown: the accession the record's own g.HGVS names
        if nc is None:
            w.warn("unmapped-code", f"chromosome {vcf.get('chrom')!r} has no RefSeq accession", base + "/chrom")
        else:
            out.append(
                self.component(GENOMIC_REF_SEQ, valueCodeableConcept={"coding": [{"system": REFSEQ, "code": nc}]})
            )
        pos = vcf.get("pos")
        if isinstance(pos, str | int) and str(pos).isdigit():
            out.append(self.component(ALLELE_START_END, valueRange={"low": {"value": int(pos)}}))
            out.append(
                self.component(
                    COORDINATE_SYSTEM,
                    valueCodeableConcept=w.answer("coordinate_system", "0", "1-based character counting"),
                )
            )
        else:
            w.warn("fhir-value", f"position {pos!r} is not a number", base + "/pos")
        for key, code in (("ref", REF_ALLELE), ("alt", ALT_ALLELE)):
            if isinstance(vcf.get(key), str) and vcf[key]:
                out.append(self.component(code, valueString=vcf[key]))
        for key in ("qual", "filter", "info"):
            if vcf.get(key):
                w.note("unmapped-element", f"vcfRecord.{key} is not exported", f"{base}/{key}")
        return out

    def implication(
        self, variant: dict, variant_ref: str, disease: dict, location: str, parts: list[tuple[str, str]]
    ) -> None:
        """The diagnostic implication Observation: the ACMG class and the disease, with the implication's other
        components the forward direction carried as "diagnostic-implication <code>" extensions."""
        w = self.w
        acmg = variant.get("acmgPathogenicityClassification")
        actionability = variant.get("therapeuticActionability")
        if actionability not in (None, "UNKNOWN_ACTIONABILITY"):
            w.warn(
                "unmapped-element", "therapeuticActionability is not exported", location + "/therapeuticActionability"
            )
        system, _, code = w.export.implication_code.partition("|")
        components = [c for part, value in parts if (c := _annotation_component(part, value, system)) is not None]
        if acmg not in (None, "NOT_PROVIDED"):
            answer = w.answer("clinical_significance", acmg, str(acmg).replace("_", " ").capitalize())
            if answer is None:
                w.warn(
                    "unmapped-code",
                    f"ACMG class {acmg!r} has no LOINC answer",
                    location + "/acmgPathogenicityClassification",
                )
            else:
                components.insert(0, self.component(CLINICAL_SIGNIFICANCE, valueCodeableConcept=answer))
        if not components:
            return
        if disease.get("id") and disease.get("id") != UNSPECIFIED_DISEASE:
            phenotype = w.concept(disease, location, "disease")
            components.append(self.component(ASSOCIATED_PHENOTYPE, valueCodeableConcept=phenotype))
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": system, "code": code, "display": "Diagnostic Implication"}]},
            "subject": self.subject_ref(),
            "derivedFrom": [self.ref(variant_ref)],
            "component": components,
        }
        self.report_results.append(w.add(obs, "diagnostic_implication", location + "/implication"))

    # --- measurements ---
    def measurement(self, measurement: dict, location: str, subject: dict) -> None:
        w = self.w
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": w.concept(measurement.get("assay"), location + "/assay", "assay"),
            "subject": subject,
        }
        value = _dict(measurement.get("value"))
        if "quantity" in value:
            quantity = _dict(value["quantity"])
            obs["valueQuantity"] = self.quantity(quantity, location + "/value/quantity")
            reference = _dict(quantity.get("referenceRange"))
            if reference:
                unit = reference.get("unit") or quantity.get("unit")
                where = location + "/value/quantity/referenceRange"
                obs["referenceRange"] = [
                    {
                        k: self.quantity({"unit": unit, "value": reference[k]}, where)
                        for k in ("low", "high")
                        if isinstance(reference.get(k), int | float)
                    }
                ]
        elif "ontologyClass" in value:
            obs["valueCodeableConcept"] = w.concept(value["ontologyClass"], location + "/value/ontologyClass", "value")
            focused = self.tnm_focus.pop(_text(_dict(value["ontologyClass"]).get("id")) or "", [])
            if focused:  # a disease's TNM finding: the Observation is about that Condition
                obs["focus"] = [self.ref(url) for url in dict.fromkeys(url for url, _ in focused)]
        elif "complexValue" in measurement:
            components = []
            for q, typed in enumerate(_list(_dict(measurement["complexValue"]).get("typedQuantities"))):
                typed, where = _dict(typed), f"{location}/complexValue/typedQuantities/{q}"
                components.append(
                    {
                        "code": w.concept(typed.get("type"), where + "/type", "quantity type"),
                        "valueQuantity": self.quantity(_dict(typed.get("quantity")), where + "/quantity"),
                    }
                )
            if components:
                obs["component"] = components
        else:
            w.warn("unmapped-element", "measurement without a value", location)
        observed = _dict(measurement.get("timeObserved"))
        if "timestamp" in observed:
            obs["effectiveDateTime"] = observed["timestamp"]
        elif observed:
            w.warn("unmapped-element", "an age cannot become an effective date", location + "/timeObserved")
        procedure = _dict(measurement.get("procedure"))
        if procedure.get("code"):  # how it was measured: Observation.method (and where: bodySite)
            obs["method"] = w.concept(procedure["code"], location + "/procedure/code", "method")
        if procedure.get("bodySite"):
            obs["bodySite"] = w.concept(procedure["bodySite"], location + "/procedure/bodySite", "body site")
        for key in ("performed",):
            if procedure.get(key):
                w.warn(
                    "unmapped-element", f"measurement.procedure.{key} is not exported", f"{location}/procedure/{key}"
                )
        if measurement.get("description"):
            w.note("unmapped-element", "measurement.description is not exported", f"{location}/description")
        w.add(obs, "measurement", location)

    def quantity(self, quantity: dict, location: str) -> dict:
        out: dict = {}
        if isinstance(quantity.get("value"), int | float) and not isinstance(quantity.get("value"), bool):
            out["value"] = quantity["value"]
        unit = _dict(quantity.get("unit"))
        if _text(unit.get("label")):
            out["unit"] = unit["label"]
        coding = self.w.coding(unit, location + "/unit", "unit") if unit else None
        if coding:
            out["system"], out["code"] = coding["system"], coding["code"]
        return out

    def dosage(self, interval: dict, route: dict | None, location: str) -> dict:
        """A DoseInterval as a FHIR Dosage: dose, the schedule's Timing.repeat, the interval as its bounds."""
        dosage: dict = {"route": route} if route else {}
        quantity = _dict(interval.get("quantity"))
        if quantity:
            dosage["doseAndRate"] = [{"doseQuantity": self.quantity(quantity, location + "/quantity")}]
        schedule = _dict(interval.get("scheduleFrequency"))
        repeat = dict(self.w.tables.schedules.get(_text(schedule.get("id")) or "", {}))
        if schedule and not repeat:
            self.w.warn(
                "unmapped-code", "schedule frequency has no FHIR timing rhythm", location + "/scheduleFrequency"
            )
        bounds = _dict(interval.get("interval"))
        if bounds.get("start") and bounds.get("end"):
            repeat["boundsPeriod"] = {"start": bounds["start"], "end": bounds["end"]}
        if repeat:
            dosage["timing"] = {"repeat": repeat}
        return dosage

    # --- medical actions ---
    def medical_action(self, action: dict, location: str) -> None:
        w = self.w
        if "treatment" in action:
            treatment, where = _dict(action["treatment"]), location + "/treatment"
            stmt: dict = {
                "resourceType": "MedicationStatement",
                "status": "unknown",
                "medicationCodeableConcept": w.concept(treatment.get("agent"), where + "/agent", "agent"),
                "subject": self.subject_ref(),
            }
            w.readable(treatment.get("agent"), w.export.profile.medication_coding_priority, where + "/agent", "agent")
            route = None
            if treatment.get("routeOfAdministration"):
                route = w.concept(treatment["routeOfAdministration"], where + "/routeOfAdministration", "route")
                stmt["dosage"] = [{"route": route}]
            dosages = [
                self.dosage(_dict(interval), route, f"{where}/doseIntervals/{k}")
                for k, interval in enumerate(_list(treatment.get("doseIntervals")))
            ]
            if dosages:
                stmt["dosage"] = dosages
            for key in ("drugType", "cumulativeDose"):
                if treatment.get(key):
                    w.warn("unmapped-element", f"treatment.{key} is not exported", f"{where}/{key}")
            w.add(stmt, "medication", where)
        elif "procedure" in action:
            procedure, where = _dict(action["procedure"]), location + "/procedure"
            proc: dict = {
                "resourceType": "Procedure",
                "status": "completed",
                "code": w.concept(procedure.get("code"), where + "/code", "procedure"),
                "subject": self.subject_ref(),
            }
            w.readable(procedure.get("code"), w.export.profile.procedure_coding_priority, where + "/code", "procedure")
            if procedure.get("bodySite"):
                proc["bodySite"] = [w.concept(procedure["bodySite"], where + "/bodySite", "body site")]
            performed = _dict(procedure.get("performed"))
            if "timestamp" in performed:
                proc["performedDateTime"] = performed["timestamp"]
            elif performed:
                proc["performedString"] = self.time_text(performed)
                w.warn(
                    "unmapped-element", "an age cannot become a performed date: written as text", where + "/performed"
                )
            w.add(proc, "procedure", where)
        else:
            kind = next(iter(action), "action")
            w.warn("unmapped-element", f"medical action {kind!r} is not exported", f"{location}/{kind}")
        for key in (
            "treatmentTarget",
            "treatmentIntent",
            "responseToTreatment",
            "adverseEvents",
            "treatmentTerminationReason",
        ):
            if action.get(key):
                w.warn("unmapped-element", f"medicalAction.{key} is not exported", f"{location}/{key}")

    # --- biosamples ---
    def biosample(self, sample: dict, location: str) -> None:
        w = self.w
        spec: dict = {"resourceType": "Specimen", "subject": self.subject_ref()}
        individual = sample.get("individualId")
        if individual not in (None, self.subject.get("id")):
            w.warn(
                "unmapped-element",
                "biosample of another individual: filed under the subject",
                location + "/individualId",
            )
        tissue = _dict(sample.get("sampledTissue"))
        if sample.get("sampleType"):
            spec["type"] = w.concept(sample["sampleType"], location + "/sampleType", "sample type")
        elif _text(tissue.get("id")) in w.tables.sampled_tissue:
            system, _, code = w.tables.sampled_tissue[tissue["id"]].partition("|")
            spec["type"] = {"coding": [{"system": system, "code": code}]}
        collection: dict = {}
        if tissue:
            collection["bodySite"] = w.concept(tissue, location + "/sampledTissue", "sampled tissue")
        collected = _dict(sample.get("timeOfCollection"))
        if "timestamp" in collected:
            collection["collectedDateTime"] = collected["timestamp"]
        elif collected:
            w.warn("unmapped-element", "an age cannot become a collection date", location + "/timeOfCollection")
        if collection:
            spec["collection"] = collection
        parent = self.specimen_refs.get(_text(sample.get("derivedFromId")))
        if parent:
            spec["parent"] = [self.ref(parent)]
        if isinstance(sample.get("description"), str) and sample["description"]:
            spec["note"] = [{"text": sample["description"]}]
        for key, value in sample.items():
            if value and key not in (
                "id",
                "individualId",
                "sampledTissue",
                "sampleType",
                "timeOfCollection",
                "derivedFromId",
                "description",
                "taxonomy",
            ):
                w.warn("unmapped-element", f"biosample.{key} is not exported", f"{location}/{key}")
        full_url = w.add(spec, "specimen", location)
        if isinstance(sample.get("id"), str):
            self.specimen_refs[sample["id"]] = full_url

    # --- family ---
    def relative(self, relative: dict, location: str, pedigree: dict) -> None:
        w = self.w
        subject = _dict(relative.get("subject"))
        relationship = self.relationship(subject.get("id"), pedigree)
        history: dict = {
            "resourceType": "FamilyMemberHistory",
            "status": "completed",
            "patient": self.subject_ref(),
            "relationship": {"coding": [{"system": ROLE_CODE, "code": relationship[0], "display": relationship[1]}]},
        }
        gender = w.tables.sex_to_gender.get(_text(subject.get("sex")))
        if gender:
            history["sex"] = {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": gender}]}
        status = _dict(subject.get("vitalStatus")).get("status")
        if status in ("ALIVE", "DECEASED"):  # a relative known to be alive is a fact too
            history["deceasedBoolean"] = status == "DECEASED"
        conditions = []
        for kind, key, term_key in (("disease", "diseases", "term"), ("phenotype", "phenotypicFeatures", "type")):
            for k, item in enumerate(_list(relative.get(key))):
                item = _dict(item)
                if item.get("excluded") is True:
                    w.warn(
                        "unmapped-element",
                        f"an excluded {kind} has no place in a FamilyMemberHistory",
                        f"{location}/{key}/{k}",
                    )
                    continue
                condition = {"code": w.concept(item.get(term_key), f"{location}/{key}/{k}/{term_key}", kind)}
                onset = iso_to_fhir_age(_dict(_dict(item.get("onset")).get("age")).get("iso8601duration"))
                if onset:  # the age at onset is what a family history records (FHIR onsetAge)
                    condition["onsetAge"] = onset
                conditions.append((_dict(item.get(term_key)).get("id"), condition))
        cause = _dict(_dict(subject.get("vitalStatus")).get("causeOfDeath"))
        if cause.get("id"):  # the cause of death is the condition that contributed to it (FHIR)
            known = next((c for term_id, c in conditions if term_id == cause["id"]), None)
            if known is None:
                known = {"code": w.concept(cause, f"{location}/subject/vitalStatus/causeOfDeath", "disease")}
                conditions.append((cause["id"], known))
            known["contributedToDeath"] = True
        if conditions:
            history["condition"] = [condition for _, condition in conditions]
        for key in ("interpretations", "measurements", "biosamples", "medicalActions"):
            if relative.get(key):
                w.warn("unmapped-element", f"a relative's {key} are not exported", f"{location}/{key}")
        w.add(history, "family", location)

    def relationship(self, relative_id: Any, pedigree: dict) -> tuple[str, str]:
        """The relative's role towards the proband (v3 RoleCode) from the pedigree's parent links."""
        me_id, relative_id = _text(self.subject.get("id")), _text(relative_id)
        me, them = _dict(pedigree.get(me_id)), _dict(pedigree.get(relative_id))
        my_parents = (_text(me.get("paternalId")), _text(me.get("maternalId")))
        their_parents = (_text(them.get("paternalId")), _text(them.get("maternalId")))
        if relative_id and relative_id == my_parents[0]:
            return "FTH", "father"
        if relative_id and relative_id == my_parents[1]:
            return "MTH", "mother"
        if me_id and me_id in their_parents:
            return "CHILD", "child"
        if (set(my_parents) - {None, "0"}) & set(their_parents):
            return "SIB", "sibling"
        return "FAMMEMB", "family member"
