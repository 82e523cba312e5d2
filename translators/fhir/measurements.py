"""Observations with a coded assay and a quantity or coded value -> measurements (labs, vitals).

The assay is the Observation's code (LOINC first, else any known coding); a `valueQuantity` becomes a
Quantity whose unit is a UCUM OntologyClass (`UCUM:mg/dL`), with the first reference range; a `valueInteger`
(a count, a score) a dimensionless Quantity (`UCUM:1`); a `valueRatio` of two UCUM quantities the quantity it is
(`15 mg / 24 h` -> 15 `UCUM:mg/(24.h)`); a coded value
becomes an OntologyClass value; `effective[x]` becomes `timeObserved` as an age. Components with their own
code and value (blood pressure) are measurements of their own. What has no home is a warning.
"""

from __future__ import annotations

import re

from translators.fhir.common import as_list, value_key
from translators.fhir.context import PatientContext
from translators.fhir.quantities import phenopacket_quantity

# UCUM's unit of a pure number (counts, scores): what a FHIR valueInteger is.
DIMENSIONLESS = {"id": "UCUM:1", "label": "1 (dimensionless)"}


UCUM = "http://unitsofmeasure.org"
UCUM_TERM = re.compile(r"^[A-Za-z0-9\[\]{}_%*'^]+$")  # one UCUM unit term: no operator, no white space


