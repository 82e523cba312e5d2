"""Validation of GA4GH Phenopacket v2 documents (and Family, Cohort) in their JSON form.

Three layers, each reported with JSON pointers into the document:
1. a strict protobuf round trip (`json_format.ParseDict`, unknown fields rejected): the official classes decide
   what is a phenopacket at all (a document `protobuf_shape.plainly_parses` vouches for skips the slow parse;
   any other gets ParseDict's verdict);
2. the project's JSON Schema (`schemas/phenopacket-v2.schema.json`): required fields, enum spellings, ISO 8601
   ages, timestamps, CURIE ids — stricter than protobuf where the spec says MUST;
3. semantic rules that no schema can express: every ontology id's prefix is declared in `metaData.resources`,
   HPO ids are well formed, ids are unique, cross references point at something.

The same engine serves emitted packets (`target="output"`) and packets posted by registries (`target="input"`).

Issue codes (stable): missing-field, invalid-enum, invalid-format, wrong-type, invalid-choice, invalid-value,
unknown-field, protobuf-parse (layers 1-2); undeclared-prefix, malformed-hpo-id, duplicate-id (errors) and
duplicate-resource, duplicate-feature, conflicting-feature, unknown-reference, not-curie (warnings) (layer 3);
phenopacket-v1, duplicate-field (before the layers: the document is not judged as v2 in the canonical spelling).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import phenopackets
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from gateway.issues import Issue, Report
from gateway.validation.proto_spelling import Respelled, respell
from gateway.validation.protobuf_shape import plainly_parses
from schemas import dotted, pointer, schema_issues

# kind → (protobuf class, schema name)
KINDS = {
    "phenopacket": (phenopackets.Phenopacket, "phenopacket-v2"),
    "family": (phenopackets.Family, "family-v2"),
    "cohort": (phenopackets.Cohort, "cohort-v2"),
}

ONTOLOGY_CLASS = phenopackets.OntologyClass.DESCRIPTOR.full_name
HPO_ID = re.compile(r"HP:\d{7}")
CURIE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*):\S+")


def detect_kind(doc: dict) -> str:
    """ "family", "cohort" or "phenopacket", from the members only a Family or a Cohort has."""
    if isinstance(doc, dict):
        if "proband" in doc or "pedigree" in doc:
            return "family"
        if "members" in doc:
            return "cohort"
    return "phenopacket"


def validate_phenopacket(doc: dict, *, target: str = "output") -> Report:
    """All findings about one Phenopacket v2 JSON document (already parsed into a dict)."""
    return validate_document(doc, "phenopacket", target=target)


def validate_family(doc: dict, *, target: str = "input") -> Report:
    return validate_document(doc, "family", target=target)


def validate_cohort(doc: dict, *, target: str = "input") -> Report:
    return validate_document(doc, "cohort", target=target)


def validate_document(doc: dict, kind: str, *, target: str = "output") -> Report:
    """Protobuf round trip + JSON Schema + semantic rules for a `kind` in KINDS.

    A document in protobuf's other JSON spelling (proto field names, enum numbers) is judged in the
    canonical one (`proto_spelling.respell`), its issues located in the document as sent. A Phenopacket v1
    document gets one error saying so, not the dozens a v2 reading of it would give."""
    if not isinstance(doc, dict):
        return Report([Issue.error("wrong-type", f"a {kind} must be a JSON object", "", target)])
    v1 = v1_issue(doc, kind, target=target)
    if v1 is not None:
        return Report([v1])
    respelled = respell(doc, KINDS[kind][0].DESCRIPTOR)
    if respelled.twice:
        return Report([_twice_issue(path, target) for path in respelled.twice])
    if not respelled.changed:
        return _validate_canonical(doc, kind, target=target)
    report = Report(
        [
            Issue(i.severity, i.code, i.message, respelled.original_pointer(i.location), i.target)
            for i in _validate_canonical(respelled.document, kind, target=target)
        ]
    )
    if respelled.renamed or respelled.enums or respelled.numbers or respelled.nulls:  # YAML's numbers: no note
        report.add(_respelled_note(respelled, target))
    return report


def _twice_issue(path: tuple, target: str) -> Issue:
    name = path[-1]
    camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)
    message = f"{dotted(list(path))}: the field is given twice, as {name!r} and as {camel!r}: keep one"
    return Issue.error("duplicate-field", message, pointer(list(path)), target)


def _respelled_note(respelled: Respelled, target: str) -> Issue:
    said = []
    if respelled.renamed:
        said.append(f"{len(respelled.renamed)} field name(s) in protobuf's proto spelling (snake_case)")
    if respelled.enums:
        said.append(f"{len(respelled.enums)} enum value(s) given by number")
    if respelled.numbers:
        said.append(f"{len(respelled.numbers)} number(s) given as text")
    if respelled.nulls:
        said.append(f"{len(respelled.nulls)} null member(s) (left out)")
    paths = [*respelled.renamed, *respelled.enums, *respelled.numbers, *respelled.nulls]
    first = min(("/" + "/".join(map(str, p)) for p in paths), key=lambda p: (len(p), p))
    message = f"read {', '.join(said)} as protobuf's JSON mapping allows; kept in the canonical form"
    return Issue.info("proto-spelling", message, respelled.original_pointer(first), target)


# A Phenopacket v1 document: its schema version, or members v2 removed (v1 name → where v2 puts it).
_V1_MEMBERS = {
    "phenopacket": {"genes": "interpretations", "variants": "interpretations", "htsFiles": "files"},
    "subject": {"ageAtCollection": "timeAtLastEncounter"},
    "phenotypicFeatures": {"negated": "excluded", "classOfOnset": "onset", "ageOfOnset": "onset"},
    "diseases": {"classOfOnset": "onset", "ageOfOnset": "onset", "tumorStage": "diseaseStage"},
    "biosamples": {"individualAgeAtCollection": "timeOfCollection", "tumorStage": "pathologicalStage"},
}


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _v1_member(packet: dict) -> tuple[tuple, str] | None:
    """The first member of `packet` only Phenopacket v1 has: (its path, the v2 member that replaced it)."""
    for part, members in _V1_MEMBERS.items():
        if part == "phenopacket":
            holders: list[tuple[tuple, object]] = [((), packet)]
        elif part == "subject":
            holders = [(("subject",), packet.get("subject"))]
        else:
            holders = [((part, n), item) for n, item in enumerate(_list(packet.get(part)))]
        for path, holder in holders:
            if not isinstance(holder, dict):
                continue
            for v1_name, v2_name in members.items():
                for spelled in (v1_name, _snake(v1_name)):
                    if spelled in holder:
                        return (*path, spelled), v2_name
    return None


def v1_issue(doc: dict, kind: str, *, target: str = "input") -> Issue | None:
    """One error for a Phenopacket v1 document (Phenopacket, Family or Cohort), None for any other.

    v1 is recognised by `metaData.phenopacketSchemaVersion` 1.x, or, when no version says 2, by a member
    v2 removed. The gateway reads v2 only: a v1 document is refused whole, with what to do about it,
    rather than converted by guesses (v1 genes and variants have no v2 home without a diagnosis)."""
    packets: list[tuple[tuple, object]] = [((), doc)]
    if kind == "family":
        packets = [
            (("proband",), doc.get("proband")),
            *((("relatives", n), r) for n, r in enumerate(_list(doc.get("relatives")))),
        ]
    elif kind == "cohort":
        packets = [(("members", n), m) for n, m in enumerate(_list(doc.get("members")))]
    versions = [((), doc.get("metaData") or doc.get("meta_data"))] + [(p, _meta(m)) for p, m in packets]
    said = None
    for path, meta in versions:
        version = (
            meta.get("phenopacketSchemaVersion", meta.get("phenopacket_schema_version"))
            if isinstance(meta, dict)
            else None
        )
        if isinstance(version, int | float) and not isinstance(version, bool):
            version = str(version)  # YAML reads an unquoted 1.0 as a number
        if isinstance(version, str) and version.strip():
            if not version.strip().startswith("1"):
                return None  # a document that says it is v2 (or later) is judged as one
            said = said or ((*path, "metaData", "phenopacketSchemaVersion"), version)
    evidence = None
    if kind != "phenopacket":  # a v1 Family or Cohort has its own htsFiles too
        found = next((name for name in ("htsFiles", "hts_files") if name in doc), None)
        evidence = ((found,), "files") if found else None
    for path, packet in packets if evidence is None else ():
        found = _v1_member(packet) if isinstance(packet, dict) else None
        if found is not None:
            evidence = ((*path, *found[0]), found[1])
            break
    if said is None and evidence is None:
        return None
    reasons = []
    if said is not None:
        reasons.append(f"metaData.phenopacketSchemaVersion is {said[1]!r}")
    if evidence is not None:
        reasons.append(f"{dotted(list(evidence[0]))} is a v1 member (v2: {evidence[1]})")
    message = (
        f"a Phenopacket v1 document ({'; '.join(reasons)}): the gateway reads Phenopacket v2 only. "
        "Convert it to v2 first, e.g. with phenopacket-tools: pxf convert -i FILE"
    )
    where = said[0] if said is not None else evidence[0] if evidence is not None else ()
    return Issue.error("phenopacket-v1", message, pointer(list(where)), target)


def _meta(packet: object) -> object:
    return (packet.get("metaData") or packet.get("meta_data")) if isinstance(packet, dict) else None


def _validate_canonical(doc: dict, kind: str, *, target: str) -> Report:
    report = Report()
    message_class, schema_name = KINDS[kind]
    structural = schema_issues(schema_name, doc, target=target)
    parse_issue = protobuf_issue(doc, message_class, target=target)
    # The schema pinpoints most problems better than protobuf's message; keep the protobuf issue only when
    # it says something the schema did not (e.g. an unknown field).
    if parse_issue is not None and not _covered(parse_issue, structural):
        report.add(parse_issue)
    report.extend(structural)
    report.extend(semantic_issues(doc, kind, target=target))
    return report


# --- 1. protobuf round trip ------------------------------------------------------------------------------------

_NO_FIELD = re.compile(r'has no field named "([^"]+)" at "[A-Za-z]+((?:\.\w+|\[\d+\])*)"')
_AT_PATH = re.compile(r' at "?[A-Za-z]+((?:\.\w+|\[\d+\])+)')
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field: ")


def protobuf_issue(doc: dict, message_class: type, *, target: str = "output") -> Issue | None:
    """None if `doc` parses strictly into `message_class`, else one Issue locating the failure."""
    if plainly_parses(doc, message_class.DESCRIPTOR):
        return None  # certainly parses (protobuf_shape): the slow strict parse would only agree
    try:
        json_format.ParseDict(doc, message_class(), ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        text = str(exc)
        path = _protobuf_error_path(text, doc)
        innermost = _FAILED_FIELD.split(text)[-1].split("\n")[0].strip().rstrip(".")
        code = "unknown-field" if "has no field named" in text else "protobuf-parse"
        where = dotted(path) or "the document"
        return Issue.error(code, f"{where}: not a valid {message_class.__name__}: {innermost}", pointer(path), target)
    return None


def _dotted_to_path(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.findall(r"\w+", text)]


def _protobuf_error_path(text: str, doc: dict) -> list:
    found = _NO_FIELD.search(text)
    if found:
        return [*_dotted_to_path(found.group(2)), found.group(1)]
    found = _AT_PATH.search(text)
    if found:
        return _dotted_to_path(found.group(1))
    # Only the chain of field names is known: follow it through the document, stopping at the first list
    # (protobuf does not say which element failed).
    path: list = []
    node = doc
    for name in _FAILED_FIELD.findall(text):
        if not isinstance(node, dict) or name not in node:
            break
        path.append(name)
        node = node[name]
        if isinstance(node, list):
            break
    return path


def _strip_indices(location: str) -> str:
    return re.sub(r"/\d+(?=/|$)", "", location)


def _covered(issue: Issue, others: list[Issue]) -> bool:
    where = _strip_indices(issue.location)
    return any(_strip_indices(o.location).startswith(where) for o in others if o.is_error)


# --- 3. semantic rules -----------------------------------------------------------------------------------------


@cache
def _message_fields(message_name: str) -> dict[str, tuple[str, bool]]:
    """For one protobuf message: JSON key (camelCase and snake_case) → (child message name, repeated),
    keeping only fields that can lead to an OntologyClass."""
    descriptor = _DESCRIPTORS[message_name]
    out = {}
    for field in descriptor.fields:
        child = field.message_type
        if child is None or child.GetOptions().map_entry or child.full_name not in _REACHING:
            continue
        entry = (child.full_name, field.is_repeated)
        out[field.json_name] = entry
        out[field.name] = entry
    return out


def _collect_descriptors() -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}
    stack = [cls.DESCRIPTOR for cls, _ in KINDS.values()]
    while stack:
        descriptor = stack.pop()
        if descriptor.full_name in found:
            continue
        found[descriptor.full_name] = descriptor
        stack.extend(f.message_type for f in descriptor.fields if f.message_type is not None)
    return found


_DESCRIPTORS = _collect_descriptors()


def _reaching_ontology_class() -> frozenset[str]:
    """Names of the messages from which an OntologyClass can be reached (a fixpoint over the descriptors)."""
    reaching = {ONTOLOGY_CLASS}
    grew = True
    while grew:
        grew = False
        for name, descriptor in _DESCRIPTORS.items():
            if name not in reaching and any(
                f.message_type is not None and f.message_type.full_name in reaching for f in descriptor.fields
            ):
                reaching.add(name)
                grew = True
    return frozenset(reaching)


_REACHING = _reaching_ontology_class()


def ontology_ids(doc: dict, message_name: str, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every OntologyClass id in `doc` (a JSON object of protobuf type `message_name`) with its path."""
    fields = _message_fields(message_name)
    for key, value in doc.items():
        spec = fields.get(key)
        if spec is None:
            continue
        child, repeated = spec
        items = enumerate(value) if repeated and isinstance(value, list) else [(None, value)]
        for index, item in items:
            if not isinstance(item, dict):
                continue
            where = (*path, key) if index is None else (*path, key, index)
            if child == ONTOLOGY_CLASS:
                term = item.get("id")
                if isinstance(term, str):
                    yield (*where, "id"), term
            else:
                yield from ontology_ids(item, child, where)


