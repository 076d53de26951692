"""Where PostgreSQL and Redis are: configured URLs, else the embedded dev servers.

Library code only *finds* servers (a configured URL, or embedded ones already running). Starting
embedded servers is for local commands and tests (pgjobs/services/local.py), so a production
process with a missing DATABASE_URL fails loudly instead of quietly starting a private database.
"""

from __future__ import annotations

from pgjobs.db.errors import ConfigurationError
from pgjobs.settings import Settings, get_settings

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


def _embedded_urls(settings: Settings) -> tuple[str | None, str | None]:
    """URLs of embedded servers running for this project now, if any."""
    if settings.environment == "production":
        return None, None
    from pgjobs.services import embedded

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
