"""Observations with a coded assay and a quantity or coded value -> measurements (labs, vitals).

The assay is the Observation's code (LOINC first, else any known coding); a `valueQuantity` becomes a
Quantity whose unit is a UCUM OntologyClass (`UCUM:mg/dL`), with the first reference range; a coded value
becomes an OntologyClass value; `effective[x]` becomes `timeObserved` as an age. Components with their own
code and value (blood pressure) are measurements of their own. What has no home is a warning.
"""

from __future__ import annotations

from translators.fhir.common import as_list
from translators.fhir.context import PatientContext

UCUM_SYSTEM = "http://unitsofmeasure.org"


class Measurements:
    def __init__(self, ctx: PatientContext):
        self.ctx = ctx
        self.found: list[dict] = []

    def can_take(self, holder: dict) -> bool:
        """Whether an Observation (or component) has a known assay coding and a quantity or coded value."""
        if not any(True for _ in self.ctx.known_codings(holder.get("code"))):
            return False
        if isinstance(holder.get("valueQuantity"), dict):
            return True
        return isinstance(holder.get("valueCodeableConcept"), dict) and any(
            True for _ in self.ctx.known_codings(holder["valueCodeableConcept"])
        )

    def assay(self, concept: object) -> dict | None:
        return self.ctx.ontology(concept, ("LOINC",)) or self.ctx.ontology(concept)

    def observation(self, i: int, obs: dict) -> bool:
        """Map an Observation (or its components) to measurements; False when nothing could be taken."""
        base = self.ctx.source.pointer(i)
        codes = {curie for _, _, curie, _ in self.ctx.known_codings(obs.get("code"))}
        if not codes or codes & self.ctx.profile.not_measurement_codes:
            return False  # an uncoded or genomic-report Observation: its components are no assays either
        parts = [(obs, base)] if self.can_take(obs) else []
        for k, component in enumerate(as_list(obs.get("component"))):
            if isinstance(component, dict) and self.can_take(component):
                parts.append((component, f"{base}/component/{k}"))
        if not parts:
            return False
        when = self.time_observed(obs, base)
        taken = False
        for holder, location in parts:
            taken = self.add(holder, location, when) or taken
        if taken:
            self.ctx.consumed.add(i)
        return taken

    def add(self, holder: dict, location: str, when: dict | None) -> bool:
        ctx = self.ctx
        assay = self.assay(holder.get("code"))
        assert assay is not None
        value = self.value(holder, location)
        if value is None:
            return False
        measurement: dict = {"assay": assay, "value": value}
        if when:
            measurement["timeObserved"] = when
        self.found.append(measurement)
        for name in ("interpretation", "bodySite", "method"):
            if name in holder:
                ctx.warn("unmapped-element", f"Observation.{name} has no phenopacket target", f"{location}/{name}")
        return True

    def value(self, holder: dict, location: str) -> dict | None:
        if "valueCodeableConcept" in holder:
            term = self.ctx.ontology(holder["valueCodeableConcept"])
            return {"ontologyClass": term} if term else None
        quantity = holder["valueQuantity"]
        number = quantity.get("value")
        if isinstance(number, bool) or not isinstance(number, int | float):
            self.ctx.warn("fhir-value", "quantity without a numeric value", f"{location}/valueQuantity")
            return None
        unit = self.unit(quantity, f"{location}/valueQuantity")
        if unit is None:
            return None
        out: dict = {"unit": unit, "value": number}
        ranges = as_list(holder.get("referenceRange"))
        if ranges and isinstance(ranges[0], dict):
            reference = self.reference_range(ranges[0], unit)
            if reference:
                out["referenceRange"] = reference
        return {"quantity": out}

    def unit(self, quantity: dict, location: str) -> dict | None:
        code, label = quantity.get("code"), quantity.get("unit")
        if quantity.get("system") == UCUM_SYSTEM and isinstance(code, str) and code.strip():
            self.ctx.used.add("UCUM")
            return {"id": f"UCUM:{code.strip()}", "label": label if isinstance(label, str) and label else code}
        self.ctx.warn(
            "unmapped-code", "quantity unit is not a UCUM code: the measurement is left out", location + "/unit"
        )
        return None

    @staticmethod
    def reference_range(reference: dict, unit: dict) -> dict | None:
        out: dict = {"unit": unit}
        for end in ("low", "high"):
            bound = reference.get(end)
            if isinstance(bound, dict) and isinstance(bound.get("value"), int | float):
                out[end] = bound["value"]
        return out if len(out) > 1 else None

    def time_observed(self, obs: dict, base: str) -> dict | None:
        if "effectiveDateTime" in obs:
            return self.ctx.age_at(obs["effectiveDateTime"], base + "/effectiveDateTime")
        period = obs.get("effectivePeriod")
        if isinstance(period, dict) and "start" in period:
            return self.ctx.age_at(period["start"], base + "/effectivePeriod/start")
        return None
