"""HPO findings -> phenotypicFeatures.

An Observation coded with HPO (valueBoolean, a presence answer in the value or in a presence component
such as SNOMED 260411009 of the MII HPO assessment; severity from an HP:0012824 component); the
HPO-coded components of other Observations; and (through `add_feature`) Conditions coded with HPO.
"""

from __future__ import annotations

from translators.fhir.common import as_list, value_key
from translators.fhir.context import PatientContext


class Phenotypes:
    def __init__(self, ctx: PatientContext):
        self.ctx = ctx
        self.features: list[dict] = []
        # per feature: the (phase, position) of the resource that made it (ctx.place), for the merge of parts
        self.places: list[tuple[int, int] | None] = []

    def add_feature(self, term: dict, excluded: bool, location: str, **extra) -> None:
        """Record a feature; a repeat is dropped only when a feature kept already says all it says
        (`covers`): one with another onset, severity or evidence is its own feature (nothing sent is lost)."""
        feature = {"type": term}
        if excluded:
            feature["excluded"] = True
        feature.update({k: v for k, v in extra.items() if v})
        if any(covers(kept, feature) for kept in self.features):
            self.ctx.note(
                "duplicate",
                f"{term['id']} already recorded for this patient (this record adds nothing to it)",
                location,
            )
            return
        self.features.append(feature)
        self.places.append(self.ctx.place)

    def presence(self, concept: object) -> str | None:
        """ "present" / "absent" from a presence answer coding, None when it is none."""
        table = self.ctx.tables.answers["presence"]
        for _, _, curie, _ in self.ctx.known_codings(concept):
            if curie in table:
                return table[curie]
        return None

    def phenotype_coding(self, concept: object):
        for j, coding, curie, prefix in self.ctx.known_codings(concept):
            if prefix in self.ctx.profile.phenotype_prefixes:
                return j, coding, curie, prefix
        return None

    def component_code_in(self, component: dict, codes: frozenset[str]) -> bool:
        return any(curie in codes for _, _, curie, _ in self.ctx.known_codings(component.get("code")))

    def observation(self, i: int, obs: dict) -> None:
        """An Observation that is neither a variant nor an implication: an HPO finding or HPO components."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        found = self.phenotype_coding(obs.get("code"))
        if found is not None:
            self.phenotype_observation(i, obs, found)
            return
        mapped = self.hpo_components(i, obs)
        if mapped:
            ctx.note("unmapped-element", "only the HPO-coded components of this Observation are mapped", base + "/code")
        elif self.value_in_unknown_system(obs):
            ctx.warn(
                "unmapped-code",
                "the Observation's value is in no code system the gateway maps "
                f"({ctx.codings_described(obs['valueCodeableConcept'])})",
                base + "/valueCodeableConcept",
            )
        elif value_key(obs) is None and "dataAbsentReason" in obs and not as_list(obs.get("component")):
            ctx.note("unmapped-element", "Observation without a value (dataAbsentReason): nothing to carry", base)
        else:
            self.not_carried(obs, base)

    def not_carried(self, obs: dict, base: str) -> None:
        """The warning of an Observation nothing took, where it belongs: a coded assay whose value no
        measurement can hold is warned at that value (a range, a ratio, a string: US Core, MII Labor, IPS
        lab documents); a quantity the measurement could not take was warned at its unit or comparator
        already; only an Observation without a known code is warned at its code."""
        ctx = self.ctx
        name = value_key(obs)
        taken = name in ("valueCodeableConcept", "valueInteger")  # a measurement's kind of value: the code decided
        if name is not None and not taken and any(True for _ in ctx.known_codings(obs.get("code"))):
            where = f"{base}/{name}"
            if name == "valueQuantity" and any(i.location.startswith(where) for i in ctx.issues):
                return  # said where it is (the unit, the comparator)
            ctx.warn(
                "no-phenopacket-target",
                f"{name} has no phenopacket home: a measurement value is a quantity or an ontology class",
                where,
            )
            return
        ctx.warn(
            "no-phenopacket-target",
            "Observation is neither an HPO finding, a measurement nor a variant",
            base + "/code",
        )

    def hpo_components(self, i: int, obs: dict) -> bool:
        """The HPO-coded components of an Observation that is no finding itself; True when any was mapped."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        mapped = False
        for k, component in enumerate(as_list(obs.get("component"))):
            if not isinstance(component, dict) or self.component_code_in(
                component, ctx.profile.severity_component_codes
            ):
                continue
            found = self.phenotype_coding(component.get("code"))
            if found is None:
                continue
            location = f"{base}/component/{k}"
            excluded = self.excluded_by_value(component, location)
            if excluded is None:
                continue
            _, coding, curie, prefix = found
            self.add_feature(ctx.term_of(coding, curie, prefix, component.get("code"), location), excluded, location)
            mapped = True
        return mapped

    def value_in_unknown_system(self, obs: dict) -> bool:
        """A coded Observation whose coded value no registry system knows (ICD-O-3, TNM, local lists)."""
        value = obs.get("valueCodeableConcept")
        if not isinstance(value, dict) or not any(True for _ in self.ctx.known_codings(obs.get("code"))):
            return False
        return not any(True for _ in self.ctx.known_codings(value))

    def excluded_by_value(self, holder: dict, location: str) -> bool | None:
        """present -> False, absent -> True, None when the holder says neither and must be skipped."""
        if "valueBoolean" in holder:
            return holder["valueBoolean"] is False
        if "valueCodeableConcept" in holder:
            answer = self.presence(holder["valueCodeableConcept"])
            if answer is not None:
                return answer == "absent"
        name = value_key(holder)
        if name is not None:
            self.ctx.note("unmapped-element", f"{name} kept only as the finding being present", f"{location}/{name}")
        return False

    def phenotype_observation(self, i: int, obs: dict, found) -> None:
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        profile = ctx.profile
        _, coding, curie, prefix = found
        if "dataAbsentReason" in obs:
            ctx.warn("unmapped-element", "HPO finding with dataAbsentReason: skipped", base + "/dataAbsentReason")
            return
        excluded: bool | None = None
        severity = None
        modifiers: list[dict] = []
        onset: dict | None = None
        for k, component in enumerate(as_list(obs.get("component"))):
            if not isinstance(component, dict):
                continue
            location = f"{base}/component/{k}"
            if self.component_code_in(component, profile.presence_component_codes):
                answer = self.presence(component.get("valueCodeableConcept"))
                if answer is None:
                    ctx.warn("unmapped-code", "presence answer not understood: finding skipped", location)
                    return
                excluded = answer == "absent"
            elif self.component_code_in(component, profile.severity_component_codes):
                severity = ctx.ontology(
                    component.get("valueCodeableConcept"),
                    profile.phenotype_prefixes,
                    location + "/valueCodeableConcept",
                )
                if severity is None:
                    ctx.warn("unmapped-code", "severity is not an HPO term", location + "/valueCodeableConcept")
            elif self.component_code_in(component, profile.modifier_component_codes):
                modifier = self.hpo_value(component, location, "clinical modifier")
                if modifier is not None:
                    modifiers.append(modifier)
            elif self.component_code_in(component, profile.onset_component_codes):
                onset_term = self.hpo_value(component, location, "onset")
                if onset_term is not None and onset is None:
                    onset = {"ontologyClass": onset_term}
                elif onset_term is not None:
                    ctx.warn("unmapped-element", "a feature has one onset: a second one is not carried", location)
            elif value_key(component) is None:
                ctx.note("unmapped-element", "component without a value: nothing to carry", location)
            else:
                ctx.warn("unmapped-element", "component of an HPO finding has no phenopacket target", location)
        if excluded is None:
            excluded = self.excluded_by_value(obs, base)
        self.add_feature(
            ctx.term_of(coding, curie, prefix, obs.get("code"), base + "/code"),
            excluded,
            base,
            severity=severity,
            modifiers=modifiers,
            onset=onset,
        )

    def hpo_value(self, component: dict, location: str, what: str) -> dict | None:
        """The HPO term a component's valueCodeableConcept gives (a clinical modifier, an onset), else a warning."""
        where = location + ("/valueCodeableConcept" if "valueCodeableConcept" in component else "")
        term = self.ctx.ontology(component.get("valueCodeableConcept"), self.ctx.profile.phenotype_prefixes, where)
        if term is None:
            self.ctx.warn("unmapped-code", f"the {what} is not an HPO term: not carried", where)
        return term


def covers(kept: dict, later: dict) -> bool:
    """Whether feature `kept` says all that `later` says: the same term, both observed or both excluded, and
    each of the later one's elements the same in `kept` (a list's items all among kept's). The rule for a
    repeated feature, applied by the translator and by the merge of parts (translators.fhir.merge)."""
    if kept["type"]["id"] != later["type"]["id"] or bool(kept.get("excluded")) != bool(later.get("excluded")):
        return False
    for element, value in later.items():
        if element == "type":
            continue
        held = kept.get(element)
        if isinstance(value, list) and isinstance(held, list):
            if any(item not in held for item in value):
                return False
        elif held != value:
            return False
    return True
