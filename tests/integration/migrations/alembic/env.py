"""Alembic environment of the migration-tool tests.

The database is PGMESH_TEST_DSN (a libpq keyword/value string). The online
and offline paths carry the hook that BDR users keep in their env.py: it asks
the server whether bdr.permit_ddl_locking exists and, if so, sets it for the
migration transaction so that DDL may take the global DDL lock. pgmesh
defines bdr.permit_ddl_locking as an alias of pgmesh.permit_ddl_locking, so
this hook works unchanged on pgmesh; on plain PostgreSQL the SHOW fails and
the migrations run as usual.
"""
import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, exc, pool
from sqlalchemy.engine import URL

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# No models: the migrations are written by hand.
target_metadata = None


def database_url():
    """PGMESH_TEST_DSN as a SQLAlchemy URL.

    The libpq keywords become query parameters of a URL without host or
    database (postgresql+psycopg2://?host=...&port=...&dbname=...&user=...),
    which SQLAlchemy 1.4's psycopg2 dialect hands to psycopg2.connect() as
    keyword arguments. create_engine('postgresql+psycopg2://',
    connect_args={'dsn': dsn}) does not work with SQLAlchemy 1.4 (Debian 12):
    for a URL without arguments the dialect already passes dsn="" and
    psycopg2.connect() fails with "got multiple values for argument 'dsn'".
    """
    dsn = os.environ.get("PGMESH_TEST_DSN")
    if not dsn:
        sys.exit("env.py: set PGMESH_TEST_DSN to a libpq connection string, "
                 "e.g. 'host=127.0.0.1 port=5432 dbname=app user=postgres'")
    from psycopg2.extensions import parse_dsn  # understands quoted values

    return URL.create("postgresql+psycopg2", query=parse_dsn(dsn))


def run_migrations_offline():
    """`alembic upgrade head --sql`: print the script instead of running it.

    No connection, so nothing can be asked: the script always carries the
    SET LOCAL (psql running it on a server without BDR or pgmesh accepts it
    as a placeholder setting).
    """
    context.configure(
        url="postgresql+psycopg2://",
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.execute("SET LOCAL bdr.permit_ddl_locking = true")
        context.run_migrations()


def run_migrations_online():
    connectable = create_engine(database_url(), poolclass=pool.NullPool)

    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)

        # The BDR hook, exactly as users have it. It runs as is on
        # SQLAlchemy 1.4 (Debian 12 has 1.4.46): a legacy (non-"future")
        # Connection still accepts a plain SQL string, and when the SHOW fails
        # outside a SQLAlchemy transaction the Connection rolls the DBAPI
        # connection back itself (autorollback), so the aborted implicit
        # transaction does not poison context.begin_transaction(). On
        # SQLAlchemy 2.0 the strings would need sqlalchemy.text(...) and the
        # failed SHOW an explicit connection.rollback().
        try:
            connection.execute('SHOW bdr.permit_ddl_locking')
            postgres_bdr = True
        except exc.ProgrammingError:
            # bdr.permit_ddl_locking is an unknown option, so this isn't a BDR database
            postgres_bdr = False
        with context.begin_transaction():
            if postgres_bdr:
                connection.execute('SET LOCAL bdr.permit_ddl_locking = true')
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
