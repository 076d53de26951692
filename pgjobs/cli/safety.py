"""Guard for commands that migrate or destroy data: local databases only, unless told."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url

LOCAL_HOSTS = frozenset({None, "", "localhost", "127.0.0.1", "::1"})


def is_local(url: str) -> bool:
    """True for a loopback host or a unix socket (host empty or a path)."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")
    if isinstance(host, tuple):
        host = host[0] if host else None
    return host in LOCAL_HOSTS or (isinstance(host, str) and host.startswith("/"))


def require_local(url: str, yes_really: bool, action: str) -> None:
    """Refuse ``action`` on a non-local database unless ``--yes-really`` was given."""
    if not yes_really and not is_local(url):
        host = make_url(url).host
        raise click.UsageError(
            f"refusing to {action} the non-local database at {host}: pass --yes-really"
        )
