"""The application factory: wires configuration, stores, security and blueprints.

Nothing happens at import time, and no state lives at module level: every call
of `create_app` builds an independent node (tests run several in one process).
Production: `gunicorn -w 2 -b 0.0.0.0:8080 'app:create_app()'`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from gateway.api.context import Services
from gateway.api.render import json_response, problem
from gateway.config import Config, load_config
from gateway.issues import Issue, to_operation_outcome

log = logging.getLogger("gateway")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def _build_services(cfg: Config) -> Services:
    from gateway.security.keys import operator_tokens, secret_key
    from gateway.store.metadata import MetadataStore
    from gateway.variants.store import VariantStore

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.open(cfg.resolved_database_url, migrate=True)
    for dataset in cfg.datasets:
        store.ensure_dataset(dataset.id, name=dataset.name, description=dataset.description)
    services = Services(
        config=cfg,
        key=secret_key(cfg),
        operator_tokens=operator_tokens(cfg),
        store=store,
        variants=VariantStore(cfg.data_dir),
    )
    if cfg.extra.get("demo"):  # `gateway serve --demo`: a synthetic cohort through the real pipelines
        from gateway.demo import load_demo

        load_demo(services)
    return services


def _register_blueprints(app: Flask) -> None:
    from gateway.api.beacon import beacon_blueprint
    from gateway.api.datasets import datasets_blueprint
    from gateway.api.fhir import fhir_blueprint
    from gateway.api.health import health_blueprint
    from gateway.api.phenopackets import phenopackets_blueprint
    from gateway.api.validate import validate_blueprint

    for blueprint in (health_blueprint, fhir_blueprint, phenopackets_blueprint, datasets_blueprint, validate_blueprint):
        app.register_blueprint(blueprint())
    from gateway.api.ui import register_ui

    register_ui(app)  # the web pages (/ui/) and the operator page's JSON (/operator/…)
    network_source = app.extensions["gateway"].config.extra.get("network")
    if network_source:  # network mode: the network answers at /api, the node's own Beacon at /local/api
        from gateway.api.network import LOCAL_PREFIX, build_network, network_blueprint

        services = app.extensions["gateway"]
        network = services.extra["network"] = build_network(app, network_source, services.config.node)
        app.register_blueprint(network_blueprint(network), url_prefix="/api")
        app.register_blueprint(beacon_blueprint(), url_prefix=LOCAL_PREFIX)
        return
    app.register_blueprint(beacon_blueprint(), url_prefix="/api")


def _error_body(path: str, status: int, message: str):
    """Errors outside a blueprint's own handlers, in the dialect of the surface asked."""
    if path.startswith("/fhir"):
        code = (
            "not-found"
            if status == 404
            else "internal"
            if status >= 500
            else "body-too-large"
            if status == 413
            else "fhir-value"
        )
        return json_response(
            to_operation_outcome([Issue.error(code, message)]), status, mimetype="application/fhir+json"
        )
    if path.startswith(("/api", "/local/api")):  # a Beacon error envelope with the node's full meta
        from flask import current_app

        from gateway.beacon.response import build_error

        node = current_app.extensions["gateway"].config.node
        return json_response(build_error(node, [Issue.error("http", message)], status), status)
    return problem(status, message)


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build a gateway node. `config` may be a Config, a mapping of overrides, or None (file + env)."""
    cfg = config if isinstance(config, Config) else load_config(overrides=config)
    logging.basicConfig(level=cfg.log_level)
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.config["TESTING"] = cfg.testing
    app.json.sort_keys = False
    app.extensions["gateway"] = _build_services(cfg)
    _register_blueprints(app)

    @app.before_request
    def request_id():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex

    @app.after_request
    def headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description if exc.code != 413 else f"request body larger than {cfg.max_body_bytes} bytes"
        return _error_body(request.path, exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged with its request id; the client sees no stack trace and no internal path.
        log.exception("unhandled error in request %s", g.get("request_id"))
        return _error_body(request.path, 500, f"internal error (request id {g.get('request_id', '-')})")

    from gateway.security.http import install as install_security

    install_security(app, _error_body)  # authentication, audit, CORS and headers on every request
    return app
