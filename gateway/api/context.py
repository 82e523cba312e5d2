"""The per-application services every blueprint reaches through `services()`.

`create_app` (the one composition root) builds one `Services` and keeps it in
`app.extensions["gateway"]`; no module-level mutable state, so several apps (tests, a
network node and its peers) can live in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from flask import current_app

from gateway.config import Config
from gateway.services.fhir_incremental import FragmentCache

if TYPE_CHECKING:
    from gateway.beacon.context import TestModeData
    from gateway.network.service import Network
    from gateway.security.purge_jobs import PurgeWorker
    from gateway.security.service import Security
    from gateway.store.metadata import MetadataStore
    from gateway.variants.protocol import VariantStore


@dataclass
class Services:
    config: Config
    key: bytes  # pseudonymisation key
    operator_tokens: tuple[str, ...]
    store: MetadataStore
    security: Security  # tokens, budget, audit log, CORS (gateway.security.service)
    variants: VariantStore | None = None
    test_data: TestModeData | None = None  # what answers Beacon testMode requests (gateway.demo)
    network: Network | None = None  # network mode only
    beacon_cache: dict[str, Any] = field(default_factory=dict)  # per-application caches of the Beacon engine
    # Translated parts of patients kept resource by resource (gateway.services.fhir_incremental).
    fhir_fragments: FragmentCache = field(default_factory=FragmentCache)
    purges: PurgeWorker | None = None  # the second phase of erasures, in the server (gateway.security.purge_jobs)


def services() -> Services:
    return cast("Services", current_app.extensions["gateway"])
