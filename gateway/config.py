"""Configuration: one YAML file (named by GATEWAY_CONFIG) overridden by GATEWAY_* variables.

Every key has a safe default, so `gateway serve` works with no file at all. The
resolved `Config` is immutable and passed explicitly (no module-level state).

Environment overrides (the documented prefix is GATEWAY_):
    GATEWAY_CONFIG        path of the YAML file
    GATEWAY_DATA_DIR      data directory                          (default ./gateway-data)
    GATEWAY_DATABASE_URL  SQLAlchemy URL of the metadata store    (default sqlite in DATA_DIR)
    GATEWAY_SECRET_KEY    pseudonymisation key (hex or text)      (default: generated file)
    GATEWAY_PROFILE       national profile name, or "auto"        (default auto)
    GATEWAY_DEFAULT_DATASET  dataset used when none is named      (default "default")
    GATEWAY_OPERATOR_TOKEN   bearer token that may write          (default: generated file)
    GATEWAY_NODE_ID / GATEWAY_NODE_NAME / GATEWAY_BASE_URL        node identity
    GATEWAY_MAX_BODY_BYTES   largest request body accepted        (default 32 MiB)
    GATEWAY_FHIR_PENDING_DAYS  days a FHIR resource waits for its Patient (default 30; 0: until purged)
    GATEWAY_LOG_LEVEL        logging level                        (default INFO)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import GatewayError
from gateway.ids import InvalidDatasetId, check_dataset_id

ENV_PREFIX = "GATEWAY_"


class ConfigError(GatewayError, ValueError):
    """The configuration file or an override is unusable."""

    code = "configuration"


def _dataset_id(value: Any, where: str) -> str:
    try:
        return check_dataset_id(value)
    except InvalidDatasetId as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc


@dataclass(frozen=True)
class NodeInfo:
    """Who this node is: used by service-info, Beacon /info and every Beacon `meta`."""

    id: str = "org.example.gateway"  # reverse-DNS beaconId
    name: str = "Genomic interoperability gateway"
    description: str = "A national node translating FHIR R4 and VCF into GA4GH Phenopackets and Beacon v2."
    organisation_id: str = "org.example"
    organisation_name: str = "Example organisation"
    contact_url: str = "mailto:gateway@example.org"
    environment: str = "dev"  # prod | test | dev | staging
    version: str = "0.1.0"
    base_url: str = ""  # empty: derived from each request (gateway.api.public_url)


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset the operator declares. Policy fields are read by the security layer."""

    id: str
    name: str = ""
    description: str = ""
    security_level: str = "CONTROLLED"  # PUBLIC | REGISTERED | CONTROLLED
    data_use_conditions: tuple[str, ...] = ()  # DUO CURIEs
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./gateway-data")
    database_url: str = ""  # empty → sqlite:///<data_dir>/gateway.sqlite
    secret_key: str = ""  # empty → <data_dir>/secret.key, generated on first use
    profile: str = "auto"
    default_dataset: str = "default"
    operator_tokens: tuple[str, ...] = ()  # empty → <data_dir>/operator.token, generated
    node: NodeInfo = field(default_factory=NodeInfo)
    datasets: tuple[DatasetConfig, ...] = ()
    max_body_bytes: int = 32 * 1024 * 1024
    max_json_depth: int = 64
    # A FHIR Bulk Data file (NDJSON) is one transaction, read whole: refused past this size (decompressed).
    max_ndjson_bytes: int = 256 * 1024 * 1024  # (gateway.jsonio.NDJSON_MAX_BYTES, what `gateway validate` reads)
    # Each validation or translation of a request body runs in a child with these limits (gateway.bounded):
    # below gunicorn's 30 s worker timeout, so a costly document costs one answer (413), never a worker.
    work_seconds: float = 20.0
    work_memory_mb: int = 1024
    # FHIR bodies up to this size are processed in the worker: their work is bounded by their size (≈ 1 ms per
    # KB), and a fork per request would cost more than the work (≈ 60-100 ms for a 250 MB worker).
    work_inline_bytes: int = 256 * 1024
    vcf_job_seconds: float = 4 * 3600.0  # an uploaded VCF's ingest job is stopped (and rejected) after this
    # A FHIR resource whose Patient has not arrived after this many days is dropped (0: kept until purged).
    fhir_pending_days: float = 30.0
    # The server purges erased rows' old copies in a background thread (off: only `gateway erasure purge` does).
    erasure_purge_worker: bool = True
    # It looks for due jobs queued by other processes this often (on PostgreSQL a NOTIFY wakes it at once), and
    # marks a job failed after this many failed attempts (shown by `gateway erasure status`; the operator retries).
    erasure_purge_poll_s: float = 5.0
    erasure_purge_max_attempts: int = 8
    log_level: str = "INFO"
    testing: bool = False
    # Sections other rooms read, kept as given and checked by their owners at start-up:
    security: Mapping[str, Any] = field(default_factory=dict)  # gateway.security.service
    network: Mapping[str, Any] | str | None = None  # peers, or the path of a peers file (gateway.network.peers)
    default_data_use_conditions: tuple[str, ...] = ()  # DUO terms of datasets that declare none
    demo: bool = False  # `gateway serve --demo`: the synthetic cohort is a served dataset
    ui: Mapping[str, Any] = field(default_factory=dict)  # the web pages (gateway.api.ui): oidc, self_url

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'gateway.sqlite').resolve()}"

    def dataset(self, dataset_id: str) -> DatasetConfig | None:
        return next((d for d in self.datasets if d.id == dataset_id), None)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


