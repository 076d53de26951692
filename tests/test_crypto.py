"""pgjobs/vault/cipher.py: round trips, tamper resistance, nonce uniqueness, key parsing,
masking."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from pgjobs.settings import Settings
from pgjobs.vault.cipher import (
    CredentialCryptoError,
    EncryptedSecret,
    SecretCipher,
    associated_data,
    mask_secret,
)
from pgjobs.vault.keys import (
    EnvKeyProvider,
    FileKeyProvider,
    StaticKeyProvider,
    generate_key,
    key_provider_from_settings,
)

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
KEY_1_B64 = base64.b64encode(KEY_1).decode()
KEY_2_B64 = base64.b64encode(KEY_2).decode()
TENANT = uuid.UUID("11111111-1111-4111-8111-111111111111")
CREDENTIAL = uuid.UUID("22222222-2222-4222-8222-222222222222")
CIPHER = SecretCipher(StaticKeyProvider({"k1": KEY_1, "k2": KEY_2}, active="k1"))


def encrypt(plaintext: bytes) -> EncryptedSecret:
    return CIPHER.encrypt(plaintext, tenant_id=TENANT, credential_id=CREDENTIAL)


def assert_reveals_nothing(error: BaseException, *secrets: bytes | str) -> None:
    """The message, repr and cause chain hold no secret, raw or base64."""
    shown = f"{error} {error!r}"
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else secret
        forms = [
            base64.b64encode(raw).decode(),
            raw.decode("utf-8", "ignore"),
            raw.decode("latin-1"),
            raw.hex(),
            repr(raw)[2:-1],
        ]
        for form in forms:
            if len(form) >= 8:
                assert form not in shown
        assert raw not in shown.encode("utf-8", "surrogateescape")
    assert error.__cause__ is None
    # Raised inside an except block: the library's exception is hidden from tracebacks.
    assert error.__context__ is None or error.__suppress_context__


# --- Round trips ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_roundtrip_bytes(plaintext: bytes) -> None:
    assert CIPHER.decrypt(encrypt(plaintext), tenant_id=TENANT, credential_id=CREDENTIAL) == (
        plaintext
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=512))
def test_roundtrip_text(plaintext: str) -> None:
    secret = CIPHER.encrypt(plaintext, tenant_id=TENANT, credential_id=CREDENTIAL)
    decrypted = CIPHER.decrypt(secret, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert decrypted.decode("utf-8") == plaintext


def test_encrypt_uses_active_key_and_fresh_nonce() -> None:
    first, second = encrypt(b"same"), encrypt(b"same")
    assert first.key_id == second.key_id == "k1"
    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert b"same" not in first.ciphertext


def test_reencrypt_moves_to_active_key() -> None:
    old = encrypt(b"sk-rotate-me-please")
    rotated_cipher = SecretCipher(StaticKeyProvider({"k1": KEY_1, "k2": KEY_2}, active="k2"))
    new = rotated_cipher.reencrypt(old, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert new.key_id == "k2"
    assert new.nonce != old.nonce
    assert rotated_cipher.decrypt(new, tenant_id=TENANT, credential_id=CREDENTIAL) == (
        b"sk-rotate-me-please"
    )
    # After rotation, a provider holding only the new key still reads the row.
    only_new = SecretCipher(StaticKeyProvider({"k2": KEY_2}, active="k2"))
    assert only_new.decrypt(new, tenant_id=TENANT, credential_id=CREDENTIAL) == (
        b"sk-rotate-me-please"
    )


def test_associated_data_is_unambiguous() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert associated_data(a, b, "k1") != associated_data(b, a, "k1")
    assert associated_data(a, b, "k1") != associated_data(a, b, "k12")
    assert associated_data(a, b, "k1").startswith(b"cred:v1|")


# --- Tampering and mismatches -----------------------------------------------------------------

PLAINTEXTS = st.binary(min_size=8, max_size=256)


@settings(max_examples=300, deadline=None)
@given(PLAINTEXTS, st.data())
def test_any_bit_flip_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    secret = encrypt(plaintext)
    blob = bytearray(secret.nonce + secret.ciphertext)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    blob[bit // 8] ^= 1 << (bit % 8)
    tampered = EncryptedSecret(
        ciphertext=bytes(blob[12:]), nonce=bytes(blob[:12]), key_id=secret.key_id
    )
    with pytest.raises(CredentialCryptoError) as caught:
        CIPHER.decrypt(tampered, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert_reveals_nothing(caught.value, plaintext, KEY_1, KEY_2)


@settings(max_examples=200, deadline=None)
@given(PLAINTEXTS, st.data())
def test_any_truncation_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    secret = encrypt(plaintext)
    field = data.draw(st.sampled_from(["ciphertext", "nonce"]), label="field")
    value: bytes = getattr(secret, field)
    cut = data.draw(st.integers(0, len(value) - 1), label="keep")
    from_start = data.draw(st.booleans(), label="from_start")
    shortened = value[cut:] if from_start and cut else value[:cut]
    if field == "ciphertext":
        tampered = EncryptedSecret(shortened, secret.nonce, secret.key_id)
    else:
        tampered = EncryptedSecret(secret.ciphertext, shortened, secret.key_id)
    with pytest.raises(CredentialCryptoError) as caught:
        CIPHER.decrypt(tampered, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert_reveals_nothing(caught.value, plaintext, KEY_1, KEY_2)


@settings(max_examples=100, deadline=None)
@given(PLAINTEXTS, st.binary(min_size=32, max_size=32))
def test_same_key_id_other_key_bytes_is_refused(plaintext: bytes, other_key: bytes) -> None:
    secret = encrypt(plaintext)
    impostor = SecretCipher(StaticKeyProvider({"k1": other_key}, active="k1"))
    if other_key == KEY_1:
        return
    with pytest.raises(CredentialCryptoError) as caught:
        impostor.decrypt(secret, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert_reveals_nothing(caught.value, plaintext, KEY_1, other_key)


@settings(max_examples=100, deadline=None)
@given(PLAINTEXTS)
def test_other_key_id_is_refused(plaintext: bytes) -> None:
    secret = encrypt(plaintext)
    # Relabelled to another known key: the key differs and so does the associated data.
    relabelled = EncryptedSecret(secret.ciphertext, secret.nonce, "k2")
    with pytest.raises(CredentialCryptoError) as caught:
        CIPHER.decrypt(relabelled, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert_reveals_nothing(caught.value, plaintext, KEY_1, KEY_2)
    # Unknown to the provider.
    unknown = EncryptedSecret(secret.ciphertext, secret.nonce, "k9")
    with pytest.raises(CredentialCryptoError, match="k9") as caught:
        CIPHER.decrypt(unknown, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert_reveals_nothing(caught.value, plaintext, KEY_1, KEY_2)
    # Same key bytes under another id: the associated data no longer matches.
    renamed = SecretCipher(StaticKeyProvider({"k3": KEY_1}, active="k3"))
    with pytest.raises(CredentialCryptoError) as caught:
        renamed.decrypt(
            EncryptedSecret(secret.ciphertext, secret.nonce, "k3"),
            tenant_id=TENANT,
            credential_id=CREDENTIAL,
        )
    assert_reveals_nothing(caught.value, plaintext, KEY_1)


@settings(max_examples=100, deadline=None)
@given(PLAINTEXTS, st.uuids(), st.uuids())
def test_other_tenant_or_credential_is_refused(
    plaintext: bytes, other_tenant: uuid.UUID, other_credential: uuid.UUID
) -> None:
    secret = encrypt(plaintext)
    if other_tenant != TENANT:
        with pytest.raises(CredentialCryptoError) as caught:
            CIPHER.decrypt(secret, tenant_id=other_tenant, credential_id=CREDENTIAL)
        assert_reveals_nothing(caught.value, plaintext, KEY_1)
    if other_credential != CREDENTIAL:
        with pytest.raises(CredentialCryptoError) as caught:
            CIPHER.decrypt(secret, tenant_id=TENANT, credential_id=other_credential)
        assert_reveals_nothing(caught.value, plaintext, KEY_1)


def test_malformed_row_key_id_is_not_echoed() -> None:
    secret = encrypt(b"plaintext-value")
    weird = EncryptedSecret(secret.ciphertext, secret.nonce, KEY_2_B64)
    with pytest.raises(CredentialCryptoError) as caught:
        CIPHER.decrypt(weird, tenant_id=TENANT, credential_id=CREDENTIAL)
    assert KEY_2_B64 not in str(caught.value)


def test_error_message_names_key_id() -> None:
    secret = encrypt(b"plaintext-value")
    with pytest.raises(CredentialCryptoError) as caught:
        CIPHER.decrypt(secret, tenant_id=uuid.uuid4(), credential_id=CREDENTIAL)
    assert str(caught.value) == "credential could not be decrypted (key_id=k1)"


def test_no_repeated_nonce_in_100k_encryptions() -> None:
    cipher = SecretCipher(StaticKeyProvider({"k1": KEY_1}, active="k1"))
    nonces = {
        cipher.encrypt(b"x", tenant_id=TENANT, credential_id=CREDENTIAL).nonce
        for _ in range(100_000)
    }
    assert len(nonces) == 100_000


# --- Key providers ----------------------------------------------------------------------------


def test_env_provider_parses_and_defaults_to_first() -> None:
    provider = EnvKeyProvider(f" k1:{KEY_1_B64} , k2:{KEY_2_B64},")
    assert provider.key_ids() == ["k1", "k2"]
    assert provider.active_key_id() == "k1"
    assert provider.get("k2") == KEY_2
    assert EnvKeyProvider(f"k1:{KEY_1_B64},k2:{KEY_2_B64}", "k2").active_key_id() == "k2"
    with pytest.raises(CredentialCryptoError, match="nope"):
        provider.get("nope")


def test_file_provider_parses_comments_and_star(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# old key first\nk1:{KEY_1_B64}\n\n  *k2:{KEY_2_B64}\n# end\n")
    provider = FileKeyProvider(path)
    assert provider.key_ids() == ["k1", "k2"]
    assert provider.active_key_id() == "k2"
    assert provider.get("k1") == KEY_1
    assert FileKeyProvider(path, "k2").active_key_id() == "k2"
    with pytest.raises(CredentialCryptoError, match="disagrees"):
        FileKeyProvider(path, "k1")
    unstarred = tmp_path / "unstarred"
    unstarred.write_text(f"k1:{KEY_1_B64}\nk2:{KEY_2_B64}\n")
    assert FileKeyProvider(unstarred).active_key_id() == "k1"


def test_file_provider_refuses_two_active_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"*k1:{KEY_1_B64}\n*k2:{KEY_2_B64}\n")
    with pytest.raises(CredentialCryptoError, match="lines 1, 2") as caught:
        FileKeyProvider(path)
    assert_reveals_nothing(caught.value, KEY_1, KEY_2)


def test_file_provider_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialCryptoError, match="unreadable"):
        FileKeyProvider(tmp_path / "absent")


BAD_B64 = "not*valid*base64*but*long*enough*to*notice=="
SHORT_B64 = base64.b64encode(b"sixteen-byte-key").decode()
LONG_B64 = base64.b64encode(b"x" * 48).decode()


@pytest.mark.parametrize(
    ("spec", "active", "expected", "hidden"),
    [
        (f"k1:{BAD_B64}", None, "'k1' is not valid base64", BAD_B64),
        (f"k1:{SHORT_B64}", None, "'k1' must decode to exactly 32 bytes", SHORT_B64),
        (f"k1:{LONG_B64}", None, "'k1' must decode to exactly 32 bytes", LONG_B64),
        (f"k1:{KEY_1_B64},k1:{KEY_2_B64}", None, "'k1' is listed twice", KEY_2_B64),
        (f"k1:{KEY_1_B64}", "k2", "active key id 'k2' is not among", KEY_1_B64),
        (f"k1:{KEY_1_B64},{KEY_2_B64}", None, "entry 2 is not of the form", KEY_2_B64),
        (f"bad id!:{KEY_1_B64}", None, "entry 1 has a malformed key id", KEY_1_B64),
        (f"k1:{KEY_1_B64}", KEY_2_B64, "active key id '<invalid>'", KEY_2_B64),
        (" , ", None, "no encryption keys configured", ""),
    ],
)
def test_env_provider_errors_hide_key_values(
    spec: str, active: str | None, expected: str, hidden: str
) -> None:
    with pytest.raises(CredentialCryptoError) as caught:
        EnvKeyProvider(spec, active)
    assert expected in str(caught.value)
    if hidden:
        assert hidden not in str(caught.value)
        assert hidden not in repr(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("content", "expected", "hidden"),
    [
        (f"# keys\nk1:{KEY_1_B64}\nk2:{BAD_B64}\n", "'k2' is not valid base64", BAD_B64),
        (f"k1:{SHORT_B64}\n", "'k1' must decode to exactly 32 bytes", SHORT_B64),
        (f"k1:{KEY_1_B64}\n*k1:{KEY_2_B64}\n", "'k1' is listed twice", KEY_2_B64),
        (f"k1:{KEY_1_B64}\n{KEY_2_B64}\n", "on line 2 is not of the form", KEY_2_B64),
        ("# nothing here\n", "no encryption keys configured", ""),
    ],
)
def test_file_provider_errors_hide_key_values(
    tmp_path: Path, content: str, expected: str, hidden: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(CredentialCryptoError) as caught:
        FileKeyProvider(path)
    assert expected in str(caught.value)
    if hidden:
        assert hidden not in str(caught.value)


def test_static_provider_validates() -> None:
    with pytest.raises(CredentialCryptoError, match="exactly 32 bytes") as caught:
        StaticKeyProvider({"k1": b"short-key-material"}, active="k1")
    assert "short-key-material" not in str(caught.value)
    with pytest.raises(CredentialCryptoError, match="malformed"):
        StaticKeyProvider({"bad id": KEY_1}, active="bad id")
    with pytest.raises(CredentialCryptoError, match="not among"):
        StaticKeyProvider({"k1": KEY_1}, active="k2")


def test_provider_reprs_hold_no_key_material(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"*k1:{KEY_1_B64}\nk2:{KEY_2_B64}\n")
    providers = [
        EnvKeyProvider(f"k1:{KEY_1_B64},k2:{KEY_2_B64}"),
        FileKeyProvider(path),
        StaticKeyProvider({"k1": KEY_1, "k2": KEY_2}, active="k1"),
    ]
    for provider in [*providers, SecretCipher(providers[0])]:
        shown = f"{provider!r} {provider!s}"
        assert "k1" in shown
        for secret in (KEY_1_B64, KEY_2_B64, repr(KEY_1), repr(KEY_2), KEY_1.hex()):
            assert secret not in shown


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBS_ENCRYPTION_KEYS", "JOBS_KEY_FILE", "JOBS_ACTIVE_KEY_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_key_env")
def test_key_provider_from_settings(tmp_path: Path) -> None:
    env = key_provider_from_settings(
        Settings(
            _env_file=None,
            encryption_keys=SecretStr(f"k1:{KEY_1_B64},k2:{KEY_2_B64}"),
            active_key_id="k2",
        )
    )
    assert isinstance(env, EnvKeyProvider)
    assert env.active_key_id() == "k2"
    path = tmp_path / "keys"
    path.write_text(f"k1:{KEY_1_B64}\n*k2:{KEY_2_B64}\n")
    from_file = key_provider_from_settings(Settings(_env_file=None, key_file=path))
    assert isinstance(from_file, FileKeyProvider)
    assert from_file.active_key_id() == "k2"


@pytest.mark.usefixtures("no_key_env")
@pytest.mark.parametrize("keys", [None, SecretStr(""), SecretStr("  ")])
def test_key_provider_from_settings_none_configured(keys: SecretStr | None) -> None:
    settings_ = Settings(_env_file=None, encryption_keys=keys, key_file=None)
    with pytest.raises(CredentialCryptoError) as caught:
        key_provider_from_settings(settings_)
    assert str(caught.value) == (
        "no encryption keys configured: set JOBS_ENCRYPTION_KEYS (jobctl keys generate)"
    )


def test_generate_key_is_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert first != second
    provider = EnvKeyProvider(f"new:{first}")
    assert provider.get("new") == base64.b64decode(first)


def test_os_urandom_is_the_nonce_source(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_urandom(n: int) -> bytes:
        calls.append(n)
        return b"\x00" * n

    monkeypatch.setattr(os, "urandom", fake_urandom)
    secret = encrypt(b"value")
    assert calls == [12]
    assert secret.nonce == b"\x00" * 12


# --- Masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext", "masked"),
    [
        ("sk-proj-abcdefghijklmnop1234", "sk-...1234"),
        ("sk-abcdefghijkl", "sk-...ijkl"),
        ("abc-efghijklmnop", "abc-...mnop"),
        ("abcd-efghijklmnop", "...mnop"),
        ("0123456789abcdef", "...cdef"),
        ("ghp_abcdefghijklmnopqrst", "...qrst"),
        ("12-abcdefghijkl", "...ijkl"),
        ("sk-short", "****"),
        ("elevenchars", "****"),
        ("twelve-chars", "...hars"),
        ("", "****"),
    ],
)
def test_mask_secret(plaintext: str, masked: str) -> None:
    assert mask_secret(plaintext) == masked


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_mask_secret_reveals_at_most_prefix_and_four(plaintext: str) -> None:
    masked = mask_secret(plaintext)
    if len(plaintext) < 12:
        assert masked == "****"
        return
    prefix, _, tail = masked.partition("...")
    assert len(tail) == 4
    assert plaintext.endswith(tail)
    assert plaintext.startswith(prefix)
    assert len(prefix) <= 4
    assert len(masked) <= 32
