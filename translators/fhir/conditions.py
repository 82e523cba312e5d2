"""Condition -> diseases, or a phenotypicFeature when its chosen coding is HPO.

Every Condition is its own Disease (the same diagnosis recorded twice, e.g. clinically and genetically
confirmed, is one Disease; different ones are never merged, nor are two episodes of a disease that recurs:
see `disease_key`): its term is the coding the profile's
disease priority list ranks best, and its other codings (ICD-10-GM beside ORPHA, say) stay with it as alternate codings in
`metaData.externalReferences` (see mappings/alternate_codings.py), which the Beacon index reads as
disease terms of the same individual, so a filter on any of them finds the patient.

verificationStatus decides the home (Phenopacket v2 `Disease` has no certainty field):
- confirmed, or none given -> `diseases`;
- refuted -> `diseases` with `excluded: true`;
- unconfirmed, provisional, differential -> never a disease: an `interpretations` entry in progress
  (progressStatus IN_PROGRESS, diagnosis.disease = the term; its evidence variants as CANDIDATE).
  A phenopacket interpretation is exactly a diagnosis under consideration;
- entered-in-error -> skipped.
A Condition whose category is one of the profile's cause-of-death categories is also
`subject.vitalStatus.causeOfDeath` (and the patient is then deceased).
Variants named as evidence are remembered as links, so that the variants family can make the
Condition's diagnosis from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mappings.alternate_codings import alternate_reference
from translators.ages import fhir_age_to_iso
from translators.fhir.common import as_list, codings, first_code, reference_of
from translators.fhir.context import PatientContext
from translators.fhir.phenotypes import Phenotypes

VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
UNCONFIRMED = frozenset({"unconfirmed", "provisional", "differential"})


def verification_status(ctx: PatientContext, cond: dict, base: str) -> str | None:
    """The Condition's condition-ver-status code. One coded in another system (SNOMED CT 415684004 Suspected,
    410516002 Known absent: zib-based profiles) is read through the `condition_status` answer list; one nothing
    reads is taken as unconfirmed (warned), never as confirmed. A clinicalStatus outside condition-clinical
    that states the disorder is excluded (SNOMED CT 315215002: the GA4GH Phenopacket FHIR IG) refutes it."""
    table = ctx.tables.answers["condition_status"]
    concept = cond.get("verificationStatus")
    if concept is not None:
        standard = first_code(concept, VERIFICATION_SYSTEM)
        if standard is not None:
            return standard
        found = next((table[c] for _, _, c, _ in ctx.known_codings(concept) if c in table), None)
        if found is not None:
            return found
        ctx.warn(
            "unmapped-code",
            "verificationStatus in no code system the gateway reads: the diagnosis is taken as unconfirmed "
            "(never as confirmed)",
            base + "/verificationStatus",
        )
        return "unconfirmed"
    clinical = cond.get("clinicalStatus")
    excluded = clinical is not None and first_code(clinical, CLINICAL_SYSTEM) is None
    if excluded and any(table.get(c) == "refuted" for _, _, c, _ in ctx.known_codings(clinical)):
        return "refuted"
    return None


@dataclass
class Disease:
    record: dict
    codes: set[str] = field(default_factory=set)
    conditions: list[int] = field(default_factory=list)  # positions of the Conditions that made it, in order


def disease_key(record: dict) -> tuple:
    """What makes two disease records of one patient the same Disease: the term, both excluded or not, and,
    for an episode that ended (a resolution), the same onset and resolution. A disease that recurs (viral
    sinusitis at 40 and again at 41, each resolved) is two Diseases: one record would keep the dates of
    whichever episode came first, and which one that is depends on the order the resources arrive in.
    An unresolved record (a chronic diagnosis recorded twice) stays one Disease. translators.fhir.merge
    groups by the same key, so that the parts of a patient merge as one translation would."""
    episode = (
        json.dumps([record.get("onset"), record["resolution"]], sort_keys=True) if "resolution" in record else None
    )
    return (record["term"]["id"], bool(record.get("excluded")), episode)


@dataclass(frozen=True)
class DiagnosisLink:
    """A Condition that becomes an interpretation: it names variants as evidence, or is unconfirmed."""

    condition: int  # entry position
    term: dict
    verification: str
    variants: list[int]  # entry positions


class Conditions:
    def __init__(self, ctx: PatientContext, phenotypes: Phenotypes):
        self.ctx = ctx
        self.phenotypes = phenotypes
        self.diseases: list[Disease] = []
        self.links: list[DiagnosisLink] = []
        self.cause_of_death: dict | None = None
        self.unconfirmed: list[Disease] = []  # diagnoses under consideration: their codings are kept too
        self.by_entry: dict[int, Disease] = {}  # Condition position -> the Disease it became
        self.by_key: dict[tuple, Disease] = {}  # disease_key -> the Disease (a key never changes: see disease_key)

    def condition(self, i: int, cond: dict) -> None:
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        profile = ctx.profile
        verification = verification_status(ctx, cond, base)
        if verification == "entered-in-error":
            ctx.note("unmapped-element", "Condition entered in error: skipped", base + "/verificationStatus")
            return
        if ctx.states_absence(cond.get("code"), base + "/code"):
            ctx.consumed.add(i)
            return
        excluded = verification == "refuted"
        meta = cond.get("meta")
        profiles = (
            {p.split("|", 1)[0] for p in as_list(meta.get("profile")) if isinstance(p, str)}
            if isinstance(meta, dict)
            else set()
        )
        code = cond.get("code")
        phenotype = self.phenotypes.phenotype_coding(code)
        disease_priority = profile.disease_coding_priority
        has_disease = any(prefix in disease_priority for _, _, _, prefix in ctx.known_codings(code))
        as_phenotype = phenotype is not None and (
            not has_disease or bool(profiles & profile.phenotype_condition_profiles)
        )
        onset = self.condition_time(cond, "onset", base)
        if as_phenotype:
            _, coding, curie, prefix = phenotype
            self.phenotypes.add_feature(
                ctx.term_of(coding, curie, prefix, code, base + "/code"),
                excluded,
                base + "/code",
                onset=onset,
                severity=self.severity(cond, base),
            )
            return
        picked = ctx.pick(code, disease_priority, base + "/code", "the Condition")
        if picked is None:
            return
        term, codes = picked
        if verification not in UNCONFIRMED and not excluded and self.is_cause_of_death(cond):
            self.cause_of_death = term
        variants = self.evidence_variants(i, cond, base)
        if variants or verification in UNCONFIRMED:
            self.links.append(DiagnosisLink(i, term, verification or "", variants))
        if verification in UNCONFIRMED:
            self.unconfirmed.append(Disease({"term": term}, codes))
            ctx.note(
                "unconfirmed-diagnosis",
                f"{verification} diagnosis {term['id']} kept as an interpretation in progress, not as a disease",
                base + "/verificationStatus",
            )
            return
        record: dict = {"term": term}
        if excluded:
            record["excluded"] = True
        if onset:
            record["onset"] = onset
        resolution = self.condition_time(cond, "abatement", base)
        if resolution:
            record["resolution"] = resolution
        self.details(cond, base, record)
        key = disease_key(record)
        same = self.by_key.get(key)
        if same is not None:  # the same diagnosis recorded twice (clinical and genetic): one Disease
            for key, value in record.items():
                same.record.setdefault(key, value)
            same.codes |= codes
            same.conditions.append(i)
            self.by_entry[i] = same
            ctx.note("duplicate", f"{term['id']} already recorded for this patient: merged", base + "/code")
            return
        self.diseases.append(Disease(record, codes, [i]))
        self.by_key[key] = self.diseases[-1]
        self.by_entry[i] = self.diseases[-1]

    def tnm_finding(self, i: int, obs: dict) -> None:
        """A TNM-coded value of an Observation whose focus is a Condition that became a Disease: also
        that Disease's clinicalTnmFinding (the measurement keeps the value, assay and time)."""
        ctx = self.ctx
        concept = obs.get("valueCodeableConcept")
        found = [(c, curie) for _, c, curie, p in ctx.known_codings(concept) if p in ctx.profile.tnm_finding_prefixes]
        if not found:
            return
        coding, curie = found[0]  # the measurement made (and, if unlabelled, warned about) the same term
        label = coding.get("display") or (concept.get("text") if isinstance(concept, dict) else None) or curie
        value = {"id": curie, "label": label}
        for focus in as_list(obs.get("focus")):
            disease = self.by_entry.get(ctx.source.resolve(reference_of(focus), i) or -1)
            if disease is None:
                continue
            findings = disease.record.setdefault("clinicalTnmFinding", [])
            if value not in findings:
                findings.append(value)

    def details(self, cond: dict, base: str, record: dict) -> None:
        """Stage and body site where the Disease has a place; severity has none (a warning)."""
        ctx = self.ctx
        stages = []
        for k, stage in enumerate(as_list(cond.get("stage"))):
            summary = stage.get("summary") if isinstance(stage, dict) else None
            term = ctx.ontology(summary, None, f"{base}/stage/{k}/summary")
            if term is not None:
                stages.append(term)
            elif summary is not None:
                ctx.warn("unmapped-code", "stage is in no code system the gateway maps", f"{base}/stage/{k}/summary")
        if stages:
            record["diseaseStage"] = stages
        self.sites(cond, base, record)
        if "severity" in cond:
            ctx.warn("unmapped-element", "a Phenopacket Disease has no severity", f"{base}/severity")

    def severity(self, cond: dict, base: str) -> dict | None:
        """A PhenotypicFeature's severity (an ontology class, e.g. HP:0012825 Mild), or None with a warning."""
        if "severity" not in cond:
            return None
        term = self.ctx.ontology(cond["severity"], None, base + "/severity")
        if term is None:
            self.ctx.warn("unmapped-code", "severity is in no code system the gateway maps", base + "/severity")
        return term

    def sites(self, cond: dict, base: str, record: dict) -> None:
        """bodySite -> primarySite, its laterality codings (and a coding's side extension) -> laterality."""
        ctx = self.ctx
        for k, site in enumerate(as_list(cond.get("bodySite"))):
            location = f"{base}/bodySite/{k}"
            # Side codings blanked, not removed: a coding's index stays its index in the input (its pointer).
            anatomy = [
                c if isinstance(c, dict) and self.side(c, record, location) is None else {} for c in codings(site)
            ]
            term = ctx.ontology({**site, "coding": anatomy}, None, location) if isinstance(site, dict) else None
            if term is not None and "primarySite" not in record:
                record["primarySite"] = term
            elif term is not None:
                ctx.warn("unmapped-element", "Condition.bodySite not kept: a Disease has one primary site", location)
            elif any(anatomy) or not codings(site):
                ctx.warn("unmapped-code", "Condition.bodySite is in no code system the gateway maps", location)
            # a side given as an extension of the site (nl-core's AnatomicalLocation.Laterality)
            for e, ext in enumerate(as_list(site.get("extension")) if isinstance(site, dict) else ()):
                value = ext.get("valueCodeableConcept") if isinstance(ext, dict) else None
                for j, coding in enumerate(codings(value)):
                    if isinstance(coding, dict):
                        self.side(coding, record, f"{location}/extension/{e}/valueCodeableConcept/coding/{j}")
        for j, coding in enumerate(codings(cond.get("code"))):
            for e, ext in enumerate(as_list(coding.get("extension")) if isinstance(coding, dict) else ()):
                value = ext.get("valueCoding") if isinstance(ext, dict) else None
                if isinstance(value, dict):
                    self.side(value, record, f"{base}/code/coding/{j}/extension/{e}/valueCoding")

    def side(self, coding: dict, record: dict, location: str) -> bool | None:
        """True when `coding` is a side put into `record`, False a laterality that names none, else None."""
        tables, key = self.ctx.tables, f"{coding.get('system')}|{coding.get('code')}"
        if key in tables.no_side:
            self.ctx.note("unmapped-element", "laterality names no side (not applicable / unknown / midline)", location)
            return False
        row = tables.laterality.get(key)
        if row is None:
            return None
        if record.setdefault("laterality", {"id": row["id"], "label": row["label"]})["id"] != row["id"]:
            self.ctx.warn("conflict", "a second, different laterality is not kept", location)
        self.ctx.used.add("HP")
        return True

    def cause_of_death_observation(self, i: int, obs: dict) -> None:
        """An Observation whose coded value names the cause of death (Synthea's LOINC 69453-9): the subject's
        vitalStatus.causeOfDeath. A cause-of-death Condition (read first) wins; another cause is warned."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        value = obs.get("valueCodeableConcept")
        if not isinstance(value, dict):
            ctx.warn("unmapped-element", "a cause-of-death Observation without a coded value: no cause carried", base)
            return
        where = base + "/valueCodeableConcept"
        picked = ctx.pick(value, ctx.profile.disease_coding_priority, where, "the cause of death")
        if picked is None:
            return
        term = picked[0]
        ctx.consumed.add(i)
        if self.cause_of_death is None:
            self.cause_of_death = term
        elif self.cause_of_death["id"] != term["id"]:
            ctx.warn(
                "unmapped-element",
                f"another cause of death ({term['id']}): vitalStatus holds one, {self.cause_of_death['id']} is kept",
                where,
            )

    def is_cause_of_death(self, cond: dict) -> bool:
        wanted = self.ctx.profile.cause_of_death_categories
        return any(
            curie in wanted
            for category in as_list(cond.get("category"))
            for _, _, curie, _ in self.ctx.known_codings(category)
        )

    def condition_time(self, cond: dict, stem: str, base: str) -> dict | None:
        """onset[x] / abatement[x] as a phenopacket TimeElement."""
        ctx = self.ctx
        if f"{stem}DateTime" in cond:
            return ctx.age_at(cond[f"{stem}DateTime"], f"{base}/{stem}DateTime")
        if f"{stem}Age" in cond:
            iso = fhir_age_to_iso(cond[f"{stem}Age"])
            if iso is None:
                ctx.warn(
                    "fhir-value", f"{stem}Age is not a duration in years, months, weeks or days", f"{base}/{stem}Age"
                )
                return None
            return {"age": {"iso8601duration": iso}}
        if f"{stem}Period" in cond:
            period = cond[f"{stem}Period"]
            start = period.get("start") if isinstance(period, dict) else None
            if start is not None:
                return ctx.age_at(start, f"{base}/{stem}Period/start")
        if f"{stem}Range" in cond:
            return self.age_range(cond[f"{stem}Range"], f"{base}/{stem}Range")
        for name in (f"{stem}String", f"{stem}Boolean"):
            if name in cond:
                ctx.warn("unmapped-element", f"{name} has no phenopacket equivalent: skipped", f"{base}/{name}")
        return None

    def age_range(self, bounds: object, location: str) -> dict | None:
        """onsetRange / abatementRange (a Range of ages: "between 35 and 40 years", IPS) -> TimeElement.ageRange;
        a range open at one end, or not in ages, is warned (no bound is invented)."""
        ends = [fhir_age_to_iso(bounds.get(k)) if isinstance(bounds, dict) else None for k in ("low", "high")]
        if ends[0] is None or ends[1] is None:
            self.ctx.warn(
                "unmapped-element", "an age range needs a low and a high age in years, months, weeks or days", location
            )
            return None
        return {"ageRange": {"start": {"iso8601duration": ends[0]}, "end": {"iso8601duration": ends[1]}}}

    def evidence_variants(self, i: int, cond: dict, base: str) -> list[int]:
        found = []
        for e, evidence in enumerate(as_list(cond.get("evidence"))):
            for d, detail in enumerate(as_list(evidence.get("detail")) if isinstance(evidence, dict) else []):
                target = self.ctx.source.resolve(reference_of(detail), i)
                if target is not None:
                    found.append(target)
                else:
                    self.ctx.note(
                        "reference-dangling", "evidence is not in this bundle", f"{base}/evidence/{e}/detail/{d}"
                    )
        return found

    def alternate_codings(self) -> list[dict]:
        """The codings each disease carried beside the one chosen (mappings/alternate_codings.py)."""
        registry, out, seen = self.ctx.source.registry, [], set()
        for disease in (*self.diseases, *self.unconfirmed):
            primary = disease.record["term"]["id"]
            for code in sorted(disease.codes - {primary}):
                if (code, primary) in seen:
                    continue
                seen.add((code, primary))
                system = registry.system_for_prefix(code.partition(":")[0])
                if system is not None:
                    self.ctx.used.add(system.prefix)
                out.append(alternate_reference(code, primary, system.resource().get("iriPrefix") if system else None))
        return out
