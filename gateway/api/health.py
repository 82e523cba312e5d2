"""Liveness, readiness and the node's GA4GH service-info."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gateway.api.context import services


def health_blueprint() -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/health")
    def health():
        return jsonify(status="UP")

    @bp.get("/ready")
    def ready():
        store = services().store
        checks = {"store": store.ping()}
        checks["migrations"] = checks["store"] and store.migrations_current()
        ok = all(checks.values())
        return jsonify(status="UP" if ok else "DOWN", checks=checks), 200 if ok else 503

    return bp
