"""The worker: the Dramatiq app (``dramatiq pgjobs.worker.app``), the runner of one attempt,
claims and completions written in rounds, leases, the consumer, maintenance, and the shipped
handlers."""
