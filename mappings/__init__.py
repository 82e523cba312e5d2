"""Mappings as data: every code table of the project, and their one loader.

Every table is a YAML file under this folder (its format, source and version are documented at the top
of each file); the tables one part of the gateway reads sit in a subfolder named after it (beacon/,
security/, validation/, variants/, translators/; profiles/ holds the translation profiles). This module
only reads them:

- `load_registry()`  -> CodeSystemRegistry: FHIR system URI <-> CURIE prefix, metaData resources
- `load_profile(name)`, `profile_names()`, `detect_profile(bundle)`: national / generic profiles
- `load_tables()`    -> Tables: gender -> sex, LOINC answer lists, specimen types, RefSeq chromosomes
- `load_reverse_tables()`, `load_export_profile(name)`: the same tables read backwards, and what the
  phenopacket -> FHIR direction writes per profile
- `load_table(name)` -> one table as plain data, e.g. `load_table("variants/chromosomes")`
- `load_variant_components()` -> the variant component table (translators/fhir/variant_parts.py)
- `load_gene_symbols()` -> GeneSymbols: HGNC approved, previous and alias symbols -> HGNC ids (offline)

YAML is read with a loader that rejects duplicate keys, so a table cannot silently lose a row.
"""

from __future__ import annotations

import fnmatch
import gzip
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import yaml

MAPPINGS_DIR = Path(__file__).resolve().parent
PROFILES_DIR = MAPPINGS_DIR / "profiles"
CURIE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*):([^\s:]+)$")


class DuplicateKeyError(ValueError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> dict:
    """One mapping file, duplicate keys rejected."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_StrictLoader)  # a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping at the top level")
    return data


def normalise_system(uri: str) -> str:
    """The matching key of a system URI: no scheme, no leading 'www.', no trailing '/', lower case."""
    key = uri.strip().lower()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    if key.startswith("www."):
        key = key[4:]
    return key.rstrip("/")


# --- code systems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSystem:
    prefix: str
    name: str
    id: str
    url: str
    version: str
    iri_prefix: str
    uris: tuple[str, ...]
    local_id: re.Pattern
    curie_in_fhir: bool = False  # FHIR codes of this system carry the prefix (HP:0001250)
    # A family of local code systems under one URI namespace (the MII modules' CodeSystems): the CURIE's
    # local part is `<system URI after the namespace>#<code>`, so that the coding can be written back.
    namespace: str | None = None

    def fhir_code(self, curie: str) -> str:
        """The code a FHIR coding of this system carries for `curie` (reverse of `curie_in`)."""
        local = curie.split(":", 1)[1] if ":" in curie else curie
        if self.namespace is not None:
            return local.rpartition("#")[2]
        return f"{self.prefix}:{local}" if self.curie_in_fhir else local

    def fhir_system(self, curie: str) -> str | None:
        """The system URI of a namespace family member named in `curie` (None for ordinary systems)."""
        if self.namespace is None:
            return None
        path = curie.split(":", 1)[1].rpartition("#")[0] if ":" in curie else ""
        return self.namespace.rstrip("/") + "/" + path if path else None

    def resource(self, version: str | None = None) -> dict:
        """The Phenopacket `metaData.resources` entry (protobuf JSON names)."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "version": version or self.version,
            "namespacePrefix": self.prefix,
            "iriPrefix": self.iri_prefix,
        }


