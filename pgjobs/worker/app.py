"""The worker's Dramatiq application: ``dramatiq pgjobs.worker.app`` (or ``jobctl worker``)
loads this module in every worker process; it configures logging and installs the broker and its
actors."""

from pgjobs.logs import configure_logging
from pgjobs.worker.setup import build_broker

configure_logging()
broker = build_broker()
