"""Procedure, MedicationStatement / Request / Administration -> medicalActions (procedure, treatment)."""

from __future__ import annotations

from dataclasses import dataclass

from translators.ages import parse_fhir_date
from translators.fhir.common import as_list, codings, reference_of
from translators.fhir.context import PatientContext
from translators.fhir.quantities import phenopacket_quantity

PROCEDURE_DONE = frozenset({"completed", "in-progress"})


def procedure(ctx: PatientContext, i: int, proc: dict) -> dict | None:
    base = ctx.source.pointer(i)
    status = proc.get("status")
    if status not in PROCEDURE_DONE:
        ctx.note("unmapped-element", f"Procedure with status {status!r} is not a performed action", base + "/status")
        return None
    if ctx.states_absence(proc.get("code"), base + "/code"):
        ctx.consumed.add(i)
        return None
    concept, where = procedure_code(ctx, proc, base)
    picked = ctx.pick(concept, ctx.profile.procedure_coding_priority, where, "the Procedure")
    if picked is None:
        return None
    action: dict = {"code": picked[0]}
    site = as_list(proc.get("bodySite"))
    if site:
        body = ctx.ontology(site[0], None, base + "/bodySite/0")
        if body:
            action["bodySite"] = body
    if "performedDateTime" in proc:
        when = ctx.age_at(proc["performedDateTime"], base + "/performedDateTime")
    elif isinstance(proc.get("performedPeriod"), dict) and "start" in proc["performedPeriod"]:
        when = ctx.age_at(proc["performedPeriod"]["start"], base + "/performedPeriod/start")
    else:
        when = None
    if when:
        action["performed"] = when
    ctx.consumed.add(i)
    return {"procedure": action}


def procedure_code(ctx: PatientContext, proc: dict, base: str) -> tuple[object, str]:
    """Procedure.code, or for a Procedure without one the profile's extension that names what was done."""
    if codings(proc.get("code")):
        return proc.get("code"), base + "/code"
    for k, ext in enumerate(as_list(proc.get("extension"))):
        if isinstance(ext, dict) and ext.get("url") in ctx.profile.procedure_code_extensions:
            return ext.get("valueCodeableConcept"), f"{base}/extension/{k}/valueCodeableConcept"
    return proc.get("code"), base + "/code"


# Per medication resource type: statuses that mean nothing was taken or ordered, where the dosage
# lives, and what kind of record it is (Phenopacket Treatment.drugType).
MEDICATION_KINDS = {
    # A statement or an administration records a medication taken; only an order says more (PRESCRIPTION).
    "MedicationStatement": (frozenset({"entered-in-error", "not-taken"}), "dosage", None),
    "MedicationRequest": (
        frozenset({"entered-in-error", "cancelled", "draft"}),
        "dosageInstruction",
        "PRESCRIPTION",
    ),
    "MedicationAdministration": (frozenset({"entered-in-error", "not-done"}), "dosage", None),
}


# MedicationRequest.intent values that recommend rather than order (FHIR R4 medicationrequest-intent)
RECOMMENDATION_INTENTS = frozenset({"proposal", "option"})


def medication(ctx: PatientContext, i: int, resource: dict) -> dict | None:
    """MedicationStatement / MedicationRequest / MedicationAdministration -> a treatment."""
    base, rtype = ctx.source.pointer(i), resource["resourceType"]
    skipped, dosage_name, drug_type = MEDICATION_KINDS[rtype]
    status = resource.get("status")
    if status in skipped:
        ctx.note("unmapped-element", f"{rtype} with status {status!r} skipped", base + "/status")
        return None
    intent = resource.get("intent") if rtype == "MedicationRequest" else None
    if intent in RECOMMENDATION_INTENTS:
        # A recommendation (a tumour board's therapy proposal) is no treatment the patient got, and a phenopacket
        # has no place for one: carried as a PRESCRIPTION, Beacon would count it as a drug given.
        message = (
            f"MedicationRequest with intent {intent!r} recommends a treatment, it does not record one: "
            "no phenopacket target (a treatment is what the patient was prescribed or took)"
        )
        ctx.warn("no-phenopacket-target", message, base + "/intent")
        ctx.consumed.add(i)
        return None
    concept, location = resource.get("medicationCodeableConcept"), base + "/medicationCodeableConcept"
    if concept is None:
        target = ctx.source.resolve(reference_of(resource.get("medicationReference")), i)
        found = ctx.source.resources[target] if target is not None else None
        if found is None or found.get("resourceType") != "Medication":
            ctx.warn("reference-dangling", "medication is not in this bundle", base + "/medicationReference")
            return None
        ctx.consumed.add(target)
        concept, location = found.get("code"), ctx.source.pointer(target) + "/code"
        concept = sole_ingredient(ctx, found, concept, location)
    if ctx.states_absence(concept, location):
        ctx.consumed.add(i)
        return None
    picked = ctx.pick(concept, ctx.profile.medication_coding_priority, location, "the medication")
    if picked is None:
        return None
    treatment: dict = {"agent": picked[0]}
    dosages = resource.get(dosage_name)
    single = rtype == "MedicationAdministration"  # one dosage object, one administration
    dosages = [dosages] if isinstance(dosages, dict) else as_list(dosages)
    for d, dosage in enumerate(dosages):
        if isinstance(dosage, dict):
            where = f"{base}/{dosage_name}" + ("" if single else f"/{d}")
            dosage_into(ctx, Dosing(resource, dosage, where, base, single), treatment)
    if "authoredOn" in resource and "doseIntervals" not in treatment:
        ctx.warn(
            "unmapped-element",
            "authoredOn is the date the order was written, not a treatment period, and no dosage has a dose "
            "with a schedule and a Timing.repeat.boundsPeriod with a start and an end: no dose interval is carried "
            "(none is invented from the order date)",
            base + "/authoredOn",
        )
    if drug_type:
        treatment["drugType"] = drug_type
    ctx.consumed.add(i)
    return {"treatment": treatment}


