"""Genomics Reporting variant Observations (69548-6 and profile extras) -> interpretations.

Variants named as evidence by a Condition form that Condition's diagnosis; the rest form one
interpretation without a disease. Clinical significance comes from the variant or from a
diagnostic-implication Observation derived from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from translators.fhir import variant_parts as parts
from translators.fhir.common import as_list, codings, first_code, reference_of
from translators.fhir.conditions import UNCONFIRMED, DiagnosisLink
from translators.fhir.context import PatientContext

# Genomics Reporting component codes (LOINC), checked against the IG 2.0.0 and MII molgen examples.
GENE_STUDIED = "48018-6"
CDNA_HGVS = "48004-6"
PROTEIN_HGVS = "48005-3"
GENOMIC_HGVS = "81290-9"
DISCRETE_VARIANT = "81252-9"
ASSEMBLY = "62374-4"
ALLELIC_STATE = "53034-5"
CLINICAL_SIGNIFICANCE = "53037-8"
ALLELE_START_END = "81254-5"
COORDINATE_SYSTEM = "92822-6"
REF_ALLELE = "69547-8"
ALT_ALLELE = "69551-0"
GENOMIC_REF_SEQ = "48013-7"
TRANSCRIPT_REF_SEQ = "51958-7"
ASSOCIATED_PHENOTYPE = "81259-4"
VARIANT_COMPONENTS_USED = frozenset(
    {
        GENE_STUDIED,
        CDNA_HGVS,
        PROTEIN_HGVS,
        GENOMIC_HGVS,
        DISCRETE_VARIANT,
        ASSEMBLY,
        ALLELIC_STATE,
        CLINICAL_SIGNIFICANCE,
        ALLELE_START_END,
        COORDINATE_SYSTEM,
        REF_ALLELE,
        ALT_ALLELE,
        GENOMIC_REF_SEQ,
        TRANSCRIPT_REF_SEQ,
    }
)
LOINC = "http://loinc.org"
SPDI_RE = re.compile(r"^[A-Z]{2}_\d+(\.\d+)?:\d+:[ACGTN]*:[ACGTN]*$")
# vcf2fhir writes structural variants SPDI-like with a VCF symbolic allele ("NC_000001.10:31162:T:<INS>"):
# not SPDI, but the same 0-based position, and a VCF record can carry the symbolic allele.
SYMBOLIC_RE = re.compile(r"^NC_\d+\.\d+:\d+:[ACGTN]+:(<[A-Z][A-Z0-9:_]*>)+$")
SYMBOLIC_ALLELE_RE = re.compile(r"<[A-Z][A-Z0-9:_]*>")
CDNA_RE = re.compile(r"(^|:)[cnmr]\.")
GENOMIC_RE = re.compile(r"(^|:)g\.")
PROTEIN_RE = re.compile(r"(^|:)p\.")
HGVS_SYSTEM = "http://varnomen.hgvs.org"
# what places a variant on a sequence: lost, and said, when no VCF record or copy-number placement is made of it
PLACEMENT_COMPONENTS = {
    ASSEMBLY: "the genome assembly",
    GENOMIC_REF_SEQ: "the reference sequence",
    ALLELE_START_END: "the position",
    COORDINATE_SYSTEM: "the coordinate system",
    REF_ALLELE: "the reference allele",
    ALT_ALLELE: "the alternate allele",
}


def hgvs_syntax(code: object) -> str | None:
    """The phenopacket Expression syntax of an HGVS (or SPDI) string, None when it is neither."""
    if not isinstance(code, str) or not code.strip() or any(c.isspace() for c in code.strip()):
        return None
    code = code.strip()
    if SPDI_RE.match(code):
        return "spdi"
    for pattern, syntax in ((GENOMIC_RE, "hgvs.g"), (CDNA_RE, "hgvs.c"), (PROTEIN_RE, "hgvs.p")):
        if pattern.search(code):
            return syntax
    return None


@dataclass
class Variant:
    entry: int
    descriptor: dict
    acmg: str | None = None
    linked: bool = False
    contributory: bool = False  # its own notes call it a (phenotype) modifier


def interpretation_status(verification: str, contributory: bool = False, stated: str | None = None) -> str:
    """How a variant cited by a Condition stands to its diagnosis: CAUSATIVE for a confirmed one,
    REJECTED for a refuted one, else CANDIDATE. A variant that the sender explicitly calls a modifier
    (or contributory: mappings/variants/variant_components.yaml) is CONTRIBUTORY to a confirmed
    diagnosis, never CAUSATIVE; a status the citing evidence states in code wins over words in notes.
    Nothing is inferred from the shape of the variant."""
    if verification == "confirmed":
        return stated or ("CONTRIBUTORY" if contributory else "CAUSATIVE")
    return {"refuted": "REJECTED"}.get(verification, "CANDIDATE")


def drop_restated_phenotype(descriptor: dict, disease_id: str) -> None:
    """An implication's associated phenotype that names the diagnosis citing the variant says nothing new."""
    kept = [
        e
        for e in descriptor.get("extensions", ())
        if not (e["name"] == f"diagnostic-implication {ASSOCIATED_PHENOTYPE}" and disease_id in e["value"].split())
    ]
    if kept:
        descriptor["extensions"] = kept
    else:
        descriptor.pop("extensions", None)


