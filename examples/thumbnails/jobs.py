"""The thumbnail job type: a name, a payload model and options. No worker code: the
application that enqueues imports this module only."""

import uuid

from pydantic import BaseModel

import pgjobs


class Thumbnail(BaseModel):
    image_id: int
    sizes: list[int] = [64, 256]
    credential_id: uuid.UUID  # the image service's key, stored encrypted by pgjobs


thumbnail = pgjobs.job_type(
    "thumbnail",
    Thumbnail,
    queue="media",
    max_attempts=5,
    time_limit_seconds=120,
    backoff=pgjobs.Backoff(base_seconds=2, max_seconds=300),
)
