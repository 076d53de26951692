"""Array parameters of the state machine's statements travel as PostgreSQL array text
(pgjobs/db/statements.py: array_literal); whatever a payload, error or message id holds
must come back unchanged."""

from __future__ import annotations

import uuid

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from pgjobs.db.statements import array_literal

# PostgreSQL text cannot hold NUL (nor UTF-8 a lone surrogate); everything else may appear.
TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40
)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), max_size=20))
def test_text_arrays_round_trip(session_db_url: str, values: list[str | None]) -> None:
    with psycopg.connect(_conninfo(session_db_url)) as conn:
        row = conn.execute("SELECT CAST(%s AS text[])", (array_literal(values),)).fetchone()
    assert row is not None and row[0] == values


@settings(max_examples=300, deadline=None)
@given(values=st.lists(TEXT, min_size=2, max_size=20))
def test_string_arrays_written_at_once_round_trip(session_db_url: str, values: list[str]) -> None:
    """Only strings: quoted and escaped in one pass over the joined text."""
    with psycopg.connect(_conninfo(session_db_url)) as conn:
        row = conn.execute("SELECT CAST(%s AS text[])", (array_literal(values),)).fetchone()
    assert row is not None and row[0] == values


def test_a_string_holding_nul_is_written_on_its_own() -> None:
    """NUL joins the strings written at once; a string holding one is not joined (PostgreSQL
    refuses it then, as any text holding NUL)."""
    assert array_literal(["a", "b\x00c", 'd"']) == '{"a","b\x00c","d\\""}'


@settings(max_examples=50, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20),
    floats=st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))),
)
def test_number_and_uuid_arrays_round_trip(
    session_db_url: str, ids: list[int], floats: list[float | None]
) -> None:
    uuids = [uuid.uuid4() for _ in ids]
    with psycopg.connect(_conninfo(session_db_url)) as conn:
        row = conn.execute(
            "SELECT CAST(%s AS bigint[]), CAST(%s AS float8[]), CAST(%s AS uuid[])",
            (array_literal(ids), array_literal(floats), array_literal(uuids)),
        ).fetchone()
    assert row == (ids, floats, uuids)
