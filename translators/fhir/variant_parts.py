"""What a variant Observation says beyond gene, HGVS and position, and where the phenopacket keeps it.

- Components listed in mappings/variants/variant_components.yaml (source class, molecular consequence,
  copy number, structural ranges, complex type, ...) -> `variationDescriptor` extensions, structural
  type, alternate labels, ClinVar xrefs; a copy number also as a VRS CopyNumber in `variation`.
- A structural variant placed by a range on a RefSeq chromosome -> a VCF record with a symbolic allele
  (`<CNV>`, `<INV>`, ...) and SVTYPE/END in INFO.
- A gene given only by its symbol -> its HGNC id from the offline HGNC table (mappings/genes/).
- Notes -> label (the first) and description (the rest); "modifier" evidence -> CONTRIBUTORY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mappings import GeneMatch, load_gene_symbols, load_variant_components
from translators.fhir.common import as_list, codings
from translators.fhir.context import PatientContext

DESCRIBING = "describes"
NUMERIC_RE = re.compile(r"^\d+$")


def component_table() -> dict:
    return load_variant_components()


def contributory_words() -> str:
    """One pattern of the modifier words, longest first (the re module caches its compilation)."""
    words = sorted(component_table()["contributory"]["words"], key=len, reverse=True)
    return r"\b(" + "|".join(re.escape(w) for w in words) + r")\b"


def says_contributory(concepts: list, texts: list[str]) -> bool:
    """True when a coding or a text explicitly calls the variant contributory / a phenotype modifier."""
    signals = set(component_table()["contributory"]["codings"])
    for concept in concepts:
        for coding in codings(concept):
            if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in signals:
                return True
            if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                texts = [*texts, coding["display"]]
        if isinstance(concept, dict) and isinstance(concept.get("text"), str):
            texts = [*texts, concept["text"]]
    return any(_affirmed_word(t) for t in texts if isinstance(t, str))


def _affirmed_word(text: str) -> bool:
    """A modifier word in `text` that no negation among the three words before it takes back."""
    negations = {w.lower() for w in component_table()["contributory"].get("negations", ())}
    for found in re.finditer(contributory_words(), text, re.IGNORECASE):
        before = re.findall(r"\w+", text[: found.start()].lower())[-3:]
        if not negations.intersection(before):
            return True
    return False


def stated_status(concepts: list) -> str | None:
    """The interpretation status an evidence code states outright (CONTRIBUTORY, CAUSATIVE), if any."""
    table = component_table()["evidence_status"]
    for concept in concepts:
        for coding in codings(concept):
            if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in table:
                return str(table[f"{coding.get('system')}|{coding.get('code')}"])
    return None


def component_rule(ctx: PatientContext, code: object) -> dict | None:
    """The table row of a component code: by CURIE, by system|code, else by its text."""
    rows = component_table()["components"]
    for _, _, curie, _ in ctx.known_codings(code):
        if curie in rows:
            return rows[curie]
    for coding in codings(code):
        if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in rows:
            return rows[f"{coding.get('system')}|{coding.get('code')}"]
    text = code.get("text") if isinstance(code, dict) else None
    if isinstance(text, str):
        return rows.get(f"text:{text.strip().lower()}")
    return None


def concept_text(ctx: PatientContext, concept: object) -> str | None:
    """A coded value as text: `CURIE label` per known coding, `system|code label` otherwise, else its text."""
    parts = []
    for coding in codings(concept):
        if not isinstance(coding, dict):
            continue
        curie = ctx.source.registry.curie(coding.get("system"), coding.get("code"))
        name = curie or "|".join(str(coding[k]) for k in ("system", "code") if coding.get(k))
        label = coding.get("display")
        parts.append(" ".join(p for p in (name, label if isinstance(label, str) else None) if p))
    if not parts and isinstance(concept, dict) and isinstance(concept.get("text"), str):
        return concept["text"].strip() or None
    return "; ".join(p for p in parts if p) or None


def number(value: object) -> int | float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def value_text(ctx: PatientContext, holder: dict) -> str | None:
    """The value[x] of a component (or Observation) as text; None when it has none."""
    if "valueCodeableConcept" in holder:
        return concept_text(ctx, holder["valueCodeableConcept"])
    if "valueQuantity" in holder:
        quantity = holder["valueQuantity"] if isinstance(holder["valueQuantity"], dict) else {}
        if number(quantity.get("value")) is None:
            return None
        unit = quantity.get("code") or quantity.get("unit")
        unit = None if unit in (None, "1") else unit
        return " ".join(str(p) for p in (quantity["value"], unit) if p is not None)
    if "valueRange" in holder:
        low, high = range_of(holder)
        return None if low is None and high is None else f"{low if low is not None else ''}-{high or ''}"
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in holder and holder[key] not in (None, ""):
            return str(holder[key]).strip()
    return None


def range_of(holder: dict) -> tuple[int | None, int | None]:
    value = holder.get("valueRange") if isinstance(holder.get("valueRange"), dict) else {}
    low = number((value.get("low") or {}).get("value"))
    high = number((value.get("high") or {}).get("value"))
    return (None if low is None else int(low)), (None if high is None else int(high))


@dataclass
class Extras:
    """What the table-listed components contributed to one descriptor."""

    describes: bool = False
    copies: int | float | None = None
    ranges: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    symbolic: str | None = None  # VCF symbolic allele name of the structural type (CNV, INV, ...)


def apply_component(ctx: PatientContext, rule: dict, component: dict, where: str, descriptor: dict, extras: Extras):
    """One table-listed component into `descriptor` (see the table for the targets)."""
    text = value_text(ctx, component)
    if text is None:
        ctx.note("unmapped-element", f"variant component {rule['name']!r} has no value", where)
        return
    target, name = rule["target"], rule["name"]
    extras.describes |= bool(rule.get(DESCRIBING))
    if target == "structural_type" and structural_type(ctx, component, where, descriptor, extras):
        return
    if target == "alternate_label":
        descriptor.setdefault("alternateLabels", []).append(text)
        return
    if target == "clinvar" and NUMERIC_RE.match(text):
        ctx.used.add("ClinVar")
        descriptor.setdefault("xrefs", []).append(f"ClinVar:{text}")
        return
    if target == "copy_number":
        quantity = component.get("valueQuantity") if isinstance(component.get("valueQuantity"), dict) else {}
        given = number(component.get("valueInteger"))
        extras.copies = given if given is not None else number(quantity.get("value"))
        if extras.copies is None and re.fullmatch(r"\d+", text.split(" ", 1)[0]):
            extras.copies = int(text.split(" ", 1)[0])  # a copy number written as text ("2 copies")
    if target.endswith("_range"):
        extras.ranges[target] = range_of(component)
    descriptor.setdefault("extensions", []).append({"name": name, "value": text})


def structural_type(ctx: PatientContext, component: dict, where: str, descriptor: dict, extras: Extras) -> bool:
    """48019-4 as an OntologyClass (SO or a LOINC answer); False when no coding is in a known system."""
    concept = component.get("valueCodeableConcept")
    term = ctx.ontology(concept, ("SO", "LOINC"), where + "/valueCodeableConcept")
    if term is None:
        return False
    descriptor["structuralType"] = term
    extras.symbolic = component_table()["symbolic_alleles"].get(term["id"])
    return True


def copy_number_variation(extras: Extras, gene_id: str | None, place: tuple[str, int, int] | None) -> dict | None:
    """A VRS (1.2, as phenopackets v2 embeds it) CopyNumber: on the placed interval, else on the gene."""
    if extras.copies is None:
        return None
    copies = {"number": {"value": str(int(extras.copies))}} if float(extras.copies).is_integer() else None
    if copies is None:
        return None  # a fractional copy number is kept as an extension only
    if place is not None:
        accession, start, end = place
        interval = {"startNumber": {"value": str(start - 1)}, "endNumber": {"value": str(end)}}  # interbase
        location = {"sequenceId": f"refseq:{accession}", "sequenceInterval": interval}
        subject: dict = {"derivedSequenceExpression": {"location": location, "reverseComplement": False}}
    elif gene_id is not None:
        subject = {"gene": {"geneId": gene_id.lower()}}  # VRS writes the HGNC CURIE prefix lower-case
    else:
        return None
    return {"copyNumber": {**subject, **copies}}


def structural_span(extras: Extras) -> tuple[int, int] | None:
    """The sender's start and end of a structural variant: the inner range, else the outer one."""
    for name in ("exact_range", "inner_range", "outer_range"):
        low, high = extras.ranges.get(name, (None, None))
        if low is not None and high is not None:
            return low, high
    return None


