"""The application factory: wires configuration, stores, security and blueprints.

Nothing happens at import time, and no state lives at module level: every call
of `create_app` builds an independent node (tests run several in one process).
Production: `gunicorn -w 2 -b 0.0.0.0:8080 'app:create_app()'`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request

from gateway.api.admin import admin_blueprint
from gateway.api.beacon import beacon_blueprint
from gateway.api.context import Services
from gateway.api.datasets import datasets_blueprint
from gateway.api.errors import error_body, install_error_handlers
from gateway.api.fhir import fhir_blueprint
from gateway.api.fhir_export import fhir_export_blueprint
from gateway.api.health import health_blueprint
from gateway.api.hooks import install_security_hooks
from gateway.api.network import LOCAL_PREFIX, build_network, network_blueprint
from gateway.api.phenopackets import phenopackets_blueprint
from gateway.api.ui import register_ui
from gateway.api.validate import validate_blueprint
from gateway.api.variant_export import variant_export_blueprint
from gateway.beacon.entry_types import BEACON_ENTRY_TYPES
from gateway.beacon.registry import EntryTypes
from gateway.config import Config, load_config, private_data_dir
from gateway.demo import SyntheticTestData, demo_config, load_demo
from gateway.security.inputs import nul_in_request, request_id_from
from gateway.security.keys import operator_tokens, secret_key
from gateway.security.purge_jobs import PurgeListener, PurgeWorker, next_due_in, run_due
from gateway.security.service import Security
from gateway.services.genomic import clean_job_leftovers
from gateway.store.metadata import MetadataStore
from gateway.variants.store import VariantStore as SQLiteVariantStore

log = logging.getLogger("gateway")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def build_services(cfg: Config) -> Services:
    """Every service of one node, built once: stores, key, security, the testMode data.

    `create_app` serves them over HTTP; the `gateway` command's ingest commands use the same services.
    """
    demo = cfg.demo  # `gateway serve --demo`: a synthetic cohort through the real pipelines
    if demo:
        cfg = demo_config(cfg)
    private_data_dir(cfg.data_dir)  # files 0600, directories 0700 from here on
    clean_job_leftovers(cfg.data_dir)  # uploads and sample maps of jobs killed with the last run
    store = MetadataStore.open(cfg.resolved_database_url, migrate=True)
    for dataset in cfg.datasets:
        store.ensure_dataset(dataset.id, name=dataset.name, description=dataset.description)
    key, tokens = secret_key(cfg), operator_tokens(cfg)
    variants = SQLiteVariantStore(cfg.data_dir)
    services = Services(
        config=cfg,
        key=key,
        operator_tokens=tokens,
        store=store,
        security=Security.from_config(cfg, key, tokens),
        variants=variants,
        test_data=SyntheticTestData(cfg, key, store, variants, hidden=not demo),
    )
    if demo:
        load_demo(cfg, key, store, variants)
    return services


def start_purge_worker(services: Services) -> PurgeWorker:
    """The second phase of erasures in this process: a thread that purges the deleted rows' old copies after each
    erasure, at start-up those a restart left queued, and those other processes queue (a NOTIFY on PostgreSQL, a
    poll of due jobs on every store: gateway.security.purge_jobs)."""
    store, audit, cfg = services.store, services.security.audit, services.config
    worker = PurgeWorker(
        # services.variants is read at each run: it may be replaced (tests, a reloaded store)
        lambda: run_due(
            store,
            services.variants,
            audit=audit,
            max_attempts=cfg.erasure_purge_max_attempts,
            caller="purge-worker",
        ),
        due_in=lambda: next_due_in(store),
        poll_s=cfg.erasure_purge_poll_s,
    )
    worker.listener = PurgeListener.for_store(store, worker.wake)
    worker.start()
    store.on_close(worker.stop)  # no poll of a closed store
    return worker


def _register_blueprints(app: Flask, services: Services, entry_types: EntryTypes) -> None:
    """Every blueprint of the node, here and nowhere else."""
    for blueprint in (
        health_blueprint,
        fhir_blueprint,
        phenopackets_blueprint,
        datasets_blueprint,
        variant_export_blueprint,  # the target of the Beacon dataset handover
        validate_blueprint,
        admin_blueprint,
        fhir_export_blueprint,  # POST /fhir/$convert-beacon-response
    ):
        app.register_blueprint(blueprint())
    register_ui(app)  # the web pages (/ui/) and the operator page's JSON (/operator/…)
    network_source = services.config.network
    if network_source:  # network mode: the network answers at /api, the node's own Beacon at /local/api
        services.network = build_network(app, network_source, services.config.node)
        app.register_blueprint(network_blueprint(services.network), url_prefix="/api")
        app.register_blueprint(beacon_blueprint(entry_types), url_prefix=LOCAL_PREFIX)
        return
    app.register_blueprint(beacon_blueprint(entry_types), url_prefix="/api")


def create_app(
    config: Config | Mapping[str, Any] | None = None, *, entry_types: EntryTypes = BEACON_ENTRY_TYPES
) -> Flask:
    """Build a gateway node. `config` may be a Config, a mapping of overrides, or None (file + env).

    `entry_types`: the Beacon entry types served (the built-in ones unless a deployment adds its own).
    """
    cfg = config if isinstance(config, Config) else load_config(overrides=config)
    logging.basicConfig(level=cfg.log_level)
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.config["TESTING"] = cfg.testing
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    services = app.extensions["gateway"] = build_services(cfg)
    # An in-memory store is one connection shared by every thread: no worker beside the requests (nothing to purge).
    if cfg.erasure_purge_worker and services.store.engine.url.database not in (None, "", ":memory:"):
        services.purges = start_purge_worker(services)
    _register_blueprints(app, services, entry_types)

    @app.before_request
    def request_id() -> Response | None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))  # never an unchecked value echoed
        if nul_in_request(request.path, request.args.items(multi=True)):
            return error_body(request.path, 400, "NUL characters are not accepted in the path or query string")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    install_error_handlers(app)  # one per surface: OperationOutcome, Beacon error envelope, problem JSON
    install_security_hooks(app)  # authentication, audit, CORS and headers on every request
    return app