_SIMPLE_KEYS = {  # YAML key / env suffix → (Config field, converter)
    "data_dir": ("data_dir", Path),
    "database_url": ("database_url", str),
    "secret_key": ("secret_key", str),
    "profile": ("profile", str),
    "default_dataset": ("default_dataset", str),
    "max_body_bytes": ("max_body_bytes", int),
    "max_json_depth": ("max_json_depth", int),
    "max_ndjson_bytes": ("max_ndjson_bytes", int),
    "work_seconds": ("work_seconds", float),
    "work_memory_mb": ("work_memory_mb", int),
    "work_inline_bytes": ("work_inline_bytes", int),
    "vcf_job_seconds": ("vcf_job_seconds", float),
    "fhir_pending_days": ("fhir_pending_days", float),
    "erasure_purge_poll_s": ("erasure_purge_poll_s", float),
    "erasure_purge_max_attempts": ("erasure_purge_max_attempts", int),
    "log_level": ("log_level", str),
}

_NODE_ENV = {"NODE_ID": "id", "NODE_NAME": "name", "BASE_URL": "base_url", "ENVIRONMENT": "environment"}


def _node_from(raw: Mapping[str, Any]) -> NodeInfo:
    known = {f.name for f in fields(NodeInfo)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown keys under 'node': {', '.join(sorted(unknown))}")
    return NodeInfo(**{k: str(v) for k, v in raw.items()})


def _dataset_from(raw: Mapping[str, Any]) -> DatasetConfig:
    if "id" not in raw:
        raise ConfigError("every entry under 'datasets' needs an 'id'")
    level = str(raw.get("security_level", "CONTROLLED")).upper()
    if level not in {"PUBLIC", "REGISTERED", "CONTROLLED"}:
        raise ConfigError(f"dataset {raw['id']}: security_level must be PUBLIC, REGISTERED or CONTROLLED")
    return DatasetConfig(
        id=_dataset_id(raw["id"], "datasets"),
        name=str(raw.get("name", raw["id"])),
        description=str(raw.get("description", "")),
        security_level=level,
        data_use_conditions=tuple(raw.get("data_use_conditions", ()) or ()),
        policy=dict(raw.get("policy", {}) or {}),
    )


def config_from_mapping(raw: Mapping[str, Any]) -> Config:
    """Build a Config from a parsed YAML document (or a plain dict in tests)."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        if key in _SIMPLE_KEYS:
            name, convert = _SIMPLE_KEYS[key]
            values[name] = convert(value)
        elif key == "node":
            values["node"] = value if isinstance(value, NodeInfo) else _node_from(value or {})
        elif key == "datasets":
            values["datasets"] = tuple(d if isinstance(d, DatasetConfig) else _dataset_from(d) for d in (value or ()))
        elif key == "operator_tokens":
            values["operator_tokens"] = tuple(str(t) for t in (value or ()))
        elif key in ("testing", "demo", "erasure_purge_worker"):
            values[key] = bool(value)
        elif key == "security":
            if not isinstance(value or {}, Mapping):
                raise ConfigError("security: expected a mapping")
            values["security"] = dict(value or {})
        elif key == "network":
            values["network"] = value or None
        elif key == "ui":
            if not isinstance(value or {}, Mapping):
                raise ConfigError("ui: expected a mapping")
            values["ui"] = dict(value or {})
        elif key == "default_data_use_conditions":
            values["default_data_use_conditions"] = tuple(str(c) for c in (value or ()))
        else:
            unknown.append(str(key))
    if unknown:
        raise ConfigError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
    if "default_dataset" in values:
        _dataset_id(values["default_dataset"], "default_dataset")
    return _checked(Config(**values))


def _checked(cfg: Config) -> Config:
    """Bounds of the numbers a typo could turn into a busy loop or a job never tried."""
    if cfg.erasure_purge_poll_s <= 0:
        raise ConfigError("erasure_purge_poll_s must be a positive number of seconds")
    if cfg.erasure_purge_max_attempts < 1:
        raise ConfigError("erasure_purge_max_attempts must be at least 1")
    return cfg


def _apply_env(cfg: Config, env: Mapping[str, str]) -> Config:
    changes: dict[str, Any] = {}
    for key, (name, convert) in _SIMPLE_KEYS.items():
        value = env.get(ENV_PREFIX + key.upper())
        if value:
            try:
                changes[name] = convert(value)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}{key.upper()}: {exc}") from exc
    token = env.get(ENV_PREFIX + "OPERATOR_TOKEN")
    if token:
        changes["operator_tokens"] = (token,)
    node_changes = {
        field_: env[ENV_PREFIX + suffix] for suffix, field_ in _NODE_ENV.items() if env.get(ENV_PREFIX + suffix)
    }
    if node_changes:
        changes["node"] = replace(cfg.node, **node_changes)
    if "default_dataset" in changes:
        _dataset_id(changes["default_dataset"], f"{ENV_PREFIX}DEFAULT_DATASET")
    return _checked(replace(cfg, **changes)) if changes else cfg


def load_config(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The node's configuration: YAML file, then GATEWAY_* variables, then `overrides`."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    cfg = _apply_env(config_from_mapping(raw), env)
    if overrides:
        merged = config_from_mapping({**_as_mapping(cfg), **overrides})
        cfg = merged
    return cfg


def _as_mapping(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def private_data_dir(data_dir: Path) -> None:
    """Create the data directory 0700 and make everything this process creates private (umask 077).

    The data directory holds pseudonymised records, keys, uploads with hospital identifiers and the
    audit log: nothing in it is for other users of the machine. Called first by the server and the CLI.
    """
    os.umask(0o077)
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a directory the operator owns otherwise is left as it is
        os.chmod(path, 0o700)
