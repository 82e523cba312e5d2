"""FamilyMemberHistory -> a Phenopacket `Family` around the patient's phenopacket (the proband).

Each FamilyMemberHistory is one relative: a phenopacket of their own whose subject has a derived id
(never the relative's name), sex from `sex`, vital status from `deceased[x]`, and one disease per
`condition` (coded by the profile's disease priority; `onsetAge` as the onset). The pedigree
lists the proband and every relative; a mother or father becomes the proband's maternal or
paternal id, the only kinship a PED pedigree can hold without the people in between, so other
relationships (a great-grandmother) stay a note. A relative's affected status is what the sender says
(a profile's `family_affected_extensions`, e.g. MII "von-seltene-betroffen"); without it, AFFECTED when a
condition is recorded for them, else MISSING (not known to be unaffected). A condition that
`contributedToDeath` makes the relative deceased, with that condition as the cause of death.
"""

from __future__ import annotations

from functools import cache

from mappings import load_table
from translators.ages import fhir_age_to_iso
from translators.fhir.common import as_list
from translators.fhir.context import PatientContext

PED_SEX = {"MALE": "MALE", "FEMALE": "FEMALE", "OTHER_SEX": "OTHER_SEX", "UNKNOWN_SEX": "UNKNOWN_SEX"}


@cache
def parent_codes() -> dict[str, frozenset[str]]:
    """ "mother" / "father" -> the "system|code" relationships naming them (mappings/translators/)."""
    table = load_table("translators/family_relationships")
    return {role: frozenset(table[role]) for role in ("mother", "father")}


@cache
def sex_codes() -> dict[str, frozenset[str]]:
    """ "FEMALE" / "MALE" -> the relationships whose definition says the relative's sex (an aunt, a son)."""
    table = load_table("translators/family_relationships")
    return {"FEMALE": frozenset(table["female"]), "MALE": frozenset(table["male"])}


