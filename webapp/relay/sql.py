"""Plain SQL for the publish path, on SQLite and PostgreSQL alike.

A batch of publishes runs a handful of statements. Through the ORM, building and compiling
them cost several times what the database took (about a millisecond a batch), so the batch
path (``delivery.publish_batch``, ``ratelimit.Buckets``) uses these helpers instead: one
parameterized statement per model and field list, column and table names from the models'
metadata, values converted at the edges only where the two databases differ (date-times, and
binary columns that PostgreSQL returns as ``memoryview``).

Values passed in must already be database-native (``int``, ``float``, ``str``, ``bytes``,
``None``), except date-times, which are prepared as the ORM prepares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import BinaryField, DateTimeField, Field, Model
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware


@cache
def _fields(model: type[Model], names: tuple[str, ...]) -> tuple[Field[Any, Any], ...]:
    return tuple(model._meta.get_field(name) for name in names)  # type: ignore[misc]


def _column(field: Field[Any, Any] | None) -> str:
    assert field is not None and field.column is not None
    return connection.ops.quote_name(field.column)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


class _Preparer:
    """Prepares date-times as the ORM does (once per distinct value: a batch shares one)."""

    def __init__(self, fields: Sequence[Field[Any, Any]]) -> None:
        self.fields = fields
        self.times = [i for i, field in enumerate(fields) if isinstance(field, DateTimeField)]
        self.done: dict[tuple[int, Any], Any] = {}

    def __call__(self, row: Sequence[Any]) -> list[Any]:
        values = list(row)
        assert len(values) == len(self.fields)
        for i in self.times:
            key = (i, values[i])
            if key not in self.done:
                self.done[key] = self.fields[i].get_db_prep_save(values[i], connection)
            values[i] = self.done[key]
        return values


def _from_db(field: Field[Any, Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(field, DateTimeField):
        moment = value if isinstance(value, datetime) else parse_datetime(value)
        assert moment is not None
        return make_aware(moment, UTC) if is_naive(moment) else moment
    if isinstance(field, BinaryField):
        return bytes(value)
    return value


def in_list(model: type[Model], name: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """``(column IN (%s, ...), values)`` for a WHERE clause (``values`` must not be empty)."""
    (field,) = _fields(model, (name,))
    params = list(values)
    assert params, "an IN list needs at least one value"
    return f"{_column(field)} IN ({', '.join(['%s'] * len(params))})", params


def select_rows(
    model: type[Model],
    names: Sequence[str],
    where: Sequence[tuple[str, list[Any]]],
    *,
    order_by: str | None = None,
    for_update: bool = False,
) -> list[tuple[Any, ...]]:
    """``SELECT`` the ``names`` columns of the rows matching every ``where`` clause (from
    :func:`in_list`), as tuples of Python values; ``for_update`` locks them where the database
    can (PostgreSQL; SQLite's transactions already hold the write lock)."""
    fields = _fields(model, tuple(names))
    statement = f"SELECT {', '.join(_column(field) for field in fields)} FROM {_table(model)}"
    statement += " WHERE " + " AND ".join(clause for clause, _ in where)
    if order_by is not None:
        (order_field,) = _fields(model, (order_by,))
        statement += f" ORDER BY {_column(order_field)}"
    if for_update and connection.features.has_select_for_update:
        statement += " FOR UPDATE"
    params = [value for _, values in where for value in values]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    return [
        tuple(_from_db(field, value) for field, value in zip(fields, row, strict=True))
        for row in rows
    ]


def insert_rows(model: type[Model], names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """``INSERT INTO`` the model's table one row per ``rows`` item (values in ``names`` order)."""
    fields = _fields(model, tuple(names))
    prepare = _Preparer(fields)
    with connection.cursor() as cursor:
        cursor.executemany(_insert_statement(model, fields), [prepare(row) for row in rows])


@cache
def _insert_statement(model: type[Model], fields: tuple[Field[Any, Any], ...]) -> str:
    columns = ", ".join(_column(field) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {_table(model)} ({columns}) VALUES ({placeholders})"


def update_rows(model: type[Model], names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """``UPDATE`` rows by primary key: each ``rows`` item is the ``names`` values, then the pk."""
    fields = _fields(model, tuple(names))
    prepare = _Preparer(fields)
    with connection.cursor() as cursor:
        cursor.executemany(
            _update_statement(model, fields), [[*prepare(row[:-1]), row[-1]] for row in rows]
        )


@cache
def _update_statement(model: type[Model], fields: tuple[Field[Any, Any], ...]) -> str:
    assignments = ", ".join(f"{_column(field)} = %s" for field in fields)
    return f"UPDATE {_table(model)} SET {assignments} WHERE {_column(model._meta.pk)} = %s"
