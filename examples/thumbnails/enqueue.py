"""Enqueue thumbnails (on their own, and inside your own transaction), then ask about them."""

import os

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import pgjobs

from jobs import thumbnail


class Base(DeclarativeBase):
    pass


class Image(Base):  # a table of your application's own
    __tablename__ = "example_images"
    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str]


# The tenant every job, credential and query belongs to: found by slug (or id).
try:
    tenant = pgjobs.get_tenant("acme")
except pgjobs.UnknownTenant:
    tenant = pgjobs.create_tenant(name="Acme", slug="acme")

# The image service's key, stored encrypted; a payload carries only its id.
try:
    credential = pgjobs.find_credential(tenant.id, "custom", "image-service")
except pgjobs.CredentialNotFound:
    secret = os.environ.get("IMAGE_SERVICE_KEY", "img-0123456789abcdef")
    credential = pgjobs.create_credential(
        tenant.id, provider="custom", name="image-service", secret=secret
    )

# On its own: the row is committed, then the message is sent. The same key twice: one job.
first = pgjobs.enqueue(
    thumbnail,
    {"image_id": 42, "credential_id": credential.id},
    tenant_id=tenant.id,
    idempotency_key="img-42",
)

# Inside your transaction: your row and the job commit together; a rollback sends nothing.
engine = create_engine(pgjobs.engine_url())  # the database pgjobs uses
Base.metadata.create_all(engine)  # your migrations would make your tables
with Session(engine) as session, session.begin():
    image = Image(filename="cat.png")
    session.add(image)
    session.flush()  # gives image.id
    second = pgjobs.enqueue(
        thumbnail,
        {"image_id": image.id, "sizes": [128], "credential_id": credential.id},
        tenant_id=tenant.id,
        session=session,
    )
# the message leaves here, after the commit

for enqueued in (first, second):
    done = pgjobs.wait_for_job(tenant.id, enqueued.id, timeout=60)
    print(f"job {done.id}: {done.status} {done.result}")  # succeeded {'thumbnails': [...]}
    events = pgjobs.get_job_events(tenant.id, done.id).items
    print("  events:", ", ".join(e.event_type for e in events))  # enqueued, started, ...

counts = pgjobs.count_jobs_by_status(tenant.id, type="thumbnail")  # every status, zeros too
print("thumbnails:", ", ".join(f"{n} {status}" for status, n in counts.items() if n))
for job in pgjobs.list_jobs(tenant.id, type="thumbnail", limit=5).items:  # newest first
    print(f"  #{job.id} {job.status} {job.progress}%")
