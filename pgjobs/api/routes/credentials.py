"""``/v1/credentials``: the tenant's provider credentials, for tokens with the admin scope.

The secret is write-only: it goes in with create and rotate-secret and never comes out (answers
carry the mask). Handlers are plain functions: FastAPI runs them in its thread pool, on the
vault's own transactions (pgjobs/vault/credentials.py), off the event loop.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from pgjobs.api.audit import audit
from pgjobs.api.auth import Admin
from pgjobs.api.schemas import CredentialIn, MarkIn, RenameIn, SecretIn
from pgjobs.db.models import Provider
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.vault import credentials as vault

router = APIRouter(prefix="/v1/credentials", tags=["credentials"])


@router.post("", status_code=201, response_model=CredentialRead)
def create_credential(body: CredentialIn, principal: Admin) -> CredentialRead:
    """Store a secret (encrypted); the answer shows its mask only."""
    made = vault.create_credential(
        principal.tenant_id, provider=body.provider, name=body.name, secret=body.secret
    )
    audit(principal, "credential.create", credential_id=made.id)
    return made


@router.get("", response_model=list[CredentialRead])
def list_credentials(principal: Admin, provider: Provider | None = None) -> list[CredentialRead]:
    return vault.list_credentials(principal.tenant_id, provider=provider)


@router.get("/{credential_id}", response_model=CredentialRead)
def get_credential(credential_id: uuid.UUID, principal: Admin) -> CredentialRead:
    return vault.get_credential(principal.tenant_id, credential_id)


@router.patch("/{credential_id}", response_model=CredentialRead)
def rename_credential(credential_id: uuid.UUID, body: RenameIn, principal: Admin) -> CredentialRead:
    renamed = vault.rename_credential(principal.tenant_id, credential_id, body.name)
    audit(principal, "credential.rename", credential_id=credential_id)
    return renamed


@router.post("/{credential_id}/rotate-secret", response_model=CredentialRead)
def rotate_secret(credential_id: uuid.UUID, body: SecretIn, principal: Admin) -> CredentialRead:
    """Replace the secret; the status goes back to unknown."""
    rotated = vault.update_secret(principal.tenant_id, credential_id, body.secret)
    audit(principal, "credential.rotate_secret", credential_id=credential_id)
    return rotated


@router.post("/{credential_id}/mark", response_model=CredentialRead)
def mark_credential(credential_id: uuid.UUID, body: MarkIn, principal: Admin) -> CredentialRead:
    """Record that the credential was found valid or invalid."""
    marked = vault.mark_validated(principal.tenant_id, credential_id, body.status)
    audit(principal, "credential.mark", credential_id=credential_id, status=body.status.value)
    return marked


@router.delete("/{credential_id}", status_code=204, response_class=Response)
def delete_credential(credential_id: uuid.UUID, principal: Admin) -> Response:
    """Delete it (409 while an MCP server uses it)."""
    vault.delete_credential(principal.tenant_id, credential_id)
    audit(principal, "credential.delete", credential_id=credential_id)
    return Response(status_code=204)
