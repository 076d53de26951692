"""API tokens: the format and the hash (property tests), storage, authentication, the
coalesced last-used mark, and `jobctl tokens`."""

from __future__ import annotations

import hashlib
import string
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from helpers import invoke
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from pgjobs.auth.store import (
    InvalidToken,
    LastUsedCoalescer,
    TokenNotFound,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
    touch_plan,
)
from pgjobs.auth.tokens import (
    TOKEN_LENGTH,
    TokenParts,
    format_token,
    new_token,
    parse_token,
    secret_hash,
    secret_matches,
)
from pgjobs.cli.token_commands import tokens as tokens_cli
from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.errors import InvalidInput, UnknownTenant
from pgjobs.db.models import TokenScope
from pgjobs.db.statements import run

PREFIXES = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=10, max_size=10)
SECRETS = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=43, max_size=43)


# --- format and hash --------------------------------------------------------------------------


def test_new_tokens_are_well_formed_and_distinct() -> None:
    made = [new_token() for _ in range(200)]
    for raw, parts in made:
        assert len(raw) == TOKEN_LENGTH and raw.startswith("pgj_")
        assert parse_token(raw) == parts
        assert len(parts.secret) == 43  # 256 bits
    assert len({parts.prefix for _, parts in made}) == 200
    assert len({parts.secret for _, parts in made}) == 200
    assert made[0][1].secret not in repr(made[0][1])


@given(PREFIXES, SECRETS)
def test_format_and_parse_are_inverse(prefix: str, secret: str) -> None:
    parts = TokenParts(prefix, secret)
    assert parse_token(format_token(parts)) == parts


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none()))
def test_parse_refuses_anything_else_without_raising(value: object) -> None:
    parsed = parse_token(value)
    if parsed is not None:  # only a real token's shape parses
        assert isinstance(value, str) and value == format_token(parsed)


@given(PREFIXES, SECRETS, st.integers(min_value=0, max_value=TOKEN_LENGTH - 1), st.characters())
def test_any_changed_character_is_not_the_same_token(
    prefix: str, secret: str, position: int, replacement: str
) -> None:
    raw = format_token(TokenParts(prefix, secret))
    changed = raw[:position] + replacement + raw[position + 1 :]
    if changed == raw:
        return
    parsed = parse_token(changed)
    assert parsed is None or parsed != TokenParts(prefix, secret)
    if parsed is not None and parsed.prefix == prefix:
        assert not secret_matches(parsed.secret, secret_hash(secret))


@given(SECRETS, SECRETS)
def test_the_hash_is_sha256_of_the_secret_and_tells_secrets_apart(a: str, b: str) -> None:
    assert secret_hash(a) == hashlib.sha256(a.encode()).digest()
    assert len(secret_hash(a)) == 32
    assert secret_matches(a, secret_hash(a))
    assert secret_matches(b, secret_hash(a)) == (a == b)


# --- storage and authentication ---------------------------------------------------------------


def test_create_list_authenticate_revoke(tenant_id: uuid.UUID) -> None:
    made = create_token(tenant_id, name="ci", scopes=["jobs:read", "admin"])
    assert made.token not in repr(made)
    principal = authenticate(made.token)
    assert principal.tenant_id == tenant_id and principal.token_id == made.record.id
    assert principal.allows(TokenScope.JOBS_WRITE)  # admin allows everything
    listed = list_tokens(tenant_id)
    assert [t.id for t in listed] == [made.record.id]
    assert listed[0].scopes == [TokenScope.ADMIN, TokenScope.JOBS_READ]
    with transaction() as conn:
        row = conn.execute(
            text("SELECT t::text AS whole, secret_hash FROM api_tokens t WHERE id = :id"),
            {"id": made.record.id},
        ).one()
    secret = made.token.split("_", 2)[2]
    assert secret not in row.whole and made.token not in row.whole  # only the hash is kept
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest()

    revoked = revoke_token(tenant_id, f"pgj_{made.record.prefix}")
    assert revoked.revoked_at is not None
    assert revoke_token(tenant_id, str(made.record.id)).revoked_at == revoked.revoked_at
    with pytest.raises(InvalidToken):
        authenticate(made.token)


def test_every_failure_is_the_same_error(tenant_id: uuid.UUID) -> None:
    good = create_token(tenant_id, name="good", scopes=["jobs:read"]).token
    expired = create_token(
        tenant_id,
        name="old",
        scopes=["jobs:read"],
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    ).token
    prefix, secret = good[4:14], good[15:]
    for raw in (
        "",
        "pgj_",
        good[:-1],
        good + "x",
        f"pgj_{prefix}_{secret[::-1]}",
        f"pgj_{'0' * 10}_{secret}",
        expired,
    ):
        with pytest.raises(InvalidToken) as caught:
            authenticate(raw)
        assert str(caught.value) == "invalid token"


def test_tokens_are_per_tenant(tenant_id: uuid.UUID, other_tenant: uuid.UUID) -> None:
    theirs = create_token(other_tenant, name="theirs", scopes=["jobs:read"])
    with pytest.raises(TokenNotFound):
        revoke_token(tenant_id, str(theirs.record.id))
    assert list_tokens(tenant_id) == []
    assert authenticate(theirs.token).tenant_id == other_tenant


