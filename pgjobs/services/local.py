"""Servers for local commands and tests: start the embedded ones that are not configured.

Only commands a developer runs (``jobctl ...``, the demo, the tests) call this; library code
only finds servers (pgjobs/services/locate.py).
"""

from __future__ import annotations

from pgjobs.db.errors import ConfigurationError
from pgjobs.logs import get_logger
from pgjobs.services.locate import database_url, redis_url, sqlalchemy_url
from pgjobs.settings import Settings, get_settings

log = get_logger(__name__)


def ensure_local_services(
    settings: Settings | None = None, *, schema: bool = False
) -> tuple[str, str]:
    """Both URLs, starting embedded servers for whichever is not configured.

    With ``schema``, an embedded database is migrated to head (created on a new one, upgraded on
    one an older checkout made), so a fresh machine needs no setup step. A configured
    DATABASE_URL is never migrated from here (that is `jobctl db upgrade`).
    """
    settings = settings or get_settings()
    need_pg, need_redis = not settings.database_url, not settings.redis_url
    if need_pg or need_redis:
        if settings.environment == "production":
            raise ConfigurationError(
                "embedded servers are for development: set DATABASE_URL and REDIS_URL"
            )
        from pgjobs.services import embedded

        embedded.start(settings.dev_dir, postgres=need_pg, redis=need_redis)
    db_url = database_url(settings)
    if schema and need_pg:
        _migrate_embedded(db_url)
    return db_url, redis_url(settings)


def _migrate_embedded(url: str) -> None:
    from sqlalchemy import create_engine, inspect

    from pgjobs.db import migrate

    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            empty = not inspect(conn).has_table("content_jobs")
    finally:
        engine.dispose()
    if empty:
        log.info("embedded.schema.created", url=url)
    migrate.upgrade("head", url)  # at head already: one version lookup
