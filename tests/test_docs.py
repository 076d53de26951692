"""Docs that are generated from code stay current."""

from __future__ import annotations

from pathlib import Path

from pgjobs.settings import settings_reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_operations_doc_lists_every_setting() -> None:
    text = (DOCS / "operations.md").read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_reference(), (
        "regenerate with: jobctl settings --markdown"
    )
