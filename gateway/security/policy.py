"""Per-dataset disclosure policy: what each tier may see, and the re-identification defences.

Read from a dataset's `policy:` mapping in the configuration; every key has a safe default:

    security_level (on the dataset itself)   PUBLIC | REGISTERED | CONTROLLED   (default CONTROLLED)
    max_granularity   a granularity (a ceiling for every tier), or per tier:
                      {public: boolean, registered: count, controlled: record}, a tier's value may be
                      `none` (not served) or per entry type: {public: {g_variants: boolean, "*": none}}
    count_threshold   k: counts 1 … k-1 are never shown, the answer becomes boolean   (default 5)
    rounding          counts shown to PUBLIC/REGISTERED callers are rounded to this     (default 10)
    min_public_size   datasets with fewer individuals are not served to PUBLIC callers  (default 50)
    rare_allele_max_count   alleles seen at most this often are answered as absent to PUBLIC (default 2)
    allow_anonymous_phenotype_variant   count/record answers to anonymous callers for queries that combine
                      a variant with phenotype filters                                   (default false)
    grants            visa values granting CONTROLLED access besides the dataset's id and URL
    profile: open     everything above switched off (tests, demo data): record for every tier, no thresholds

Defaults by security level (a tier below the level is not served unless `max_granularity` opens it):
    PUBLIC      public boolean, registered count, controlled record
    REGISTERED  public none,    registered count, controlled record
    CONTROLLED  public none,    registered none,  controlled record
CONTROLLED callers see exact counts and records; the defences apply to PUBLIC and REGISTERED.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from gateway.config import Config, ConfigError, DatasetConfig
from gateway.security.caller import ANONYMOUS, CONTROLLED, PUBLIC, REGISTERED, TIERS, Caller, dataset_config
from mappings import load_table


class Granularity(StrEnum):
    """How much of an answer is shown, in ascending detail (Beacon v2 `requestedGranularity`).

    A StrEnum: members are the protocol's own strings, so they compare and serialise as them.
    """

    BOOLEAN = "boolean"
    COUNT = "count"
    RECORD = "record"

    @property
    def rank(self) -> int:
        return _RANK[self]


GRANULARITIES: tuple[str, ...] = tuple(g.value for g in Granularity)  # ascending detail
_RANK = {g: i for i, g in enumerate(Granularity)}


def coarsest(*granularities: str) -> Granularity:
    """The least detailed of `granularities` (each a Granularity or its string)."""
    return min((Granularity(g) for g in granularities), key=_RANK.__getitem__)


def finer(a: str, b: str) -> bool:
    """True when `a` shows more than `b`."""
    return _RANK[Granularity(a)] > _RANK[Granularity(b)]


DEFAULT_COUNT_THRESHOLD = 5
DEFAULT_ROUNDING = 10
DEFAULT_MIN_PUBLIC_SIZE = 50
DEFAULT_RARE_ALLELE_MAX_COUNT = 2
NOT_SERVED = None

_LEVEL_DEFAULTS: dict[str, dict[str, str | None]] = {
    PUBLIC: {PUBLIC: "boolean", REGISTERED: "count", CONTROLLED: "record"},
    REGISTERED: {PUBLIC: None, REGISTERED: "count", CONTROLLED: "record"},
    CONTROLLED: {PUBLIC: None, REGISTERED: None, CONTROLLED: "record"},
}
_KEYS = {
    "max_granularity",
    "count_threshold",
    "rounding",
    "min_public_size",
    "rare_allele_max_count",
    "allow_anonymous_phenotype_variant",
    "grants",
    "profile",
}
_OPEN = {
    "count_threshold": 0,
    "rounding": 1,
    "min_public_size": 0,
    "rare_allele_max_count": 0,
    "allow_anonymous_phenotype_variant": True,
}


@dataclass(frozen=True)
class DatasetPolicy:
    dataset_id: str
    security_level: str = CONTROLLED
    # tier -> entry path (or "*") -> granularity | None
    ceilings: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    count_threshold: int = DEFAULT_COUNT_THRESHOLD
    rounding: int = DEFAULT_ROUNDING
    min_public_size: int = DEFAULT_MIN_PUBLIC_SIZE
    rare_allele_max_count: int = DEFAULT_RARE_ALLELE_MAX_COUNT
    allow_anonymous_phenotype_variant: bool = False

    def ceiling(self, tier: str, entry_path: str | None) -> str | None:
        """The most detailed granularity `tier` may see for `entry_path`; None: the dataset is not served."""
        per_entry = self.ceilings[tier]
        if entry_path is not None and entry_path in per_entry:
            return per_entry[entry_path]
        return per_entry.get("*")

    def defended(self, tier: str) -> bool:
        return tier != CONTROLLED


def _granularity(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str) and value.lower() in GRANULARITIES:
        return value.lower()
    raise ConfigError(f"{where}: expected one of {', '.join(GRANULARITIES)} or none, got {value!r}")


def _int(raw: Mapping[str, Any], key: str, default: int, where: str, minimum: int = 0) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}/{key}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def policy_of(dataset: DatasetConfig) -> DatasetPolicy:
    """The policy of one dataset; raises ConfigError with the offending key's location."""
    where = f"datasets/{dataset.id}/policy"
    raw = dict(dataset.policy or {})
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    profile = raw.get("profile")
    if profile not in (None, "open", "default"):
        raise ConfigError(f"{where}/profile: expected 'open' or 'default', got {profile!r}")
    if profile == "open":
        base: dict[str, dict[str, str | None]] = {t: {"*": "record"} for t in TIERS}
        raw = {**_OPEN, **raw}
    else:
        base = {t: {"*": g} for t, g in _LEVEL_DEFAULTS[dataset.security_level].items()}
    ceilings = {t: dict(v) for t, v in base.items()}
    spec = raw.get("max_granularity")
    if isinstance(spec, str):
        cap = _granularity(spec, f"{where}/max_granularity")
        for tier in TIERS:
            ceilings[tier] = {
                e: (None if g is None or cap is None else coarsest(g, cap)) for e, g in ceilings[tier].items()
            }
    elif isinstance(spec, Mapping):
        for tier_name, value in spec.items():
            tier = str(tier_name).upper()
            if tier not in TIERS:
                raise ConfigError(f"{where}/max_granularity: unknown tier {tier_name!r}")
            if isinstance(value, Mapping):
                ceilings[tier] = {
                    **ceilings[tier],
                    **{str(e): _granularity(g, f"{where}/max_granularity/{tier_name}/{e}") for e, g in value.items()},
                }
            else:
                ceilings[tier] = {"*": _granularity(value, f"{where}/max_granularity/{tier_name}")}
    elif spec is not None:
        raise ConfigError(f"{where}/max_granularity: expected a granularity or a mapping per tier")
    allow = raw.get("allow_anonymous_phenotype_variant", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}/allow_anonymous_phenotype_variant: expected true or false")
    return DatasetPolicy(
        dataset_id=dataset.id,
        security_level=dataset.security_level,
        ceilings=ceilings,
        count_threshold=_int(raw, "count_threshold", DEFAULT_COUNT_THRESHOLD, where),
        rounding=_int(raw, "rounding", DEFAULT_ROUNDING, where, minimum=1),
        min_public_size=_int(raw, "min_public_size", DEFAULT_MIN_PUBLIC_SIZE, where),
        rare_allele_max_count=_int(raw, "rare_allele_max_count", DEFAULT_RARE_ALLELE_MAX_COUNT, where),
        allow_anonymous_phenotype_variant=allow,
    )


