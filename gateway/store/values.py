"""`column IN (values)` with one bound parameter, however many values.

A plain `IN (...)` binds one parameter per value: a broad Beacon filter (`excluded:HP:0000118` expands to ~18,000
HPO terms) or a cross-link's carriers exceed the parameters a statement may have (PostgreSQL: 65,535; SQLite:
32,766 to 250,000 by build). Above `SMALL` values the set goes as one parameter: PostgreSQL gets
`column = ANY(:array)` (one text[] parameter, planned as a hash or index lookup); SQLite gets
`column IN (SELECT value FROM json_each(:json))` (one text parameter). Both keep the statement's shape independent
of the number of values, so the database pages and counts the joined rows itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

SMALL = 500  # up to this many values, `in_values` is a plain IN list (the planner sees the values)


class InValues(ColumnElement):
    """A boolean expression: `column` is one of `values` (strings)."""

    type = sa.Boolean()
    inherit_cache = False  # the values are part of the element, not a cache key
    _is_implicitly_boolean = True  # a comparison: no `= 1` after it, which would hide it from SQLite's planner

    def __init__(self, column: ColumnElement, values: Iterable[str]):
        self.column = column
        self.values = list(values)


@compiles(InValues, "postgresql")
def _in_array(element: InValues, compiler, **kw) -> str:
    values = sa.bindparam(None, element.values, type_=postgresql.ARRAY(sa.Text), unique=True)
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(values, **kw)})"


@compiles(InValues)
def _in_json_each(element: InValues, compiler, **kw) -> str:
    values = sa.bindparam(None, json.dumps(element.values), type_=sa.Text, unique=True)
    return (
        f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({compiler.process(values, **kw)}))"
    )


def in_values(column: ColumnElement, values: Iterable[str]) -> ColumnElement:
    """`column IN values`: a plain list when short, else one array/JSON parameter."""
    values = list(values)
    if len(values) <= SMALL:
        return column.in_(values)
    return InValues(column, values)


class InParameter(ColumnElement):
    """`column` is one of the values of the named parameter (`parameter_value` makes it): unlike InValues, the
    statement is built once and compiled once (its cache key holds no values), however many values each run."""

    type = sa.Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a comparison: no `= 1` after it, which would hide it from SQLite's planner
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement), ("name", InternalTraversal.dp_string)]

    def __init__(self, column: ColumnElement, name: str):
        self.column = column
        self.name = name


@compiles(InParameter, "postgresql")
def _in_array_parameter(element: InParameter, compiler, **kw) -> str:
    values = sa.bindparam(element.name, type_=postgresql.ARRAY(sa.Text))
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(values, **kw)})"


@compiles(InParameter)
def _in_json_parameter(element: InParameter, compiler, **kw) -> str:
    values = sa.bindparam(element.name, type_=sa.Text)
    return (
        f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({compiler.process(values, **kw)}))"
    )


def parameter_value(dialect_name: str, values: Iterable[str]) -> list[str] | str:
    """The value of an InParameter's parameter: a text array on PostgreSQL, a JSON array elsewhere."""
    return list(values) if dialect_name == "postgresql" else orjson.dumps(list(values)).decode()