class CodeSystemRegistry:
    """FHIR system URIs <-> CURIE prefixes, with each prefix's resource metadata."""

    def __init__(self, systems: dict[str, CodeSystem]):
        self.systems = systems
        self._by_uri: dict[str, CodeSystem] = {}
        self._by_prefix_lower = {p.lower(): s for p, s in systems.items()}
        self._namespaces = sorted(
            ((normalise_system(s.namespace), s) for s in systems.values() if s.namespace),
            key=lambda item: -len(item[0]),
        )
        for system in systems.values():
            for uri in system.uris:
                key = normalise_system(uri)
                other = self._by_uri.get(key)
                if other is not None and other is not system:
                    raise ValueError(f"system URI {uri} claimed by both {other.prefix} and {system.prefix}")
                self._by_uri[key] = system

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset(self.systems)

    def lookup(self, system_uri: str | None) -> CodeSystem | None:
        if not system_uri or not isinstance(system_uri, str):
            return None
        key = normalise_system(system_uri)
        found = self._by_uri.get(key)
        if found is None:
            found = next((s for space, s in self._namespaces if key.startswith(space + "/")), None)
        return found

    @staticmethod
    def _namespace_path(system: CodeSystem, system_uri: str) -> str | None:
        """The part of `system_uri` after the family's namespace, in the sender's spelling."""
        uri = system_uri.strip().rstrip("/")
        uri = uri.split("://", 1)[1] if "://" in uri else uri
        uri = uri[4:] if uri.lower().startswith("www.") else uri
        space = normalise_system(system.namespace or "")
        if not uri.lower().startswith(space + "/"):
            return None
        return uri[len(space) + 1 :] or None

    def prefix_for(self, system_uri: str | None) -> str | None:
        found = self.lookup(system_uri)
        return found.prefix if found else None

    def curie(self, system_uri: str | None, code: str | None) -> str | None:
        """`PREFIX:local` for a coding, or None when the system is unknown or the code malformed.

        Bare codes gain their prefix (`558` under Orphanet -> `ORPHA:558`); codes already written as a
        CURIE keep their local part under the registry's canonical prefix spelling.
        """
        system = self.lookup(system_uri)
        if system is None or not isinstance(code, str) or not code:
            return None
        if system.namespace is not None:
            path = self._namespace_path(system, str(system_uri))
            return self.curie_in(system, f"{path}#{code.strip()}") if path else None
        return self.curie_in(system, code)

    @staticmethod
    def curie_in(system: CodeSystem, code: str) -> str | None:
        code = code.strip()
        head, sep, tail = code.partition(":")
        if sep and head.lower() in (system.prefix.lower(), "orphanet" if system.prefix == "ORPHA" else ""):
            code = tail
        if not system.local_id.match(code):
            return None
        return f"{system.prefix}:{code}"

    def system_for_prefix(self, prefix: str) -> CodeSystem | None:
        return self.systems.get(prefix) or self._by_prefix_lower.get(prefix.lower())


@cache
def load_registry() -> CodeSystemRegistry:
    raw = load_yaml(MAPPINGS_DIR / "code_systems.yaml")
    systems = {}
    for prefix, entry in raw.items():
        if not CURIE_RE.match(f"{prefix}:x"):
            raise ValueError(f"code_systems.yaml: {prefix!r} is not a valid CURIE prefix")
        systems[prefix] = CodeSystem(
            prefix=prefix,
            name=entry["name"],
            id=entry["id"],
            url=entry["url"],
            version=str(entry.get("version") or "unspecified"),
            iri_prefix=entry["iri_prefix"],
            uris=tuple(entry["uris"]),
            local_id=re.compile(entry["local_id"]),
            curie_in_fhir=entry.get("fhir_code") == "curie",
            namespace=entry.get("namespace"),
        )
    return CodeSystemRegistry(systems)


# --- profiles -------------------------------------------------------------------------------

PROFILE_LIST_KEYS = (
    "detect",
    "detect_composition_types",
    "vital_status_observation_codes",
    "identifier_systems",
    "disease_coding_priority",
    "phenotype_prefixes",
    "phenotype_condition_profiles",
    "procedure_coding_priority",
    "medication_coding_priority",
    "variant_observation_codes",
    "diagnostic_implication_codes",
    "presence_component_codes",
    "severity_component_codes",
    "sex_extensions",
    "transcript_reference_prefixes",
    "implementation_guides",
    "cause_of_death_categories",
    "cause_of_death_observation_codes",
    "not_measurement_codes",
    "absence_code_systems",
    "procedure_code_extensions",
    "tnm_finding_prefixes",
    "variant_absent_interpretations",
    "specimen_source_extensions",
    "modifier_component_codes",
    "onset_component_codes",
)


