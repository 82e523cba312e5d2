"""Request hardening that is not about who asks: filter shapes, CORS, response headers.

Body size (`MAX_CONTENT_LENGTH`) and JSON depth / NaN / duplicate keys are enforced where
bodies are read (gateway.jsonio); here: at most 100 filters, each filter's id, operator,
value, scope and similarity checked against patterns and enums before any query is
planned, so nothing a caller typed reaches a query except as a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gateway.issues import Issue

MAX_FILTERS = 100
FILTER_OPERATORS = ("=", "<", ">", "!", ">=", "<=")
FILTER_SIMILARITIES = ("exact", "high", "medium", "low")
_CURIE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,31}:[A-Za-z0-9_.:\-/#]{1,128}")
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_SCOPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_VALUE = re.compile(r"[^\x00-\x1f\x7f<>`\\]{1,256}")

# Headers added to every response besides app.SECURITY_HEADERS.
EXTRA_HEADERS = {
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "interest-cohort=()",
    "X-Permitted-Cross-Domain-Policies": "none",
}
# Endpoints that serve nothing protected: the only ones a configured CORS origin may read.
PUBLIC_PATHS = (
    "/api/info",
    "/api/service-info",
    "/api/map",
    "/api/configuration",
    "/api/entry_types",
    "/api/filtering_terms",
    "/service-info",
    "/health",
    "/ready",
)


def filter_issues(filters: Sequence[dict], where: str = "/query/filters") -> list[Issue]:
    """Every way the given filters break the patterns, each with its location."""
    issues: list[Issue] = []
    if len(filters) > MAX_FILTERS:
        return [Issue.error("beacon-request", f"at most {MAX_FILTERS} filters are accepted", where)]
    for i, f in enumerate(filters):
        at = f"{where}/{i}"
        fid = f.get("id")
        if not isinstance(fid, str) or not (_CURIE.fullmatch(fid) or _FIELD.fullmatch(fid)):
            issues.append(Issue.error("beacon-request", "filter id must be a CURIE or a field name", f"{at}/id"))
        if "operator" in f and f["operator"] not in FILTER_OPERATORS:
            issues.append(
                Issue.error(
                    "beacon-request", f"filter operator must be one of {' '.join(FILTER_OPERATORS)}", f"{at}/operator"
                )
            )
        if "value" in f:
            value = f["value"]
            ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
                isinstance(value, str) and _VALUE.fullmatch(value)
            )
            if not ok:
                issues.append(
                    Issue.error(
                        "beacon-request", "filter value must be a short plain string or a number", f"{at}/value"
                    )
                )
        if "similarity" in f and f["similarity"] not in FILTER_SIMILARITIES:
            issues.append(
                Issue.error(
                    "beacon-request", f"similarity must be one of {', '.join(FILTER_SIMILARITIES)}", f"{at}/similarity"
                )
            )
        if "scope" in f and not (isinstance(f["scope"], str) and _SCOPE.fullmatch(f["scope"])):
            issues.append(Issue.error("beacon-request", "filter scope must be an entry type name", f"{at}/scope"))
        if "includeDescendantTerms" in f and not isinstance(f["includeDescendantTerms"], bool):
            issues.append(
                Issue.error(
                    "beacon-request", "includeDescendantTerms must be true or false", f"{at}/includeDescendantTerms"
                )
            )
    return issues


def cors_headers(path: str, origin: str | None, allowed: Iterable[str]) -> dict[str, str]:
    """CORS is off unless an origin is configured, and never on protected endpoints."""
    if not origin or origin not in set(allowed) or not path.startswith(PUBLIC_PATHS):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
