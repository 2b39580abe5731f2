"""Many compare-and-set updates in one statement.

A sweep claims rows, changes them in memory, then writes every change with one UPDATE
that only touches rows still as it claimed them (a condition the caller states: the
state each row was in, that it is still due). On PostgreSQL the claim's row locks make
that always true; SQLite has no row locks, so there the count of rows the UPDATE matched
is the guarantee: fewer than expected raises `Contended`, and the caller rolls back and
reads again. It cannot tell which rows another writer took (two sweeps on one frozen
clock write identical values), so it never guesses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, Q
from django.db.models.sql.compiler import SQLCompiler

Values = dict[str, Any]


class Contended(Exception):
    """Rows changed between their claim and the write: nothing of the write may stand."""


def claimed_values(rows: Iterable[models.Model], fields: Sequence[str]) -> dict[int, Values]:
    """What the claim read, to compare against when writing (`write_changes`)."""
    return {row.pk: {name: getattr(row, name) for name in fields} for row in rows}


def write_changes(
    model: type[models.Model],
    rows: Iterable[models.Model],
    claimed: dict[int, Values],
    still_as_claimed: Q,
) -> int:
    """One UPDATE setting, on each row, the fields that differ from what was claimed,
    where `still_as_claimed` holds. Returns the rows written (no change: no query); raises
    `Contended` when some changed row no longer matched it."""
    changes = {row.pk: changed_fields(row, claimed[row.pk]) for row in rows}
    changes = {pk: fields for pk, fields in changes.items() if fields}
    if not changes:
        return 0
    written = (
        model._default_manager.filter(still_as_claimed, pk__in=list(changes))
        .order_by()
        .update(**assignments(model, changes))
    )
    if written != len(changes):
        raise Contended(
            f"{model.__name__}: {len(changes) - written} of {len(changes)} rows changed "
            "since they were claimed"
        )
    return written


def changed_fields(row: models.Model, claimed: Values) -> Values:
    return {name: getattr(row, name) for name, was in claimed.items() if getattr(row, name) != was}


def assignments(model: type[models.Model], changes: dict[int, Values]) -> dict[str, ByPk]:
    """For each field some row changes: its new value on each of those rows."""
    by_field: dict[str, dict[int, Any]] = defaultdict(dict)
    for pk, fields in changes.items():
        for name, value in fields.items():
            by_field[name][pk] = value
    return {name: ByPk(model, name, values) for name, values in by_field.items()}


class ByPk(Expression):
    """A column's new value on each row, by primary key, in one CASE:
    `CASE WHEN pk IN (...) THEN value ... ELSE column END`, one branch per distinct value
    (a stop sets the same four values on every stopped row). Django's Case(When(...)) does
    the same, but resolves a filter per branch: with a value per row (the next reminder of
    each instance) that took most of a 100-row sweep's time."""

    def __init__(self, model: type[models.Model], name: str, values: dict[int, Any]) -> None:
        self.column = cast(models.Field, model._meta.get_field(name))
        super().__init__(output_field=self.column)
        self.model, self.values = model, values

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[Any, ...]]:
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        pk = self.model._meta.pk
        assert pk is not None and pk.column and self.column.column  # concrete columns
        by_value: dict[Any, list[int]] = defaultdict(list)
        for row, value in self.values.items():
            by_value[value].append(row)
        branches: list[str] = []
        params: list[Any] = []
        for value, rows in by_value.items():
            placeholders = ", ".join(["%s"] * len(rows))
            branches.append(f"WHEN {table}.{quote(pk.column)} IN ({placeholders}) THEN %s")
            params += [*rows, self.column.get_db_prep_save(value, connection)]
        unchanged = f"{table}.{quote(self.column.column)}"
        return f"CASE {' '.join(branches)} ELSE {unchanged} END", tuple(params)
