"""The five tables of DESIGN.md, one module each. Import from here."""

from db.models.base import Base
from db.models.credential import AppCredential, CredentialStatus, Provider
from db.models.job import TERMINAL_STATUSES, ContentJob, JobStatus
from db.models.job_event import EventType, JobEvent
from db.models.mcp_server import AuthType, McpServer, McpServerStatus
from db.models.tenant import Tenant

__all__ = [
    "TERMINAL_STATUSES",
    "AppCredential",
    "AuthType",
    "Base",
    "ContentJob",
    "CredentialStatus",
    "EventType",
    "JobEvent",
    "JobStatus",
    "McpServer",
    "McpServerStatus",
    "Provider",
    "Tenant",
]
