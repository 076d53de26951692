"""The jobs page's filter: statuses, type, creation time range and idempotency key, read from a
query string or a form, written back into links and hidden fields, and handed to
``list_jobs`` and the bulk calls (which check it: a bad value is an ``InvalidOption``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pgjobs.db.models import JobStatus
from pgjobs.producer.errors import InvalidOption

TEXT_FIELDS = ("type", "created_after", "created_before", "idempotency_key")


@dataclass(frozen=True, slots=True)
class PageFilter:
    statuses: tuple[str, ...]
    texts: tuple[tuple[str, str], ...]
    """(field, value) of the text fields given (times as typed: ``YYYY-MM-DDTHH:MM``, UTC)."""

    @classmethod
    def of(cls, params: Mapping[str, Sequence[str]]) -> PageFilter:
        known = {s.value for s in JobStatus}
        statuses = tuple(s for s in params.get("status", []) if s in known)
        texts = []
        for name in TEXT_FIELDS:
            value = next(iter(params.get(name, [])), "").strip()
            if value:
                texts.append((name, value))
        return cls(statuses, tuple(texts))

    def text(self, name: str) -> str:
        return dict(self.texts).get(name, "")

    def fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs: a link's query string, or a form's hidden fields."""
        return [("status", s) for s in self.statuses] + list(self.texts)

    def query(self) -> str:
        return urlencode(self.fields())

    def options(self) -> dict[str, Any]:
        """The filter as ``list_jobs`` / ``select_jobs`` keyword arguments."""
        options: dict[str, Any] = {"status": list(self.statuses) or None}
        for name, value in self.texts:
            options[name] = _utc(name, value) if name.startswith("created_") else value
        return options


def _utc(name: str, value: str) -> datetime:
    """A time typed in the page (a ``datetime-local`` field: no zone) read as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidOption.for_field(name, "must be a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
