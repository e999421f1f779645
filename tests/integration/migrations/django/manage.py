#!/usr/bin/env python3
"""Django's command-line utility for the migration-tool tests.

    PGMESH_TEST_DSN="host=127.0.0.1 port=5432 dbname=app user=postgres" \
        /usr/bin/python3 manage.py migrate
"""
import os
import sys


def main():
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mesh_site.settings')
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
