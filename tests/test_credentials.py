"""pgjobs/vault/credentials.py and pgjobs/worker/credentials.py: the vault's API, the one decrypt
path, tenancy."""

from __future__ import annotations

import base64
import copy
import os
import pickle
import stat
import uuid
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import KEY_A, KEY_B, SECRET, add, invoke, set_keys
from sqlalchemy import text

from pgjobs.cli.credential_commands import credentials as credentials_cli
from pgjobs.cli.seed import import_env_credentials
from pgjobs.db.engine import transaction
from pgjobs.db.errors import InvalidInput, NotFound, UniqueViolation, UnknownTenant
from pgjobs.db.models import CredentialStatus, Provider
from pgjobs.mcp.registry import create_mcp_server, get_mcp_server
from pgjobs.settings import Settings
from pgjobs.vault import credentials as api
from pgjobs.vault.cipher import CredentialCryptoError, mask_secret
from pgjobs.vault.keys import DEV_KEY_FILE, key_provider
from pgjobs.vault.redaction import REDACTED, redact_text
from pgjobs.worker.credentials import (
    Plaintext,
    PlaintextDropped,
    mcp_headers,
    use_credential,
    use_named_credential,
)

# --- The API ------------------------------------------------------------------------------------


def test_create_returns_the_mask_only(tenant: uuid.UUID) -> None:
    created = add(tenant)
    assert created.secret_mask == "sk-...cdef" == mask_secret(SECRET)
    assert created.status is CredentialStatus.UNKNOWN
    assert created.key_id == "ka"
    assert created.tenant_id == tenant
    for shown in (repr(created), str(created), created.model_dump_json()):
        assert SECRET not in shown
    assert api.get_credential(tenant, created.id) == created
    assert api.find_credential(tenant, "openai", "default") == created


def test_list_is_masked_and_filtered(tenant: uuid.UUID) -> None:
    add(tenant, "b")
    add(tenant, "a", secret="short")
    add(tenant, "c", provider="cfbd")
    listed = api.list_credentials(tenant)
    assert [(c.provider.value, c.name) for c in listed] == [
        ("cfbd", "c"),
        ("openai", "a"),
        ("openai", "b"),
    ]
    assert listed[1].secret_mask == "****"
    assert [c.name for c in api.list_credentials(tenant, provider=Provider.CFBD)] == ["c"]


def test_duplicate_name_is_refused(tenant: uuid.UUID) -> None:
    add(tenant)
    with pytest.raises(api.CredentialExists, match="openai/default already exists") as info:
        add(tenant)
    assert isinstance(info.value, UniqueViolation)
    add(tenant, provider="espn")  # same name, other provider: fine


def test_invalid_input_names_fields_never_values(tenant: uuid.UUID) -> None:
    marker = "VALUE-MARKER-0123456789"
    cases = [
        ({"provider": "nope", "name": "x", "secret": marker}, ("provider",)),
        ({"provider": "openai", "name": f"/{marker}", "secret": marker}, ("name",)),
        ({"provider": "openai", "name": "x", "secret": "   "}, ("secret",)),
        ({"provider": "openai", "name": "x", "secret": marker * 500}, ("secret",)),
    ]
    for fields, expected in cases:
        with pytest.raises(InvalidInput) as info:
            api.create_credential(tenant, **fields)
        assert info.value.fields == expected
        assert marker not in f"{info.value} {info.value!r}"
        assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(InvalidInput, match="provider"):
        api.list_credentials(tenant, provider="nope")


def test_unknown_tenant(keys: None) -> None:
    with pytest.raises(UnknownTenant):
        add(uuid.uuid4())


def test_rename(tenant: uuid.UUID) -> None:
    first, second = add(tenant, "one"), add(tenant, "two")
    renamed = api.rename_credential(tenant, first.id, "uno")
    assert renamed.name == "uno" and renamed.secret_mask == first.secret_mask
    with pytest.raises(api.CredentialExists):
        api.rename_credential(tenant, second.id, "uno")
    with pytest.raises(InvalidInput, match="name"):
        api.rename_credential(tenant, second.id, "no/slashes")