@dataclass(frozen=True)
class Profile:
    """A translation profile (see mappings/profiles/generic.yaml for the meaning of each field)."""

    name: str
    description: str
    detect: tuple[str, ...]
    identifier_systems: tuple[str, ...]
    disease_coding_priority: tuple[str, ...]
    phenotype_prefixes: frozenset[str]
    phenotype_condition_profiles: frozenset[str]
    procedure_coding_priority: tuple[str, ...]
    medication_coding_priority: tuple[str, ...]
    variant_observation_codes: frozenset[str]
    diagnostic_implication_codes: frozenset[str]
    presence_component_codes: frozenset[str]
    severity_component_codes: frozenset[str]
    sex_extensions: dict[str, dict[str, str]] = field(default_factory=dict)  # url -> code -> Sex
    transcript_reference_prefixes: tuple[str, ...] = ()
    implementation_guides: tuple[str, ...] = ()
    cause_of_death_categories: frozenset[str] = frozenset()
    cause_of_death_observation_codes: frozenset[str] = frozenset()  # "PREFIX:code" whose coded value is the cause
    not_measurement_codes: frozenset[str] = frozenset()
    absence_code_systems: frozenset[str] = frozenset()  # systems whose codes say "none known" / "no information"
    procedure_code_extensions: tuple[str, ...] = ()  # extension URLs naming what an uncoded Procedure did
    tnm_finding_prefixes: frozenset[str] = frozenset()  # CURIE prefixes of TNM category values
    variant_absent_interpretations: frozenset[str] = frozenset()  # "<system>|<code>"
    specimen_source_extensions: frozenset[str] = frozenset()  # Specimen extension urls: taken from another
    modifier_component_codes: frozenset[str] = frozenset()  # "PREFIX:code": component value = a clinical modifier
    onset_component_codes: frozenset[str] = frozenset()  # "PREFIX:code": component value = the onset (an HPO term)
    detect_composition_types: frozenset[str] = frozenset()
    vital_status_observation_codes: frozenset[str] = frozenset()
    vital_status_values: dict[str, str] = field(default_factory=dict)  # "system|code" -> VitalStatus.Status
    # FamilyMemberHistory extension url -> {"system|code": PED AffectedStatus}
    family_affected_extensions: dict[str, dict[str, str]] = field(default_factory=dict)
    # "<system>|<code>" of Observations about the variants they derive from -> the extension name they carry as
    variant_annotation_codes: dict[str, str] = field(default_factory=dict)

    def identifier_rank(self, system: str) -> int | None:
        """Position of an identifier system in the priority list (lower is better), None if not listed."""
        return _identifier_rank(self.identifier_systems, system)


@lru_cache(maxsize=4096)
def _identifier_rank(patterns: tuple[str, ...], system: str) -> int | None:
    # cached: every translation of a Patient ranks its identifiers, and fnmatch is slow
    for rank, pattern in enumerate(patterns):
        if pattern == "*" or pattern == system or fnmatch.fnmatchcase(system, pattern):
            return rank
    return None


def _raw_profile(name: str, seen: tuple[str, ...] = ()) -> dict:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names())}")
    raw = load_yaml(path)
    if raw.get("name") != name:
        raise ValueError(f"{path.name}: name must be {name!r}")
    parent = raw.get("extends")
    if parent:
        if parent in seen:
            raise ValueError(f"profile inheritance cycle: {' -> '.join((*seen, name, parent))}")
        merged = _raw_profile(parent, (*seen, name))
        merged.update({k: v for k, v in raw.items() if k != "extends"})
        return merged
    return raw


