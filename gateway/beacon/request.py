"""The Beacon request model: GET query strings and POST bodies → one typed `BeaconRequest`.

Both forms real clients send are accepted: entry-type parameters flat in
`requestParameters` or nested under the entry type's group (`g_variant`), lists as
JSON arrays or comma-separated GET values, and the framework parameters
(`requestedGranularity`, `testMode`, `datasetIds`, `skip`, `limit`, `filters`) in GET too.
Anything malformed raises `BeaconRequestError` with Issues whose location names the
parameter (`/query/requestParameters/start` for POST, `?start` for GET).

Pagination: `skip` counts *pages* of `limit` records (beaconCommonComponents `Skip`:
"number of pages to skip"), so the first record returned is number `skip * limit`.
`limit: 0` asks for everything, capped at MAX_LIMIT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.beacon.registry import EntryType
from gateway.errors import BadInput
from gateway.issues import Issue
from gateway.security.policy import GRANULARITIES

API_VERSION = "v2.1.1"  # the schemas in ../shared/reference/beacon-v2 are tag v2.1.1
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_FILTERS = 50
INCLUDE_RESULTSET_RESPONSES = ("HIT", "MISS", "ALL", "NONE")
_DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_CURIE = re.compile(r"^\w[^:\s]*:\S+$")
_FRAMEWORK_GET = {
    "requestedGranularity",
    "includeResultsetResponses",
    "skip",
    "limit",
    "testMode",
    "datasetIds",
    "filters",
    "apiVersion",
    "requestedSchema",
}
_QUERY_KEYS = {
    "requestParameters",
    "filters",
    "includeResultsetResponses",
    "pagination",
    "requestedGranularity",
    "testMode",
}
_META_KEYS = {"apiVersion", "requestedSchemas", "$schema", "beaconId"}


class BeaconRequestError(BadInput, ValueError):
    """A malformed Beacon request; `issues` say which parameter and why."""

    code = "beacon-request"

    def __init__(self, issues: Sequence[Issue]):
        super().__init__("; ".join(i.message for i in issues), issues=issues)


@dataclass(frozen=True)
class BeaconRequest:
    entry_type: str  # registry path, e.g. "g_variants"
    api_version: str = API_VERSION
    requested_schemas: tuple[dict, ...] = ()
    requested_granularity: str = "boolean"
    include_resultset_responses: str = "HIT"
    skip: int = 0  # pages
    limit: int = DEFAULT_LIMIT
    filters: tuple[dict, ...] = ()  # each {"id": ..., and the optional filter fields as sent}
    dataset_ids: tuple[str, ...] | None = None  # None: every dataset
    test_mode: bool = False
    parameters: Any = None  # typed query from the entry type's parser
    echo_parameters: dict = field(default_factory=dict)  # the interpreted requestParameters, for the summary

    @property
    def offset(self) -> int:
        return self.skip * self.limit


_INT_TEXT = re.compile(r"\s*-?\d{1,18}\s*")
_API_VERSION_TEXT = re.compile(r"v?\d+(\.\d+){0,2}")


def _error(message: str, location: str) -> BeaconRequestError:
    return BeaconRequestError([Issue.error("beacon-request", message, location)])


# --- scalar readers: each takes the raw value and the location used in messages -----------


def read_int(value: Any, where: str, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise _error(f"{name} must be an integer, not a boolean", where)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise _error(f"{name} must be an integer, got {_show(value)}", where)
    if value < minimum:
        raise _error(f"{name} must be ≥ {minimum}, got {value}", where)
    if value > 2**62:
        raise _error(f"{name} is out of range", where)
    return value


def read_bool(value: Any, where: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _error(f"{name} must be true or false, got {_show(value)}", where)


def read_choice(value: Any, where: str, name: str, choices: tuple[str, ...], fold: str = "lower") -> str:
    if isinstance(value, str):
        folded = value.strip().lower() if fold == "lower" else value.strip().upper()
        if folded in choices:
            return folded
    raise _error(f"{name} must be one of {', '.join(choices)}, got {_show(value)}", where)


def read_string(value: Any, where: str, name: str, pattern: re.Pattern[str] | None = None, max_len: int = 256) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(f"{name} must be a non-empty string, got {_show(value)}", where)
    text = value.strip()
    if len(text) > max_len:
        raise _error(f"{name} is longer than {max_len} characters", where)
    if pattern is not None and not pattern.fullmatch(text):
        raise _error(f"{name} has an invalid value {_show(text)}", where)
    return text


def read_list(value: Any, where: str, name: str, max_items: int = 100) -> list:
    """A JSON array, a single value, or (from GET) a comma-separated string."""
    if isinstance(value, str):
        items: list = [v.strip() for v in value.split(",")]
    elif isinstance(value, list):
        items = value
    elif value is not None and not isinstance(value, dict):
        items = [value]  # a scalar: its own reader reports a wrong type precisely
    else:
        raise _error(f"{name} must be a list, got {_show(value)}", where)
    if len(items) > max_items:
        raise _error(f"{name} has more than {max_items} items", where)
    return items


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the two request forms -----------------------------------------------------------------


def parse_get(entry: EntryType, args: Mapping[str, list[str]]) -> BeaconRequest:
    """A GET request: `args` maps each query parameter to all the values it was given."""
    framework: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for name, values in args.items():
        where = f"?{name}"
        if len(values) != 1:
            raise _error(
                f"parameter {name} is given {len(values)} times; give it once (lists are comma-separated)", where
            )
        value = values[0]
        if name in _FRAMEWORK_GET:
            framework[name] = value
        else:
            parameters[name] = value
    pagination = {k: framework[k] for k in ("skip", "limit") if k in framework}
    filters = (
        [{"id": f} for f in read_list(framework["filters"], "?filters", "filters")] if "filters" in framework else []
    )
    return _build(
        entry,
        api_version=framework.get("apiVersion"),
        requested_schemas=[{"schema": framework["requestedSchema"]}] if "requestedSchema" in framework else [],
        granularity=framework.get("requestedGranularity"),
        include=framework.get("includeResultsetResponses"),
        pagination=pagination,
        filters=filters,
        test_mode=framework.get("testMode"),
        dataset_ids=framework.get("datasetIds"),
        parameters=parameters,
        prefix="?",
    )


def parse_post(entry: EntryType, body: Any) -> BeaconRequest:
    """A POST body (already parsed strictly from JSON)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _error("the request body must be a JSON object with `meta` and `query`", "")
    unknown = set(body) - {"meta", "query", "$schema"}
    if unknown:
        raise _error(f"unknown member(s) in the request body: {', '.join(sorted(unknown))}", f"/{sorted(unknown)[0]}")
    meta = body.get("meta", {})
    query = body.get("query", {})
    if not isinstance(meta, dict):
        raise _error("meta must be an object", "/meta")
    if not isinstance(query, dict):
        raise _error("query must be an object", "/query")
    unknown = set(meta) - _META_KEYS
    if unknown:
        raise _error(f"unknown member(s) in meta: {', '.join(sorted(unknown))}", f"/meta/{sorted(unknown)[0]}")
    unknown = set(query) - _QUERY_KEYS
    if unknown:
        raise _error(f"unknown member(s) in query: {', '.join(sorted(unknown))}", f"/query/{sorted(unknown)[0]}")
    schemas = meta.get("requestedSchemas", [])
    if not isinstance(schemas, list) or not all(isinstance(s, dict) for s in schemas):
        raise _error("requestedSchemas must be a list of objects", "/meta/requestedSchemas")
    pagination = query.get("pagination", {})
    if not isinstance(pagination, dict):
        raise _error("pagination must be an object with skip and limit", "/query/pagination")
    params = query.get("requestParameters", {})
    if not isinstance(params, dict):
        raise _error("requestParameters must be an object", "/query/requestParameters")
    params = dict(params)
    dataset_ids = params.pop("datasetIds", None)
    datasets = params.pop("datasets", None)  # {"datasetIds": [...]}, the form some clients echo back
    if datasets is not None:
        if not isinstance(datasets, dict) or set(datasets) - {"datasetIds"}:
            raise _error("datasets must be an object with datasetIds", "/query/requestParameters/datasets")
        dataset_ids = datasets.get("datasetIds", dataset_ids)
    return _build(
        entry,
        api_version=meta.get("apiVersion"),
        requested_schemas=schemas,
        granularity=query.get("requestedGranularity"),
        include=query.get("includeResultsetResponses"),
        pagination=pagination,
        filters=query.get("filters", []),
        test_mode=query.get("testMode"),
        dataset_ids=dataset_ids,
        parameters=params,
        prefix="/query/",
    )


