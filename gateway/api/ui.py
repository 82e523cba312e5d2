"""The node's web pages: `/ui/` (query page for researchers) and `/ui/operator` (operator page).

Static files under gateway/ui/static, served by the gateway itself (nodes often have no internet: no CDN).
The pages are plain HTML that load ES modules (Preact + htm, vendored); their one inline script is the
import map, allowed by its SHA-256 in the pages' Content-Security-Policy, which is otherwise as strict as
the API's (no inline script or style, nothing from another origin but the configured OIDC issuer).
Everything the pages show comes from the public API (`/api`, `/validate`, `/ready`, `/admin`, `/operator`)
with the caller's own token: a page never sees more than a curl with the same token would.

Configuration (optional), key `ui`:
    ui:
      oidc: {issuer: https://login.example.org/, client_id: beacon-ui, scope: openid}
      self_url: https://node.example.org   # where the operator page's self-verification reaches this node
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, redirect

from gateway.api.context import services
from gateway.api.render import json_response
from gateway.config import ConfigError

STATIC = Path(__file__).resolve().parents[1] / "ui" / "static"
PAGES = {"query": "index.html", "operator": "operator.html"}
IMPORT_MAP_MARK = "<!--import-map-->"


def _oidc_settings(raw: Any) -> dict | None:
    """The `ui.oidc` section, checked at start so that a typo is a clear message, not a broken button."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError("ui.oidc: expected a mapping with issuer and client_id")
    issuer, client_id = raw.get("issuer"), raw.get("client_id")
    parts = urlsplit(issuer) if isinstance(issuer, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"ui.oidc.issuer: expected an http(s) URL, got {issuer!r}")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigError("ui.oidc.client_id: expected the public client id registered at the issuer")
    scope = raw.get("scope", "openid")
    if not isinstance(scope, str):
        raise ConfigError("ui.oidc.scope: expected a space-separated string")
    return {
        "issuer": issuer,
        "clientId": client_id.strip(),
        "scope": scope,
        "origin": f"{parts.scheme}://{parts.netloc}",
    }


def _import_map() -> str:
    return (STATIC / "importmap.json").read_text(encoding="utf-8").strip()


def content_security_policy(script_hash: str, connect: tuple[str, ...] = ()) -> str:
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'sha256-{script_hash}'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src " + " ".join(("'self'", *connect)),
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def _page(name: str, csp: str, import_map_tag: str) -> Response:
    html = (STATIC / name).read_text(encoding="utf-8").replace(IMPORT_MAP_MARK, import_map_tag)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    return response


def register_ui(app: Flask) -> None:
    """The pages and the operator page's JSON: the one call app.py makes."""
    from gateway.api.operator import operator_blueprint

    app.register_blueprint(ui_blueprint(app.extensions["gateway"].config.ui))
    app.register_blueprint(operator_blueprint())


def ui_blueprint(settings: Any = None) -> Blueprint:
    bp = Blueprint("ui", __name__, static_folder=str(STATIC), static_url_path="/ui/static")
    settings = settings or {}
    if not isinstance(settings, Mapping):
        raise ConfigError("ui: expected a mapping (oidc, self_url)")
    oidc = _oidc_settings(settings.get("oidc"))
    import_map = _import_map()
    script_hash = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    csp = content_security_policy(script_hash, (oidc["origin"],) if oidc else ())
    tag = f'<script type="importmap">{import_map}</script>'

    @bp.get("/")
    def root():  # the Beacon root is /api; a person who opens the node's address gets the page
        return redirect("/ui/", 302)

    @bp.get("/ui")
    def ui_bare():
        return redirect("/ui/", 301)

    @bp.get("/ui/")
    def query_page():
        return _page(PAGES["query"], csp, tag)

    @bp.get("/ui/operator")
    def operator_page():
        return _page(PAGES["operator"], csp, tag)

    @bp.get("/ui/config.json")
    def page_config():
        svc = services()
        network = bool(svc.config.network)
        return json_response(
            {
                "node": {"id": svc.config.node.id, "name": svc.config.node.name},
                "network": network,
                # where the node's own data answer; in network mode /api is the whole network
                "localBase": "/local/api" if network else "/api",
                "networkBase": "/api" if network else None,
                "oidc": {k: v for k, v in oidc.items() if k != "origin"} if oidc else None,
            }
        )

    return bp
