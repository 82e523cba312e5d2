"""Walk a Bundle, hand each entry to the patient it is about, and build each patient's phenopacket.

Families run in a fixed order (conditions, observations, implications, specimens, procedures,
medications), so that the links between them (evidence variants, derived implications) are known
when needed and the issues come out in a stable order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.issues import Issue
from mappings import Profile, load_registry, load_tables
from translators.fhir import actions, patient, specimens
from translators.fhir.common import IdFunctions, as_list, codings, reference_of, rfc3339
from translators.fhir.conditions import Conditions
from translators.fhir.context import BundleSource, PatientContext
from translators.fhir.family import FamilyHistory
from translators.fhir.measurements import Measurements
from translators.fhir.phenotypes import Phenotypes
from translators.fhir.references import (
    ACCEPTED_BUNDLE_TYPES,
    MESSAGE_HEADER_NOTE,
    BundleIndex,
    with_identified_patient_links,
)
from translators.fhir.variants import Variants

SCHEMA_VERSION = "2.0.2"
SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
HANDLED_TYPES = frozenset(
    {"Observation", "Condition", "Specimen", "Procedure", "FamilyMemberHistory", *MEDICATION_TYPES}
)
# Resources that hold or index others: judged after the families ran (did their content arrive?).
REPORT_TYPES = frozenset({"DiagnosticReport", "Composition"})
# Resources that only serve others inside the bundle (no target of their own, no warning).
SUPPORTING_TYPES = frozenset({"Medication"})
# Clinical events with no phenopacket target whose date still dates the patient's last encounter (a warning says
# the rest is not carried); the REST surface keeps a date-only trace of them, so both channels give one age.
DATING_TYPES = frozenset({"Encounter", "Immunization", "AllergyIntolerance"})
TRANSLATED_TYPES = HANDLED_TYPES | REPORT_TYPES | SUPPORTING_TYPES | DATING_TYPES
# The order `finish` translates resources in: phase, then entry order (the merge of parts relies on it).
PHASES = (
    "Condition",
    "Observation",
    "implication",
    "Specimen",
    "Procedure",
    *MEDICATION_TYPES,
    "FamilyMemberHistory",
    "report",
)
PHASE = {name: n for n, name in enumerate(PHASES)}


@dataclass
class PatientTranslation:
    subject_id: str
    phenopacket: dict
    issues: list[Issue]
    entry_indexes: list[int]  # bundle entries that went into it (patient first)
    family: dict | None = None  # a Phenopacket Family around this phenopacket (FamilyMemberHistory)
    named_versions: frozenset[str] = frozenset()  # prefixes whose version a sender named (metaData.resources)
    # Provenance the merge of parts orders by (translators.fhir.merge), as Bundle entry indexes:
    disease_entries: tuple[tuple[int, ...], ...] = ()  # per disease (in order): the Conditions that made it
    version_places: tuple[tuple[str, int, int], ...] = ()  # per named prefix: the (phase, entry) that named it
    # per phenotypicFeature (in order): the (phase, entry) of the resource that made it; None: a contained one
    feature_places: tuple[tuple[int, int] | None, ...] = ()


@dataclass
class BundleTranslation:
    packets: list[PatientTranslation]
    issues: list[Issue]  # issues not tied to one patient


class PatientBuilder:
    """One patient: the entries about them, then (in `finish`) each family's part of the phenopacket."""

    def __init__(self, source: BundleSource, index: int, resource: dict):
        self.ctx = ctx = PatientContext(source, index, resource)
        self.entries: list[int] = [index]
        self.pending: dict[str, list[tuple[int, dict]]] = {t: [] for t in HANDLED_TYPES}
        self.reports: list[tuple[int, dict]] = []
        ctx.subject_id = patient.subject_id(ctx)
        self.individual = patient.individual(ctx) if ctx.subject_id else {}
        self.phenotypes = Phenotypes(ctx)
        self.conditions = Conditions(ctx, self.phenotypes)
        self.variants = Variants(ctx)
        self.measurements = Measurements(ctx)
        self.family_history = FamilyHistory(ctx)
        self.vital_statuses: list[tuple[str, str] | None] = []  # (date, status) from vital-status Observations

    @property
    def subject_id(self) -> str | None:
        return self.ctx.subject_id

    def add(self, i: int, resource: dict) -> None:
        self.entries.append(i)
        rtype = resource["resourceType"]
        if rtype in self.pending:
            self.pending[rtype].append((i, resource))
        elif rtype in REPORT_TYPES:
            self.reports.append((i, resource))
        elif rtype in SUPPORTING_TYPES:
            pass  # a contained Medication: whether its statement used it is judged at the end (report_leftovers)
        elif self.ctx.states_absence(resource.get("code"), self.ctx.source.pointer(i) + "/code"):
            self.ctx.consumed.add(i)  # 'no known allergies': nothing to carry, a note (as for other types)
        else:
            self.ctx.warn("no-phenopacket-target", f"{rtype} has no phenopacket target", self.ctx.source.pointer(i))

    def finish(self) -> PatientTranslation:
        ctx = self.ctx
        for i, resource in self.each("Condition", self.pending["Condition"]):
            self.conditions.condition(i, resource)
        implications = [
            (i, obs) for i, obs in self.each("Observation", self.pending["Observation"]) if self.observation(i, obs)
        ]
        for i, resource in self.each("implication", implications):
            self.variants.implication(i, resource)
        biosamples = [
            sample
            for i, r in self.each("Specimen", self.pending["Specimen"])
            if (sample := specimens.biosample(ctx, i, r)) is not None
        ]
        medical_actions = [actions.procedure(ctx, i, r) for i, r in self.each("Procedure", self.pending["Procedure"])]
        for rtype in MEDICATION_TYPES:
            medical_actions += [actions.medication(ctx, i, r) for i, r in self.each(rtype, self.pending[rtype])]
        for i, resource in self.each("FamilyMemberHistory", self.pending["FamilyMemberHistory"]):
            self.family_history.member(i, resource)
        for i, resource in self.each("report", self.reports):
            self.report(i, resource)
        packet: dict = {"id": ctx.derived_id("phenopacket"), "subject": self.subject()}
        if self.phenotypes.features:
            packet["phenotypicFeatures"] = self.phenotypes.features
        if biosamples:
            packet["biosamples"] = biosamples
        interpretations = self.variants.interpretations(self.conditions.links)
        if interpretations:
            packet["interpretations"] = interpretations
        if self.conditions.diseases:
            packet["diseases"] = [d.record for d in self.conditions.diseases]
        if self.measurements.found:
            packet["measurements"] = self.measurements.found
        medical_actions = [a for a in medical_actions if a is not None]
        if medical_actions:
            packet["medicalActions"] = medical_actions
        packet["metaData"] = self.meta_data(self.conditions.alternate_codings())
        source = ctx.source
        entries = [ctx.index, *sorted({source.entry_of(i) for i in (*self.entries[1:], *ctx.consumed)} - {ctx.index})]
        assert ctx.subject_id is not None  # builders without a subject are never finished
        family = self.family_history.family(packet)
        diseases = tuple(tuple(source.entry_of(i) for i in d.conditions) for d in self.conditions.diseases)
        return PatientTranslation(
            ctx.subject_id,
            packet,
            ctx.issues,
            entries,
            family,
            frozenset(ctx.versions),
            diseases,
            tuple(sorted((p, phase, source.entry_of(i)) for p, (phase, i) in ctx.version_places.items())),
            # a contained resource comes after every entry of its phase: its container's place is not its own
            tuple(
                None if place is None or place[1] in source.containers else place for place in self.phenotypes.places
            ),
        )

    def each(self, phase: str, items: list[tuple[int, dict]]) -> Iterator[tuple[int, dict]]:
        """`items`, with the context knowing which one is being translated (where a version was named)."""
        for i, resource in items:
            self.ctx.place = (PHASE[phase], i)
            yield i, resource
        self.ctx.place = None

    def report(self, i: int, resource: dict) -> None:
        """A report or document index: a warning only when none of its content reached the phenopacket."""
        ctx, base, rtype = self.ctx, self.ctx.source.pointer(i), resource["resourceType"]
        if rtype == "Composition":
            ctx.note(
                "unmapped-element", "Composition is the document's index: its entries are translated on their own", base
            )
            return
        parts = [ctx.source.resolve(reference_of(r), i) for r in as_list(resource.get("result"))]
        parts += [k for k, container in ctx.source.containers.items() if container == i]
        if not any(p in ctx.consumed for p in parts if p is not None):
            ctx.warn("no-phenopacket-target", f"{rtype} has no phenopacket target", base)
            return
        ctx.note("unmapped-element", f"{rtype}: its results are translated; the report itself has no target", base)
        if "conclusionCode" in resource:
            ctx.warn(
                "unmapped-element",
                "DiagnosticReport.conclusionCode has no phenopacket target",
                base + "/conclusionCode",
            )

    def subject(self) -> dict:
        """The Individual, completed with what the other resources tell: last encounter, cause of death."""
        # Only the types the REST surface keeps date the last encounter (translated ones, and the date-only traces
        # of DATING_TYPES), so a patient sent resource by resource has the age its complete Bundle gives (an
        # Immunization, not kept then, made the two differ: Epic's IPS 35 against 31 years). Another type's date
        # never stands in, not even when nothing kept is dated: that channel would have no age (one note says so).
        resources = [r for i in self.entries[1:] if (r := self.ctx.source.resources[i]) is not None]
        translated = [r for r in resources if r["resourceType"] in TRANSLATED_TYPES]
        subject = {"id": self.individual["id"]}
        last = patient.time_at_last_encounter(self.ctx, translated)
        if last:
            subject["timeAtLastEncounter"] = last
        subject.update((k, v) for k, v in self.individual.items() if k != "id")
        patient.apply_vital_statuses(self.ctx, subject, [v for v in self.vital_statuses if v])
        cause = self.conditions.cause_of_death
        if cause is not None:
            vital = subject.setdefault("vitalStatus", {"status": "DECEASED"})
            vital["status"] = "DECEASED"
            vital["causeOfDeath"] = cause
        return subject

    def meta_data(self, alternates: list[dict]) -> dict:
        ctx, source = self.ctx, self.ctx.source
        meta: dict = {
            "created": rfc3339(source.now),
            "createdBy": source.created_by,
            "resources": [source.registry.systems[p].resource(ctx.versions.get(p)) for p in sorted(ctx.used)],
            "phenopacketSchemaVersion": SCHEMA_VERSION,
        }
        if alternates:
            meta["externalReferences"] = alternates
        return meta

    def observation(self, i: int, obs: dict) -> bool:
        """Route one Observation to its family; True when it is a diagnostic implication or another finding about
        variants (handled last)."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        status = obs.get("status")
        if status in SKIPPED_STATUSES:
            ctx.note("unmapped-element", f"Observation with status {status!r} skipped", base + "/status")
            return False
        code = obs.get("code")
        curies = {curie for _, _, curie, _ in ctx.known_codings(code)}
        if curies & ctx.profile.variant_observation_codes:
            self.variants.variant(i, obs, self.phenotypes.presence(obs.get("valueCodeableConcept")))
            return False
        for coding in codings(code):
            key = f"{coding.get('system')}|{coding.get('code')}" if isinstance(coding, dict) else ""
            if key in ctx.profile.diagnostic_implication_codes or key in ctx.profile.variant_annotation_codes:
                return True
        if curies & ctx.profile.vital_status_observation_codes:
            self.vital_statuses.append(patient.vital_status_observation(ctx, i, obs))
            return False
        if curies & ctx.profile.cause_of_death_observation_codes:
            self.conditions.cause_of_death_observation(i, obs)
            return False
        if self.phenotypes.phenotype_coding(code) is None and self.measurements.observation(i, obs):
            self.phenotypes.hpo_components(i, obs)  # a measured height may carry "Tall stature" beside it
            self.conditions.tnm_finding(i, obs)
            return False
        self.phenotypes.observation(i, obs)
        return False


class BundleTranslator:
    def __init__(self, bundle, profile: Profile, ids: IdFunctions, now: datetime, namespace: str, created_by: str):
        self.bundle = bundle
        today = (now if now.tzinfo is None else now.astimezone(UTC)).date()
        self.source = BundleSource(profile, load_registry(), load_tables(), ids, now, today, namespace, created_by)
        self.issues: list[Issue] = []
        self._cited_by: dict[int, list[int]] | None = None

    def run(self) -> BundleTranslation:
        entries = self.entries()
        if entries is None:
            return BundleTranslation([], self.issues)
        source = self.source
        for i, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                source.resources.append(None)
                source.full_urls.append(None)
                self.issues.append(Issue.warning("fhir-structure", "entry without a resource", f"/entry/{i}"))
                continue
            source.resources.append(with_identified_patient_links(resource))
            source.full_urls.append(full_url if isinstance(full_url, str) else None)
        source.index = BundleIndex.build(entries)
        self.add_contained()

        builders: dict[int, PatientBuilder] = {}
        for i, resource in enumerate(source.resources):
            if resource is not None and resource["resourceType"] == "Patient":
                builder = PatientBuilder(source, i, resource)
                if builder.subject_id:
                    builders[i] = builder
                else:
                    self.issues.extend(builder.ctx.issues)
        self.check_one_record_per_person(builders)
        consumed = self.distribute(builders)
        if self.bundle.get("type") == "message":
            consumed |= self.message_header()
        packets = [builder.finish() for builder in builders.values()]
        self.report_leftovers(builders, consumed)  # after finish: a Medication used by a statement is consumed
        return BundleTranslation(packets, self.issues)

    def check_one_record_per_person(self, builders: dict[int, PatientBuilder]) -> None:
        """Two Patients of one Bundle with one patient identifier are one person in two records: an error,
        never two phenopackets of one subject (nor one silently replacing the other)."""
        first: dict[str, int] = {}
        for i, builder in builders.items():
            earlier = first.setdefault(builder.subject_id, i)
            if earlier != i:
                message = (
                    f"entries {earlier} and {i} are two Patients with one patient identifier: one person, two "
                    "records (send one Patient, or state the link with Patient.link)"
                )
                self.issues.append(Issue.error("duplicate", message, f"/entry/{i}/resource/identifier"))

    def message_header(self) -> set[int]:
        """A message's MessageHeader (entry 0, the validator checks it) is read, not carried: the message is
        processed and not kept as a Bundle (messaging.html). A message none of whose resources a phenopacket is
        made of would be answered as done with nothing done: an error naming what it carries."""
        resources = self.source.resources
        header = resources[0] if resources else None
        if header is None or header["resourceType"] != "MessageHeader":
            return set()
        self.issues.append(MESSAGE_HEADER_NOTE)
        carried = [r["resourceType"] for r in resources[1:] if r is not None]
        if not any(t == "Patient" or t in TRANSLATED_TYPES for t in carried):
            named = ", ".join(sorted(set(carried))) or "no resource"
            message = f"this message carries nothing a phenopacket is made of ({named}): nothing would be kept"
            self.issues.append(Issue.error("nothing-kept", message, ""))
        return {0}

    def add_contained(self) -> None:
        """Contained resources the translator maps (vcf2fhir puts every variant inside its report)."""
        source = self.source
        for i in range(len(source.resources)):
            resource = source.resources[i]
            contained = resource.get("contained") if resource is not None else None
            for c, inner in enumerate(contained if isinstance(contained, list) else ()):
                if isinstance(inner, dict) and inner.get("resourceType") in (*HANDLED_TYPES, *SUPPORTING_TYPES):
                    source.add_contained(i, c, inner)

    def entries(self) -> list | None:
        """Bundle.entry, or None (with an error issue) when the document is no acceptable Bundle."""
        bundle = self.bundle
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.issues.append(Issue.error("not-fhir", "expected a FHIR Bundle", ""))
            return None
        bundle_type = bundle.get("type")
        if bundle_type not in ACCEPTED_BUNDLE_TYPES:
            self.issues.append(
                Issue.error(
                    "unsupported-bundle-type",
                    f"Bundle type {bundle_type!r} is not accepted "
                    "(use transaction, batch, collection, document, searchset or message)",
                    "/type",
                )
            )
            return None
        entries = bundle.get("entry")
        if entries is None:
            return []
        if not isinstance(entries, list):
            self.issues.append(Issue.error("fhir-structure", "Bundle.entry must be an array", "/entry"))
            return None
        return entries

    def distribute(self, builders: dict[int, PatientBuilder]) -> set[int]:
        """Give every non-Patient entry to its patient; returns the entries already accounted for."""
        consumed: set[int] = set()
        owners: dict[int, PatientBuilder] = {}
        for i, resource in enumerate(self.source.resources):
            if resource is None or resource["resourceType"] == "Patient":
                continue
            if i in self.source.containers:  # a contained resource belongs where its container does
                container_owner = owners.get(self.source.containers[i])
                if container_owner is not None:
                    container_owner.add(i, resource)
                continue
            issues_before = len(self.issues)
            owner = self.owner(i, resource, builders)
            if owner is not None:
                owners[i] = owner
            if owner is None:
                if len(self.issues) > issues_before:
                    consumed.add(i)  # owner() has already said why it is left out
                continue
            owner.add(i, resource)
        return consumed

    def report_leftovers(self, builders: dict[int, PatientBuilder], consumed: set[int]) -> None:
        for builder in builders.values():
            consumed.update(builder.ctx.consumed)
        resources = self.source.resources
        for i, resource in enumerate(resources):
            if resource is None or resource["resourceType"] == "Patient" or i in consumed:
                continue
            if i in self.source.containers:
                continue  # its container is reported (or mapped) already
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
        for i, resource in enumerate(resources):
            if resource is not None and resource["resourceType"] in SUPPORTING_TYPES and i not in consumed:
                self.issues.append(
                    Issue.warning(
                        "no-phenopacket-target",
                        f"{resource['resourceType']} is not used by any mapped resource",
                        self.source.pointer(i),
                    )
                )

    def owner(self, i: int, resource: dict, builders: dict[int, PatientBuilder]) -> PatientBuilder | None:
        """The patient an entry is about (subject / patient reference), reporting what does not resolve."""
        for field_name in ("subject", "patient"):
            reference = reference_of(resource.get(field_name))
            if reference is None:
                continue
            target = self.source.resolve(reference, i)
            location = f"/entry/{i}/resource/{field_name}/reference"
            if target is None:
                rtype = resource["resourceType"]
                if rtype in TRANSLATED_TYPES:
                    message = f"reference {reference!r} is not in this bundle"
                    self.issues.append(Issue.warning("reference-dangling", message, location))
                else:  # left out for its type, whoever it is about
                    message = (
                        f"{rtype} has no phenopacket target (it names its patient {reference!r}, not in this bundle)"
                    )
                    self.issues.append(Issue.warning("no-phenopacket-target", message, f"/entry/{i}/resource"))
                return None
            if target in builders:
                return builders[target]
            target_type = self.source.resources[target]["resourceType"]
            if target_type != "Patient":
                self.issues.append(
                    Issue.warning(
                        "no-phenopacket-target",
                        f"{resource['resourceType']} is about a {target_type}, not a Patient",
                        location,
                    )
                )
            return None
        citer = self.citing_owner(i, builders)
        if citer is not None:
            return citer
        if resource["resourceType"] in HANDLED_TYPES:
            self.issues.append(
                Issue.warning(
                    "unmapped-element",
                    f"{resource['resourceType']} names no subject patient, so it cannot be placed in a phenopacket",
                    f"/entry/{i}/resource",
                )
            )
        return None

    def citing_owner(self, i: int, builders: dict[int, PatientBuilder]) -> PatientBuilder | None:
        """The patient of the report or panel that lists a subject-less entry (DiagnosticReport.result,
        Observation.hasMember): Genomics Reporting lets a report name the patient once for its results.
        Breadth-first over the citations, each entry visited once (a cycle or a long chain costs O(n))."""
        cited_by = self.citations()
        queue, seen = deque(cited_by.get(i, ())), {i}
        while queue:
            j = queue.popleft()
            if j in seen:
                continue
            seen.add(j)
            citer = self.source.resources[j]
            for field_name in ("subject", "patient"):
                reference = reference_of(citer.get(field_name)) if citer is not None else None
                target = self.source.resolve(reference, j) if reference is not None else None
                if target is not None and target in builders:
                    return builders[target]
            queue.extend(cited_by.get(j, ()))
        return None

    def citations(self) -> dict[int, list[int]]:
        """Entry -> the entries that list it as a report result or a panel member (built once)."""
        if self._cited_by is None:
            self._cited_by = {}
            for j, citer in enumerate(self.source.resources):
                field_name = {"DiagnosticReport": "result", "Observation": "hasMember"}.get(
                    citer["resourceType"] if citer is not None else ""
                )
                for item in as_list(citer.get(field_name)) if citer is not None and field_name else ():
                    reference = reference_of(item)
                    target = self.source.resolve(reference, j) if reference is not None else None
                    if target is not None and target != j:
                        self._cited_by.setdefault(target, []).append(j)
        return self._cited_by
