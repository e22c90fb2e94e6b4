#!/bin/sh
# Compose only: the postgres image runs this once, when it initialises an empty data volume.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v password="$(cat /run/secrets/inspector_db_password)" -f /inspector/postgres.sql