def _build(
    entry: EntryType,
    *,
    api_version,
    requested_schemas,
    granularity,
    include,
    pagination,
    filters,
    test_mode,
    dataset_ids,
    parameters,
    prefix,
) -> BeaconRequest:
    def at(name: str) -> str:
        return prefix + name

    page_at = "?" if prefix == "?" else "/query/pagination/"
    unknown = set(pagination) - {"skip", "limit", "currentPage", "nextPage", "previousPage"}
    if unknown:
        raise _error(f"unknown member(s) in pagination: {', '.join(sorted(unknown))}", page_at + sorted(unknown)[0])
    skip = read_int(pagination.get("skip", 0), page_at + "skip", "skip")
    limit = read_int(pagination.get("limit", DEFAULT_LIMIT), page_at + "limit", "limit")
    limit = MAX_LIMIT if limit == 0 else min(limit, MAX_LIMIT)
    typed = entry.parse_parameters(_flatten(entry, parameters, prefix), _param_prefix(prefix))
    return BeaconRequest(
        entry_type=entry.path,
        api_version=read_string(api_version, at("apiVersion"), "apiVersion", _API_VERSION_TEXT, 16)
        if api_version is not None
        else API_VERSION,
        requested_schemas=tuple(_read_schema(s, i) for i, s in enumerate(requested_schemas)),
        requested_granularity=read_choice(
            granularity, at("requestedGranularity"), "requestedGranularity", GRANULARITIES
        )
        if granularity is not None
        else "boolean",
        include_resultset_responses=read_choice(
            include,
            at("includeResultsetResponses"),
            "includeResultsetResponses",
            INCLUDE_RESULTSET_RESPONSES,
            fold="upper",
        )
        if include is not None
        else "HIT",
        skip=skip,
        limit=limit,
        filters=_read_filters(filters, at("filters")),
        dataset_ids=_read_dataset_ids(dataset_ids, prefix),
        test_mode=read_bool(test_mode, at("testMode"), "testMode") if test_mode is not None else False,
        parameters=typed.query,
        echo_parameters={entry.parameter_group: typed.echo} if typed.echo else {},
    )


