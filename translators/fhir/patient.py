"""Patient -> Phenopacket subject (Individual).

The subject id is the caller's pseudonym of the first identifier in the profile's identifier-system
priority list, else of `Patient/<id>` (what names the Patient in its dataset, however the Bundle that
carried it spelled its fullUrl), else of the entry's fullUrl. Sex comes from administrative
gender, refined by profile extensions (gender-amtlich-de). Dates become ages: `timeAtLastEncounter`
is the age in whole years at the latest dated event of the patient's resources (never after death);
`vitalStatus` from deceased[x], with the cause of death from a cause-of-death Condition.
Names, addresses, telecom, identifiers, notes and narrative never leave.
"""

from __future__ import annotations

from datetime import date

from gateway.issues import Issue
from translators.ages import age_element, parse_fhir_date, whole_years
from translators.fhir.common import HOMO_SAPIENS, as_list
from translators.fhir.context import PatientContext

PATIENT_ANIMAL = "http://hl7.org/fhir/StructureDefinition/patient-animal"  # FHIR R4 core; "|version" may follow


def subject_id(ctx: PatientContext) -> str | None:
    """The subject's pseudonym, or None (with an error issue) when nothing names the patient."""
    patient, profile = ctx.patient, ctx.profile
    best = None
    for j, ident in enumerate(as_list(patient.get("identifier"))):
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(system, str) or not isinstance(value, str) or not value:
            continue
        rank = profile.identifier_rank(system)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, j, system, value)
    if best is not None:
        return ctx.source.ids.subject(best[3], best[2])
    full_url = ctx.source.full_urls[ctx.index]
    rid = patient.get("id")
    location = f"/entry/{ctx.index}/resource"
    if isinstance(rid, str) and rid:
        source = f"Patient/{rid}"
    elif full_url:
        source = full_url
    else:
        ctx.issues.append(
            Issue.error("fhir-required", "Patient has no identifier, id or fullUrl to derive a subject id", location)
        )
        return None
    ctx.note(
        "unmapped-element",
        "no identifier of a system in the profile's list: the subject pseudonym is derived from the resource id",
        location,
    )
    return ctx.source.ids.subject(source)


def individual(ctx: PatientContext) -> dict:
    """The Individual of `ctx.subject_id`; sets `ctx.birth` for the ages of every other family."""
    patient, base = ctx.patient, f"/entry/{ctx.index}/resource"
    result: dict = {"id": ctx.subject_id}
    birth_raw = patient.get("birthDate")
    if birth_raw is not None:
        ctx.birth = parse_fhir_date(birth_raw, latest=True)
        if ctx.birth is None:
            ctx.warn("fhir-value", f"unreadable birthDate {birth_raw!r}", base + "/birthDate")
    death: date | None = None
    if "deceasedDateTime" in patient:
        death = parse_fhir_date(patient["deceasedDateTime"], latest=False)
        if death is None:
            ctx.warn("fhir-value", "unreadable deceasedDateTime", base + "/deceasedDateTime")
    ctx.death = death
    if ctx.birth is not None and whole_years(ctx.birth, ctx.source.today) < 0:
        ctx.warn("fhir-value", "birthDate lies in the future", base + "/birthDate")
    if "deceasedDateTime" in patient:
        vital: dict = {"status": "DECEASED"}
        if death is not None and ctx.birth is not None and whole_years(ctx.birth, death) >= 0:
            vital["timeOfDeath"] = age_element(whole_years(ctx.birth, death))
        result["vitalStatus"] = vital
    elif isinstance(patient.get("deceasedBoolean"), bool):
        result["vitalStatus"] = {"status": "DECEASED" if patient["deceasedBoolean"] else "ALIVE"}
    elif "deceasedAge" in patient or "deceasedString" in patient:
        result["vitalStatus"] = {"status": "DECEASED"}
    found = sex(ctx, base)
    if found:
        result["sex"] = found
    ctx.taxonomy = taxonomy(ctx, base)
    if ctx.taxonomy is not None:
        result["taxonomy"] = dict(ctx.taxonomy)
    return result


def taxonomy(ctx: PatientContext, base: str) -> dict | None:
    """Homo sapiens, unless the Patient is an animal (the core patient-animal extension, HL7 Europe laboratory
    reports on animals): its species, or none (warned) when the species is in no known code system."""
    for k, ext in enumerate(as_list(ctx.patient.get("extension"))):
        if not isinstance(ext, dict) or str(ext.get("url", "")).split("|", 1)[0] != PATIENT_ANIMAL:
            continue
        for n, part in enumerate(as_list(ext.get("extension"))):
            if isinstance(part, dict) and part.get("url") == "species":
                where = f"{base}/extension/{k}/extension/{n}/valueCodeableConcept"
                species = ctx.ontology(part.get("valueCodeableConcept"), None, where)
                if species is None:
                    ctx.warn("unmapped-code", "the animal's species is in no known code system: no taxonomy", where)
                return species
        ctx.warn("fhir-value", "an animal Patient without a species: no taxonomy", f"{base}/extension/{k}")
        return None
    ctx.used.add("NCBITaxon")
    return dict(HOMO_SAPIENS)