def _declared_prefixes(meta: object) -> set[str]:
    if not isinstance(meta, dict) or not isinstance(meta.get("resources"), list):
        return set()
    return {
        r["namespacePrefix"]
        for r in meta["resources"]
        if isinstance(r, dict) and isinstance(r.get("namespacePrefix"), str)
    }


@dataclass(frozen=True)
class _Rules:
    target: str

    def error(self, code: str, message: str, path: tuple) -> Issue:
        return Issue.error(code, message, pointer(path), self.target)

    def warning(self, code: str, message: str, path: tuple) -> Issue:
        return Issue.warning(code, message, pointer(path), self.target)


def semantic_issues(doc: dict, kind: str = "phenopacket", *, target: str = "output") -> list[Issue]:
    rules = _Rules(target)
    issues: list[Issue] = []
    meta = doc.get("metaData")
    issues += _resource_rules(rules, meta, ("metaData",))
    outer = _declared_prefixes(meta)
    if kind == "phenopacket":
        issues += _packet_rules(rules, doc, (), outer)
        return issues
    members = (
        [("proband",), *(("relatives", i) for i in range(len(_list(doc.get("relatives")))))]
        if kind == "family"
        else [("members", i) for i in range(len(_list(doc.get("members"))))]
    )
    seen_ids: dict[str, tuple] = {}
    for path in members:
        packet = doc.get(path[0]) if len(path) == 1 else doc[path[0]][path[1]]
        if not isinstance(packet, dict):
            continue
        issues += _resource_rules(rules, packet.get("metaData"), (*path, "metaData"))
        issues += _packet_rules(rules, packet, path, outer | _declared_prefixes(packet.get("metaData")))
        packet_id = packet.get("id")
        if isinstance(packet_id, str):
            if packet_id in seen_ids:
                issues.append(rules.error("duplicate-id", f"phenopacket id {packet_id!r} used twice", (*path, "id")))
            seen_ids.setdefault(packet_id, path)
    if kind == "family":
        issues += _pedigree_rules(rules, doc.get("pedigree"))
    return issues


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _resource_rules(rules: _Rules, meta: object, path: tuple) -> list[Issue]:
    issues = []
    seen: set[str] = set()
    for i, resource in enumerate(_list(meta.get("resources")) if isinstance(meta, dict) else []):
        prefix = resource.get("namespacePrefix") if isinstance(resource, dict) else None
        if isinstance(prefix, str):
            if prefix in seen:
                issues.append(
                    rules.warning(
                        "duplicate-resource",
                        f"namespacePrefix {prefix!r} is declared twice in metaData.resources",
                        (*path, "resources", i, "namespacePrefix"),
                    )
                )
            seen.add(prefix)
    return issues


