"""The command groups of `jobctl`: typed errors as one-line messages, and commands imported on
first use.

`jobctl --help` has to answer at once, so this module imports click and nothing else: the
modules of the commands (and with them SQLAlchemy, Dramatiq, pydantic) are imported only when
one of their commands runs (click's documented "lazy loading" pattern).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import click

# (module, class) of the errors a command ends with as a plain message (exit 1). Looked up in
# sys.modules: an error of a module that was never imported cannot have been raised.
TYPED_ERRORS = (
    ("pgjobs.db.errors", "JobsError"),
    ("pgjobs.vault.cipher", "CredentialCryptoError"),
    ("pgjobs.services.embedded", "EmbeddedServiceError"),
)


def _typed_errors() -> tuple[type[BaseException], ...]:
    loaded = ((sys.modules.get(module), name) for module, name in TYPED_ERRORS)
    return tuple(getattr(module, name) for module, name in loaded if module is not None)


class JobsGroup(click.Group):
    """A command group whose typed errors end the command with their message (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if isinstance(exc, _typed_errors()):
                raise click.ClickException(str(exc)) from None
            raise


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a command lives, and its short help (the first sentence of its docstring; a test
    keeps the two equal), so `--help` lists it without importing it."""

    module: str
    attribute: str
    short_help: str

    def load(self) -> click.Command:
        command = getattr(importlib.import_module(self.module), self.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.module}.{self.attribute} is not a click command")
        return command


class LazyGroup(JobsGroup):
    """A group whose commands are imported when one is run or asked for its own help."""

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.lazy_commands[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from the table: nothing is imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                text = loaded.get_short_help_str(limit)
            else:
                stand_in = click.Command(name, help=self.lazy_commands[name].short_help)
                text = stand_in.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