_POLICY_CACHE: dict[tuple[int, str], tuple[Config, DatasetPolicy]] = {}


def policy_for(config: Config, dataset_id: str) -> DatasetPolicy:
    # Config is frozen: a dataset's policy is read once per configuration object (the entry keeps
    # `config` alive, so its id cannot be reused while cached), not on every request.
    cached = _POLICY_CACHE.get((id(config), dataset_id))
    if cached is not None and cached[0] is config:
        return cached[1]
    policy = policy_of(dataset_config(config, dataset_id))
    if len(_POLICY_CACHE) > 4096:
        _POLICY_CACHE.clear()
    _POLICY_CACHE[(id(config), dataset_id)] = (config, policy)
    return policy


def allowed_granularity(
    config: Config, dataset_ids: Iterable[str], caller: Caller | None = None, entry_path: str | None = None
) -> Granularity:
    """The most detailed granularity every queried dataset allows `caller` (None: an anonymous caller).

    Per dataset: the caller's tier and the dataset's policy; a query over several datasets gets the
    coarsest ceiling among them. Callers have already left out the datasets not served at all.
    """
    caller = caller or ANONYMOUS
    allowed = Granularity.RECORD
    for dataset_id in dataset_ids:
        tier = caller.tier_for(dataset_config(config, dataset_id), config.node.base_url)
        ceiling = policy_for(config, dataset_id).ceiling(tier, entry_path)
        allowed = coarsest(allowed, ceiling or Granularity.BOOLEAN)  # not served: least detail
    return allowed


def returned_granularity(
    requested: str,
    config: Config,
    dataset_ids: Iterable[str],
    caller: Caller | None = None,
    entry_path: str | None = None,
) -> Granularity:
    return coarsest(requested, allowed_granularity(config, dataset_ids, caller, entry_path))


