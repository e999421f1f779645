"""Settings of the migration-tool tests' Django project.

The database is PGMESH_TEST_DSN, a libpq keyword/value string such as
"host=127.0.0.1 port=20001 dbname=pgmesh user=postgres".

pgmesh replicates DDL under a global lock, which a session may take only with
pgmesh.permit_ddl_locking = on. Django runs every migration in its own
transaction and has no hook around it, so Django users turn the setting on
for the whole session through libpq's `options` connection parameter:

    DATABASES['default']['OPTIONS'] = {'options': '-c pgmesh.permit_ddl_locking=on'}

(keep it to the database alias that runs `manage.py migrate`, e.g. a
separate "migrations" alias, if the application's own sessions must not take
the lock). A server without pgmesh loaded accepts the setting as a
placeholder, so the same settings work on plain PostgreSQL.
"""
import os

from psycopg2.extensions import parse_dsn

_dsn = os.environ.get('PGMESH_TEST_DSN')
if not _dsn:
    raise RuntimeError("set PGMESH_TEST_DSN to a libpq connection string, "
                       "e.g. 'host=127.0.0.1 port=5432 dbname=app user=postgres'")
_conninfo = parse_dsn(_dsn)

SECRET_KEY = 'pgmesh-migration-tests-only'
DEBUG = False
ALLOWED_HOSTS = []

INSTALLED_APPS = ['ledger']

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': _conninfo.get('dbname', ''),
        'HOST': _conninfo.get('host', ''),
        'PORT': _conninfo.get('port', ''),
        'USER': _conninfo.get('user', ''),
        'PASSWORD': _conninfo.get('password', ''),
        'OPTIONS': {'options': '-c pgmesh.permit_ddl_locking=on'},
    },
}

USE_TZ = True
TIME_ZONE = 'UTC'
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
