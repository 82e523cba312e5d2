"""`column IN (many values)` with one bound parameter, whatever the number of values.

A plain `IN (...)` binds one parameter per value: a broad filter (`excluded:HP:0000118`
expands to ~18,000 HPO terms) times a few filters exceeds PostgreSQL's 65,535 bound
parameters (and SQLite's 32,766), and the query fails. Above `SMALL` values the set goes
as one parameter: a text array on PostgreSQL (`= ANY(:values)`, which its planner turns
into an index scan), a JSON array read by `json_each` on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

SMALL = 500  # up to this many values, a plain IN list (the planner sees the values)


class _InOneParameter(ColumnElement):
    inherit_cache = False  # the values are compiled into a fresh parameter each time: never cache them
    type = sa.Boolean()

    def __init__(self, column, values: list[str]):
        self.column = column
        self.values = values


@compiles(_InOneParameter, "postgresql")
def _postgresql(element: _InOneParameter, compiler, **kw) -> str:
    values = compiler.process(sa.bindparam(None, element.values, type_=ARRAY(sa.Text)), **kw)
    return f"{compiler.process(element.column, **kw)} = ANY({values})"


@compiles(_InOneParameter)
def _json_each(element: _InOneParameter, compiler, **kw) -> str:
    values = compiler.process(sa.bindparam(None, json.dumps(element.values), type_=sa.Text), **kw)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({values}))"


def in_values(column, values: Collection[str]):
    """`column IN values`: a plain list when short, else one array/JSON parameter."""
    values = list(values)
    if len(values) <= SMALL:
        return column.in_(values)
    return _InOneParameter(column, values)