class FamilyHistory:
    def __init__(self, ctx: PatientContext):
        self.ctx = ctx
        # (phenopacket, "mother" / "father" / None, affected status the sender gave or None)
        self.relatives: list[tuple[dict, str | None, str | None]] = []

    def member(self, i: int, history: dict) -> None:
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        if history.get("status") == "entered-in-error":
            ctx.note("unmapped-element", "FamilyMemberHistory entered in error: skipped", base + "/status")
            return
        key = ctx.source.entry_key(i)
        subject: dict = {"id": ctx.derived_id("relative", key)}
        gender = history.get("sex")
        sex = None
        for coding in gender.get("coding", []) if isinstance(gender, dict) else ():
            sex = ctx.tables.gender_to_sex.get(coding.get("code")) if isinstance(coding, dict) else None
            if sex:
                subject["sex"] = sex
                break
        if "sex" not in subject:  # none stated: the relationship may say it (mCODE's maternal aunt)
            keys = self.relationship_keys(history)
            sex = next((s for s, codes in sex_codes().items() if keys & codes), None)
            if sex:
                subject["sex"] = sex
        if isinstance(history.get("deceasedBoolean"), bool):
            subject["vitalStatus"] = {"status": "DECEASED" if history["deceasedBoolean"] else "ALIVE"}
        elif any(name in history for name in ("deceasedAge", "deceasedDate", "deceasedString", "deceasedRange")):
            subject["vitalStatus"] = {"status": "DECEASED"}
        packet: dict = {"id": ctx.derived_id("relative-phenopacket", key), "subject": subject}
        diseases, cause_of_death = self.diseases(history, base)
        if diseases:
            packet["diseases"] = diseases
        if cause_of_death and subject.get("vitalStatus", {}).get("status") != "ALIVE":
            subject["vitalStatus"] = {**subject.get("vitalStatus", {}), "status": "DECEASED"}
            subject["vitalStatus"]["causeOfDeath"] = cause_of_death
        self.relatives.append((packet, self.parent_role(history, base), self.said_affected(history)))
        ctx.consumed.add(i)

    def said_affected(self, history: dict) -> str | None:
        """The affected status the sender states in a profile extension, if any."""
        for extension in as_list(history.get("extension")):
            values = self.ctx.profile.family_affected_extensions.get(extension.get("url"))
            concept = extension.get("valueCodeableConcept") if values else None
            for coding in as_list(concept.get("coding")) if isinstance(concept, dict) else ():
                status = values.get(f"{coding.get('system')}|{coding.get('code')}") if values else None
                if status:
                    return status
        return None

    def diseases(self, history: dict, base: str) -> tuple[list[dict], dict | None]:
        """The relative's diseases, and the term of the first one that contributed to death."""
        ctx, out, cause_of_death = self.ctx, [], None
        for k, condition in enumerate(as_list(history.get("condition"))):
            if not isinstance(condition, dict):
                continue
            where = f"{base}/condition/{k}"
            picked = ctx.pick(
                condition.get("code"), ctx.profile.disease_coding_priority, where + "/code", "the condition"
            )
            if picked is None:
                continue
            disease: dict = {"term": picked[0]}
            if "onsetAge" in condition:
                iso = fhir_age_to_iso(condition["onsetAge"])
                if iso:
                    disease["onset"] = {"age": {"iso8601duration": iso}}
                else:
                    ctx.warn("fhir-value", "onsetAge is not a duration in years, months, weeks or days", where)
            out.append(disease)
            if condition.get("contributedToDeath") is True and cause_of_death is None:
                cause_of_death = disease["term"]
        return out, cause_of_death

    def relationship_keys(self, history: dict) -> set[str]:
        """The relationship's codings as "system|code" and as CURIEs (the keys of the relationship table)."""
        relationship = history.get("relationship")
        codings = (
            [c for c in as_list(relationship.get("coding")) if isinstance(c, dict)]
            if isinstance(relationship, dict)
            else []
        )
        keys = {f"{c.get('system')}|{c.get('code')}" for c in codings}
        return keys | {curie for _, _, curie, _ in self.ctx.known_codings(relationship)}

    def parent_role(self, history: dict, base: str) -> str | None:
        relationship = history.get("relationship")
        codings = (
            [c for c in as_list(relationship.get("coding")) if isinstance(c, dict)]
            if isinstance(relationship, dict)
            else []
        )
        keys = self.relationship_keys(history)
        for role, codes in parent_codes().items():
            if keys & codes:
                return role
        label = next((c.get("display") or c.get("code") for c in codings), None)
        self.ctx.note(
            "unmapped-element",
            f"relationship {label!r} has no place in a pedigree without the relatives in between",
            base + "/relationship",
        )
        return None

    def family(self, proband: dict) -> dict | None:
        """The Family (proband, relatives, pedigree, metaData), or None without family history."""
        if not self.relatives:
            return None
        ctx = self.ctx
        family_id = ctx.derived_id("family")
        proband_id = proband["subject"]["id"]
        person = {"familyId": family_id, "individualId": proband_id}
        if proband["subject"].get("sex") in PED_SEX:
            person["sex"] = PED_SEX[proband["subject"]["sex"]]
        person["affectedStatus"] = "AFFECTED" if proband.get("diseases") else "MISSING"
        persons = [person]
        for packet, role, said in self.relatives:
            subject = packet["subject"]
            if role == "mother":
                person["maternalId"] = subject["id"]
            elif role == "father":
                person["paternalId"] = subject["id"]
            relative = {"familyId": family_id, "individualId": subject["id"]}
            if subject.get("sex") in PED_SEX:
                relative["sex"] = PED_SEX[subject["sex"]]
            relative["affectedStatus"] = said or ("AFFECTED" if packet.get("diseases") else "MISSING")
            persons.append(relative)
        return {
            "id": family_id,
            "proband": proband,
            "relatives": [{**packet, "metaData": proband["metaData"]} for packet, _, _ in self.relatives],
            "pedigree": {"persons": persons},
            "metaData": proband["metaData"],
        }


def merged_family(proband: dict, families: list[dict]) -> dict | None:
    """The Family of `proband` from the Families of parts of its resources (each built around that
    part's phenopacket by `FamilyHistory.family`), given in the translator's order of their
    FamilyMemberHistory entries: what one translation of all of them would build."""
    if not families:
        return None
    family_id = families[0]["id"]
    person = {"familyId": family_id, "individualId": proband["subject"]["id"]}
    if proband["subject"].get("sex") in PED_SEX:
        person["sex"] = PED_SEX[proband["subject"]["sex"]]
    person["affectedStatus"] = "AFFECTED" if proband.get("diseases") else "MISSING"
    relatives: list[dict] = []
    persons: list[dict] = []
    for family in families:
        if family["id"] != family_id:
            return None
        first, *others = family["pedigree"]["persons"]
        for parent in ("maternalId", "paternalId"):  # the last mother or father named wins, as in `family`
            if parent in first:
                person[parent] = first[parent]
        persons += others
        relatives += [{**packet, "metaData": proband["metaData"]} for packet in family["relatives"]]
    return {
        "id": family_id,
        "proband": proband,
        "relatives": relatives,
        "pedigree": {"persons": [person, *persons]},
        "metaData": proband["metaData"],
    }
