"""Where PostgreSQL and Redis are: configured URLs, else the embedded dev servers.

Library code only *finds* servers (a configured URL, or embedded ones already running). Starting
embedded servers is for local commands and tests (:func:`ensure_local_services`), so a production
process with a missing DATABASE_URL fails loudly instead of quietly starting a private database.
"""

from __future__ import annotations

import structlog

from db.errors import ConfigurationError
from db.settings import Settings, get_settings

log = structlog.get_logger(__name__)
_HINT = "set {var}, or start the embedded servers with `jobctl dev up`"


def database_url(settings: Settings | None = None) -> str:
    """The PostgreSQL URL to use, as given (``postgresql://...``)."""
    return _url(settings or get_settings(), 0, "PostgreSQL", "DATABASE_URL")


def redis_url(settings: Settings | None = None) -> str:
    """The Redis URL to use."""
    return _url(settings or get_settings(), 1, "Redis", "REDIS_URL")


def _url(settings: Settings, which: int, server: str, var: str) -> str:
    """The configured URL (``var``), else the running embedded server's (``which``: 0 for
    PostgreSQL, 1 for Redis, as :func:`_embedded_urls` returns them)."""
    configured = (settings.database_url, settings.redis_url)[which]
    found = configured or _embedded_urls(settings)[which]
    if found is None:
        raise ConfigurationError(f"no {server} configured: " + _HINT.format(var=var))
    return found


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
        from db import embedded

        embedded.start(settings.dev_dir, postgres=need_pg, redis=need_redis)
    db_url = database_url(settings)
    if schema and need_pg:
        _migrate_embedded(db_url)
    return db_url, redis_url(settings)


def _migrate_embedded(url: str) -> None:
    from sqlalchemy import create_engine, inspect

    from db import migrate

    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            empty = not inspect(conn).has_table("content_jobs")
    finally:
        engine.dispose()
    if empty:
        log.info("embedded.schema.created", url=url)
    migrate.upgrade("head", url)  # at head already: one version lookup


def _embedded_urls(settings: Settings) -> tuple[str | None, str | None]:
    """URLs of embedded servers running for this project now, if any."""
    if settings.environment == "production":
        return None, None
    from db import embedded

    if not embedded.available():
        return None, None
    found = embedded.status(settings.dev_dir)
    return found.database_url, found.redis_url


def sqlalchemy_url(url: str) -> str:
    """Select the psycopg 3 driver for a plain ``postgresql://`` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
