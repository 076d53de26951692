"""`rate_windows`: the recent starts of each rate key (docs/limits.md).

A rate ``Rate(n, per)`` admits at most ``n`` starts of a key in any window of ``per`` seconds
(a sliding window, exact). The row keeps the times of the key's starts still inside the window,
at most ``n`` of them; a claim round takes it under the key's advisory lock, counts the room
left, and appends the starts it makes, in the statement that claims the jobs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base


class RateWindow(Base):
    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    """The rate key, ``<scope>:<value>`` (pgjobs/producer/job_types.py: Rate)."""
    starts: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    """Start times (database clock) of the key's jobs within the last window, oldest first."""
