"""The engine is lazy, errors are ours, the health check answers."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from pgjobs.db import engine as engine_module
from pgjobs.db.errors import ConfigurationError, DatabaseUnavailable
from pgjobs.services.health import check_all
from pgjobs.settings import get_settings


def test_engine_does_not_connect_before_first_query(use_session_db: str) -> None:
    connects: list[object] = []
    eng = engine_module.get_engine()
    event.listen(eng, "connect", lambda *a: connects.append(a))
    engine_module.session_factory()
    assert eng.pool.checkedout() == 0
    assert connects == []
    assert eng.pool.checkedin() == 0
    with engine_module.transaction() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    assert len(connects) == 1


def test_import_of_the_api_opens_no_connection(use_session_db: str) -> None:
    engine_module.reset_engine()
    assert engine_module._engine is None
    import pgjobs.db.models  # noqa: F401

    assert engine_module._engine is None


def test_engine_is_rebuilt_after_settings_change(use_session_db: str) -> None:
    first = engine_module.get_engine()
    assert engine_module.get_engine() is first
    engine_module.reset_engine()
    assert engine_module.get_engine() is not first


def test_unreachable_database_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    get_settings.cache_clear()
    engine_module.reset_engine()
    try:
        with pytest.raises(DatabaseUnavailable), engine_module.transaction() as conn:
            conn.execute(text("select 1"))
    finally:
        engine_module.reset_engine()
        get_settings.cache_clear()


def test_missing_configuration_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("JOBS_DEV_DIR", str(tmp_path))
    get_settings.cache_clear()
    engine_module.reset_engine()
    try:
        with pytest.raises(ConfigurationError, match="DATABASE_URL"):
            engine_module.get_engine()
    finally:
        get_settings.cache_clear()


def test_health_check_reports_both_services(use_session_db: str) -> None:
    results = {r.name: r for r in check_all()}
    assert results["postgres"].ok and results["redis"].ok
    assert results["postgres"].latency_ms is not None


def test_health_check_reports_a_down_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:hunter2pw@127.0.0.1:1/none")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    engine_module.reset_engine()
    try:
        results = {r.name: r for r in check_all()}
        assert not results["postgres"].ok and not results["redis"].ok
        assert "hunter2pw" not in (results["postgres"].error or "")
    finally:
        engine_module.reset_engine()
        get_settings.cache_clear()


def test_slow_queries_are_logged_without_parameters(
    use_session_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs

    monkeypatch.setenv("JOBS_SLOW_QUERY_MS", "0")
    get_settings.cache_clear()
    engine_module.reset_engine()
    with capture_logs() as logs, engine_module.transaction() as conn:
        conn.execute(text("select CAST(:v AS text)"), {"v": "PARAM-NOT-LOGGED"})
    slow = [e for e in logs if e["event"] == "db.query.slow"]
    assert slow and "duration_ms" in slow[0]
    assert "PARAM-NOT-LOGGED" not in repr(logs)
    engine_module.reset_engine()