def test_bad_input_is_refused(tenant_id: uuid.UUID) -> None:
    for scopes in ([], ["root"], "admin"):
        with pytest.raises(InvalidInput):
            create_token(tenant_id, name="x", scopes=scopes)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        create_token(tenant_id, name="", scopes=["admin"])
    with pytest.raises(UnknownTenant):
        create_token(uuid.uuid4(), name="x", scopes=["admin"])


def test_last_used_write_is_coalesced(tenant_id: uuid.UUID) -> None:
    """Per process, one mark a minute per token; across processes, the statement itself
    writes nothing within the minute after a mark."""
    made = create_token(tenant_id, name="busy", scopes=["jobs:read"])
    coalescer = LastUsedCoalescer(every_seconds=60)
    due = [coalescer.due(made.record.id, now=1000.0 + i) for i in range(120)]
    assert due == [True] + [False] * 59 + [True] + [False] * 59
    assert coalescer.due(uuid.uuid4(), now=1001.0)  # other tokens are counted apart

    def version() -> tuple[object, int]:
        with transaction() as conn:
            row = conn.execute(
                text("SELECT last_used_at, xmin::text::bigint AS v FROM api_tokens WHERE id = :id"),
                {"id": made.record.id},
            ).one()
        return row.last_used_at, row.v

    with autocommit() as conn:
        assert run(conn, touch_plan(made.record.id)) is True
        first = version()
        assert [run(conn, touch_plan(made.record.id)) for _ in range(5)] == [False] * 5
    assert version() == first  # no new row version


# --- jobctl tokens ----------------------------------------------------------------------------


def test_cli_create_list_revoke(tenant_id: uuid.UUID, tenant_slug: str) -> None:
    created = invoke(tokens_cli, "create", "--tenant", tenant_slug, "--name", "deploy")
    assert created.exit_code == 0, created.output
    raw = next(line for line in created.output.splitlines() if line.startswith("pgj_"))
    assert authenticate(raw).tenant_id == tenant_id
    listed = invoke(tokens_cli, "list", "--tenant", tenant_slug)
    assert "deploy" in listed.output and raw not in listed.output
    assert raw[:14] in listed.output  # the public prefix
    as_json = invoke(tokens_cli, "list", "--tenant", tenant_slug, "--json")
    assert raw not in as_json.output and "secret_hash" not in as_json.output
    revoked = invoke(tokens_cli, "revoke", "--tenant", tenant_slug, raw[:14])
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(InvalidToken):
        authenticate(raw)
    missing = invoke(tokens_cli, "revoke", "--tenant", tenant_slug, str(uuid.uuid4()))
    assert missing.exit_code == 1 and "not found" in missing.output


# --- operator tokens (the dashboard's tenant switch, docs/ui.md) -------------------------------


def test_cli_creates_an_operator_token(tenant_id: uuid.UUID, tenant_slug: str) -> None:
    created = invoke(tokens_cli, "create", "--tenant", tenant_slug, "--name", "ops", "--operator")
    assert created.exit_code == 0, created.output
    raw = next(line for line in created.output.splitlines() if line.startswith("pgj_"))
    principal = authenticate(raw)
    assert principal.is_operator and principal.allows(TokenScope.OPERATOR)
    assert principal.tenant_id == tenant_id  # its home tenant: the API acts on that one only
    plain = invoke(tokens_cli, "create", "--tenant", tenant_slug, "--name", "plain")
    raw = next(line for line in plain.output.splitlines() if line.startswith("pgj_"))
    assert not authenticate(raw).is_operator
    named = invoke(
        tokens_cli, "create", "--tenant", tenant_slug, "--name", "x", "--scope", "operator"
    )
    assert named.exit_code == 2  # not a scope one can name: only --operator gives it


def test_operator_scope_is_never_granted_by_scopes_nor_implied_by_admin(
    tenant_id: uuid.UUID, other_tenant: uuid.UUID
) -> None:
    with pytest.raises(InvalidInput):
        create_token(tenant_id, name="sneaky", scopes=[TokenScope.OPERATOR])
    with pytest.raises(InvalidInput):
        create_token(tenant_id, name="sneaky", scopes=["admin", "operator"])
    admin = authenticate(create_token(tenant_id, name="a", scopes=["admin"]).token)
    assert admin.allows(TokenScope.JOBS_WRITE) and not admin.allows(TokenScope.OPERATOR)
    with pytest.raises(InvalidToken):
        admin.acting_for(other_tenant)
    assert admin.acting_for(tenant_id) == admin
    made = create_token(tenant_id, name="op", scopes=["jobs:read"], operator=True)
    assert set(made.record.scopes) == {TokenScope.JOBS_READ, TokenScope.OPERATOR}
    operator = authenticate(made.token)
    away = operator.acting_for(other_tenant)
    assert away.tenant_id == other_tenant and away.actor == operator.actor
    assert not away.allows(TokenScope.JOBS_WRITE)  # its own scopes, wherever it acts
