"""The node's public base URL for the documents that advertise absolute URLs (/map, /info, OpenAPI, FHIR).

`node.base_url`, when configured, is authoritative. Without it the URL is the one the caller used:
scheme and host of the request, or, when the connection comes from a trusted proxy (the
`security.trusted_proxies` that X-Forwarded-For is already read from), its X-Forwarded-Proto,
-Host and -Prefix. A header from anyone else is ignored, so no caller can make the node advertise
another host to other callers. The derived URL is for display only: visa grants match the
configured base URL alone (gateway.security.caller.grant_values).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from flask import request

from gateway.api.context import services
from gateway.config import Config

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~\-]+)*$")


def _from_trusted_proxy() -> bool:
    security = services().security
    networks = getattr(security, "trusted_networks", ()) or ()
    try:
        address = ipaddress.ip_address((request.remote_addr or "").strip())
    except ValueError:
        return False
    return any(address in network for network in networks)


def _first(header: str) -> str:
    return (request.headers.get(header) or "").split(",")[0].strip()


def public_base_url() -> str:
    """The base URL (no trailing slash, no /api) under which this node is reached."""
    configured = services().config.node.base_url.strip()
    if configured:
        return configured.rstrip("/")
    scheme, host, prefix = request.scheme, request.host, ""
    if _from_trusted_proxy():
        proto, forwarded_host, forwarded_prefix = (
            _first("X-Forwarded-Proto"),
            _first("X-Forwarded-Host"),
            _first("X-Forwarded-Prefix"),
        )
        scheme = proto.lower() if proto.lower() in ("http", "https") else scheme
        host = forwarded_host if _HOST.fullmatch(forwarded_host) else host
        prefix = forwarded_prefix.rstrip("/") if _PREFIX.fullmatch(forwarded_prefix.rstrip("/")) else ""
    return f"{scheme}://{host}{prefix}"


def advertised_config() -> Config:
    """The configuration with `node.base_url` set to the public base URL, for documents that show it."""
    config = services().config
    base = public_base_url()
    return config if base == config.node.base_url else replace(config, node=replace(config.node, base_url=base))
