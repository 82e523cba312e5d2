"""POST /validate: the `gateway validate` engine over HTTP, answering the same JSON report.

The body is one document (FHIR, Phenopacket/Family/Cohort, Beacon request or response, JSON or YAML; a binary
phenopacket; or a VCF/BCF). Query parameters mirror the CLI: `type`, `profile`, `organSystem` (repeatable),
`hpo=false`. Nothing is stored. The answer is `[{"file", "kind", "valid", "issues"}]` with status 200 whether or
not the document is valid; 400 only for a malformed request. FHIR clients keep `/fhir/$validate`.
"""

from __future__ import annotations

import re

from flask import Blueprint, request

from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.bounded import WorkLimitExceeded, limits_of, run_bounded
from gateway.issues import Issue
from gateway.validation.engine import KINDS, Options, validate_bytes

_HPO_ID = re.compile(r"HP:\d{7}")


def _options() -> Options:
    kind = request.args.get("type") or None
    if kind is not None and kind not in KINDS:
        raise ValueError(f"type must be one of {', '.join(KINDS)}")
    systems = tuple(request.args.getlist("organSystem"))
    bad = [s for s in systems if not _HPO_ID.fullmatch(s)]
    if bad:
        raise ValueError(f"organSystem {bad[0]!r} is not an HPO id (HP:nnnnnnn)")
    profile = request.args.get("profile") or None
    if profile is not None:
        import mappings

        if profile not in mappings.profile_names():
            raise ValueError(f"unknown profile {profile!r}")
    hpo = request.args.get("hpo", "true").lower() not in ("false", "0", "no")
    return Options(
        kind=kind,
        profile=profile,
        organ_systems=systems,
        hpo=hpo,
        max_depth=services().config.max_json_depth,
    )


def over_budget() -> bool:
    """Charge one query to the caller's budget (validation is work on anonymous input); True when spent."""
    from gateway.api.hooks import current_caller, security

    return not security().budget.charge(current_caller())


def validate_blueprint() -> Blueprint:
    bp = Blueprint("validate", __name__)

    @bp.post("/validate")
    def validate():
        if over_budget():
            return problem(429, "query budget exhausted; try again later")
        try:
            options = _options()
        except ValueError as exc:
            return problem(400, str(exc), [Issue.error("invalid-value", str(exc), "?")])
        data = request.get_data(cache=False)
        if not data.strip():
            return problem(400, "empty body: send the document to validate")
        name = request.args.get("name") or "request-body"
        svc = services()
        try:  # in a child with the node's time and memory limits: a costly document never costs a worker
            result = run_bounded(validate_bytes, data, name, options, **limits_of(svc.config))
        except WorkLimitExceeded as exc:
            return problem(413, f"{exc.message}; send a smaller document", [Issue.error("too-costly", exc.message)])
        return json_response([result.to_dict()])

    return bp
