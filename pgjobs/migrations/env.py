"""Alembic environment: the URL from our settings, the models' metadata as the target, and the
database shared with the application: our own version table, and only our tables compared."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, inspect, text

from pgjobs.db.models import Base
from pgjobs.services.locate import database_url, sqlalchemy_url

config = context.config
target_metadata = Base.metadata

VERSION_TABLE = "pgjobs_alembic_version"
"""Where our revision is kept: an application that uses Alembic on the same database keeps
Alembic's default table, ``alembic_version``, for its own history."""
LEGACY_VERSION_TABLE = "alembic_version"


def adopt_legacy_version(connection: Connection) -> None:
    """A database migrated before pgjobs had its own version table holds our revision in
    ``alembic_version``: move it to ours, once, leaving any other row (the application's) where
    it is. Only when our tables are there, so an application's revision is never taken."""
    found = inspect(connection)
    if (
        found.has_table(VERSION_TABLE)
        or not found.has_table(LEGACY_VERSION_TABLE)
        or not found.has_table("content_jobs")
    ):
        return
    revisions = {script.revision for script in context.script.walk_revisions()}
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    ours = [row for row in rows if row in revisions]
    if not ours:
        return
    connection.execute(
        text(
            "CREATE TABLE pgjobs_alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT pgjobs_alembic_version_pkc PRIMARY KEY (version_num))"
        )
    )
    for revision in ours:
        moved = {"revision": revision}
        connection.execute(text("INSERT INTO pgjobs_alembic_version VALUES (:revision)"), moved)
        connection.execute(text("DELETE FROM alembic_version WHERE version_num = :revision"), moved)
    if len(ours) == len(rows):
        connection.execute(text("DROP TABLE alembic_version"))


def ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Whether autogenerate (`jobctl db check`, `jobctl db revision`) compares this object:
    not a table that is only in the database. The application's own tables share the database
    (its jobs commit in its transactions); they are not ours to drop."""
    return not (type_ == "table" and reflected and compare_to is None)


def _run(connection: Connection) -> None:
    if connection.in_transaction():
        adopt_legacy_version(connection)
    else:
        with connection.begin():
            adopt_legacy_version(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        include_object=ours,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(config.get_main_option("sqlalchemy.url") or database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from pgjobs.db.engine import build_engine

    url = config.get_main_option("sqlalchemy.url") or database_url()
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