def _packet_rules(rules: _Rules, packet: dict, path: tuple, declared: set[str]) -> list[Issue]:
    issues = []
    message_name = phenopackets.Phenopacket.DESCRIPTOR.full_name
    for where, term in ontology_ids(packet, message_name, path):
        match = CURIE.fullmatch(term)
        if match is None:
            continue  # the schema reports malformed CURIEs
        prefix = match.group(1)
        if prefix not in declared:
            issues.append(
                rules.error("undeclared-prefix", f"No ontology corresponding to ID '{term}' found in MetaData", where)
            )
        if prefix == "HP" and not HPO_ID.fullmatch(term):
            issues.append(rules.error("malformed-hpo-id", f"{term!r} is not a well-formed HPO id (HP:nnnnnnn)", where))

    issues += _gene_id_rules(rules, packet, path)
    issues += _feature_rules(rules, _list(packet.get("phenotypicFeatures")), (*path, "phenotypicFeatures"))
    biosample_ids = _unique_ids(rules, _list(packet.get("biosamples")), (*path, "biosamples"), "biosample", issues)
    _unique_ids(rules, _list(packet.get("interpretations")), (*path, "interpretations"), "interpretation", issues)

    subject = packet.get("subject")
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    known = biosample_ids | ({subject_id} if isinstance(subject_id, str) else set())
    for i, biosample in enumerate(_list(packet.get("biosamples"))):
        individual = biosample.get("individualId") if isinstance(biosample, dict) else None
        if isinstance(individual, str) and subject_id is not None and individual != subject_id:
            issues.append(
                rules.warning(
                    "unknown-reference",
                    f"biosample individualId {individual!r} is not the subject ({subject_id!r})",
                    (*path, "biosamples", i, "individualId"),
                )
            )
    for i, interpretation in enumerate(_list(packet.get("interpretations"))):
        diagnosis = interpretation.get("diagnosis") if isinstance(interpretation, dict) else None
        calls = _list(diagnosis.get("genomicInterpretations")) if isinstance(diagnosis, dict) else []
        for j, call in enumerate(calls):
            ref = call.get("subjectOrBiosampleId") if isinstance(call, dict) else None
            if isinstance(ref, str) and ref not in known:
                where = (*path, "interpretations", i, "diagnosis", "genomicInterpretations", j, "subjectOrBiosampleId")
                issues.append(
                    rules.warning(
                        "unknown-reference",
                        f"subjectOrBiosampleId {ref!r} is neither the subject nor a biosample",
                        where,
                    )
                )
    return issues