def gene_from_symbol(ctx: PatientContext, symbol: str, where: str) -> dict | None:
    """A GeneDescriptor for a bare symbol, from the offline HGNC table; warns when it cannot tell."""
    table = load_gene_symbols()
    match: GeneMatch | None = table.resolve(symbol)
    if match is None:
        ctx.warn("unmapped-code", f"gene symbol {symbol!r} is not in the HGNC table ({table.version})", where)
        return None
    if len(match.ids) > 1:
        ctx.warn(
            "unmapped-code",
            f"gene symbol {symbol!r} is ambiguous: an HGNC {match.how} symbol of {', '.join(match.ids)}",
            where,
        )
        return None
    curie = match.ids[0]
    approved = table.symbol_of[curie]
    if match.how != "approved":
        ctx.note("renamed-gene", f"{symbol!r} is an HGNC {match.how} symbol of {approved} ({curie})", where)
    ctx.used.add("HGNC")
    gene = {"valueId": curie, "symbol": approved}
    if symbol.strip() != approved:
        gene["alternateSymbols"] = [symbol.strip()]
    return gene


def gene_symbol(concept: dict) -> str | None:
    """The symbol a gene coding names without an HGNC id: its display, a non-numeric code, or the text."""
    for coding in codings(concept):
        if not isinstance(coding, dict):
            continue
        for key in ("display", "code"):
            value = coding.get(key)
            if isinstance(value, str) and value.strip() and not NUMERIC_RE.match(value.removeprefix("HGNC:")):
                return value.strip()
    text = concept.get("text")
    return text.strip() if isinstance(text, str) and text.strip() else None


def code_name(code: object) -> str:
    """A component's code as a short name: its first code, else its text."""
    for coding in codings(code):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str) and coding["code"].strip():
            return coding["code"].strip()
    text = code.get("text") if isinstance(code, dict) else None
    return text.strip() if isinstance(text, str) and text.strip() else "(no code)"


def note_texts(obs: dict) -> list[str]:
    return [
        n["text"].strip() for n in as_list(obs.get("note")) if isinstance(n, dict) and isinstance(n.get("text"), str)
    ]
