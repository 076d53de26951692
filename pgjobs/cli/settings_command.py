"""`jobctl settings`: every setting's value in effect, and where it comes from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import click
from pydantic import SecretStr

from pgjobs.cli.common import echo_result, json_option
from pgjobs.settings import (
    Settings,
    env_name,
    get_settings,
    setting_sources,
    settings_reference,
)
from pgjobs.vault.redaction import redact_text

MASK = "********"
ALIGN_MAX = 56
"""The source column starts here (longer lines push theirs further)."""


@dataclass(frozen=True, slots=True)
class SettingInEffect:
    variable: str
    value: str
    source: str
    """environment, .env, default, embedded server, or dev key file."""


def settings_in_effect(settings: Settings) -> list[SettingInEffect]:
    """Each setting as a process started here would use it: the service URLs of the embedded
    servers and the development key file where those stand in for an unset value. Read-only:
    starts nothing and creates no file."""
    sources = setting_sources()
    stand_ins = _stand_ins(settings)
    shown = []
    for name in type(settings).model_fields:
        value, source = stand_ins.get(name) or (_shown(getattr(settings, name)), sources[name])
        shown.append(SettingInEffect(env_name(name), value, source))
    return shown


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    return redact_text(str(value))


def _stand_ins(settings: Settings) -> dict[str, tuple[str, str]]:
    """What takes the place of unset service URLs and keys in development."""
    if settings.environment != "development":
        return {}
    found: dict[str, tuple[str, str]] = {}
    from pgjobs.services import embedded

    if not (settings.database_url and settings.redis_url) and embedded.available():
        running = embedded.status(settings.dev_dir)
        urls = {"database_url": running.database_url, "redis_url": running.redis_url}
        for name, url in urls.items():
            if getattr(settings, name) is None:
                found[name] = (
                    redact_text(url) if url else "",
                    "embedded server" if url else "embedded server (not running: starts on use)",
                )
    keys = settings.encryption_keys
    if settings.key_file is None and not (keys and keys.get_secret_value().strip()):
        from pgjobs.vault.keys import DEV_KEY_FILE

        path = settings.dev_dir / DEV_KEY_FILE
        found["key_file"] = (
            str(path),
            "dev key file" if path.exists() else "dev key file (created on first use)",
        )
    return found


@click.command()
@click.option("--markdown", is_flag=True, help="Print the reference table of every setting.")
@json_option
def settings(markdown: bool, as_json: bool) -> None:
    """Show the settings in effect and where each comes from (secrets masked).

    Sources: environment, .env, default, and in development the embedded server (for an unset
    DATABASE_URL or REDIS_URL) and the dev key file (when no key is configured).
    """
    if markdown:
        click.echo(settings_reference())
        return
    rows = settings_in_effect(get_settings())
    width = min(ALIGN_MAX, max(len(f"{row.variable}={row.value}") for row in rows))
    echo_result(
        as_json,
        {row.variable: asdict(row) for row in rows},
        "\n".join(f"{row.variable}={row.value}".ljust(width) + f"  # {row.source}" for row in rows),
    )