def _gene_id_rules(rules: _Rules, packet: dict, path: tuple) -> list[Issue]:
    """A gene's ids that are not CURIEs (`ENSG00000196839`, `2200`): the spec says they SHOULD be (HGNC:3477),
    and collections (PhEval's corpora) give bare Ensembl ids, so a warning, not a refusal."""
    issues = []
    for i, interpretation in enumerate(_list(packet.get("interpretations"))):
        diagnosis = interpretation.get("diagnosis") if isinstance(interpretation, dict) else None
        calls = _list(diagnosis.get("genomicInterpretations")) if isinstance(diagnosis, dict) else []
        for j, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            where = (*path, "interpretations", i, "diagnosis", "genomicInterpretations", j)
            variant = call.get("variantInterpretation")
            descriptor = variant.get("variationDescriptor") if isinstance(variant, dict) else None
            genes = [(("gene",), call.get("gene"))]
            if isinstance(descriptor, dict):
                genes.append(
                    (("variantInterpretation", "variationDescriptor", "geneContext"), descriptor.get("geneContext"))
                )
            for at, gene in genes:
                if not isinstance(gene, dict):
                    continue
                named = [("valueId", gene.get("valueId"))]
                named += [
                    ((name, n), v) for name in ("alternateIds", "xrefs") for n, v in enumerate(_list(gene.get(name)))
                ]
                for key, value in named:
                    if isinstance(value, str) and value.strip() and not CURIE.fullmatch(value):
                        keys = key if isinstance(key, tuple) else (key,)
                        message = f"gene id {value!r} is not a CURIE (prefix:id, e.g. HGNC:3477), as the spec says it should be"
                        issues.append(rules.warning("not-curie", message, (*where, *at, *keys)))
    return issues