@cache
def load_profile(name: str) -> Profile:
    raw = _raw_profile(name)
    lists = {key: raw.get(key) or [] for key in PROFILE_LIST_KEYS}
    return Profile(
        name=name,
        description=raw.get("description", ""),
        detect=tuple(lists["detect"]),
        identifier_systems=tuple(lists["identifier_systems"]),
        disease_coding_priority=tuple(lists["disease_coding_priority"]),
        phenotype_prefixes=frozenset(lists["phenotype_prefixes"]),
        phenotype_condition_profiles=frozenset(lists["phenotype_condition_profiles"]),
        procedure_coding_priority=tuple(lists["procedure_coding_priority"]),
        medication_coding_priority=tuple(lists["medication_coding_priority"]),
        variant_observation_codes=frozenset(lists["variant_observation_codes"]),
        diagnostic_implication_codes=frozenset(lists["diagnostic_implication_codes"]),
        presence_component_codes=frozenset(lists["presence_component_codes"]),
        severity_component_codes=frozenset(lists["severity_component_codes"]),
        sex_extensions={ext["url"]: dict(ext["codes"]) for ext in lists["sex_extensions"]},
        transcript_reference_prefixes=tuple(lists["transcript_reference_prefixes"]),
        implementation_guides=tuple(lists["implementation_guides"]),
        cause_of_death_categories=frozenset(lists["cause_of_death_categories"]),
        cause_of_death_observation_codes=frozenset(lists["cause_of_death_observation_codes"]),
        not_measurement_codes=frozenset(lists["not_measurement_codes"]),
        absence_code_systems=frozenset(lists["absence_code_systems"]),
        procedure_code_extensions=tuple(lists["procedure_code_extensions"]),
        tnm_finding_prefixes=frozenset(lists["tnm_finding_prefixes"]),
        variant_absent_interpretations=frozenset(lists["variant_absent_interpretations"]),
        specimen_source_extensions=frozenset(lists["specimen_source_extensions"]),
        modifier_component_codes=frozenset(lists["modifier_component_codes"]),
        onset_component_codes=frozenset(lists["onset_component_codes"]),
        detect_composition_types=frozenset(lists["detect_composition_types"]),
        vital_status_observation_codes=frozenset(lists["vital_status_observation_codes"]),
        vital_status_values=dict(raw.get("vital_status_values") or {}),
        family_affected_extensions={
            url: dict(values) for url, values in (raw.get("family_affected_extensions") or {}).items()
        },
        variant_annotation_codes=dict(raw.get("variant_annotation_codes") or {}),
    )


@cache
def _profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))


def profile_names() -> list[str]:
    """The installed profiles (package data: read from disk once per process, not per request)."""
    return list(_profile_names())


def implementation_guides() -> list[str]:
    """The FHIR implementation guides the installed profiles follow (for the CapabilityStatement)."""
    found: dict[str, None] = {}
    for name in profile_names():
        found.update(dict.fromkeys(load_profile(name).implementation_guides))
    return list(found)


def _meta_profiles(bundle: dict):
    def of(resource) -> list:
        meta = resource.get("meta") if isinstance(resource, dict) else None
        urls = meta.get("profile") if isinstance(meta, dict) else None
        return urls if isinstance(urls, list) else []

    yield from of(bundle)
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            yield from of(entry.get("resource"))


def detect_profile(bundle: dict) -> str:
    """The profile whose `detect` prefixes match a meta.profile URL of the bundle or its resources, else
    the one whose `detect_composition_types` names the type of a document Bundle's Composition.

    National profiles are tried before "generic"; no match at all gives "generic".
    """
    candidates = [load_profile(n) for n in profile_names() if n != "generic"]
    for url in _meta_profiles(bundle):
        if not isinstance(url, str):
            continue
        for profile in candidates:
            if any(url.startswith(prefix) for prefix in profile.detect):
                return profile.name
    types = _composition_types(bundle)
    for profile in candidates:
        if types & profile.detect_composition_types:
            return profile.name
    return "generic"


