"""FHIR R4 Bundle -> GA4GH Phenopacket v2 (protobuf JSON form), one phenopacket per Patient.

Pure: works on the parsed JSON dicts (no I/O, no models, no copies of the input) and returns the
phenopackets plus `Issue`s whose locations are JSON pointers into the *input* bundle.

What goes where (the code tables are data in mappings/, the knobs per country in mappings/profiles/):

- Patient -> subject. `id` is `pseudonymise(key, value, system)` over the first identifier in the
  profile's identifier-system priority list, else over the entry's absolute fullUrl or `Patient/<id>`.
  Sex from administrative gender (refined by profile extensions such as gender-amtlich-de).
  Dates become ages (see translators/ages.py): `timeAtLastEncounter` is the age in whole years at
  `now`, or at the date of death for a deceased patient; `vitalStatus` from deceased[x] with
  `timeOfDeath` as an age. Names, addresses, telecom, identifiers, notes and narrative never leave.
- HPO findings -> phenotypicFeatures: an Observation coded with HPO (valueBoolean, a presence answer
  in the value or in a presence component such as SNOMED 260411009 of the MII HPO assessment; severity
  from an HP:0012824 component); HPO-coded components of other Observations; a Condition whose chosen
  coding is HPO (verificationStatus refuted -> excluded).
- Conditions -> diseases, coded by the profile's disease priority list; one disease per distinct code.
- Variant Observations (Genomics Reporting 69548-6 and profile extras) -> interpretations: those named
  as evidence by a Condition form that Condition's diagnosis, the rest one interpretation without
  disease. Clinical significance comes from the variant or from a diagnostic-implication derived from it.
- Specimen -> biosamples, Procedure / MedicationStatement -> medicalActions.
Anything that cannot be mapped becomes an Issue (warning; information when only a detail is lost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from gateway.issues import Issue
from gateway.security.pseudonym import derived_id, pseudonymise
from mappings import CodeSystem, CodeSystemRegistry, Profile, Tables, load_registry, load_tables
from translators.ages import age_element, fhir_age_to_iso, parse_fhir_date, whole_years

SCHEMA_VERSION = "2.0.2"
ACCEPTED_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "document"})
HOMO_SAPIENS = {"id": "NCBITaxon:9606", "label": "Homo sapiens"}
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# Genomics Reporting component codes (LOINC), checked against the IG 2.0.0 and MII molgen examples.
GENE_STUDIED = "48018-6"
CDNA_HGVS = "48004-6"
PROTEIN_HGVS = "48005-3"
GENOMIC_HGVS = "81290-9"
DISCRETE_VARIANT = "81252-9"
ASSEMBLY = "62374-4"
ALLELIC_STATE = "53034-5"
CLINICAL_SIGNIFICANCE = "53037-8"
ALLELE_START_END = "81254-5"
COORDINATE_SYSTEM = "92822-6"
REF_ALLELE = "69547-8"
ALT_ALLELE = "69551-0"
GENOMIC_REF_SEQ = "48013-7"
TRANSCRIPT_REF_SEQ = "51958-7"
VARIANT_COMPONENTS_USED = frozenset(
    {
        GENE_STUDIED,
        CDNA_HGVS,
        PROTEIN_HGVS,
        GENOMIC_HGVS,
        DISCRETE_VARIANT,
        ASSEMBLY,
        ALLELIC_STATE,
        CLINICAL_SIGNIFICANCE,
        ALLELE_START_END,
        COORDINATE_SYSTEM,
        REF_ALLELE,
        ALT_ALLELE,
        GENOMIC_REF_SEQ,
        TRANSCRIPT_REF_SEQ,
    }
)
SPDI_RE = re.compile(r"^[A-Z]{2}_\d+(\.\d+)?:\d+:[ACGTN]*:[ACGTN]*$")
CDNA_RE = re.compile(r"(^|:)[cnmr]\.")
GENOMIC_RE = re.compile(r"(^|:)g\.")
REFERENCE_TAIL_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
PROCEDURE_DONE = frozenset({"completed", "in-progress"})
MEDICATION_SKIP = frozenset({"entered-in-error", "not-taken"})
# Resources that only serve others inside the bundle (no target of their own, no warning).
SUPPORTING_TYPES = frozenset({"Medication"})


@dataclass
class PatientTranslation:
    subject_id: str
    phenopacket: dict
    issues: list[Issue]
    entry_indexes: list[int]  # bundle entries that went into it (patient first)


@dataclass
class BundleTranslation:
    packets: list[PatientTranslation]
    issues: list[Issue]  # issues not tied to one patient


def as_bundle(resource: dict) -> dict:
    """Wrap one resource into a collection Bundle (a Bundle is returned unchanged)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return resource
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}


def translate_bundle(
    bundle: dict,
    *,
    profile: Profile,
    key: bytes,
    now: datetime,
    namespace: str = "",
    created_by: str = "genomic-gateway",
) -> BundleTranslation:
    """Translate every Patient of `bundle` into a phenopacket (see the module docstring)."""
    return _BundleTranslator(bundle, profile, key, now, namespace, created_by).run()


# --- small helpers over FHIR JSON -------------------------------------------------------------


def _codings(concept: object) -> list:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    return codings if isinstance(codings, list) else []


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _first_code(concept: object, system: str) -> str | None:
    for coding in _codings(concept):
        if isinstance(coding, dict) and coding.get("system") == system and isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def _reference(value: object) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return value["reference"]
    return None


def _rfc3339(now: datetime) -> str:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value_key(holder: dict) -> str | None:
    for name in holder:
        if name.startswith("value") and name != "valueSet":
            return name
    return None


# --- the bundle -------------------------------------------------------------------------------


