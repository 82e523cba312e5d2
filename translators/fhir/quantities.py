"""FHIR Quantities -> Phenopacket Quantities (a value and a unit that is an ontology class, UCUM here).

A UCUM `system` + `code` is taken as it is, and so is a unit coded in another known code system (a dose
in SNOMED CT "units of presentation"); a Quantity that gives only a unit text (`%`, `mmHg`) takes
its UCUM code from mappings/translators/ucum_units.yaml; any other unit is never guessed (a warning).
A comparator (`<`, `>=`) has no place in a Phenopacket Quantity, so such a value is left out.
A unit text that is a single annotation (`{Ct_value}`, MII Mikrobiologie) can only be UCUM: the unity.
A UCUM code holds no white space (UCUM uses ASCII 33-126 only); a code that does is no CURIE either. White
space inside annotations (`{urine specific gravity}`, `{wine glasses}/d`: US Core, IPS) is read as UCUM reads
annotations, as nothing: the unit without them (`UCUM:1`, `UCUM:/d`), labelled with the code as sent; any
other such code is not taken (a warning).
"""

from __future__ import annotations

import re

from translators.fhir.context import PatientContext

UCUM_SYSTEM = "http://unitsofmeasure.org"
ANNOTATION = re.compile(r"\{[^{}]*\}")  # UCUM 2.1 section 12: annotations do not change what a unit means


def ucum_unit(ctx: PatientContext, quantity: dict, location: str) -> dict | None:
    """The unit of `quantity` as a UCUM OntologyClass, or None (with a warning at `location`/unit)."""
    code, label = quantity.get("code"), quantity.get("unit")
    label = label.strip() if isinstance(label, str) and label.strip() else None
    if quantity.get("system") == UCUM_SYSTEM and isinstance(code, str) and code.strip():
        code = code.strip()
        if not any(c.isspace() for c in code):
            ctx.used.add("UCUM")
            return {"id": f"UCUM:{code}", "label": label or code}
        bare = ANNOTATION.sub("", code)
        if not any(c.isspace() for c in bare):
            ctx.used.add("UCUM")
            return {"id": f"UCUM:{bare or '1'}", "label": label or code}  # "{rbc}" alone is the unity
        ctx.warn(
            "unmapped-code",
            f"UCUM code {code!r} holds white space: not a UCUM code, the value is left out",
            location + "/code",
        )
        return None
    system = quantity.get("system")
    if system != UCUM_SYSTEM and isinstance(system, str) and isinstance(code, str) and code.strip():
        # a unit coded in another known terminology (CH Core / IPS doses: SNOMED CT "Tablet (unit of
        # presentation)"): a phenopacket unit is any OntologyClass
        term = next(ctx.known_codings({"coding": [{"system": system, "code": code.strip()}]}), None)
        if term is not None:
            ctx.used.add(term[3])
            return {"id": term[2], "label": label or code.strip()}
    table = ctx.tables.ucum_units
    found = table.get(label) if label else None
    if label and found is None:
        found = next((v for k, v in table.items() if k.lower() == label.lower()), None)
    if found is None and label and ANNOTATION.fullmatch(label):
        # braces are UCUM's annotation syntax only: a unit text that is one annotation is UCUM's unity
        found = "UCUM:1" if any(c.isspace() for c in label) else f"UCUM:{label}"
    if found is not None:
        ctx.used.add("UCUM")
        return {"id": found, "label": label}
    if label is None and not (isinstance(code, str) and code.strip()):
        ctx.warn("fhir-value", "quantity without a unit: the value is left out", location)
        return None
    where = location + ("/unit" if "unit" in quantity else "/code")
    ctx.warn("unmapped-code", f"quantity unit {label or code!r} is not a UCUM unit: the value is left out", where)
    return None


def phenopacket_quantity(ctx: PatientContext, quantity: object, location: str) -> dict | None:
    """{unit, value} from a FHIR Quantity; None (with a warning) when it cannot be carried exactly."""
    if not isinstance(quantity, dict):
        return None
    number = quantity.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        ctx.warn("fhir-value", "quantity without a numeric value", location)
        return None
    if "comparator" in quantity:
        ctx.warn(
            "unmapped-element",
            f"a quantity {quantity['comparator']} {number} has no exact phenopacket value: left out",
            location + "/comparator",
        )
        return None
    unit = ucum_unit(ctx, quantity, location)
    return None if unit is None else {"unit": unit, "value": number}