def sole_ingredient(ctx: PatientContext, medication: dict, code: object, location: str) -> object:
    """The concept naming a Medication's agent: its code, or — when no coding of the code is in a system the
    profile maps (a national product number: the Swiss GTIN, a German PZN) — its one ingredient's substance
    (CH Core codes it in SNOMED CT). A product of several ingredients has no one agent: its code stays (warned)."""
    priority = ctx.profile.medication_coding_priority
    if any(prefix in priority for _, _, _, prefix in ctx.known_codings(code)):
        return code
    ingredients = [x for x in as_list(medication.get("ingredient")) if isinstance(x, dict)]
    if len(ingredients) != 1:
        return code
    substance = ingredients[0].get("itemCodeableConcept")
    if not any(prefix in priority for _, _, _, prefix in ctx.known_codings(substance)):
        return code
    ctx.note(
        "unmapped-element",
        f"the product code is in no system this profile maps ({ctx.codings_described(code)}): the agent is the "
        "substance of its one ingredient",
        location,
    )
    return substance


@dataclass(frozen=True)
class Dosing:
    """One dosage of a medication resource, with where it sits and what kind of record holds it."""

    resource: dict
    dosage: dict
    location: str  # JSON pointer of the dosage
    base: str  # JSON pointer of the resource
    single: bool  # a MedicationAdministration: one administration, `dose` and `rate[x]` directly


# Dosage details a DoseInterval has no place for: reported where they are.
NOT_CARRIED = ("rateRatio", "rateRange", "rateQuantity", "maxDosePerPeriod", "maxDosePerAdministration")
NOT_CARRIED += ("maxDosePerLifetime", "method", "site")
TIMING_DETAILS = ("when", "timeOfDay", "dayOfWeek", "offset", "duration", "durationUnit")


def dosage_into(ctx: PatientContext, dosing: Dosing, treatment: dict) -> None:
    """Route into the treatment; dose, schedule and dated interval into a DoseInterval."""
    dosage, location = dosing.dosage, dosing.location
    route = ctx.ontology(dosage.get("route"), None, location + "/route")
    if route and "routeOfAdministration" not in treatment:
        treatment["routeOfAdministration"] = route
    elif "route" in dosage and not route:
        ctx.warn("unmapped-code", "route of administration is in no known code system", location + "/route")
    for name in NOT_CARRIED:
        if name in dosage:
            ctx.warn(
                "unmapped-element", f"Dosage.{name} has no place in a phenopacket DoseInterval", f"{location}/{name}"
            )
    for k, entry in enumerate(as_list(dosage.get("doseAndRate"))):
        for name in (n for n in NOT_CARRIED if isinstance(entry, dict) and n in entry):
            ctx.warn(
                "unmapped-element",
                f"{name} has no place in a phenopacket DoseInterval",
                f"{location}/doseAndRate/{k}/{name}",
            )
    used_before = set(ctx.used)
    interval = dose_interval(ctx, dosing)
    if interval is not None:
        treatment.setdefault("doseIntervals", []).append(interval)
    else:  # a unit or schedule read for an interval that was not carried names no resource
        ctx.used.intersection_update(used_before)


def dose_interval(ctx: PatientContext, dosing: Dosing) -> dict | None:
    """A DoseInterval (quantity, schedule, dated interval), or None with a warning saying what is missing."""
    found = dose_quantity(ctx, dosing)
    if found is None:
        return None
    quantity, where = found
    schedule = schedule_frequency(ctx, dosing)
    if schedule is None:
        return None
    interval = dated_interval(ctx, dosing)
    if interval is None and "authoredOn" in dosing.resource:
        return None  # an order: warned once at its authoredOn (medication)
    if interval is None:
        ctx.warn(
            "unmapped-element",
            "the dose has no dated start and end (a phenopacket DoseInterval needs both): not carried",
            where,
        )
        return None
    return {"quantity": quantity, "scheduleFrequency": schedule, "interval": interval}