def _composition_types(bundle: dict) -> set[str]:
    """`LOINC:60591-5`-style codes of the Composition types in a Bundle (LOINC and SNOMED CT only)."""
    prefixes = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMEDCT"}
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    found = set()
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Composition":
            continue
        concept = resource.get("type")
        for coding in concept.get("coding", []) if isinstance(concept, dict) else ():
            if isinstance(coding, dict) and coding.get("system") in prefixes and isinstance(coding.get("code"), str):
                found.add(f"{prefixes[coding['system']]}:{coding['code']}")
    return found


# --- other tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    gender_to_sex: dict[str, str]
    answers: dict[str, dict]  # section -> {answer CURIE -> target}
    sampled_tissue: dict[str, dict]  # "system|code" -> {id, label}
    chromosomes: dict[str, str]  # NC_ accession (no version) -> chromosome name
    accession_assemblies: dict[str, str] = field(default_factory=dict)  # NC_ accession.version -> assembly
    ucum_units: dict[str, str] = field(default_factory=dict)  # unit text -> UCUM CURIE (translators/ucum_units)
    laterality: dict[str, dict] = field(default_factory=dict)  # "system|code" -> {id, label} (translators/laterality)
    no_side: frozenset[str] = frozenset()  # "system|code" laterality codings that name no side
    schedules: dict[str, dict] = field(default_factory=dict)  # timing code or "n/period unit" -> {id, label}


@cache
def load_tables() -> Tables:
    sex = load_yaml(MAPPINGS_DIR / "sex.yaml")
    answers = load_yaml(MAPPINGS_DIR / "loinc_answers.yaml")
    specimens = load_yaml(MAPPINGS_DIR / "specimen_types.yaml")
    chromosomes = load_table("variants/chromosomes")
    ucsc = chromosomes["ucsc_names"]
    return Tables(
        gender_to_sex=dict(sex["administrative_gender"]),
        answers={section: dict(body["answers"]) for section, body in answers.items()},
        sampled_tissue=dict(specimens["sampled_tissue"]),
        chromosomes={
            accession.split(".")[0]: ucsc.get(chrom, chrom)
            for chroms in chromosomes["assemblies"].values()
            for chrom, (accession, _) in chroms.items()
        },
        accession_assemblies={
            accession: assembly
            for assembly, chroms in chromosomes["assemblies"].items()
            for accession, _ in chroms.values()
        },
        ucum_units=dict(load_table("translators/ucum_units")["units"]),
        laterality=dict(load_table("translators/laterality")["laterality"]),
        no_side=frozenset(load_table("translators/laterality").get("no_side") or ()),
        schedules=dict(load_table("translators/dose_schedules")["schedules"]),
    )


def load_table(name: str) -> dict:
    """One data table by its path under mappings/ without the suffix (read afresh: callers cache)."""
    path = (MAPPINGS_DIR / f"{name}.yaml").resolve()
    if MAPPINGS_DIR not in path.parents:
        raise KeyError(f"no table {name!r} under mappings/")
    return load_yaml(path)


GENE_SYMBOLS = MAPPINGS_DIR / "genes" / "hgnc_symbols.tsv.gz"


@dataclass(frozen=True)
class GeneMatch:
    """What a gene symbol names: the HGNC ids it may mean and how it was found."""

    ids: tuple[str, ...]  # HGNC CURIEs; more than one = ambiguous
    how: str  # "approved" | "previous" | "alias"


@dataclass(frozen=True)
class GeneSymbols:
    """The offline HGNC symbol table (mappings/genes/hgnc_symbols.tsv.gz, see its build script)."""

    source: str
    version: str
    approved: dict[str, str]  # upper-case approved symbol -> HGNC CURIE
    symbol_of: dict[str, str]  # HGNC CURIE -> approved symbol
    previous: dict[str, tuple[str, ...]]  # upper-case previous symbol -> HGNC CURIEs
    alias: dict[str, tuple[str, ...]]  # upper-case alias symbol -> HGNC CURIEs

    def resolve(self, symbol: str) -> GeneMatch | None:
        """Approved symbols win, then previous symbols, then aliases (HGNC's own order of authority)."""
        key = symbol.strip().upper()
        if key in self.approved:
            return GeneMatch((self.approved[key],), "approved")
        for how, table in (("previous", self.previous), ("alias", self.alias)):
            if key in table:
                return GeneMatch(table[key], how)
        return None