class _BundleTranslator:
    def __init__(self, bundle, profile, key, now, namespace, created_by):
        self.bundle = bundle
        self.profile: Profile = profile
        self.key = key
        self.now = now
        self.today: date = (now if now.tzinfo is None else now.astimezone(UTC)).date()
        self.namespace = namespace
        self.created_by = created_by
        self.registry: CodeSystemRegistry = load_registry()
        self.tables: Tables = load_tables()
        self.issues: list[Issue] = []
        self.resources: list[dict | None] = []
        self.full_urls: list[str | None] = []
        self.by_full_url: dict[str, int] = {}
        self.by_type_id: dict[tuple[str, str], int] = {}

    # reference resolution: urn:uuid / absolute fullUrls first, then Type/id (relative or absolute)
    def resolve(self, reference: str | None) -> int | None:
        if not reference or reference.startswith("#"):
            return None
        reference = reference.split("/_history/", 1)[0]
        found = self.by_full_url.get(reference)
        if found is not None:
            return found
        match = REFERENCE_TAIL_RE.search(reference)
        if match:
            return self.by_type_id.get((match.group(1), match.group(2)))
        return None

    def run(self) -> BundleTranslation:
        bundle = self.bundle
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.issues.append(Issue.error("not-fhir", "expected a FHIR Bundle", ""))
            return BundleTranslation([], self.issues)
        bundle_type = bundle.get("type")
        if bundle_type not in ACCEPTED_BUNDLE_TYPES:
            self.issues.append(
                Issue.error(
                    "unsupported-bundle-type",
                    f"Bundle type {bundle_type!r} is not accepted (use transaction, batch, collection or document)",
                    "/type",
                )
            )
            return BundleTranslation([], self.issues)
        entries = bundle.get("entry")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            self.issues.append(Issue.error("fhir-structure", "Bundle.entry must be an array", "/entry"))
            return BundleTranslation([], self.issues)

        for i, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                self.resources.append(None)
                self.full_urls.append(None)
                self.issues.append(Issue.warning("fhir-structure", "entry without a resource", f"/entry/{i}"))
                continue
            self.resources.append(resource)
            self.full_urls.append(full_url if isinstance(full_url, str) else None)
            if isinstance(full_url, str):
                self.by_full_url.setdefault(full_url, i)
            rid = resource.get("id")
            if isinstance(rid, str):
                self.by_type_id.setdefault((resource["resourceType"], rid), i)

        builders: dict[int, _PatientBuilder] = {}
        for i, resource in enumerate(self.resources):
            if resource is not None and resource["resourceType"] == "Patient":
                builder = _PatientBuilder(self, i, resource)
                if builder.subject_id:
                    builders[i] = builder
                else:
                    self.issues.extend(builder.issues)

        consumed: set[int] = set()
        for i, resource in enumerate(self.resources):
            if resource is None or resource["resourceType"] == "Patient":
                continue
            rtype = resource["resourceType"]
            issues_before = len(self.issues)
            owner = self._owner(i, resource, builders)
            if owner is None:
                if len(self.issues) > issues_before:
                    consumed.add(i)  # _owner has already said why it is left out
                continue
            owner.add(i, resource)
        for builder in builders.values():
            consumed.update(builder.consumed)
        for i, resource in enumerate(self.resources):
            if resource is None or resource["resourceType"] == "Patient" or i in consumed:
                continue
            rtype = resource["resourceType"]
            if rtype in SUPPORTING_TYPES:
                continue
            if not any(i in b.entries for b in builders.values()):
                self.issues.append(
                    Issue.warning(
                        "no-phenopacket-target",
                        f"{rtype} is not about a patient of this bundle and has no phenopacket target",
                        f"/entry/{i}/resource",
                    )
                )
        for i, resource in enumerate(self.resources):
            if resource is not None and resource["resourceType"] in SUPPORTING_TYPES and i not in consumed:
                self.issues.append(
                    Issue.warning(
                        "no-phenopacket-target",
                        f"{resource['resourceType']} is not used by any mapped resource",
                        f"/entry/{i}/resource",
                    )
                )
        packets = [builder.finish() for builder in builders.values()]
        return BundleTranslation(packets, self.issues)

    def _owner(self, i: int, resource: dict, builders: dict) -> _PatientBuilder | None:
        """The patient an entry is about (subject / patient reference), reporting what does not resolve."""
        for field_name in ("subject", "patient"):
            reference = _reference(resource.get(field_name))
            if reference is None:
                continue
            target = self.resolve(reference)
            location = f"/entry/{i}/resource/{field_name}/reference"
            if target is None:
                self.issues.append(
                    Issue.warning("reference-dangling", f"reference {reference!r} is not in this bundle", location)
                )
                return None
            if target in builders:
                return builders[target]
            target_type = self.resources[target]["resourceType"]
            if target_type != "Patient":
                self.issues.append(
                    Issue.warning(
                        "no-phenopacket-target",
                        f"{resource['resourceType']} is about a {target_type}, not a Patient",
                        location,
                    )
                )
            return None
        if resource["resourceType"] in _PatientBuilder.HANDLED:
            self.issues.append(
                Issue.warning(
                    "unmapped-element",
                    f"{resource['resourceType']} names no subject patient, so it cannot be placed in a phenopacket",
                    f"/entry/{i}/resource",
                )
            )
        return None


# --- one patient ------------------------------------------------------------------------------


@dataclass
class _Variant:
    entry: int
    descriptor: dict
    acmg: str | None = None
    linked: bool = False


@dataclass
class _Disease:
    record: dict
    codes: set[str] = field(default_factory=set)


