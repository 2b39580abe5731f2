"""SQL expressions Django has no portable form of."""

from __future__ import annotations

from typing import Any

from django.db.models import BooleanField, Func

# SQLite keeps datetimes as text, with or without a fraction ("10:00:30" or
# "10:00:30.5"): both sides of a comparison are written in one form first.
SQLITE_MOMENT = "strftime('%%%%Y-%%%%m-%%%%d %%%%H:%%%%M:%%%%f', %s)"


class SecondsPassed(Func):
    """Whether `seconds` (an integer column, read per row) have passed from `since` (a
    datetime column) to `now`: NULL when `since` is NULL.

    Django multiplies a duration by a number only on PostgreSQL, so this is written for
    each database: an interval on PostgreSQL; on SQLite, both moments in strftime's text
    form (to the millisecond: a deadline may come up to a millisecond early, well inside
    the sweep's second)."""

    output_field = BooleanField()
    arity = 3

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sqls, params = self.compile_arguments(compiler, connection)
        since, seconds, now = sqls
        return f"({since} + interval '1 second' * {seconds} <= {now})", params

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sqls, params = self.compile_arguments(compiler, connection)
        since, seconds, now = sqls
        deadline = SQLITE_MOMENT % f"{since}, '+' || {seconds} || ' seconds'"
        return f"({deadline} <= {SQLITE_MOMENT % now})", params

    def compile_arguments(self, compiler: Any, connection: Any) -> tuple[list[str], list[Any]]:
        sqls, params = [], []
        for argument in self.source_expressions:
            sql, argument_params = compiler.compile(argument)
            sqls.append(sql)
            params.extend(argument_params)
        return sqls, params