@cache
def load_gene_symbols() -> GeneSymbols:
    header: dict[str, str] = {}
    approved: dict[str, str] = {}
    symbol_of: dict[str, str] = {}
    previous: dict[str, list[str]] = {}
    alias: dict[str, list[str]] = {}
    with gzip.open(GENE_SYMBOLS, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                name, _, value = line[1:].partition(":")
                header[name.strip()] = value.strip()
                continue
            curie, symbol, prev, aliases = line.rstrip("\n").split("\t")
            approved[symbol.upper()] = curie
            symbol_of[curie] = symbol
            for table, names in ((previous, prev), (alias, aliases)):
                for name in filter(None, names.split(",")):
                    ids = table.setdefault(name.upper(), [])
                    if curie not in ids:
                        ids.append(curie)
    return GeneSymbols(
        source=header["source"],
        version=header["version"],
        approved=approved,
        symbol_of=symbol_of,
        previous={k: tuple(v) for k, v in previous.items()},
        alias={k: tuple(v) for k, v in alias.items()},
    )


@cache
def load_variant_components() -> dict:
    """mappings/variants/variant_components.yaml: variant components' homes, symbolic alleles, modifier signals."""
    return load_table("variants/variant_components")


def mapping_files() -> list[Path]:
    """Every YAML file under mappings/ (for the tests that walk them all)."""
    return sorted(MAPPINGS_DIR.rglob("*.yaml"))


# --- the reverse direction (phenopacket -> FHIR) ------------------------------------------------


def invert(table: dict, preferred: dict | None, where: str) -> dict:
    """`table` read backwards (target -> key). Two keys sharing a target need a `preferred` choice."""
    preferred = preferred or {}
    out: dict = {}
    for key, target in table.items():
        target = target["id"] if isinstance(target, dict) else target
        if target in out and target not in preferred:
            raise ValueError(f"{where}: {out[target]!r} and {key!r} both map to {target!r}; add a reverse entry")
        out.setdefault(target, key)
    for target, key in preferred.items():
        if key not in table:
            raise ValueError(f"{where}: reverse entry {key!r} is not a key of the table")
        out[target] = key
    return out


@dataclass(frozen=True)
class ReverseTables:
    sex_to_gender: dict[str, str]
    answers: dict[str, dict]  # section -> {target (CURIE id, enum name or keyword) -> answer CURIE}
    assembly_aliases: dict[str, str]  # hg38 -> GRCh38
    sampled_tissue: dict[str, str]  # UBERON id -> "<system URI>|<code>"
    chromosomes: dict[tuple[str, str], str]  # (assembly, name: "2", "X", "MT" or "M") -> versioned NC_ accession
    chromosome_names: dict[str, str]  # NC_ accession without version -> name (the forward table)
    schedules: dict[str, dict] = field(default_factory=dict)  # NCIT schedule id -> FHIR Timing.repeat
    laterality: dict[str, str] = field(default_factory=dict)  # HP laterality id -> "<system URI>|<code>"


def _rhythms(schedules: dict[str, dict]) -> dict[str, dict]:
    """NCIT schedule id -> the Timing.repeat of its first rhythm row (`once`: count 1) in dose_schedules.yaml."""
    out: dict[str, dict] = {}
    for key, row in schedules.items():
        match = re.fullmatch(r"(\d+)/(\d+)([a-z]+)", key)
        if key == "once":
            out.setdefault(row["id"], {"count": 1})
        elif match:
            frequency, period, unit = match.groups()
            out.setdefault(row["id"], {"frequency": int(frequency), "period": int(period), "periodUnit": unit})
    return out


@cache
def load_reverse_tables() -> ReverseTables:
    sex = load_yaml(MAPPINGS_DIR / "sex.yaml")
    answers = load_yaml(MAPPINGS_DIR / "loinc_answers.yaml")
    specimens = load_yaml(MAPPINGS_DIR / "specimen_types.yaml")
    tables = load_tables()
    chromosome_table = load_table("variants/chromosomes")
    ucsc = chromosome_table["ucsc_names"]
    accessions = {}
    for assembly, chroms in chromosome_table["assemblies"].items():
        for chrom, (accession, _) in chroms.items():
            accessions[(assembly, chrom)] = accessions[(assembly, ucsc.get(chrom, chrom))] = accession
    return ReverseTables(
        sex_to_gender=invert(sex["administrative_gender"], None, "sex.yaml"),
        answers={
            section: invert(body["answers"], body.get("reverse"), f"loinc_answers.yaml {section}")
            for section, body in answers.items()
        },
        assembly_aliases=dict(answers["genome_assembly"].get("aliases") or {}),
        sampled_tissue=invert(specimens["sampled_tissue"], specimens.get("reverse"), "specimen_types.yaml"),
        chromosomes=accessions,
        chromosome_names=dict(tables.chromosomes),
        schedules=_rhythms(tables.schedules),
        # the first row naming a side wins: SNOMED CT, the international code, heads the table
        laterality={row["id"]: key for key, row in reversed(list(tables.laterality.items()))},
    )


@dataclass(frozen=True)
class ExportProfile:
    """What the phenopacket -> FHIR direction writes for one profile (the `export` key of its file)."""

    name: str
    meta_profiles: dict[str, tuple[str, ...]]
    phenotype_presence: str  # "value" | "component"
    system_uris: dict[str, str]  # CURIE prefix -> system URI written
    sex_extension: dict | None  # {url, system, codes: {Sex: code}} or None
    variant_code: str  # "PREFIX:code": first of variant_observation_codes
    implication_code: str  # "<system URI>|<code>": first of diagnostic_implication_codes
    presence_component: str  # "PREFIX:code": first of presence_component_codes
    severity_component: str  # "PREFIX:code": first of severity_component_codes
    profile: Profile
    modifier_component: str | None = None  # "PREFIX:code": first of modifier_component_codes
    onset_component: str | None = None  # "PREFIX:code": first of onset_component_codes

    def system_uri(self, system: CodeSystem, curie: str | None = None) -> str:
        """The system URI written for `system` (for a namespace family: the member `curie` names)."""
        member = system.fhir_system(curie) if curie else None
        return self.system_uris.get(system.prefix) or member or system.uris[0]


@cache
def load_export_profile(name: str) -> ExportProfile:
    raw = _raw_profile(name)
    export = raw.get("export") or {}
    presence = export.get("phenotype_presence", "value")
    if presence not in ("value", "component"):
        raise ValueError(f"profile {name}: phenotype_presence must be value or component, not {presence!r}")
    sex_extension = None
    for ext in raw.get("sex_extensions") or []:
        if ext.get("reverse"):
            sex_extension = {"url": ext["url"], "system": ext["system"], "codes": dict(ext["reverse"])}
            break
    return ExportProfile(
        name=name,
        meta_profiles={k: tuple(v) for k, v in (export.get("meta_profiles") or {}).items()},
        phenotype_presence=presence,
        system_uris=dict(export.get("system_uris") or {}),
        sex_extension=sex_extension,
        variant_code=raw["variant_observation_codes"][0],
        implication_code=raw["diagnostic_implication_codes"][0],
        presence_component=raw["presence_component_codes"][0],
        severity_component=raw["severity_component_codes"][0],
        profile=load_profile(name),
        modifier_component=(raw.get("modifier_component_codes") or [None])[0],
        onset_component=(raw.get("onset_component_codes") or [None])[0],
    )


def data_tables() -> list[Path]:
    """Every data table: the mapping files less the translation profiles (those have their own checks)."""
    return [p for p in mapping_files() if PROFILES_DIR not in p.parents]
