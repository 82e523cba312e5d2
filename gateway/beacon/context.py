"""What the Beacon engine and every entry-type handler may use, typed.

`QueryContext` is built per request by the HTTP layer (gateway.api.beacon) from the services wired in
`app.create_app`; handlers reach the stores only through it, and the stores only through their
public methods (the variant store through the `VariantReader` protocol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.config import Config
from gateway.security.caller import ANONYMOUS, Caller
from gateway.security.service import Security
from gateway.variants.protocol import VariantReader

if TYPE_CHECKING:
    from gateway.beacon.request import BeaconRequest
    from gateway.beacon.response import EntryAnswer
    from gateway.security.policy import Granularity
    from gateway.store.metadata import MetadataStore

# What the access rules and the handlers found out for the request's audit record
# (datasets, requested/returned granularity, count before suppression, decision, reason).
AuditNotes = dict[str, Any]


class TestModeData(Protocol):
    """The data that answer Beacon `testMode: true` requests (wired at composition time: gateway.demo)."""

    @property
    def dataset_id(self) -> str: ...

    @property
    def hidden(self) -> bool:
        """True when its dataset answers testMode requests only (not a node started as the demo)."""
        ...

    def prepare(self) -> Config:
        """Load the data if not yet loaded; the configuration that declares their dataset."""
        ...


@dataclass
class QueryContext:
    """Configuration, key, stores and who asks: everything a handler may use."""

    config: Config
    key: bytes
    variants: VariantReader | None = None
    store: MetadataStore | None = None
    caller: Caller = ANONYMOUS
    security: Security | None = None  # None: a restrictive stand-in (gateway.beacon.access)
    audit: AuditNotes = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # per application, shared by its requests
    test_data: TestModeData | None = None


class EntryHandler(Protocol):
    """An entry type's (or a cross-link's) answer over the datasets the caller was admitted to."""

    def __call__(
        self,
        ctx: QueryContext,
        request: BeaconRequest,
        granularity: Granularity,
        datasets: tuple[str, ...],
        record_id: str | None,
        /,
    ) -> EntryAnswer: ...