def _unique_ids(rules: _Rules, items: list, path: tuple, what: str, issues: list[Issue]) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item_id, str):
            continue
        if item_id in seen:
            issues.append(rules.error("duplicate-id", f"{what} id {item_id!r} is used twice", (*path, i, "id")))
        seen.add(item_id)
    return seen


def _feature_rules(rules: _Rules, features: list, path: tuple) -> list[Issue]:
    """A feature listed twice as it is, or both observed and excluded. The same term observed again with
    another onset or severity is another observation of it, not a repeat."""
    issues = []
    state: dict[str, bool] = {}
    seen: dict[str, list[Any]] = {}  # by term: a feature is compared with those of its own term only
    for i, feature in enumerate(features):
        term = feature.get("type") if isinstance(feature, dict) else None
        term_id = term.get("id") if isinstance(term, dict) else None
        if not isinstance(term_id, str):
            continue
        excluded = bool(feature.get("excluded", False))
        same_term = seen.setdefault(term_id, [])
        repeated = feature in same_term
        same_term.append(feature)
        if term_id in state:
            where = (*path, i, "type", "id")
            if state[term_id] == excluded:
                if repeated:
                    issues.append(
                        rules.warning("duplicate-feature", f"phenotypic feature {term_id} is listed twice", where)
                    )
            else:
                issues.append(
                    rules.warning(
                        "conflicting-feature", f"phenotypic feature {term_id} is both observed and excluded", where
                    )
                )
        state.setdefault(term_id, excluded)
    return issues


def _pedigree_rules(rules: _Rules, pedigree: object) -> list[Issue]:
    issues: list[Issue] = []
    persons = _list(pedigree.get("persons")) if isinstance(pedigree, dict) else []
    seen: set[tuple] = set()
    for i, person in enumerate(persons):
        if not isinstance(person, dict):
            continue
        key = (person.get("familyId"), person.get("individualId"))
        if key in seen:
            issues.append(
                rules.error(
                    "duplicate-id",
                    f"pedigree person {key[1]!r} of family {key[0]!r} is listed twice",
                    ("pedigree", "persons", i, "individualId"),
                )
            )
        seen.add(key)
    return issues