def value_of(component: dict) -> dict:
    """A component's value[x], for comparing repeated components."""
    return {k: v for k, v in component.items() if k.startswith("value")}


class Components:
    """The components of one variant Observation by LOINC code (the first of each code counts)."""

    def __init__(self, by_code: dict[str, list[tuple[int, dict]]]):
        self.by_code = by_code

    def __contains__(self, loinc: str) -> bool:
        return loinc in self.by_code

    def first(self, loinc: str) -> tuple[int, dict]:
        return self.by_code[loinc][0]

    def concept(self, loinc: str) -> tuple[int, dict] | None:
        items = self.by_code.get(loinc)
        if not items:
            return None
        k, component = items[0]
        return k, component.get("valueCodeableConcept") or {}

    def text(self, loinc: str) -> str | None:
        """A string value, or the first code (else the text) of a coded value."""
        items = self.by_code.get(loinc)
        if not items:
            return None
        component = items[0][1]
        if isinstance(component.get("valueString"), str):
            return component["valueString"].strip()
        value = component.get("valueCodeableConcept")
        if not isinstance(value, dict):
            return None
        for coding in codings(value):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return coding["code"].strip()
        return value.get("text").strip() if isinstance(value.get("text"), str) else None


class Variants:
    def __init__(self, ctx: PatientContext):
        self.ctx = ctx
        self.found: dict[int, Variant] = {}  # entry position -> variant

    def variant(self, i: int, obs: dict, presence: str | None) -> None:
        """One variant Observation (`presence`: its value read as a presence answer)."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        if presence == "absent":
            ctx.note(
                "unmapped-element", "variant reported absent: not an interpretation", base + "/valueCodeableConcept"
            )
            return
        if self.absent_by_interpretation(obs, base):
            return
        components, listed = self.components(obs, base)
        descriptor: dict = {"id": ctx.derived_id("variant", ctx.source.entry_key(i))}
        extras = parts.Extras()
        for k, component, rule in listed:
            parts.apply_component(ctx, rule, component, f"{base}/component/{k}", descriptor, extras)
        self.gene(components, base, descriptor)
        transcript = components.text(TRANSCRIPT_REF_SEQ)
        reference_seq = components.text(GENOMIC_REF_SEQ)
        if transcript is None and reference_seq and reference_seq.startswith(ctx.profile.transcript_reference_prefixes):
            transcript = reference_seq  # the profile's senders put the transcript under 48013-7
        expressions = self.expressions(components, base, transcript)
        rs_id, xrefs = self.xrefs(components, base, expressions)
        if expressions:
            descriptor["expressions"] = expressions
        if xrefs:
            descriptor["xrefs"] = xrefs
        spdi = next((e["value"] for e in expressions if e["syntax"] == "spdi"), None)
        cdna = components.text(CDNA_HGVS)
        if spdi is None and cdna and SYMBOLIC_RE.match(cdna):
            spdi = cdna
        place = self.placement(components, reference_seq, extras)
        vcf = self.vcf_record(base, components, reference_seq, rs_id, spdi) or self.structural_vcf(
            base, components, place, extras
        )
        if vcf:
            descriptor["vcfRecord"] = vcf
        variation = parts.copy_number_variation(extras, descriptor.get("geneContext", {}).get("valueId"), place)
        if variation:
            descriptor["variation"] = variation
        extras.describes |= self.members(i, obs, base, descriptor)
        contributory = self.observation_text(obs, base, descriptor)
        if not (expressions or vcf or "geneContext" in descriptor or "label" in descriptor or extras.describes):
            ctx.warn("unmapped-element", "variant Observation describes no variant (no gene, HGVS or position)", base)
            return
        if not (vcf or expressions or "variation" in descriptor):
            self.unplaced(components, base)
        descriptor["moleculeContext"] = "genomic"
        self.allelic_state(components, base, descriptor)
        acmg = None
        significance = components.concept(CLINICAL_SIGNIFICANCE)
        if significance is not None:
            acmg = self.acmg(significance[1], f"{base}/component/{significance[0]}")
        ctx.consumed.add(i)
        self.found[i] = Variant(i, descriptor, acmg, contributory=contributory)

    def absent_by_interpretation(self, obs: dict, base: str) -> bool:
        """An interpretation the profile reads as "no variant found" (wild type, negative)."""
        absent = self.ctx.profile.variant_absent_interpretations
        for n, concept in enumerate(as_list(obs.get("interpretation"))):
            for coding in codings(concept):
                if isinstance(coding, dict) and f"{coding.get('system')}|{coding.get('code')}" in absent:
                    self.ctx.note(
                        "unmapped-element",
                        "variant Observation interpreted as no variant found (wild type / negative): not an "
                        "interpretation",
                        f"{base}/interpretation/{n}",
                    )
                    return True
        return False

    def observation_text(self, obs: dict, base: str, descriptor: dict) -> bool:
        """Notes -> label (the first) and description; interpretation and method -> extensions.
        Returns whether the notes call the variant a phenotype modifier (contributory)."""
        notes = parts.note_texts(obs)
        if notes:
            descriptor["label"] = notes[0]
            if notes[1:]:
                descriptor["description"] = "\n".join(notes[1:])
        for name in ("interpretation", "method"):
            concepts = as_list(obs.get(name)) if name == "interpretation" else [obs.get(name)]
            for concept in concepts:
                text = parts.concept_text(self.ctx, concept)
                if text:
                    descriptor.setdefault("extensions", []).append({"name": f"observation-{name}", "value": text})
        return parts.says_contributory([], notes)

    def members(self, i: int, obs: dict, base: str, descriptor: dict) -> bool:
        """The variants a complex variant is made of (hasMember), named by their descriptor ids."""
        named = False
        for m, ref in enumerate(as_list(obs.get("hasMember"))):
            target = self.ctx.source.resolve(reference_of(ref), i)
            resource = self.ctx.source.resources[target] if target is not None else None
            curies = {c for _, _, c, _ in self.ctx.known_codings((resource or {}).get("code"))}
            if target is None or not curies & self.ctx.profile.variant_observation_codes:
                self.ctx.warn(
                    "unmapped-element", "hasMember does not name a variant Observation", f"{base}/hasMember/{m}"
                )
                continue
            member_id = self.ctx.derived_id("variant", self.ctx.source.entry_key(target))
            descriptor.setdefault("extensions", []).append({"name": "complex-variant-member", "value": member_id})
            named = True
        return named

    def components(self, obs: dict, base: str) -> tuple[Components, list[tuple[int, dict, dict]]]:
        """The core components by LOINC code, and those the component table gives a home."""
        by_code: dict[str, list[tuple[int, dict]]] = {}
        listed: list[tuple[int, dict, dict]] = []
        for k, component in enumerate(as_list(obs.get("component"))):
            if not isinstance(component, dict):
                continue
            loinc = first_code(component.get("code"), LOINC)
            if loinc in VARIANT_COMPONENTS_USED:
                by_code.setdefault(loinc, []).append((k, component))
                continue
            rule = parts.component_rule(self.ctx, component.get("code"))
            if rule is not None:
                listed.append((k, component, rule))
                continue
            code = component.get("code")
            label = loinc or next(
                (c["code"] for c in codings(code) if isinstance(c, dict) and isinstance(c.get("code"), str)),
                code.get("text") if isinstance(code, dict) else None,
            )
            what = f"variant component {label!r}" if label else "a variant component without a code"
            if parts.value_text(self.ctx, component) is None:
                self.ctx.note("unmapped-element", f"{what} has no value", f"{base}/component/{k}")
            else:
                self.ctx.warn("unmapped-element", f"{what} has no phenopacket target", f"{base}/component/{k}")
        self.repeated(by_code, base)
        return Components(by_code), listed

    def repeated(self, by_code: dict[str, list[tuple[int, dict]]], base: str) -> None:
        """A core component given again with another value (a fusion's second gene, mCODE) is read once only
        (`Components` takes the first): each other value is a warning where it is, never dropped unsaid."""
        for loinc, items in by_code.items():
            if loinc == DISCRETE_VARIANT:
                continue  # every ClinVar / dbSNP id is read (xrefs)
            first = value_of(items[0][1])
            for k, component in items[1:]:
                if value_of(component) == first:
                    continue
                what = "a second gene studied" if loinc == GENE_STUDIED else f"a second {loinc} component"
                home = "geneContext holds one gene" if loinc == GENE_STUDIED else "only the first is read"
                self.ctx.warn("unmapped-element", f"{what} has no phenopacket target ({home})", f"{base}/component/{k}")

    def gene(self, components: Components, base: str, descriptor: dict) -> None:
        gene = components.concept(GENE_STUDIED)
        if gene is None:
            return
        where = f"{base}/component/{gene[0]}/valueCodeableConcept"
        for _, coding, curie, prefix in self.ctx.known_codings(gene[1]):
            if prefix == "HGNC":
                self.ctx.used.add(prefix)
                symbol = coding.get("display") or gene[1].get("text") or parts.load_gene_symbols().symbol_of.get(curie)
                descriptor["geneContext"] = {"valueId": curie, "symbol": symbol or curie}
                return
        symbol = parts.gene_symbol(gene[1])
        if symbol is None:
            self.ctx.warn("unmapped-code", "gene is neither an HGNC id nor a symbol", where)
            return
        found = parts.gene_from_symbol(self.ctx, symbol, where)
        if found is not None:
            descriptor["geneContext"] = found

    def expressions(self, components: Components, base: str, transcript: str | None) -> list[dict]:
        out = []
        cdna = components.text(CDNA_HGVS)
        if cdna:
            if SPDI_RE.match(cdna):
                out.append({"syntax": "spdi", "value": cdna})
            elif SYMBOLIC_RE.match(cdna):
                pass  # a structural variant: only the VCF record can carry it (vcf_record)
            elif CDNA_RE.search(cdna):
                value = cdna if ":" in cdna or not transcript else f"{transcript}:{cdna}"
                out.append({"syntax": "hgvs.c", "value": value})
            else:
                k = components.first(CDNA_HGVS)[0]
                self.ctx.warn(
                    "unmapped-element", f"DNA change {cdna!r} is neither c.HGVS nor SPDI", f"{base}/component/{k}"
                )
        genomic = components.text(GENOMIC_HGVS)
        if genomic:
            if GENOMIC_RE.search(genomic):
                out.append({"syntax": "hgvs.g", "value": genomic})
            elif CDNA_RE.search(genomic) and ":" in genomic and not any(e["syntax"] == "hgvs.c" for e in out):
                k = components.first(GENOMIC_HGVS)[0]
                out.append({"syntax": "hgvs.c", "value": genomic})  # mCODE's fusion: a c.HGVS under 81290-9
                self.ctx.note(
                    "unmapped-element",
                    f"the genomic change {genomic!r} is a c.HGVS expression: carried as hgvs.c",
                    f"{base}/component/{k}",
                )
            else:
                k = components.first(GENOMIC_HGVS)[0]
                self.ctx.warn("unmapped-element", f"genomic change {genomic!r} is not g.HGVS", f"{base}/component/{k}")
        protein = components.text(PROTEIN_HGVS)
        if protein:
            out.append({"syntax": "hgvs.p", "value": protein})
        return out

    def xrefs(self, components: Components, base: str, expressions: list[dict]) -> tuple[str | None, list[str]]:
        """The variation codes (81252-9) of the variant: HGVS / SPDI codings (Genomics Reporting STU3 names a
        variant so) go into `expressions` unless already there, any other coding is warned where it is.
        Returns the rs id for the VCF record and the ids of known systems (ClinVar, dbSNP...) as xrefs."""
        rs_id = None
        xrefs = []
        for k, component in components.by_code.get(DISCRETE_VARIANT, []):
            concept = component.get("valueCodeableConcept")
            known = {j: (coding, curie, prefix) for j, coding, curie, prefix in self.ctx.known_codings(concept)}
            for j, coding in enumerate(codings(concept)):
                where = f"{base}/component/{k}/valueCodeableConcept/coding/{j}"
                if j in known:
                    coding, curie, prefix = known[j]
                    self.ctx.used.add(prefix)
                    xrefs.append(curie)
                    if prefix == "dbSNP":
                        rs_id = coding["code"]
                    continue
                code = coding.get("code") if isinstance(coding, dict) else None
                syntax = hgvs_syntax(code) if isinstance(coding, dict) and coding.get("system") == HGVS_SYSTEM else None
                if syntax is None:
                    self.ctx.warn(
                        "unmapped-code",
                        "variation code in no system the gateway maps (ClinVar, dbSNP, HGVS...): not carried",
                        where,
                    )
                elif not any(e["value"] == code.strip() for e in expressions):
                    expressions.append({"syntax": syntax, "value": code.strip()})
        return rs_id, xrefs

    def allelic_state(self, components: Components, base: str, descriptor: dict) -> None:
        state = components.concept(ALLELIC_STATE)
        if state is None:
            return
        answers = self.ctx.tables.answers["allelic_state"]
        hit = next((answers[c] for _, _, c, _ in self.ctx.known_codings(state[1]) if c in answers), None)
        if hit is None:
            self.ctx.warn("unmapped-code", "allelic state not in the LOINC answer list", f"{base}/component/{state[0]}")
        else:
            self.ctx.used.add(hit["id"].split(":", 1)[0])
            descriptor["allelicState"] = dict(hit)

    def vcf_record(
        self, base: str, components: Components, reference_seq: str | None, rs_id, spdi: str | None = None
    ) -> dict | None:
        """A VCF record from the position components, or from an SPDI (or SPDI-like symbolic) allele:
        0-based there, so +1."""
        ctx, tables = self.ctx, self.ctx.tables
        wanted = (ASSEMBLY, GENOMIC_REF_SEQ, ALLELE_START_END, REF_ALLELE, ALT_ALLELE)
        present = [c for c in wanted if c in components]
        if len(present) < 3 and spdi is None:
            return None  # a transcript-level description only: nothing to place on a genome
        position = self.position(components)
        ref, alt = components.text(REF_ALLELE), components.text(ALT_ALLELE)
        if spdi is not None:
            accession, start, deleted, inserted = spdi.split(":", 3)
            reference_seq, position, ref, alt = accession, int(start) + 1, deleted, inserted
            if inserted.startswith("<"):  # several symbolic alleles (<CN0><CN2>) are VCF's comma list
                alt = ",".join(SYMBOLIC_ALLELE_RE.findall(inserted))
            if not (deleted and inserted):
                ctx.note(
                    "unmapped-element",
                    f"no VCF record: SPDI {spdi!r} is an insertion or deletion without the anchor base VCF needs",
                    base + "/component",
                )
                return None
        assembly = self.assembly(components, base)
        if reference_seq and reference_seq.startswith("NC_"):
            named = tables.accession_assemblies.get(reference_seq)
            if assembly is None:
                assembly = named  # a versioned RefSeq accession names its assembly
            elif named is not None and named != assembly:
                ctx.warn("conflict", f"{reference_seq} belongs to {named}, not to {assembly}", base + "/component")
                return None
        chrom = None
        if reference_seq and reference_seq.startswith("NC_"):
            chrom = tables.chromosomes.get(reference_seq.split(".", 1)[0])
        given = {"assembly": assembly, "chromosome": chrom, "position": position, "ref": ref, "alt": alt}
        missing = [name for name, value in given.items() if value is None]
        if missing:
            ctx.note(
                "unmapped-element",
                f"no VCF record: {', '.join(missing)} not given or not understood "
                "(needs 62374-4 or a versioned NC_ accession, an NC_ 48013-7, 81254-5 with 92822-6, "
                "69547-8 and 69551-0, or an SPDI expression)",
                base + "/component",
            )
            return None
        record = {"genomeAssembly": assembly, "chrom": f"chr{chrom}", "pos": str(position), "ref": ref, "alt": alt}
        if rs_id:
            record["id"] = rs_id
        return record

    def unplaced(self, components: Components, base: str) -> None:
        """The placement components of a variant described by nothing else (no VCF record, HGVS or SPDI: a
        position on a transcript, alleles without a position): each one warned where it is, so that the
        change itself is not lost unsaid. With an expression carried, they only restate it."""
        for code, what in PLACEMENT_COMPONENTS.items():
            for k, _component in components.by_code.get(code, []):
                self.ctx.warn(
                    "unmapped-element",
                    f"{what} not carried: the variant has no genomic placement (a VCF record needs an assembly or a "
                    "versioned NC_ accession, a position and both alleles; a transcript position has no place)",
                    f"{base}/component/{k}",
                )

    def assembly(self, components: Components, base: str) -> str | None:
        """The assembly named by 62374-4 (LOINC answer, or GRCh37/GRCh38 as text)."""
        if ASSEMBLY not in components:
            return None
        _k, component = components.first(ASSEMBLY)
        concept = component.get("valueCodeableConcept") or {}
        answers = self.ctx.tables.answers["genome_assembly"]
        assembly = next((answers[c] for _, _, c, _ in self.ctx.known_codings(concept) if c in answers), None)
        if assembly is None and concept.get("text") in ("GRCh37", "GRCh38"):
            assembly = concept["text"]
        return assembly

    def offset(self, components: Components) -> int | None:
        """What turns a position of the sender's coordinate system (92822-6) into a 1-based one."""
        if COORDINATE_SYSTEM not in components:
            return None
        system = components.first(COORDINATE_SYSTEM)[1].get("valueCodeableConcept")
        answers = self.ctx.tables.answers["coordinate_system"]
        return next((int(answers[c]) for _, _, c, _ in self.ctx.known_codings(system) if c in answers), None)

    def position(self, components: Components) -> int | None:
        """The 1-based VCF position from 81254-5 and its coordinate system 92822-6."""
        if ALLELE_START_END not in components:
            return None
        start, _end = parts.range_of(components.first(ALLELE_START_END)[1])
        offset = self.offset(components)
        return None if start is None or offset is None else start + offset

    def placement(
        self, components: Components, reference_seq: str | None, extras: parts.Extras
    ) -> tuple[str, int, int] | None:
        """(RefSeq chromosome, 1-based start, end) of a structural variant given by a range."""
        if ALLELE_START_END in components:
            extras.ranges.setdefault("exact_range", parts.range_of(components.first(ALLELE_START_END)[1]))
        span = parts.structural_span(extras) if extras.copies is not None or extras.symbolic else None
        offset = self.offset(components)
        if span is None or offset is None or not (reference_seq and reference_seq.startswith("NC_")):
            return None
        return reference_seq, span[0] + offset, span[1] + offset

    def structural_vcf(
        self, base: str, components: Components, place: tuple[str, int, int] | None, extras: parts.Extras
    ) -> dict | None:
        """A VCF record with a symbolic allele (<CNV>, <INV>...) and SVTYPE/END for a placed structural variant."""
        if place is None or extras.symbolic is None:
            return None
        accession, start, end = place
        tables = self.ctx.tables
        assembly = self.assembly(components, base) or tables.accession_assemblies.get(accession)
        chrom = tables.chromosomes.get(accession.split(".", 1)[0])
        if assembly is None or chrom is None:
            return None
        ref = components.text(REF_ALLELE) or "N"
        return {
            "genomeAssembly": assembly,
            "chrom": f"chr{chrom}",
            "pos": str(start),
            "ref": ref if re.fullmatch("[ACGTN]+", ref) else "N",
            "alt": f"<{extras.symbolic}>",
            "info": f"SVTYPE={extras.symbolic};END={end}",
        }

    def acmg(self, concept: dict, location: str) -> str | None:
        answers = self.ctx.tables.answers["clinical_significance"]
        hit = next((answers[c] for _, _, c, _ in self.ctx.known_codings(concept) if c in answers), None)
        if hit is None:
            self.ctx.warn("unmapped-code", "clinical significance not in the ACMG LOINC answer list", location)
        return hit

    def implication(self, i: int, obs: dict) -> None:
        """A diagnostic implication: its clinical significance becomes the ACMG class of the variants it
        derives from; its other components (conclusion, evidence level, phenotype...) their extensions. Another
        finding about variants (profile `variant_annotation_codes`: a molecular consequence, a therapeutic
        implication) gives all its components and its interpretation as extensions named after it."""
        ctx, base = self.ctx, self.ctx.source.pointer(i)
        annotation = self.annotation_name(obs)
        what = annotation.replace("-", " ") if annotation else "diagnostic implication"
        targets = []
        for d, ref in enumerate(as_list(obs.get("derivedFrom"))):
            target = ctx.source.resolve(reference_of(ref), i)
            if target in self.found:
                targets.append(target)
            else:
                ctx.note("unmapped-element", "derivedFrom does not name a mapped variant", f"{base}/derivedFrom/{d}")
        if not targets:
            ctx.warn("no-phenopacket-target", f"{what} names no mapped variant (derivedFrom)", base)
            return
        acmg = None
        carried = []
        name = annotation or "diagnostic-implication"
        for k, component in enumerate(as_list(obs.get("component"))):
            if not isinstance(component, dict):
                continue
            if annotation is None and first_code(component.get("code"), LOINC) == CLINICAL_SIGNIFICANCE:
                acmg = self.acmg(component.get("valueCodeableConcept") or {}, f"{base}/component/{k}")
                continue
            value = parts.value_text(ctx, component)
            if value is None:
                ctx.note("unmapped-element", f"{what} component has no value", f"{base}/component/{k}")
            else:
                carried.append({"name": f"{name} {parts.code_name(component.get('code'))}", "value": value})
        if annotation is not None:  # an implication's interpretation is read by its components; these have one
            for n, concept in enumerate(as_list(obs.get("interpretation"))):
                text = parts.concept_text(ctx, concept)
                if text:
                    carried.append({"name": f"{name} interpretation", "value": text})
                else:
                    ctx.note("unmapped-element", f"{what} interpretation has no text", f"{base}/interpretation/{n}")
        ctx.consumed.add(i)
        for target in targets:
            variant = self.found[target]
            variant.descriptor.setdefault("extensions", []).extend(dict(e) for e in carried)
            if acmg is not None and variant.acmg and variant.acmg != acmg:
                ctx.warn("conflict", f"clinical significance {acmg} contradicts {variant.acmg} on the variant", base)
            elif acmg is not None:
                variant.acmg = acmg

    def annotation_name(self, obs: dict) -> str | None:
        """The extension name of a finding about variants other than a diagnostic implication (profile)."""
        for coding in codings(obs.get("code")):
            if isinstance(coding, dict):
                name = self.ctx.profile.variant_annotation_codes.get(f"{coding.get('system')}|{coding.get('code')}")
                if name:
                    return name
        return None

    def interpretations(self, links: list[DiagnosisLink]) -> list[dict]:
        ctx, out = self.ctx, []
        for link in links:
            found = [self.found[t] for t in link.variants if t in self.found]
            if not found and link.verification not in UNCONFIRMED:
                continue
            diagnosis: dict = {"disease": link.term}
            if found:
                stated = self.evidence_statuses(link.condition)
                for variant in found:
                    drop_restated_phenotype(variant.descriptor, link.term["id"])
                diagnosis["genomicInterpretations"] = [
                    self.genomic(v, interpretation_status(link.verification, v.contributory, stated.get(v.entry)))
                    for v in found
                ]
            out.append(
                {
                    "id": ctx.derived_id("interpretation", ctx.source.entry_key(link.condition)),
                    "progressStatus": "SOLVED" if link.verification == "confirmed" else "IN_PROGRESS",
                    "diagnosis": diagnosis,
                }
            )
        # Settled diagnoses first, then those under consideration: an order that does not depend on
        # the order the sender listed its Conditions in.
        out.sort(key=lambda i: i["progressStatus"] != "SOLVED")
        rest = [v for v in self.found.values() if not v.linked]
        if rest:
            out.append(
                {
                    "id": ctx.derived_id("interpretation", "unlinked-variants"),
                    "progressStatus": "UNKNOWN_PROGRESS",
                    "diagnosis": {
                        "disease": self.unspecified_disease(rest),
                        "genomicInterpretations": [self.genomic(v, "UNKNOWN_STATUS") for v in rest],
                    },
                }
            )
        return out

    def evidence_statuses(self, condition: int) -> dict[int, str]:
        """Variants a Condition cites under evidence that states their status (a coded status, or
        words calling them modifiers / contributory) -> that status."""
        resource = self.ctx.source.resources[condition] or {}
        out: dict[int, str] = {}
        for evidence in as_list(resource.get("evidence")):
            codes = as_list(evidence.get("code")) if isinstance(evidence, dict) else []
            status = parts.stated_status(codes) or ("CONTRIBUTORY" if parts.says_contributory(codes, []) else None)
            if status is None:
                continue
            for detail in as_list(evidence.get("detail")):
                target = self.ctx.source.resolve(reference_of(detail), condition)
                if target is not None:
                    out[target] = status
        return out

    def genomic(self, variant: Variant, status: str) -> dict:
        variant.linked = True
        return {
            "subjectOrBiosampleId": self.ctx.subject_id,
            "interpretationStatus": status,
            "variantInterpretation": {
                "acmgPathogenicityClassification": variant.acmg or "NOT_PROVIDED",
                "variationDescriptor": variant.descriptor,
            },
        }

    def unspecified_disease(self, variants: list[Variant]) -> dict:
        """Diagnosis.disease is required, but the source tied these variants to no condition.

        The root of MONDO ("disease") claims nothing beyond what the report itself says;
        naming a specific disease would be a guess. Said once per variant, at its Observation.
        """
        self.ctx.used.add("MONDO")
        for variant in variants:
            self.ctx.note(
                "unlinked-variants",
                "variant not linked to a Condition: reported under the unspecified disease MONDO:0000001",
                self.ctx.source.pointer(variant.entry),
            )
        return {"id": "MONDO:0000001", "label": "disease"}