def test_update_secret_resets_status(tenant: uuid.UUID) -> None:
    created = add(tenant)
    api.mark_validated(tenant, created.id, "valid")
    updated = api.update_secret(tenant, created.id, "sk-new-secret-value-9999")
    assert updated.secret_mask == "sk-...9999"
    assert updated.status is CredentialStatus.UNKNOWN and updated.last_validated_at is None
    with use_credential(tenant, created.id) as secret:
        assert secret.reveal() == "sk-new-secret-value-9999"
    with pytest.raises(InvalidInput, match="secret"):
        api.update_secret(tenant, created.id, "")


def test_mark_validated(tenant: uuid.UUID) -> None:
    created = add(tenant)
    valid = api.mark_validated(tenant, created.id, CredentialStatus.VALID)
    assert valid.status is CredentialStatus.VALID and valid.last_validated_at is not None
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    invalid = api.mark_validated(tenant, created.id, "invalid", at=when)
    assert invalid.status is CredentialStatus.INVALID and invalid.last_validated_at == when
    for bad in ("unknown", "maybe"):
        with pytest.raises(InvalidInput, match="status"):
            api.mark_validated(tenant, created.id, bad)


def test_delete(tenant: uuid.UUID) -> None:
    created = add(tenant)
    api.delete_credential(tenant, created.id)
    with pytest.raises(api.CredentialNotFound) as info:
        api.get_credential(tenant, created.id)
    assert isinstance(info.value, NotFound)
    with pytest.raises(api.CredentialNotFound):
        api.delete_credential(tenant, created.id)


def test_delete_refused_while_a_server_uses_it(tenant: uuid.UUID) -> None:
    created = add(tenant)
    server = create_mcp_server(
        tenant, label="srv", base_url="https://mcp.example", auth_type="token", auth_ref=created.id
    )
    with pytest.raises(api.CredentialInUse, match="srv"):
        api.delete_credential(tenant, created.id)
    assert get_mcp_server(tenant, server.id).auth_ref == created.id


# --- The worker's decrypt path -----------------------------------------------------------------


def test_use_credential_yields_a_hidden_plaintext(tenant: uuid.UUID) -> None:
    created = add(tenant)
    with use_credential(tenant, created.id) as secret:
        assert secret.reveal() == SECRET
        for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}"):
            assert SECRET not in shown
        assert redact_text(f"calling with {SECRET}") == f"calling with {REDACTED}"
        with pytest.raises(TypeError):
            pickle.dumps(secret)
        with pytest.raises(TypeError):
            copy.copy(secret)
    assert redact_text(SECRET) == SECRET  # no longer in scope
    with pytest.raises(PlaintextDropped):
        secret.reveal()
    with use_named_credential(tenant, "openai", "default") as same:
        assert same.reveal() == SECRET


def test_plaintext_is_dropped_when_the_block_raises(tenant: uuid.UUID) -> None:
    created = add(tenant)
    kept: list[Plaintext] = []
    with pytest.raises(RuntimeError), use_credential(tenant, created.id) as secret:
        kept.append(secret)
        raise RuntimeError("handler failed")
    with pytest.raises(PlaintextDropped):
        kept[0].reveal()


