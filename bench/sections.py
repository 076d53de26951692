"""Sections of docs/benchmarks.md that a measure of their own regenerates (``--only api``,
``--only idle``), kept between HTML comments so that the full run leaves them in place."""

from __future__ import annotations


def _marks(name: str) -> tuple[str, str]:
    return f"<!-- {name}-bench:start -->", f"<!-- {name}-bench:end -->"


def splice(page: str, section: str, name: str) -> str:
    """``page`` with its ``name`` section replaced (or added at the end)."""
    start, end = _marks(name)
    block = f"{start}\n{section}{end}\n"
    if start in page and end in page:
        head, rest = page.split(start, 1)
        return head + block + rest.split(end, 1)[1].lstrip("\n")
    return page.rstrip() + "\n\n" + block


def existing(page: str, name: str) -> str | None:
    """The ``name`` section of ``page``, if it has one."""
    start, end = _marks(name)
    if start in page and end in page:
        return page.split(start, 1)[1].split(end, 1)[0].lstrip("\n")
    return None