def sex(ctx: PatientContext, base: str) -> str | None:
    gender = ctx.patient.get("gender")
    if gender is None:
        return None
    found = ctx.tables.gender_to_sex.get(gender)
    if found is None:
        ctx.warn("unmapped-code", f"administrative gender {gender!r} has no phenopacket sex", base + "/gender")
        return None
    shadow = ctx.patient.get("_gender")
    for k, ext in enumerate(as_list(shadow.get("extension")) if isinstance(shadow, dict) else []):
        if not isinstance(ext, dict):
            continue
        codes = ctx.profile.sex_extensions.get(ext.get("url"))
        if codes is None:
            continue
        coding = ext.get("valueCoding")
        code = coding.get("code") if isinstance(coding, dict) else None
        if code in codes:
            return codes[code]
        ctx.warn("unmapped-code", f"gender extension code {code!r} not mapped", f"{base}/_gender/extension/{k}")
    return found


# Where FHIR resources carry the date of a clinical event (a Period counts by its end, else its start).
EVENT_DATE_ELEMENTS = (
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    "onsetDateTime",
    "onsetPeriod",
    "abatementDateTime",
    "abatementPeriod",
    "recordedDate",
    "performedDateTime",
    "performedPeriod",
    "authoredOn",
    "occurrenceDateTime",
    "period",
    "collection",
)


def event_dates(resource: dict) -> list[date]:
    """The dates of the clinical events a resource records (unreadable ones are skipped here)."""
    found = []
    for name in EVENT_DATE_ELEMENTS:
        value = resource.get(name)
        if name == "collection":
            value = value.get("collectedDateTime") or value.get("collectedPeriod") if isinstance(value, dict) else None
        if isinstance(value, dict):
            value = value.get("end") or value.get("start")
        when = parse_fhir_date(value, latest=False) if isinstance(value, str) else None
        if when is not None:
            found.append(when)
    return found


def time_at_last_encounter(ctx: PatientContext, resources: list[dict]) -> dict | None:
    """The age at the latest dated event of the patient (death is the last one there can be)."""
    if ctx.birth is None:
        return None
    dates = [d for resource in resources for d in event_dates(resource)]
    if ctx.death is not None:
        dates = [d for d in dates if d <= ctx.death] + [ctx.death]
    dates = [d for d in dates if d >= ctx.birth]
    if not dates:
        ctx.note(
            "unmapped-element",
            "no dated event of the patient among the resources a phenopacket is made of (others' dates are not "
            "read: sent one by one they are not kept): timeAtLastEncounter is left out",
            f"/entry/{ctx.index}/resource",
        )
        return None
    return age_element(whole_years(ctx.birth, max(dates)))


def vital_status_observation(ctx: PatientContext, i: int, obs: dict) -> tuple[str, str] | None:
    """(effective date, VitalStatus.Status) of a vital-status Observation (profile data), or None."""
    base = ctx.source.pointer(i)
    value = obs.get("valueCodeableConcept")
    codings = value.get("coding") if isinstance(value, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict):
            status = ctx.profile.vital_status_values.get(f"{coding.get('system')}|{coding.get('code')}")
            if status:
                ctx.consumed.add(i)
                when = obs.get("effectiveDateTime")
                return (when if isinstance(when, str) else ""), status
    ctx.warn("unmapped-code", "vital status value not in the profile's list", base + "/valueCodeableConcept")
    return None


def apply_vital_statuses(ctx: PatientContext, subject: dict, observed: list[tuple[str, str]]) -> None:
    """Patient.deceased[x] wins; without it the latest vital-status Observation sets the status.
    An Observation that says otherwise than the Patient is a warning."""
    if not observed:
        return
    latest = max(observed)[1]
    given = subject.get("vitalStatus", {}).get("status")
    if given is None:
        subject["vitalStatus"] = {"status": latest}
    elif latest not in (given, "UNKNOWN_STATUS"):
        ctx.warn(
            "conflict",
            f"the latest vital-status Observation says {latest}, the Patient {given}: the Patient's is kept",
            f"/entry/{ctx.index}/resource",
        )
