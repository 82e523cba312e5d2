"""Rows kept by an older schema: what a data migration's back-fill test starts from."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.store import migrate as migrations


def keep_at_revision(engine: sa.Engine, revision: str, rows: tuple, now: datetime) -> None:
    """Migrate an empty database to `revision`, then keep FHIR resources in dataset `ds1` as that schema held them:
    `rows` of (type, id, resource, patient id), written with only the columns every revision since 0003 has."""
    migrations.upgrade(engine, revision)
    table = sa.table(
        "fhir_resources",
        *(sa.column(name) for name in ("dataset_id", "resource_type", "resource_id", "version", "patient_id")),
        *(sa.column(name) for name in ("content_hash", "received_at", "updated_at")),
        sa.column("resource", sa.JSON()),
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO datasets (id, name, description, created_at, updated_at) VALUES ('ds1', '', '', :t, :t)"
            ),
            {"t": now},
        )
        for resource_type, resource_id, resource, patient_id in rows:
            connection.execute(
                sa.insert(table).values(
                    dataset_id="ds1",
                    resource_type=resource_type,
                    resource_id=resource_id,
                    version=1,
                    patient_id=patient_id,
                    content_hash="h",
                    received_at=now,
                    updated_at=now,
                    resource=resource,
                )
            )