def _param_prefix(prefix: str) -> str:
    return "?" if prefix == "?" else "/query/requestParameters/"


def _flatten(entry: EntryType, parameters: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Merge the nested group (`g_variant: {...}`) with flat parameters; a key given twice must agree."""
    flat = {k: v for k, v in parameters.items() if k not in (entry.parameter_group, "$schema")}
    nested = parameters.get(entry.parameter_group)
    if nested is None:
        return flat
    where = _param_prefix(prefix) + entry.parameter_group
    if not isinstance(nested, dict):
        raise _error(f"{entry.parameter_group} must be an object", where)
    for key, value in nested.items():
        if key in flat and flat[key] != value:
            raise _error(
                f"{key} is given both flat and under {entry.parameter_group} with different values", f"{where}/{key}"
            )
        flat[key] = value
    return flat


def _read_schema(raw: dict, index: int) -> dict:
    where = f"/meta/requestedSchemas/{index}"
    out = {}
    for key in ("entityType", "schema"):
        if key in raw:
            out[key] = read_string(raw[key], f"{where}/{key}", key)
    if set(raw) - {"entityType", "schema"}:
        raise _error("requestedSchemas items may hold only entityType and schema", where)
    return out


def _read_filters(raw: Any, where: str) -> tuple[dict, ...]:
    items = read_list(raw, where, "filters", MAX_FILTERS)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict):
            raise _error("each filter must be an object with an id (or a CURIE string)", f"{where}/{i}")
        unknown = set(item) - {"id", "includeDescendantTerms", "similarity", "scope", "operator", "value"}
        if unknown:
            raise _error(f"unknown member(s) in filter: {', '.join(sorted(unknown))}", f"{where}/{i}")
        read_string(item.get("id"), f"{where}/{i}/id", "filter id")
        out.append(dict(item))
    return tuple(out)


def _read_dataset_ids(raw: Any, prefix: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    where = "?datasetIds" if prefix == "?" else "/query/requestParameters/datasetIds"
    ids = [read_string(v, where, "datasetIds item", _DATASET_ID, 128) for v in read_list(raw, where, "datasetIds")]
    if not ids:
        raise _error("datasetIds must name at least one dataset", where)
    return tuple(dict.fromkeys(ids))


def is_curie(text: str) -> bool:
    return bool(_CURIE.fullmatch(text))