def ratio_quantity(ratio: object) -> dict | None:
    """A Ratio of two UCUM quantities (HL7 Europe laboratory: albumin 15 mg / 24 h) as the one quantity it is,
    15 mg/(24.h) (UCUM writes a number times a unit so); None for any other ratio (a titer 1:64 has no unit)."""
    if not isinstance(ratio, dict):
        return None
    numerator, denominator = ratio.get("numerator"), ratio.get("denominator")
    if not isinstance(numerator, dict) or not isinstance(denominator, dict):
        return None
    value, per = numerator.get("value"), denominator.get("value")
    codes = numerator.get("code"), denominator.get("code")
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in (value, per)) or per <= 0:
        return None
    if numerator.get("system") != UCUM or denominator.get("system") != UCUM or "comparator" in numerator:
        return None
    if not all(isinstance(c, str) and UCUM_TERM.match(c) for c in codes) or not float(per).is_integer():
        return None
    count = int(per)
    code = f"{codes[0]}/{codes[1]}" if count == 1 else f"{codes[0]}/({count}.{codes[1]})"
    return {"value": value, "system": UCUM, "code": code}


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
        if isinstance(holder.get("valueInteger"), int) and not isinstance(holder["valueInteger"], bool):
            return True  # a count or a score: a dimensionless quantity
        if ratio_quantity(holder.get("valueRatio")) is not None:
            return True  # 15 mg / 24 h: a quantity in the UCUM unit mg/(24.h)
        return isinstance(holder.get("valueCodeableConcept"), dict) and any(
            True for _ in self.ctx.known_codings(holder["valueCodeableConcept"])
        )

    def assay(self, concept: object, location: str = "") -> dict | None:
        return self.ctx.ontology(concept, ("LOINC",), location) or self.ctx.ontology(concept, None, location)

    def observation(self, i: int, obs: dict) -> bool:
        """Map an Observation (or its components) to measurements; False when nothing could be taken."""
        base = self.ctx.source.pointer(i)
        codes = {curie for _, _, curie, _ in self.ctx.known_codings(obs.get("code"))}
        if not codes or codes & self.ctx.profile.not_measurement_codes:
            return False  # an uncoded or genomic-report Observation: its components are no assays either
        holders = [(obs, base)] + [
            (component, f"{base}/component/{k}")
            for k, component in enumerate(as_list(obs.get("component")))
            if isinstance(component, dict)
        ]
        parts = [(holder, location) for holder, location in holders if self.can_take(holder)]
        if not parts:
            return False
        when = self.time_observed(obs, base)
        procedure = self.procedure(obs, base)
        taken = False
        for holder, location in parts:
            taken = self.add(holder, location, when, procedure) or taken
        if taken:
            self.ctx.consumed.add(i)
            self.values_left_out([h for h in holders if h not in parts])
        return taken

    def values_left_out(self, holders: list[tuple[dict, str]]) -> None:
        """A warning for each other value of a measured Observation that no measurement carries."""
        phenotypes = self.ctx.profile.phenotype_prefixes
        for holder, location in holders:
            name = value_key(holder)
            if name is None or any(p in phenotypes for _, _, _, p in self.ctx.known_codings(holder.get("code"))):
                continue  # no value, or an HPO-coded component (the phenotypes family reads those)
            known = any(True for _ in self.ctx.known_codings(holder.get("code")))
            why = self.why_not(holder) if known else "its code is in no known system"
            self.ctx.warn("unmapped-element", f"{name} is not a measurement: {why}", f"{location}/{name}")

    def why_not(self, holder: dict) -> str:
        name = value_key(holder)
        if name == "valueCodeableConcept":
            return "the coded value is in no code system the gateway maps"
        return f"a phenopacket measurement value is a quantity or an ontology class, not {name}"

    def add(self, holder: dict, location: str, when: dict | None, procedure: dict | None) -> bool:
        ctx = self.ctx
        assay = self.assay(holder.get("code"), location + "/code")
        assert assay is not None
        value = self.value(holder, location)
        if value is None:
            return False
        measurement: dict = {"assay": assay, "value": value}
        if when:
            measurement["timeObserved"] = when
        if procedure:
            measurement["procedure"] = procedure
        self.found.append(measurement)
        if "interpretation" in holder:  # H/L/A flags: a phenopacket Measurement has no interpretation
            ctx.warn(
                "unmapped-element", "Observation.interpretation has no phenopacket target", f"{location}/interpretation"
            )
        return True

    def procedure(self, obs: dict, base: str) -> dict | None:
        """Observation.method (and bodySite) -> Measurement.procedure: how and where it was measured."""
        ctx = self.ctx
        method = ctx.ontology(obs.get("method"), None, base + "/method")
        site = ctx.ontology(obs.get("bodySite"), None, base + "/bodySite")
        if "method" in obs and method is None:
            ctx.warn("unmapped-code", "Observation.method is in no code system the gateway maps", base + "/method")
        if site is not None and method is None:
            ctx.warn(
                "unmapped-element",
                "Observation.bodySite needs a method to sit in Measurement.procedure",
                base + "/bodySite",
            )
        elif "bodySite" in obs and site is None:
            ctx.warn("unmapped-code", "Observation.bodySite is in no code system the gateway maps", base + "/bodySite")
        if method is None:
            return None
        return {"code": method, "bodySite": site} if site else {"code": method}

    def value(self, holder: dict, location: str) -> dict | None:
        if "valueCodeableConcept" in holder:
            term = self.ctx.ontology(holder["valueCodeableConcept"], None, location + "/valueCodeableConcept")
            return {"ontologyClass": term} if term else None
        if "valueInteger" in holder:
            self.ctx.used.add("UCUM")
            return {"quantity": {"unit": dict(DIMENSIONLESS), "value": holder["valueInteger"]}}
        if "valueQuantity" in holder:
            out = phenopacket_quantity(self.ctx, holder["valueQuantity"], f"{location}/valueQuantity")
        else:
            out = phenopacket_quantity(self.ctx, ratio_quantity(holder.get("valueRatio")), f"{location}/valueRatio")
        if out is None:
            return None
        ranges = as_list(holder.get("referenceRange"))
        if ranges and isinstance(ranges[0], dict):
            reference = self.reference_range(ranges[0], out["unit"])
            if reference:
                out["referenceRange"] = reference
        if len(ranges) > 1:
            self.ctx.warn("unmapped-element", "a Quantity holds one reference range", f"{location}/referenceRange/1")
        return {"quantity": out}

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