def dose_quantity(ctx: PatientContext, dosing: Dosing) -> tuple[dict, str] | None:
    dosage, location = dosing.dosage, dosing.location
    if dosing.single:
        holders = [(dosage.get("dose"), location + "/dose")]
    else:
        holders = [
            (entry.get("doseQuantity"), f"{location}/doseAndRate/{k}/doseQuantity")
            for k, entry in enumerate(as_list(dosage.get("doseAndRate")))
            if isinstance(entry, dict)
        ]
        for k, entry in enumerate(as_list(dosage.get("doseAndRate"))):
            if isinstance(entry, dict) and "doseRange" in entry:
                ctx.warn(
                    "unmapped-element",
                    "a dose range has no exact phenopacket quantity",
                    f"{location}/doseAndRate/{k}/doseRange",
                )
    for quantity, where in holders:
        if isinstance(quantity, dict):
            out = phenopacket_quantity(ctx, quantity, where)
            return (out, where) if out is not None else None
    if "timing" in dosage:
        ctx.warn("unmapped-element", "a timing without a dose has no phenopacket home", location + "/timing")
    return None


def schedule_frequency(ctx: PatientContext, dosing: Dosing) -> dict | None:
    """The NCIT schedule term of the dosage (mappings/translators/dose_schedules.yaml), or None with a warning."""
    table, dosage, location = ctx.tables.schedules, dosing.dosage, dosing.location
    if dosage.get("asNeededBoolean") is True or "asNeededCodeableConcept" in dosage:
        name = "asNeededBoolean" if "asNeededBoolean" in dosage else "asNeededCodeableConcept"
        ctx.warn(
            "unmapped-element", "a dose taken as needed has no regular schedule: not carried", f"{location}/{name}"
        )
        return None
    if dosing.single:
        return term(ctx, table["once"])
    timing = dosage.get("timing")
    if not isinstance(timing, dict):
        ctx.warn("unmapped-element", "a dose without a timing has no schedule: not carried", location)
        return None
    keys = [f"{c.get('system')}|{c.get('code')}" for c in codings(timing.get("code")) if isinstance(c, dict)]
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), dict) else {}
    for name in TIMING_DETAILS:
        if name in repeat:
            ctx.warn(
                "unmapped-element",
                f"Timing.repeat.{name} is finer than a schedule term",
                f"{location}/timing/repeat/{name}",
            )
    if (repeat.get("count") == 1 and "frequency" not in repeat) or (not repeat and single_event(timing)):
        keys.append("once")
    frequency, period = (whole(repeat.get(k, 1 if k == "frequency" else None)) for k in ("frequency", "period"))
    unit = repeat.get("periodUnit")
    if period is not None and unit is not None:
        keys.append(f"{frequency}/{period}{unit}")
    for key in keys:
        if key in table:
            return term(ctx, table[key])
    if period is None or unit is None:
        ctx.warn(
            "unmapped-element",
            "the timing states no period (Timing.repeat.period and periodUnit) nor a code of the schedule table: "
            "no schedule is carried",
            location + "/timing",
        )
        return None
    ctx.warn("unmapped-code", f"timing {keys[-1]!r} is in no schedule table row: not carried", location + "/timing")
    return None


def whole(number: object) -> object:
    """2.0 -> 2 (FHIR decimals written with a point name the same rhythm as integers)."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


def single_event(timing: object) -> str | None:
    """The one Timing.event date of a dose given once at a stated time, else None."""
    events = as_list(timing.get("event")) if isinstance(timing, dict) else []
    return events[0] if len(events) == 1 and isinstance(events[0], str) else None


def term(ctx: PatientContext, row: dict) -> dict:
    ctx.used.add(row["id"].partition(":")[0])
    return {"id": row["id"], "label": row["label"]}


def dated_interval(ctx: PatientContext, dosing: Dosing) -> dict | None:
    """Start and end, to the day: the timing's bounds, else the resource's effective[x]."""
    resource, dosage = dosing.resource, dosing.dosage
    repeat = (dosage.get("timing") or {}).get("repeat") if isinstance(dosage.get("timing"), dict) else None
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    period = bounds if isinstance(bounds, dict) else resource.get("effectivePeriod")
    event = single_event(dosage.get("timing"))
    if isinstance(bounds, dict) or (event is None and isinstance(period, dict)):
        start, end = period.get("start"), period.get("end")
    else:
        start = end = event or resource.get("effectiveDateTime")
    first, last = parse_fhir_date(start, latest=False), parse_fhir_date(end, latest=True)
    if first is None or last is None or last < first:
        return None
    return {"start": f"{first.isoformat()}T00:00:00Z", "end": f"{last.isoformat()}T00:00:00Z"}
