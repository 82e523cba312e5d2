"""Condition -> diseases (coded by the profile's disease priority list; one disease per distinct code),
or a phenotypicFeature when its chosen coding is HPO. Variants named as evidence are remembered as
links, so that the variants family can make the Condition's diagnosis from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from translators.ages import fhir_age_to_iso
from translators.fhir.common import as_list, first_code, reference_of
from translators.fhir.context import PatientContext
from translators.fhir.phenotypes import Phenotypes

VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@dataclass
class Disease:
    record: dict
    codes: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DiagnosisLink:
    """A Condition that names variants as its evidence."""

    condition: int  # entry position
    term: dict
    verification: str
    variants: list[int]  # entry positions


class Conditions:
    def __init__(self, ctx: PatientContext, phenotypes: Phenotypes):
        self.ctx = ctx
        self.phenotypes = phenotypes
        self.diseases: list[Disease] = []
        self._by_code: dict[str, Disease] = {}
        self.links: list[DiagnosisLink] = []

    def condition(self, i: int, cond: dict) -> None:
        ctx, base = self.ctx, f"/entry/{i}/resource"
        profile = ctx.profile
        verification = first_code(cond.get("verificationStatus"), VERIFICATION_SYSTEM)
        if verification == "entered-in-error":
            ctx.note("unmapped-element", "Condition entered in error: skipped", base + "/verificationStatus")
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
                ctx.term_of(coding, curie, prefix, code, base + "/code"), excluded, base + "/code", onset=onset
            )
            return
        picked = ctx.pick(code, disease_priority, base + "/code", "the Condition")
        if picked is None:
            return
        term, codes = picked
        variants = self.evidence_variants(cond, base)
        if variants:
            self.links.append(DiagnosisLink(i, term, verification or "", variants))
        existing = next((self._by_code[c] for c in codes if c in self._by_code), None)
        if existing is not None:
            if existing.record.get("excluded") and not excluded:
                existing.record.pop("excluded")
            existing.codes |= codes
            for c in codes:
                self._by_code.setdefault(c, existing)
            return
        record: dict = {"term": term}
        if excluded:
            record["excluded"] = True
        if onset:
            record["onset"] = onset
        resolution = self.condition_time(cond, "abatement", base)
        if resolution:
            record["resolution"] = resolution
        disease = Disease(record, codes)
        self.diseases.append(disease)
        for c in codes:
            self._by_code.setdefault(c, disease)

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
        for name in (f"{stem}String", f"{stem}Range", f"{stem}Boolean"):
            if name in cond:
                ctx.warn("unmapped-element", f"{name} has no phenopacket equivalent: skipped", f"{base}/{name}")
        return None

    def evidence_variants(self, cond: dict, base: str) -> list[int]:
        found = []
        for e, evidence in enumerate(as_list(cond.get("evidence"))):
            for d, detail in enumerate(as_list(evidence.get("detail")) if isinstance(evidence, dict) else []):
                target = self.ctx.source.resolve(reference_of(detail))
                if target is not None:
                    found.append(target)
                else:
                    self.ctx.note(
                        "reference-dangling", "evidence is not in this bundle", f"{base}/evidence/{e}/detail/{d}"
                    )
        return found

    def alternate_codings(self) -> list[dict]:
        """The codings a disease carried beside the one chosen, kept as references.

        Phenopacket v2 `Disease` holds one term; the sender's other codes for the same
        condition (ICD-10-GM beside ORPHA, say) stay findable in `metaData.externalReferences`.
        """
        registry, out = self.ctx.source.registry, []
        for disease in self.diseases:
            primary = disease.record["term"]["id"]
            for code in sorted(disease.codes - {primary}):
                prefix, _, local = code.partition(":")
                system = registry.system_for_prefix(prefix)
                reference = {"id": code, "description": f"alternative coding of {primary} in the source record"}
                if system is not None:
                    iri = system.resource().get("iriPrefix")
                    if iri:
                        reference["reference"] = iri + local
                    self.ctx.used.add(system.prefix)
                out.append(reference)
        return out