def check_policies(config: Config) -> None:
    """Fail at start-up, not at the first query, on a malformed policy."""
    for dataset in config.datasets:
        policy_of(dataset)


# --- the count rules, as pure functions (property-tested) -------------------------------------


def suppressed(count: int | None, threshold: int) -> bool:
    """A count that may not be shown: 1 … threshold-1 (0 is a plain "no")."""
    return count is not None and 0 < count < threshold


def rounded(count: int, step: int, threshold: int) -> int:
    """`count` (≥ threshold, or 0) to the nearest multiple of `step`, never below the threshold."""
    if count <= 0 or step <= 1:
        return count
    value = step * int((count + step / 2) // step)
    while value < max(threshold, 1):
        value += step
    return value


# --- counts inside records (mappings/security/record_counts.yaml says where) ----------------------

_DROP = object()


@dataclass(frozen=True)
class RecordCountRules:
    count_keys: frozenset[str]
    count_suffixes: tuple[str, ...]
    count_maps: frozenset[str]
    case_lists: frozenset[str]
    derived: frozenset[str]

    key_kinds: dict[str, tuple[bool, bool]] = field(default_factory=dict, compare=False)  # memo of key_kind

    def is_count_key(self, key: str) -> bool:
        return key in self.count_keys or key.endswith(self.count_suffixes)

    def key_kind(self, key: str) -> tuple[bool, bool]:
        """(names a case list, is a count key or count map: integers at and below it are counts)."""
        kind = (key in self.case_lists, self.is_count_key(key) or key in self.count_maps)
        if len(self.key_kinds) < 100_000:
            self.key_kinds[key] = kind
        return kind


@cache
def record_count_rules() -> RecordCountRules:
    raw = load_table("security/record_counts")
    return RecordCountRules(
        count_keys=frozenset(raw["count_keys"]),
        count_suffixes=tuple(raw["count_suffixes"]),
        count_maps=frozenset(raw["count_maps"]),
        case_lists=frozenset(raw["case_lists"]),
        derived=frozenset(raw["derived"]),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def protect_record(record: dict, threshold: int, step: int) -> tuple[dict, frozenset[str]]:
    """A record as a PUBLIC/REGISTERED caller may see it, and what was changed.

    Counts 1 … threshold-1 are removed, others rounded to `step`; a list of cases is removed when its
    length is small or would have to be rounded (a list cannot be); values derived from counts
    (frequencies) are removed from a record whose counts were not all shown exactly. Changes:
    "suppressed", "rounded", "cases", "derived".
    """
    if threshold <= 1 and step <= 1:
        return record, frozenset()  # no count can be suppressed or rounded, no case list dropped: unchanged
    rules = record_count_rules()
    kinds = rules.key_kinds
    changes: set[str] = set()

    def count(value: int) -> Any:
        if suppressed(value, threshold):
            changes.add("suppressed")
            return _DROP
        shown = rounded(value, step, threshold)
        if shown != value:
            changes.add("rounded")
        return shown

    def walk(node: Any, counting: bool) -> Any:
        kind = type(node)
        if kind is dict:
            out = {}
            for key, value in node.items():
                key_kind = kinds.get(key) or rules.key_kind(key)
                vtype = type(value)
                if vtype is str or value is None:  # the common leaves, skipped without a call
                    out[key] = value
                    continue
                if key_kind[0] and isinstance(value, list):
                    if value and (suppressed(len(value), threshold) or step > 1):
                        changes.add("cases")
                        continue
                    shown = walk(value, counting)
                elif _is_int(value) and (counting or key_kind[1]):
                    shown = count(value)
                else:
                    # every integer below a count map, or below a count key (a list of counts), is a count
                    shown = walk(value, counting or key_kind[1])
                if shown is not _DROP:
                    out[key] = shown
            return out
        if kind is list or isinstance(node, list):
            items = [count(v) if counting and _is_int(v) else walk(v, counting) for v in node]
            return [v for v in items if v is not _DROP]
        if isinstance(node, dict):  # a dict subclass: the same walk
            return walk(dict(node), counting)
        return node

    def strip_derived(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip_derived(v) for k, v in node.items() if k not in rules.derived}
        if isinstance(node, list):
            return [strip_derived(v) for v in node]
        return node

    shown = walk(record, False)
    if changes & {"suppressed", "rounded"} and _has_key(shown, rules.derived):
        shown = strip_derived(shown)
        changes.add("derived")
    return shown, frozenset(changes)


def _has_key(node: Any, keys: frozenset[str]) -> bool:
    if isinstance(node, dict):
        return any(k in keys or _has_key(v, keys) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_key(v, keys) for v in node)
    return False
