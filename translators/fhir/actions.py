"""Procedure / MedicationStatement -> medicalActions (procedure, treatment)."""

from __future__ import annotations

from translators.fhir.common import as_list, reference_of
from translators.fhir.context import PatientContext

PROCEDURE_DONE = frozenset({"completed", "in-progress"})
MEDICATION_SKIP = frozenset({"entered-in-error", "not-taken"})


def procedure(ctx: PatientContext, i: int, proc: dict) -> dict | None:
    base = f"/entry/{i}/resource"
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


def medication(ctx: PatientContext, i: int, stmt: dict) -> dict | None:
    base = f"/entry/{i}/resource"
    status = stmt.get("status")
    if status in MEDICATION_SKIP:
        ctx.note("unmapped-element", f"MedicationStatement with status {status!r} skipped", base + "/status")
        return None
    concept, location = stmt.get("medicationCodeableConcept"), base + "/medicationCodeableConcept"
    if concept is None:
        target = ctx.source.resolve(reference_of(stmt.get("medicationReference")))
        found = ctx.source.resources[target] if target is not None else None
        if found is None or found.get("resourceType") != "Medication":
            ctx.warn("reference-dangling", "medication is not in this bundle", base + "/medicationReference")
            return None
        ctx.consumed.add(target)
        concept, location = found.get("code"), f"/entry/{target}/resource/code"
    picked = ctx.pick(concept, ctx.profile.medication_coding_priority, location, "the medication")
    if picked is None:
        return None
    treatment: dict = {"agent": picked[0]}
    dosage = as_list(stmt.get("dosage"))
    if dosage and isinstance(dosage[0], dict):
        route = ctx.ontology(dosage[0].get("route"))
        if route:
            treatment["routeOfAdministration"] = route
    ctx.consumed.add(i)
    return {"treatment": treatment}