def test_wrong_key_is_a_typed_error_that_reveals_nothing(
    tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = add(tenant)
    set_keys(monkeypatch, f"ka:{KEY_B}")  # same id, other key material
    with pytest.raises(CredentialCryptoError, match="could not be decrypted") as info:
        with use_credential(tenant, created.id):
            pass
    assert str(created.id) in str(info.value)
    assert SECRET not in f"{info.value} {info.value!r}" and KEY_A not in str(info.value)
    assert info.value.__cause__ is None
    set_keys(monkeypatch, f"kb:{KEY_B}")  # the row's key is not configured at all
    with pytest.raises(CredentialCryptoError, match="unknown encryption key id 'ka'"):
        with use_credential(tenant, created.id):
            pass


def test_ciphertext_is_bound_to_its_row(tenant: uuid.UUID) -> None:
    """A ciphertext copied onto another row (even the same tenant's) does not decrypt."""
    source, target = add(tenant, "source"), add(tenant, "target", secret="other-secret-000000")
    with transaction() as conn:
        conn.execute(
            text(
                "UPDATE app_credentials t SET secret_ciphertext = s.secret_ciphertext, "
                "secret_nonce = s.secret_nonce FROM app_credentials s "
                "WHERE s.id = :source AND t.id = :target"
            ),
            {"source": source.id, "target": target.id},
        )
    with pytest.raises(CredentialCryptoError), use_credential(tenant, target.id):
        pass


def test_mcp_headers(tenant: uuid.UUID) -> None:
    token = add(tenant, "token")
    login = add(tenant, "login", secret="robot:pa55-w0rd-xyz", provider="custom")
    with_token = create_mcp_server(
        tenant,
        label="t",
        base_url="https://a.example",
        auth_type="token",
        auth_ref=token.id,
        metadata={"headers": {"X-Org": "acme"}},
    )
    with mcp_headers(with_token) as headers:
        assert headers == {"X-Org": "acme", "Authorization": f"Bearer {SECRET}"}
    assert headers == {"X-Org": "acme"}
    opened: list[uuid.UUID] = []

    def opener(ref: uuid.UUID) -> AbstractContextManager[Plaintext]:
        opened.append(ref)
        return use_credential(tenant, ref)

    with mcp_headers(with_token, opener) as headers:
        assert headers["Authorization"] == f"Bearer {SECRET}"
    assert opened == [token.id]
    basic = create_mcp_server(
        tenant, label="b", base_url="https://b.example", auth_type="basic", auth_ref=login.id
    )
    with mcp_headers(basic) as headers:
        expected = base64.b64encode(b"robot:pa55-w0rd-xyz").decode()
        assert headers == {"Authorization": f"Basic {expected}"}
        assert (
            redact_text(f"{headers} pa55-w0rd-xyz")
            == f"{{'Authorization': '{REDACTED}'}} {REDACTED}"
        )
    plain = create_mcp_server(tenant, label="n", base_url="https://n.example")
    with mcp_headers(plain) as headers:
        assert headers == {}


# --- Tenancy ------------------------------------------------------------------------------------


def test_another_tenants_credential_is_missing(tenant: uuid.UUID, other_tenant: uuid.UUID) -> None:
    theirs = add(other_tenant)
    attempts = [
        lambda: api.get_credential(tenant, theirs.id),
        lambda: api.find_credential(tenant, "openai", "default"),
        lambda: api.rename_credential(tenant, theirs.id, "mine"),
        lambda: api.update_secret(tenant, theirs.id, "sk-overwritten-by-a-0000"),
        lambda: api.mark_validated(tenant, theirs.id, "invalid"),
        lambda: api.delete_credential(tenant, theirs.id),
        lambda: api.load_encrypted(tenant, theirs.id),
        lambda: use_credential(tenant, theirs.id).__enter__(),
        lambda: create_mcp_server(
            tenant, label="x", base_url="https://x.example", auth_type="token", auth_ref=theirs.id
        ),
    ]
    for attempt in attempts:
        with pytest.raises(api.CredentialNotFound, match="not found"):
            attempt()
    assert api.list_credentials(tenant) == []
    assert api.get_credential(other_tenant, theirs.id) == theirs
    with use_credential(other_tenant, theirs.id) as secret:
        assert secret.reveal() == SECRET


# --- Environment import ---------------------------------------------------------------------


def test_import_env_is_idempotent(tenant: uuid.UUID) -> None:
    environ = {
        "OPENAI_API_KEY": "sk-from-env-000000001",
        "CFBD_API_KEY": "cfbd-from-env-0000001",
        "ESPN_API_KEY": "  ",
        "CUSTOM_API_KEY_MY_TOOL": "tool-from-env-000001",
        "UNRELATED": "x",
    }
    first = import_env_credentials(tenant, environ)
    assert first.created == ["cfbd/default", "custom/my-tool", "openai/default"]
    assert all(c.status is CredentialStatus.UNKNOWN for c in api.list_credentials(tenant))
    again = import_env_credentials(tenant, environ)
    assert again.created == [] and len(again.kept) == 3
    environ["OPENAI_API_KEY"] = "sk-rotated-in-env-0002"
    replaced = import_env_credentials(tenant, environ, replace=True)
    assert len(replaced.replaced) == 3
    with use_named_credential(tenant, "openai", "default") as secret:
        assert secret.reveal() == "sk-rotated-in-env-0002"
    assert len(api.list_credentials(tenant)) == 3


# --- Development keys ---------------------------------------------------------------------------


def test_dev_keys_are_created_once(tmp_path: Path) -> None:
    settings = Settings(environment="development", dev_dir=tmp_path, encryption_keys=None)
    provider = key_provider(settings)
    path = tmp_path / DEV_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = key_provider(settings)
    assert again.key_ids() == provider.key_ids() == [provider.active_key_id()]
    assert again.get(provider.active_key_id()) == provider.get(provider.active_key_id())
    assert [p.name for p in tmp_path.iterdir()] == [DEV_KEY_FILE]


def test_production_without_keys_is_refused(tmp_path: Path) -> None:
    settings = Settings(environment="production", dev_dir=tmp_path, encryption_keys=None)
    with pytest.raises(CredentialCryptoError, match="no encryption keys configured"):
        key_provider(settings)
    assert not (tmp_path / DEV_KEY_FILE).exists()


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_lifecycle(tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    t = str(tenant)
    added = invoke(credentials_cli, "add", "--tenant", t, "--provider", "openai", input=SECRET)
    assert added.exit_code == 0, added.output
    assert "sk-...cdef" in added.output
    listed = invoke(credentials_cli, "list", "--tenant", t)
    assert "openai" in listed.output and "sk-...cdef" in listed.output
    assert (
        "openai"
        in invoke(credentials_cli, "show", "--tenant", t, "openai/default", "--json").output
    )
    renamed = invoke(credentials_cli, "rename", "--tenant", t, "openai/default", "main")
    assert "renamed openai/main" in renamed.output
    rotated = invoke(
        credentials_cli,
        "rotate-secret",
        "--tenant",
        t,
        "openai/main",
        input="sk-next-000000009876\n",
    )
    assert "sk-...9876" in rotated.output
    marked = invoke(credentials_cli, "mark", "--tenant", t, "openai/main", "valid")
    assert marked.exit_code == 0 and "status valid" in marked.output
    monkeypatch.setenv("CFBD_API_KEY", "cfbd-env-secret-0000")
    imported = invoke(credentials_cli, "import-env", "--tenant", t)
    assert "created: cfbd/default" in imported.output
    assert "kept" in invoke(credentials_cli, "import-env", "--tenant", t).output
    deleted = invoke(credentials_cli, "delete", "--tenant", t, "openai/main", "--yes")
    assert deleted.exit_code == 0 and "deleted openai/main" in deleted.output
    every = "".join(r.output for r in (added, listed, renamed, rotated, imported, deleted))
    assert SECRET not in every and "cfbd-env-secret-0000" not in every


def test_cli_errors(tenant: uuid.UUID) -> None:
    t = str(tenant)
    missing = invoke(credentials_cli, "rename", "--tenant", t, "openai/none", "x")
    assert missing.exit_code == 1 and "credential openai/none not found" in missing.output
    unknown = invoke(credentials_cli, "list", "--tenant", "no-such-tenant")
    assert unknown.exit_code == 1 and "unknown tenant" in unknown.output
    # There is no way to pass a secret as an argument.
    argument = invoke(
        credentials_cli, "add", "--tenant", t, "--provider", "openai", "--secret", SECRET
    )
    assert argument.exit_code == 2
    invoke(credentials_cli, "add", "--tenant", t, "--provider", "openai", input=SECRET)
    again = invoke(credentials_cli, "add", "--tenant", t, "--provider", "openai", input=SECRET)
    assert again.exit_code == 1 and "already exists" in again.output
