"""The tables (docs/architecture.md), one module each. Import from here."""

from pgjobs.db.models.api_token import ApiToken, TokenScope
from pgjobs.db.models.base import Base
from pgjobs.db.models.credential import AppCredential, CredentialStatus, Provider
from pgjobs.db.models.job import TERMINAL_STATUSES, ContentJob, JobStatus
from pgjobs.db.models.job_event import EventType, JobEvent
from pgjobs.db.models.job_schedule import JobSchedule, MisfirePolicy, ScheduleStatus
from pgjobs.db.models.mcp_server import AuthType, McpServer, McpServerStatus
from pgjobs.db.models.rate_window import RateWindow
from pgjobs.db.models.tenant import Tenant
from pgjobs.db.models.tenant_quota import ALL_TYPES, TenantQuota, TenantQuotaUsage

__all__ = [
    "ALL_TYPES",
    "TERMINAL_STATUSES",
    "ApiToken",
    "AppCredential",
    "AuthType",
    "Base",
    "ContentJob",
    "CredentialStatus",
    "EventType",
    "JobEvent",
    "JobSchedule",
    "JobStatus",
    "McpServer",
    "McpServerStatus",
    "MisfirePolicy",
    "Provider",
    "RateWindow",
    "ScheduleStatus",
    "Tenant",
    "TenantQuota",
    "TenantQuotaUsage",
    "TokenScope",
]