class _PatientBuilder:
    HANDLED = frozenset({"Observation", "Condition", "Specimen", "Procedure", "MedicationStatement"})

    def __init__(self, tr: _BundleTranslator, index: int, patient: dict):
        self.tr = tr
        self.index = index
        self.patient = patient
        self.issues: list[Issue] = []
        self.entries: list[int] = [index]
        self.consumed: set[int] = set()
        self.versions: dict[str, str] = {}  # used CURIE prefix -> version named by the sender
        self.used: set[str] = set()
        self.features: list[dict] = []
        self.feature_keys: set[tuple[str, bool]] = set()
        self.diseases: list[_Disease] = []
        self.disease_by_code: dict[str, _Disease] = {}
        self.biosamples: list[dict] = []
        self.actions: list[dict] = []
        self.variants: dict[int, _Variant] = {}
        self.links: list[tuple[int, dict, str, list[int]]] = []  # condition entry, disease term, verification, variants
        self.pending: dict[str, list[tuple[int, dict]]] = {t: [] for t in self.HANDLED}
        self.birth: date | None = None
        self.subject_id = self._subject_id()
        self.individual = self._individual() if self.subject_id else {}

    # issues
    def warn(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.warning(code, message, location))

    def note(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.info(code, message, location))

    # terms
    def term_of(self, coding: dict, curie: str, prefix: str, concept: object = None, location: str = "") -> dict:
        self.used.add(prefix)
        version = coding.get("version")
        if isinstance(version, str) and version and prefix not in self.versions:
            self.versions[prefix] = version
        display = coding.get("display")
        if isinstance(display, str) and display.strip():
            return {"id": curie, "label": display}
        # Phenopackets require a label. Take the sender's own words for the same concept
        # (its text, or another coding's display); the bare CURIE is the last resort.
        label = concept.get("text") if isinstance(concept, dict) else None
        if not (isinstance(label, str) and label.strip()):
            label = next(
                (
                    c["display"]
                    for c in _codings(concept)
                    if isinstance(c, dict) and isinstance(c.get("display"), str) and c["display"].strip()
                ),
                None,
            )
        if not label:
            label = curie
            self.warn("label-missing", f"{curie} has no display; its label is the code itself", location)
        return {"id": curie, "label": label}

    def known_codings(self, concept: object):
        """(index, coding, curie, prefix) for every coding of a known system with a well-formed code."""
        registry = self.tr.registry
        for j, coding in enumerate(_codings(concept)):
            if not isinstance(coding, dict):
                continue
            system: CodeSystem | None = registry.lookup(coding.get("system"))
            code = coding.get("code")
            if system is None or not isinstance(code, str):
                continue
            curie = registry.curie_in(system, code)
            if curie is not None:
                yield j, coding, curie, system.prefix

    def pick(self, concept: object, priority, location: str, what: str) -> tuple[dict, set[str]] | None:
        """The coding ranked best by `priority` as an OntologyClass, plus every known code of the concept."""
        best = None
        codes = set()
        for j, coding, curie, prefix in self.known_codings(concept):
            codes.add(curie)
            if prefix in priority:
                rank = priority.index(prefix)
                if best is None or rank < best[0]:
                    best = (rank, j, coding, curie, prefix)
        if best is None:
            systems = sorted({c.get("system", "?") for c in _codings(concept) if isinstance(c, dict)})
            self.warn(
                "unmapped-code",
                f"no coding of {what} is in a code system this profile maps ({', '.join(systems) or 'no codings'})",
                location,
            )
            return None
        _, j, coding, curie, prefix = best
        return self.term_of(coding, curie, prefix, concept, f"{location}/coding/{j}"), codes

    def ontology(self, concept: object, prefixes=None) -> dict | None:
        """The first known coding (of `prefixes`, if given) as an OntologyClass, silently None otherwise."""
        for _, coding, curie, prefix in self.known_codings(concept):
            if prefixes is None or prefix in prefixes:
                return self.term_of(coding, curie, prefix, concept)
        return None

    def age_at(self, value: object, location: str) -> dict | None:
        when = parse_fhir_date(value, latest=False)
        if when is None:
            self.warn("fhir-value", f"unreadable date {value!r}", location)
            return None
        if self.birth is None:
            self.note("unmapped-element", "a date cannot become an age: the patient has no birthDate", location)
            return None
        years = whole_years(self.birth, when)
        if years < 0:
            self.warn("fhir-value", "date lies before the patient's birth", location)
            return None
        return age_element(years)

    # --- Patient ---
    def _subject_id(self) -> str | None:
        profile = self.tr.profile
        best = None
        for j, ident in enumerate(_list(self.patient.get("identifier"))):
            if not isinstance(ident, dict):
                continue
            system, value = ident.get("system"), ident.get("value")
            if not isinstance(system, str) or not isinstance(value, str) or not value:
                continue
            rank = profile.identifier_rank(system)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, j, system, value)
        if best is not None:
            return pseudonymise(self.tr.key, best[3], best[2])
        full_url = self.tr.full_urls[self.index]
        rid = self.patient.get("id")
        location = f"/entry/{self.index}/resource"
        if full_url and full_url.startswith(("http://", "https://")):
            source = full_url
        elif isinstance(rid, str) and rid:
            source = f"Patient/{rid}"
        elif full_url:
            source = full_url
        else:
            self.issues.append(
                Issue.error(
                    "fhir-required", "Patient has no identifier, id or fullUrl to derive a subject id", location
                )
            )
            return None
        self.note(
            "unmapped-element",
            "no identifier of a system in the profile's list: the subject pseudonym is derived from the resource id",
            location,
        )
        return pseudonymise(self.tr.key, source)

    def _individual(self) -> dict:
        patient, base = self.patient, f"/entry/{self.index}/resource"
        individual: dict = {"id": self.subject_id}
        birth_raw = patient.get("birthDate")
        if birth_raw is not None:
            self.birth = parse_fhir_date(birth_raw, latest=True)
            if self.birth is None:
                self.warn("fhir-value", f"unreadable birthDate {birth_raw!r}", base + "/birthDate")
        death: date | None = None
        if "deceasedDateTime" in patient:
            death = parse_fhir_date(patient["deceasedDateTime"], latest=False)
            if death is None:
                self.warn("fhir-value", "unreadable deceasedDateTime", base + "/deceasedDateTime")
        if self.birth is not None:
            years = whole_years(self.birth, death or self.tr.today)
            if years >= 0:
                individual["timeAtLastEncounter"] = age_element(years)
            else:
                self.warn("fhir-value", "birthDate lies in the future", base + "/birthDate")
        if "deceasedDateTime" in patient:
            vital: dict = {"status": "DECEASED"}
            if death is not None and self.birth is not None and whole_years(self.birth, death) >= 0:
                vital["timeOfDeath"] = age_element(whole_years(self.birth, death))
            individual["vitalStatus"] = vital
        elif isinstance(patient.get("deceasedBoolean"), bool):
            individual["vitalStatus"] = {"status": "DECEASED" if patient["deceasedBoolean"] else "ALIVE"}
        elif "deceasedAge" in patient or "deceasedString" in patient:
            individual["vitalStatus"] = {"status": "DECEASED"}
        sex = self._sex(base)
        if sex:
            individual["sex"] = sex
        individual["taxonomy"] = dict(HOMO_SAPIENS)
        self.used.add("NCBITaxon")
        return individual

    def _sex(self, base: str) -> str | None:
        gender = self.patient.get("gender")
        if gender is None:
            return None
        sex = self.tr.tables.gender_to_sex.get(gender)
        if sex is None:
            self.warn("unmapped-code", f"administrative gender {gender!r} has no phenopacket sex", base + "/gender")
            return None
        shadow = self.patient.get("_gender")
        for k, ext in enumerate(_list(shadow.get("extension")) if isinstance(shadow, dict) else []):
            if not isinstance(ext, dict):
                continue
            codes = self.tr.profile.sex_extensions.get(ext.get("url"))
            if codes is None:
                continue
            coding = ext.get("valueCoding")
            code = coding.get("code") if isinstance(coding, dict) else None
            if code in codes:
                return codes[code]
            self.warn("unmapped-code", f"gender extension code {code!r} not mapped", f"{base}/_gender/extension/{k}")
        return sex

    # --- collecting ---
    def add(self, i: int, resource: dict) -> None:
        self.entries.append(i)
        rtype = resource["resourceType"]
        if rtype in self.pending:
            self.pending[rtype].append((i, resource))
        else:
            self.warn("no-phenopacket-target", f"{rtype} has no phenopacket target", f"/entry/{i}/resource")

    def finish(self) -> PatientTranslation:
        for i, resource in self.pending["Condition"]:
            self.condition(i, resource)
        implications = []
        for i, resource in self.pending["Observation"]:
            if self.observation(i, resource):
                implications.append((i, resource))
        for i, resource in implications:
            self.implication(i, resource)
        for i, resource in self.pending["Specimen"]:
            self.specimen(i, resource)
        for i, resource in self.pending["Procedure"]:
            self.procedure(i, resource)
        for i, resource in self.pending["MedicationStatement"]:
            self.medication(i, resource)
        packet: dict = {
            "id": derived_id(self.tr.key, "phenopacket", self.tr.namespace, self.subject_id),
            "subject": self.individual,
        }
        if self.features:
            packet["phenotypicFeatures"] = self.features
        if self.biosamples:
            packet["biosamples"] = self.biosamples
        interpretations = self.interpretations()
        if interpretations:
            packet["interpretations"] = interpretations
        if self.diseases:
            packet["diseases"] = [d.record for d in self.diseases]
        if self.actions:
            packet["medicalActions"] = self.actions
        registry = self.tr.registry
        alternates = self.alternate_codings()
        packet["metaData"] = {
            "created": _rfc3339(self.tr.now),
            "createdBy": self.tr.created_by,
            "resources": [registry.systems[p].resource(self.versions.get(p)) for p in sorted(self.used)],
            "phenopacketSchemaVersion": SCHEMA_VERSION,
        }
        if alternates:
            packet["metaData"]["externalReferences"] = alternates
        entries = [self.index, *sorted(set(self.entries[1:]) | self.consumed)]
        return PatientTranslation(self.subject_id, packet, self.issues, entries)

    def alternate_codings(self) -> list[dict]:
        """The codings a disease carried beside the one chosen, kept as references.

        Phenopacket v2 `Disease` holds one term; the sender's other codes for the same
        condition (ICD-10-GM beside ORPHA, say) stay findable in `metaData.externalReferences`.
        """
        registry, out = self.tr.registry, []
        for disease in self.diseases:
            primary = disease.record["term"]["id"]
            for code in sorted(disease.codes - {primary}):
                prefix, _, local = code.partition(":")
                system = registry.system_for_prefix(prefix)
                reference = {"id": code, "description": f"alternative coding of {primary} in the source record"}
                if system is not None:
                    iri = system.resource().get("iriPrefix")
                    if iri:
                        reference["reference"] = iri + local
                    self.used.add(system.prefix)
                out.append(reference)
        return out

    # --- phenotypes ---
    def add_feature(self, term: dict, excluded: bool, location: str, **extra) -> None:
        key = (term["id"], excluded)
        if key in self.feature_keys:
            self.note("duplicate", f"{term['id']} already recorded for this patient", location)
            return
        self.feature_keys.add(key)
        feature = {"type": term}
        if excluded:
            feature["excluded"] = True
        feature.update({k: v for k, v in extra.items() if v})
        self.features.append(feature)

    def presence(self, concept: object) -> str | None:
        table = self.tr.tables.answers["presence"]
        for _, _, curie, _ in self.known_codings(concept):
            if curie in table:
                return table[curie]
        return None

    def phenotype_coding(self, concept: object):
        for j, coding, curie, prefix in self.known_codings(concept):
            if prefix in self.tr.profile.phenotype_prefixes:
                return j, coding, curie, prefix
        return None

    def component_code_in(self, component: dict, codes: frozenset[str]) -> bool:
        return any(curie in codes for _, _, curie, _ in self.known_codings(component.get("code")))

    def observation(self, i: int, obs: dict) -> bool:
        """Map one Observation; True when it is a diagnostic implication to handle after the variants."""
        base = f"/entry/{i}/resource"
        status = obs.get("status")
        if status in SKIPPED_STATUSES:
            self.note("unmapped-element", f"Observation with status {status!r} skipped", base + "/status")
            return False
        profile = self.tr.profile
        code = obs.get("code")
        curies = {curie for _, _, curie, _ in self.known_codings(code)}
        if curies & profile.variant_observation_codes:
            self.variant(i, obs)
            return False
        for coding in _codings(code):
            if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in (
                profile.diagnostic_implication_codes
            ):
                return True
        found = self.phenotype_coding(code)
        if found is not None:
            self.phenotype_observation(i, obs, found)
            return False
        mapped = False
        for k, component in enumerate(_list(obs.get("component"))):
            if not isinstance(component, dict) or self.component_code_in(component, profile.severity_component_codes):
                continue
            found = self.phenotype_coding(component.get("code"))
            if found is None:
                continue
            excluded = self.excluded_by_value(component, f"{base}/component/{k}")
            if excluded is None:
                continue
            _, coding, curie, prefix = found
            location = f"{base}/component/{k}"
            self.add_feature(self.term_of(coding, curie, prefix, component.get("code"), location), excluded, location)
            mapped = True
        if mapped:
            self.note(
                "unmapped-element", "only the HPO-coded components of this Observation are mapped", base + "/code"
            )
        else:
            self.warn("no-phenopacket-target", "Observation is neither an HPO finding nor a variant", base + "/code")
        return False

    def excluded_by_value(self, holder: dict, location: str) -> bool | None:
        """present -> False, absent -> True, None when the holder says neither and must be skipped."""
        if "valueBoolean" in holder:
            return holder["valueBoolean"] is False
        if "valueCodeableConcept" in holder:
            answer = self.presence(holder["valueCodeableConcept"])
            if answer is not None:
                return answer == "absent"
        value_key = _value_key(holder)
        if value_key is not None:
            self.note(
                "unmapped-element", f"{value_key} kept only as the finding being present", f"{location}/{value_key}"
            )
        return False

    def phenotype_observation(self, i: int, obs: dict, found) -> None:
        base = f"/entry/{i}/resource"
        profile = self.tr.profile
        _, coding, curie, prefix = found
        if "dataAbsentReason" in obs:
            self.warn("unmapped-element", "HPO finding with dataAbsentReason: skipped", base + "/dataAbsentReason")
            return
        excluded: bool | None = None
        severity = None
        for k, component in enumerate(_list(obs.get("component"))):
            if not isinstance(component, dict):
                continue
            location = f"{base}/component/{k}"
            if self.component_code_in(component, profile.presence_component_codes):
                answer = self.presence(component.get("valueCodeableConcept"))
                if answer is None:
                    self.warn("unmapped-code", "presence answer not understood: finding skipped", location)
                    return
                excluded = answer == "absent"
            elif self.component_code_in(component, profile.severity_component_codes):
                severity = self.ontology(component.get("valueCodeableConcept"), profile.phenotype_prefixes)
                if severity is None:
                    self.warn("unmapped-code", "severity is not an HPO term", location + "/valueCodeableConcept")
            else:
                self.note("unmapped-element", "component has no phenopacket target", location)
        if excluded is None:
            excluded = self.excluded_by_value(obs, base)
        self.add_feature(
            self.term_of(coding, curie, prefix, obs.get("code"), base + "/code"), excluded, base, severity=severity
        )

    # --- conditions ---
    def condition(self, i: int, cond: dict) -> None:
        base = f"/entry/{i}/resource"
        profile = self.tr.profile
        verification = _first_code(cond.get("verificationStatus"), VERIFICATION_SYSTEM)
        if verification == "entered-in-error":
            self.note("unmapped-element", "Condition entered in error: skipped", base + "/verificationStatus")
            return
        excluded = verification == "refuted"
        meta = cond.get("meta")
        profiles = (
            {p.split("|", 1)[0] for p in _list(meta.get("profile")) if isinstance(p, str)}
            if isinstance(meta, dict)
            else set()
        )
        code = cond.get("code")
        phenotype = self.phenotype_coding(code)
        disease_priority = profile.disease_coding_priority
        has_disease = any(prefix in disease_priority for _, _, _, prefix in self.known_codings(code))
        as_phenotype = phenotype is not None and (
            not has_disease or bool(profiles & profile.phenotype_condition_profiles)
        )
        onset = self.condition_time(cond, "onset", base)
        if as_phenotype:
            _, coding, curie, prefix = phenotype
            self.add_feature(
                self.term_of(coding, curie, prefix, code, base + "/code"), excluded, base + "/code", onset=onset
            )
            return
        picked = self.pick(code, disease_priority, base + "/code", "the Condition")
        if picked is None:
            return
        term, codes = picked
        variants = self.evidence_variants(cond, base)
        if variants:
            self.links.append((i, term, verification or "", variants))
        existing = next((self.disease_by_code[c] for c in codes if c in self.disease_by_code), None)
        if existing is not None:
            if existing.record.get("excluded") and not excluded:
                existing.record.pop("excluded")
            existing.codes |= codes
            for c in codes:
                self.disease_by_code.setdefault(c, existing)
            return
        record: dict = {"term": term}
        if excluded:
            record["excluded"] = True
        if onset:
            record["onset"] = onset
        resolution = self.condition_time(cond, "abatement", base)
        if resolution:
            record["resolution"] = resolution
        disease = _Disease(record, codes)
        self.diseases.append(disease)
        for c in codes:
            self.disease_by_code.setdefault(c, disease)

    def condition_time(self, cond: dict, stem: str, base: str) -> dict | None:
        if f"{stem}DateTime" in cond:
            return self.age_at(cond[f"{stem}DateTime"], f"{base}/{stem}DateTime")
        if f"{stem}Age" in cond:
            iso = fhir_age_to_iso(cond[f"{stem}Age"])
            if iso is None:
                self.warn(
                    "fhir-value", f"{stem}Age is not a duration in years, months, weeks or days", f"{base}/{stem}Age"
                )
                return None
            return {"age": {"iso8601duration": iso}}
        if f"{stem}Period" in cond:
            period = cond[f"{stem}Period"]
            start = period.get("start") if isinstance(period, dict) else None
            if start is not None:
                return self.age_at(start, f"{base}/{stem}Period/start")
        for name in (f"{stem}String", f"{stem}Range", f"{stem}Boolean"):
            if name in cond:
                self.warn("unmapped-element", f"{name} has no phenopacket equivalent: skipped", f"{base}/{name}")
        return None

    def evidence_variants(self, cond: dict, base: str) -> list[int]:
        found = []
        for e, evidence in enumerate(_list(cond.get("evidence"))):
            for d, detail in enumerate(_list(evidence.get("detail")) if isinstance(evidence, dict) else []):
                target = self.tr.resolve(_reference(detail))
                if target is not None:
                    found.append(target)
                else:
                    self.note(
                        "reference-dangling",
                        "evidence is not in this bundle",
                        f"{base}/evidence/{e}/detail/{d}",
                    )
        return found

    # --- variants ---
    def variant(self, i: int, obs: dict) -> None:
        base = f"/entry/{i}/resource"
        tables = self.tr.tables
        if self.presence(obs.get("valueCodeableConcept")) == "absent":
            self.note(
                "unmapped-element", "variant reported absent: not an interpretation", base + "/valueCodeableConcept"
            )
            return
        components: dict[str, list[tuple[int, dict]]] = {}
        for k, component in enumerate(_list(obs.get("component"))):
            if not isinstance(component, dict):
                continue
            loinc = _first_code(component.get("code"), "http://loinc.org")
            if loinc in VARIANT_COMPONENTS_USED:
                components.setdefault(loinc, []).append((k, component))
            else:
                label = loinc or next(
                    (c.get("code") for c in _codings(component.get("code")) if isinstance(c, dict)), None
                )
                self.note(
                    "unmapped-element",
                    f"variant component {label!r} has no phenopacket target",
                    f"{base}/component/{k}",
                )

        def concept(loinc: str) -> tuple[int, dict] | None:
            items = components.get(loinc)
            if not items:
                return None
            k, component = items[0]
            return k, component.get("valueCodeableConcept") or {}

        def text(loinc: str) -> str | None:
            items = components.get(loinc)
            if not items:
                return None
            component = items[0][1]
            if isinstance(component.get("valueString"), str):
                return component["valueString"].strip()
            value = component.get("valueCodeableConcept")
            if not isinstance(value, dict):
                return None
            for coding in _codings(value):
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    return coding["code"].strip()
            return value.get("text").strip() if isinstance(value.get("text"), str) else None

        descriptor: dict = {
            "id": derived_id(self.tr.key, "variant", self.tr.namespace, self.subject_id, self.entry_key(i)),
        }
        gene = concept(GENE_STUDIED)
        if gene is not None:
            for _, coding, curie, prefix in self.known_codings(gene[1]):
                if prefix == "HGNC":
                    self.used.add(prefix)
                    symbol = coding.get("display") or gene[1].get("text") or ""
                    descriptor["geneContext"] = {"valueId": curie, "symbol": symbol}
                    break
            else:
                self.warn("unmapped-code", "gene is not an HGNC coding", f"{base}/component/{gene[0]}")
        transcript = text(TRANSCRIPT_REF_SEQ)
        reference_seq = text(GENOMIC_REF_SEQ)
        if transcript is None and reference_seq and reference_seq.startswith(("NM_", "NR_", "XM_", "ENST")):
            transcript = reference_seq  # MII puts the transcript under 48013-7
        expressions = []
        cdna = text(CDNA_HGVS)
        if cdna:
            if SPDI_RE.match(cdna):
                expressions.append({"syntax": "spdi", "value": cdna})
            elif CDNA_RE.search(cdna):
                value = cdna if ":" in cdna or not transcript else f"{transcript}:{cdna}"
                expressions.append({"syntax": "hgvs.c", "value": value})
            else:
                k = components[CDNA_HGVS][0][0]
                self.warn(
                    "unmapped-element", f"DNA change {cdna!r} is neither c.HGVS nor SPDI", f"{base}/component/{k}"
                )
        genomic = text(GENOMIC_HGVS)
        if genomic:
            if GENOMIC_RE.search(genomic):
                expressions.append({"syntax": "hgvs.g", "value": genomic})
            else:
                k = components[GENOMIC_HGVS][0][0]
                self.warn("unmapped-element", f"genomic change {genomic!r} is not g.HGVS", f"{base}/component/{k}")
        protein = text(PROTEIN_HGVS)
        if protein:
            expressions.append({"syntax": "hgvs.p", "value": protein})
        if expressions:
            descriptor["expressions"] = expressions
        rs_id = None
        xrefs = []
        for _k, component in components.get(DISCRETE_VARIANT, []):
            for _, coding, curie, prefix in self.known_codings(component.get("valueCodeableConcept")):
                if prefix in ("ClinVar", "dbSNP"):
                    self.used.add(prefix)
                    xrefs.append(curie)
                    if prefix == "dbSNP":
                        rs_id = coding["code"]
        if xrefs:
            descriptor["xrefs"] = xrefs
        vcf = self.vcf_record(base, components, text, reference_seq, rs_id)
        if vcf:
            descriptor["vcfRecord"] = vcf
        if not (expressions or vcf or "geneContext" in descriptor):
            self.warn("unmapped-element", "variant Observation describes no variant (no gene, HGVS or position)", base)
            return
        descriptor["moleculeContext"] = "genomic"
        state = concept(ALLELIC_STATE)
        if state is not None:
            answers = tables.answers["allelic_state"]
            hit = next((answers[c] for _, _, c, _ in self.known_codings(state[1]) if c in answers), None)
            if hit is None:
                self.warn("unmapped-code", "allelic state not in the LOINC answer list", f"{base}/component/{state[0]}")
            else:
                self.used.add(hit["id"].split(":", 1)[0])
                descriptor["allelicState"] = dict(hit)
        acmg = None
        significance = concept(CLINICAL_SIGNIFICANCE)
        if significance is not None:
            acmg = self.acmg(significance[1], f"{base}/component/{significance[0]}")
        self.consumed.add(i)
        self.variants[i] = _Variant(i, descriptor, acmg)

    def vcf_record(self, base, components, text, reference_seq, rs_id) -> dict | None:
        tables = self.tr.tables
        wanted = (ASSEMBLY, GENOMIC_REF_SEQ, ALLELE_START_END, REF_ALLELE, ALT_ALLELE)
        present = [c for c in wanted if c in components]
        if len(present) < 3:
            return None  # a transcript-level description only: nothing to place on a genome
        assembly = None
        if ASSEMBLY in components:
            _k, component = components[ASSEMBLY][0]
            concept = component.get("valueCodeableConcept") or {}
            answers = tables.answers["genome_assembly"]
            assembly = next((answers[c] for _, _, c, _ in self.known_codings(concept) if c in answers), None)
            if assembly is None and concept.get("text") in ("GRCh37", "GRCh38"):
                assembly = concept["text"]
        chrom = None
        if reference_seq and reference_seq.startswith("NC_"):
            chrom = tables.chromosomes.get(reference_seq.split(".", 1)[0])
        position = None
        if ALLELE_START_END in components:
            _k, component = components[ALLELE_START_END][0]
            low = (component.get("valueRange") or {}).get("low") or {}
            start = low.get("value")
            offset = None
            if COORDINATE_SYSTEM in components:
                cs = components[COORDINATE_SYSTEM][0][1].get("valueCodeableConcept")
                answers = tables.answers["coordinate_system"]
                offset = next((int(answers[c]) for _, _, c, _ in self.known_codings(cs) if c in answers), None)
            if isinstance(start, int | float) and not isinstance(start, bool) and offset is not None:
                position = int(start) + offset
        ref, alt = text(REF_ALLELE), text(ALT_ALLELE)
        missing = [
            name
            for name, value in (
                ("assembly", assembly),
                ("chromosome", chrom),
                ("position", position),
                ("ref", ref),
                ("alt", alt),
            )
            if value is None
        ]
        if missing:
            self.note(
                "unmapped-element",
                f"no VCF record: {', '.join(missing)} not given or not understood "
                "(needs 62374-4, an NC_ 48013-7, 81254-5 with 92822-6, 69547-8 and 69551-0)",
                base + "/component",
            )
            return None
        record = {"genomeAssembly": assembly, "chrom": f"chr{chrom}", "pos": str(position), "ref": ref, "alt": alt}
        if rs_id:
            record["id"] = rs_id
        return record

    def acmg(self, concept: dict, location: str) -> str | None:
        answers = self.tr.tables.answers["clinical_significance"]
        hit = next((answers[c] for _, _, c, _ in self.known_codings(concept) if c in answers), None)
        if hit is None:
            self.warn("unmapped-code", "clinical significance not in the ACMG LOINC answer list", location)
        return hit

    def implication(self, i: int, obs: dict) -> None:
        base = f"/entry/{i}/resource"
        targets = []
        for d, ref in enumerate(_list(obs.get("derivedFrom"))):
            target = self.tr.resolve(_reference(ref))
            if target in self.variants:
                targets.append(target)
            else:
                self.note("unmapped-element", "derivedFrom does not name a mapped variant", f"{base}/derivedFrom/{d}")
        acmg = None
        for k, component in enumerate(_list(obs.get("component"))):
            if (
                isinstance(component, dict)
                and _first_code(component.get("code"), "http://loinc.org") == CLINICAL_SIGNIFICANCE
            ):
                acmg = self.acmg(component.get("valueCodeableConcept") or {}, f"{base}/component/{k}")
        if not targets or acmg is None:
            self.warn(
                "no-phenopacket-target", "diagnostic implication without a variant and a clinical significance", base
            )
            return
        self.consumed.add(i)
        for target in targets:
            variant = self.variants[target]
            if variant.acmg and variant.acmg != acmg:
                self.warn("conflict", f"clinical significance {acmg} contradicts {variant.acmg} on the variant", base)
            else:
                variant.acmg = acmg

    def interpretations(self) -> list[dict]:
        out = []

        def genomic(variant: _Variant, status: str) -> dict:
            variant.linked = True
            return {
                "subjectOrBiosampleId": self.subject_id,
                "interpretationStatus": status,
                "variantInterpretation": {
                    "acmgPathogenicityClassification": variant.acmg or "NOT_PROVIDED",
                    "variationDescriptor": variant.descriptor,
                },
            }

        for cond_index, term, verification, targets in self.links:
            found = [self.variants[t] for t in targets if t in self.variants]
            if not found:
                continue
            status = {"confirmed": "CAUSATIVE", "refuted": "REJECTED"}.get(verification, "CANDIDATE")
            out.append(
                {
                    "id": derived_id(
                        self.tr.key, "interpretation", self.tr.namespace, self.subject_id, self.entry_key(cond_index)
                    ),
                    "progressStatus": "SOLVED" if verification == "confirmed" else "IN_PROGRESS",
                    "diagnosis": {"disease": term, "genomicInterpretations": [genomic(v, status) for v in found]},
                }
            )
        rest = [v for v in self.variants.values() if not v.linked]
        if rest:
            out.append(
                {
                    "id": derived_id(
                        self.tr.key, "interpretation", self.tr.namespace, self.subject_id, "unlinked-variants"
                    ),
                    "progressStatus": "UNKNOWN_PROGRESS",
                    "diagnosis": {
                        "disease": self.unspecified_disease(),
                        "genomicInterpretations": [genomic(v, "UNKNOWN_STATUS") for v in rest],
                    },
                }
            )
        return out

    def unspecified_disease(self) -> dict:
        """Diagnosis.disease is required, but the source tied these variants to no condition.

        The root of MONDO ("disease") claims nothing beyond what the report itself says;
        naming a specific disease would be a guess.
        """
        self.used.add("MONDO")
        self.note(
            "unlinked-variants",
            "variants not linked to a Condition are reported under the unspecified disease MONDO:0000001",
            "",
        )
        return {"id": "MONDO:0000001", "label": "disease"}

    def entry_key(self, i: int) -> str:
        """A stable name of an entry for derived ids: Type/id, else its fullUrl, else its position."""
        resource = self.tr.resources[i]
        rid = resource.get("id") if resource else None
        if isinstance(rid, str):
            return f"{resource['resourceType']}/{rid}"
        return self.tr.full_urls[i] or f"entry-{i}"

    # --- specimens, procedures, medications ---
    def specimen(self, i: int, spec: dict) -> None:
        base = f"/entry/{i}/resource"
        self.consumed.add(i)
        sample: dict = {
            "id": derived_id(self.tr.key, "biosample", self.tr.namespace, self.subject_id, self.entry_key(i)),
            "individualId": self.subject_id,
        }
        spec_type = spec.get("type")
        tissue = None
        for coding in _codings(spec_type):
            if isinstance(coding, dict):
                tissue = self.tr.tables.sampled_tissue.get(f"{coding.get('system')}|{coding.get('code')}")
                if tissue:
                    break
        collection = spec.get("collection") if isinstance(spec.get("collection"), dict) else {}
        body_site = self.ontology(collection.get("bodySite"), ("UBERON",))
        if body_site is not None:
            sample["sampledTissue"] = body_site
        elif tissue is not None:
            self.used.add("UBERON")
            sample["sampledTissue"] = dict(tissue)
        else:
            self.warn(
                "unmapped-code", "sampled tissue unknown (no mapped Specimen.type or UBERON bodySite)", base + "/type"
            )
        sample_type = self.ontology(spec_type)
        if sample_type is not None:
            sample["sampleType"] = sample_type
        if "collectedDateTime" in collection:
            when = self.age_at(collection["collectedDateTime"], base + "/collection/collectedDateTime")
            if when:
                sample["timeOfCollection"] = when
        sample["taxonomy"] = dict(HOMO_SAPIENS)
        self.biosamples.append(sample)

    def procedure(self, i: int, proc: dict) -> None:
        base = f"/entry/{i}/resource"
        status = proc.get("status")
        if status not in PROCEDURE_DONE:
            self.note(
                "unmapped-element", f"Procedure with status {status!r} is not a performed action", base + "/status"
            )
            return
        picked = self.pick(proc.get("code"), self.tr.profile.procedure_coding_priority, base + "/code", "the Procedure")
        if picked is None:
            return
        procedure: dict = {"code": picked[0]}
        site = _list(proc.get("bodySite"))
        if site:
            body = self.ontology(site[0])
            if body:
                procedure["bodySite"] = body
        if "performedDateTime" in proc:
            when = self.age_at(proc["performedDateTime"], base + "/performedDateTime")
        elif isinstance(proc.get("performedPeriod"), dict) and "start" in proc["performedPeriod"]:
            when = self.age_at(proc["performedPeriod"]["start"], base + "/performedPeriod/start")
        else:
            when = None
        if when:
            procedure["performed"] = when
        self.consumed.add(i)
        self.actions.append({"procedure": procedure})

    def medication(self, i: int, stmt: dict) -> None:
        base = f"/entry/{i}/resource"
        status = stmt.get("status")
        if status in MEDICATION_SKIP:
            self.note("unmapped-element", f"MedicationStatement with status {status!r} skipped", base + "/status")
            return
        concept, location = stmt.get("medicationCodeableConcept"), base + "/medicationCodeableConcept"
        if concept is None:
            reference = _reference(stmt.get("medicationReference"))
            target = self.tr.resolve(reference)
            medication = self.tr.resources[target] if target is not None else None
            if medication is None or medication.get("resourceType") != "Medication":
                self.warn("reference-dangling", "medication is not in this bundle", base + "/medicationReference")
                return
            self.consumed.add(target)
            concept, location = medication.get("code"), f"/entry/{target}/resource/code"
        picked = self.pick(concept, self.tr.profile.medication_coding_priority, location, "the medication")
        if picked is None:
            return
        treatment: dict = {"agent": picked[0]}
        dosage = _list(stmt.get("dosage"))
        if dosage and isinstance(dosage[0], dict):
            route = self.ontology(dosage[0].get("route"))
            if route:
                treatment["routeOfAdministration"] = route
        self.consumed.add(i)
        self.actions.append({"treatment": treatment})


def translated_resource_types() -> list[str]:
    """Resource types that reach a phenopacket (for the CapabilityStatement)."""
    return sorted({"Patient", *_PatientBuilder.HANDLED, *SUPPORTING_TYPES})
