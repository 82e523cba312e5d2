"""What the element families of one bundle and one patient share.

`BundleSource` is the read-only bundle side (profile, tables, entries, reference index, id functions);
`PatientContext` collects what one patient's translation accumulates across families: the issues
(in the order found: golden outputs depend on it), the CURIE prefixes used (for metaData.resources)
and the entries consumed. Its helpers turn codings into OntologyClasses and dates into ages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from weakref import WeakKeyDictionary

from gateway.issues import Issue
from mappings import CodeSystem, CodeSystemRegistry, Profile, Tables
from translators.ages import age_element, parse_fhir_date, whole_years
from translators.fhir.common import IdFunctions, codings
from translators.fhir.references import BundleIndex


@dataclass
class BundleSource:
    profile: Profile
    registry: CodeSystemRegistry
    tables: Tables
    ids: IdFunctions
    now: datetime
    today: date
    namespace: str
    created_by: str
    resources: list[dict | None] = field(default_factory=list)  # per entry; None when it has no resource
    full_urls: list[str | None] = field(default_factory=list)
    index: BundleIndex = field(default_factory=BundleIndex)
    # Contained resources get positions after the entries ("virtual entries"): their container entry,
    # their JSON pointer, and their place in the container by local id.
    containers: dict[int, int] = field(default_factory=dict)
    pointers: dict[int, str] = field(default_factory=dict)
    contained_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    # Every reference resolved from one resource to another (source, reference, target): what
    # tests/translators/test_fhir_links.py holds against translators.fhir.links.
    resolved: list[tuple[int, str, int]] = field(default_factory=list)

    def add_contained(self, container: int, position: int, resource: dict) -> int:
        """Give a contained resource of entry `container` a position of its own; returns it."""
        i = len(self.resources)
        self.resources.append(resource)
        self.full_urls.append(None)
        self.containers[i] = container
        self.pointers[i] = f"/entry/{container}/resource/contained/{position}"
        rid = resource.get("id")
        if isinstance(rid, str) and rid:
            self.contained_ids.setdefault((container, rid), i)
        return i

    def entry_of(self, i: int) -> int:
        """The Bundle entry a position belongs to (a contained resource's container)."""
        return self.containers.get(i, i)

    def pointer(self, i: int) -> str:
        """The JSON pointer of the resource at position `i` in the input."""
        return self.pointers.get(i) or f"/entry/{i}/resource"

    def resolve(self, reference: str | None, source: int | None = None) -> int | None:
        """The position a reference points to, when it holds a resource (`#id` inside the same container)."""
        if isinstance(reference, str) and reference.startswith("#"):
            if source is None or len(reference) < 2:
                return None
            target = self.contained_ids.get((self.entry_of(source), reference[1:]))
        else:
            target = self.index.resolve(reference, None if source is None else self.entry_of(source))
            if target is None or target >= len(self.resources) or self.resources[target] is None:
                return None
        if target is not None and source is not None and isinstance(reference, str):
            self.resolved.append((source, reference, target))
        return target

    def entry_key(self, i: int) -> str:
        """A stable name of an entry for derived ids: Type/id, else its fullUrl, else its position."""
        resource = self.resources[i]
        rid = resource.get("id") if resource else None
        if i in self.containers:
            local = f"{resource['resourceType']}/{rid}" if resource and isinstance(rid, str) and rid else ""
            return f"{self.entry_key(self.containers[i])}{self.pointers[i]}#{local}"
        if resource is not None and isinstance(rid, str):
            return f"{resource['resourceType']}/{rid}"
        return self.full_urls[i] or f"entry-{i}"


# (system, code) -> (curie, prefix) per registry: a pure function of the two strings, asked about ten
# times per coding in a translation (routing, measurements, phenotypes), so kept, bounded.
_MAX_TERMS = 50_000
_TERMS: WeakKeyDictionary[CodeSystemRegistry, dict[tuple[str, str], tuple[str, str] | None]] = WeakKeyDictionary()


def _terms_of(registry: CodeSystemRegistry) -> dict[tuple[str, str], tuple[str, str] | None]:
    found = _TERMS.get(registry)
    if found is None:
        found = _TERMS[registry] = {}
    return found


def _term(registry: CodeSystemRegistry, system: str, code: str) -> tuple[str, str] | None:
    known: CodeSystem | None = registry.lookup(system)
    curie = registry.curie(system, code) if known is not None else None
    return None if known is None or curie is None else (curie, known.prefix)


class PatientContext:
    def __init__(self, source: BundleSource, index: int, patient: dict):
        self.source = source
        self.index = index  # the Patient's entry
        self.patient = patient
        self.subject_id: str | None = None
        self.birth: date | None = None
        self.death: date | None = None
        self.taxonomy: dict | None = None  # the subject's species (patient.individual), its biosamples' too
        self.issues: list[Issue] = []
        self.consumed: set[int] = set()  # entries whose content reached the phenopacket
        self.used: set[str] = set()  # CURIE prefixes used
        self.versions: dict[str, str] = {}  # used CURIE prefix -> version named by the sender
        # where the translation is: (phase, position) of the resource being translated (assemble.PHASES)
        self.place: tuple[int, int] | None = None
        self.version_places: dict[str, tuple[int, int]] = {}  # prefix -> the place that named its version

    @property
    def profile(self) -> Profile:
        return self.source.profile

    @property
    def tables(self) -> Tables:
        return self.source.tables

    # issues
    def warn(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.warning(code, message, location))

    def note(self, code: str, message: str, location: str) -> None:
        self.issues.append(Issue.info(code, message, location))

    # ids
    def derived_id(self, kind: str, *parts: str) -> str:
        """A pseudonymous id of an object of this subject, scoped to the dataset."""
        assert self.subject_id is not None
        return self.source.ids.derived(kind, self.source.namespace, self.subject_id, *parts)

    # terms
    def term_of(self, coding: dict, curie: str, prefix: str, concept: object = None, location: str = "") -> dict:
        self.used.add(prefix)
        version = coding.get("version")
        if isinstance(version, str) and version and prefix not in self.versions:
            self.versions[prefix] = version
            if self.place is not None:  # where it was named: the merge of parts orders versions by it
                self.version_places[prefix] = self.place
        display = coding.get("display")
        if isinstance(display, str) and display.strip():
            return {"id": curie, "label": display}
        # Phenopackets require a label. Take the sender's own words for the same concept
        # (its text, or another coding's display); the bare CURIE is the last resort.
        label = concept.get("text") if isinstance(concept, dict) else None
        if not (isinstance(label, str) and label.strip()):
            label = next(
                (
                    c["display"]
                    for c in codings(concept)
                    if isinstance(c, dict) and isinstance(c.get("display"), str) and c["display"].strip()
                ),
                None,
            )
        if not label:
            label = curie
            self.warn("label-missing", f"{curie} has no display; its label is the code itself", location)
        return {"id": curie, "label": label}

    def codings_described(self, concept: object) -> str:
        """The codings of a concept that was not taken, for a warning: each one's system, and why a coding of a
        system the gateway knows was not read (no 'None' for a coding without a system)."""
        known = {j for j, *_ in self.known_codings(concept)}
        said = []
        for j, coding in enumerate(codings(concept)):
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or not system:
                said.append(f"a coding without a system (code {code!r})")
            elif j in known:
                said.append(f"{system}, not in this profile's list")
            elif self.source.registry.prefix_for(system) is not None:
                said.append(f"{system}, whose code {code!r} is not a well-formed code of it")
            else:
                said.append(system)
        return ", ".join(sorted(set(said))) or "no codings"

    def known_codings(self, concept: object) -> Iterator[tuple[int, dict, str, str]]:
        """(index, coding, curie, prefix) for every coding of a known system with a well-formed code."""
        terms = _terms_of(self.source.registry)
        for j, coding in enumerate(codings(concept)):
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            if (system, code) in terms:
                term = terms[(system, code)]
            else:
                term = _term(self.source.registry, system, code)
                if len(terms) >= _MAX_TERMS:
                    terms.clear()
                terms[(system, code)] = term
            if term is not None:
                yield j, coding, term[0], term[1]

    def pick(self, concept: object, priority, location: str, what: str) -> tuple[dict, set[str]] | None:
        """The coding ranked best by `priority` as an OntologyClass, plus every known code of the concept."""
        best = None
        codes = set()
        for j, coding, curie, prefix in self.known_codings(concept):
            codes.add(curie)
            if prefix in priority:
                rank = priority.index(prefix)
                if best is None or rank < best[0]:
                    best = (rank, j, coding, curie, prefix)
        if best is None:
            self.warn(
                "unmapped-code",
                f"no coding of {what} is in a code system this profile maps ({self.codings_described(concept)})",
                location,
            )
            return None
        _, j, coding, curie, prefix = best
        return self.term_of(coding, curie, prefix, concept, f"{location}/coding/{j}"), codes

    def ontology(self, concept: object, prefixes, location: str) -> dict | None:
        """The first known coding (of `prefixes`, if given) as an OntologyClass, silently None otherwise
        (`location`: the concept's pointer, for the warning when the coding has no label; required, so that
        no warning goes out without one)."""
        for j, coding, curie, prefix in self.known_codings(concept):
            if prefixes is None or prefix in prefixes:
                return self.term_of(coding, curie, prefix, concept, f"{location}/coding/{j}")
        return None

    def states_absence(self, concept: object, location: str) -> bool:
        """True (with an information issue) when `concept` says there is nothing to record."""
        for coding in codings(concept):
            if isinstance(coding, dict) and coding.get("system") in self.profile.absence_code_systems:
                self.note("no-fact", f"{coding.get('code')}: a statement that there is nothing to record", location)
                return True
        return False

    # time
    def age_at(self, value: object, location: str) -> dict | None:
        when = parse_fhir_date(value, latest=False)
        if when is None:
            self.warn("fhir-value", f"unreadable date {value!r}", location)
            return None
        if self.birth is None:
            self.note("unmapped-element", "a date cannot become an age: the patient has no birthDate", location)
            return None
        years = whole_years(self.birth, when)
        if years < 0:
            self.warn("fhir-value", "date lies before the patient's birth", location)
            return None
        return age_element(years)
