"""Throwaway databases on a PostgreSQL server: for `jobctl db check --scratch` and the tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def _admin_conninfo(server_url: str) -> str:
    """libpq conninfo of the server's maintenance database (to create and drop databases)."""
    parsed = make_url(server_url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


def with_database(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name``."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create ``name`` (optionally as a copy of ``template``) and return its URL."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with psycopg.connect(_admin_conninfo(server_url), autocommit=True) as conn:
        conn.execute(query)
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(_admin_conninfo(server_url), autocommit=True) as conn:
        conn.execute(query)


@contextmanager
def scratch_database(server_url: str, prefix: str = "pgjobs_scratch") -> Iterator[str]:
    """A new empty database for the block, dropped after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)
