"""Migrations: up from empty, down to empty, up again; and `db check` catches drift."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Column, Integer, Table
from sqlalchemy.engine import make_url

from pgjobs.cli.main import cli
from pgjobs.db import migrate
from pgjobs.db.models import Base

TABLES = {
    "tenants",
    "app_credentials",
    "mcp_servers",
    "content_jobs",
    "job_events",
    "job_schedules",
}


def _tables(url: str) -> set[str]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows} - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert _tables(empty_db_url) == set()
    migrate.upgrade("head", empty_db_url)
    assert _tables(empty_db_url) == TABLES
    migrate.downgrade("base", empty_db_url)
    assert _tables(empty_db_url) == set()
    migrate.upgrade("head", empty_db_url)
    assert _tables(empty_db_url) == TABLES
    migrate.check(empty_db_url)


def test_check_fails_when_models_have_a_table_the_migrations_lack(empty_db_url: str) -> None:
    extra = Table("zz_unmigrated", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        with pytest.raises(migrate.MigrationMismatch, match="zz_unmigrated"):
            migrate.check(empty_db_url)
    finally:
        Base.metadata.remove(extra)
    migrate.check(empty_db_url)


def test_check_fails_when_database_drifts_from_models(empty_db_url: str) -> None:
    migrate.upgrade("head", empty_db_url)
    conninfo = (
        make_url(empty_db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(conninfo) as conn:
        conn.execute("drop index ix_content_jobs_tenant_id_status_id")
    with pytest.raises(migrate.MigrationMismatch, match="ix_content_jobs_tenant_id_status_id"):
        migrate.check(empty_db_url)


def test_cli_db_check_and_upgrade(use_fresh_db: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "check"])
    assert result.exit_code == 0, result.output
    assert "agree" in result.output
    result = runner.invoke(cli, ["db", "check", "--scratch"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "(head)" in result.output


def test_cli_refuses_non_local_database_without_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgjobs.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example.invalid:5432/prod")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        for args in (["db", "upgrade"], ["db", "downgrade"], ["db", "reset"], ["db", "seed"]):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2, (args, result.output)
            assert "--yes-really" in result.output
    finally:
        get_settings.cache_clear()
