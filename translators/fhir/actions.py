"""Procedure, MedicationStatement / Request / Administration -> medicalActions (procedure, treatment)."""

from __future__ import annotations

from translators.fhir.common import as_list, reference_of
from translators.fhir.context import PatientContext

PROCEDURE_DONE = frozenset({"completed", "in-progress"})


def procedure(ctx: PatientContext, i: int, proc: dict) -> dict | None:
    base = ctx.source.pointer(i)
    status = proc.get("status")
    if status not in PROCEDURE_DONE:
        ctx.note("unmapped-element", f"Procedure with status {status!r} is not a performed action", base + "/status")
        return None
    picked = ctx.pick(proc.get("code"), ctx.profile.procedure_coding_priority, base + "/code", "the Procedure")
    if picked is None:
        return None
    action: dict = {"code": picked[0]}
    site = as_list(proc.get("bodySite"))
    if site:
        body = ctx.ontology(site[0])
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


def medication(ctx: PatientContext, i: int, resource: dict) -> dict | None:
    """MedicationStatement / MedicationRequest / MedicationAdministration -> a treatment."""
    base, rtype = ctx.source.pointer(i), resource["resourceType"]
    skipped, dosage_name, drug_type = MEDICATION_KINDS[rtype]
    status = resource.get("status")
    if status in skipped:
        ctx.note("unmapped-element", f"{rtype} with status {status!r} skipped", base + "/status")
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
    picked = ctx.pick(concept, ctx.profile.medication_coding_priority, location, "the medication")
    if picked is None:
        return None
    treatment: dict = {"agent": picked[0]}
    dosages = resource.get(dosage_name)
    dosages = [dosages] if isinstance(dosages, dict) else as_list(dosages)
    for d, dosage in enumerate(dosages):
        if isinstance(dosage, dict):
            dosage_into(
                ctx,
                dosage,
                f"{base}/{dosage_name}" + ("" if rtype == "MedicationAdministration" else f"/{d}"),
                treatment,
            )
    if drug_type:
        treatment["drugType"] = drug_type
    ctx.consumed.add(i)
    return {"treatment": treatment}


def dosage_into(ctx: PatientContext, dosage: dict, location: str, treatment: dict) -> None:
    """Route into the treatment; dose and schedule only as a warning (see below)."""
    route = ctx.ontology(dosage.get("route"))
    if route and "routeOfAdministration" not in treatment:
        treatment["routeOfAdministration"] = route
    elif "route" in dosage and not route:
        ctx.warn("unmapped-code", "route of administration is in no known code system", location + "/route")
    # A Phenopacket DoseInterval needs a dated interval (Timestamps), and dates do not leave the
    # gateway (ages instead of dates): dose and timing are reported, not carried.
    for name in ("doseAndRate", "dose", "timing", "rate"):
        if name in dosage:
            ctx.warn(
                "unmapped-element",
                f"Dosage.{name} has no phenopacket home without dates (DoseInterval needs timestamps)",
                f"{location}/{name}",
            )
