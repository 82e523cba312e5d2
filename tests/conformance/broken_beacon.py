"""A deliberately broken Beacon v2 node: each defect below must be reported by `gateway verify`.

Defects: /info answers with a wrong schema (no organization, environment misspelt); /map has relative URLs
and lists filtering terms as an endpoint returning "filteringTerm" (no entry type);
record answers ignore `limit`; numTotalResults changes between pages; a malformed request gets 200; the count
answer claims record granularity below what was asked (boolean asked → count returned); /{id} returns 404.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

RECORDS = [{"id": f"rec{i}", "variation": {}} for i in range(5)]
ENTITY = {"entityType": "individual", "schema": "beacon-individual-v2.0.0"}


def _meta(granularity: str = "boolean") -> dict:
    return {
        "beaconId": "org.example.broken",
        "apiVersion": "v2.0.0",
        "returnedGranularity": granularity,
        "returnedSchemas": [ENTITY],
        "receivedRequestSummary": {
            "apiVersion": "v2.0.0",
            "requestedSchemas": [],
            "pagination": {"skip": 0, "limit": 10},
            "requestedGranularity": granularity,
        },
    }


def create_broken_app() -> Flask:
    app = Flask("broken-beacon")

    @app.get("/api/info")
    def info():
        return jsonify(
            {"meta": _meta(), "response": {"id": "org.example.broken", "name": "Broken", "environment": "production"}}
        )

    @app.get("/api/map")
    def beacon_map():
        endpoint = {
            "entryType": "individual",
            "rootUrl": "/api/individuals",
            "singleEntryUrl": "/api/individuals/{id}",
            "endpoints": {"filtering_terms": {"returnedEntryType": "filteringTerm", "url": "/api/filtering_terms"}},
        }
        return jsonify(
            {"meta": _meta(), "response": {"$schema": "beaconMapSchema.json", "endpointSets": {"individual": endpoint}}}
        )

    @app.route("/api/individuals", methods=["GET", "POST"])
    def individuals():
        body = request.get_json(silent=True) or {}
        query = body.get("query") if isinstance(body.get("query"), dict) else {}
        asked = request.args.get("requestedGranularity") or query.get("requestedGranularity") or "boolean"
        skip = int(request.args.get("skip", 0)) if request.args.get("skip", "0").isdigit() else 0
        granularity = "count" if asked == "boolean" else asked if asked in ("count", "record") else "boolean"
        meta = _meta(granularity)
        if granularity == "boolean":
            return jsonify({"meta": meta, "responseSummary": {"exists": True}})
        total = len(RECORDS) + skip  # inconsistent across pages
        summary = {"exists": True, "numTotalResults": total}
        if granularity == "count":
            return jsonify({"meta": meta, "responseSummary": summary})
        result_set = {"id": "ds1", "setType": "dataset", "exists": True, "resultsCount": total, "results": RECORDS}
        return jsonify({"meta": meta, "responseSummary": summary, "response": {"resultSets": [result_set]}})

    @app.route("/api/individuals/<record_id>", methods=["GET", "POST"])
    def individual(record_id):
        return jsonify({"error": "not here"}), 404

    return app
