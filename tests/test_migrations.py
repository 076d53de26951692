"""Migrations: up from empty, down to empty, up again; and `db check` catches drift."""

from __future__ import annotations

import psycopg
import pytest
from alembic.script import ScriptDirectory
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
    "api_tokens",
    "job_schedules",
    "tenant_quotas",
    "tenant_quota_usage",
    "rate_windows",
}


def _tables(url: str) -> set[str]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows} - {"pgjobs_alembic_version"}


def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` on ``url`` (committed); the last one's rows, if it returns any."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    rows: list[tuple[object, ...]] = []
    with psycopg.connect(conninfo) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
    return rows


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


def test_the_applications_own_tables_and_alembic_history_are_not_ours(empty_db_url: str) -> None:
    """An application's tables share the database (its jobs commit in its transactions), and
    so may its own Alembic history: autogenerate neither reports nor drops its tables, and our
    revision is kept in a version table of ours, not in Alembic's default one."""
    _sql(
        empty_db_url,
        "create table orders (id serial primary key, note text)",
        "create index ix_orders_note on orders (note)",
        "create table alembic_version (version_num varchar(32) primary key)",
        "insert into alembic_version values ('app0001')",
    )
    migrate.upgrade("head", empty_db_url)
    migrate.check(empty_db_url)
    assert _sql(empty_db_url, "select version_num from alembic_version") == [("app0001",)]
    [(ours,)] = _sql(empty_db_url, "select version_num from pgjobs_alembic_version")
    assert migrate.current(empty_db_url).startswith(str(ours))


def test_a_database_migrated_with_the_shared_version_table_moves_to_ours(
    empty_db_url: str,
) -> None:
    """Databases migrated before our version table kept our revision in alembic_version: the
    next upgrade moves it, once, and migrates on from there."""
    migrate.upgrade("0001", empty_db_url)
    _sql(  # as Alembic made it then
        empty_db_url,
        "alter table pgjobs_alembic_version rename to alembic_version",
        "alter table alembic_version rename constraint pgjobs_alembic_version_pkc"
        " to alembic_version_pkc",
    )
    migrate.upgrade("head", empty_db_url)  # 0001 -> head, not a second 0001
    assert _tables(empty_db_url) == TABLES  # alembic_version held only ours: gone
    [(head,)] = _sql(empty_db_url, "select version_num from pgjobs_alembic_version")
    assert head != "0001"
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
    head = ScriptDirectory.from_config(migrate.alembic_config(use_fresh_db)).get_current_head()
    assert f"database at {head}" in result.output


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
