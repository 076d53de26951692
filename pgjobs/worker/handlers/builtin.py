"""Imports every shipped handler so that it registers with ``@handles``.

One module per job type (see docs/handlers.md); ``http`` is the HTTP client they share.
"""

from pgjobs.worker.handlers import (  # noqa: F401  (registers on import)
    credential_check,
    fine_tune_export,
    mcp_ping,
    scheduled_preview,
)
