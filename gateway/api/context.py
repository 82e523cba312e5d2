"""The per-application services every blueprint reaches through `services()`.

`create_app` builds one `Services` and keeps it in `app.extensions["gateway"]`;
no module-level mutable state, so several apps (tests, a network node and its
peers) can live in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from gateway.config import Config

if TYPE_CHECKING:
    from gateway.store.metadata import MetadataStore
    from gateway.variants.store import VariantStore


@dataclass
class Services:
    config: Config
    key: bytes  # pseudonymisation key
    operator_tokens: tuple[str, ...]
    store: MetadataStore
    variants: VariantStore | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def services() -> Services:
    return current_app.extensions["gateway"]
