-- The Inspector database and the role that owns it. Run once, as a superuser, with psql:
--
--   psql -h db-host -U postgres -v password="$INSPECTOR_DB_PASSWORD" -f deploy/postgres.sql
--
-- Optional: -v role=NAME and -v database=NAME (both default to "inspector").
-- Then migrate as that role (also safe to repeat):
--
--   INSPECTOR_STORE__URL=postgresql+psycopg://inspector:PASSWORD@db-host/inspector inspector db upgrade

\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role inspector
\endif
\if :{?database}
\else
  \set database inspector
\endif
\if :{?password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set the role password: psql -v password=... -f postgres.sql'; END $$;
\endif

CREATE ROLE :"role" LOGIN PASSWORD :'password';
-- The role owns the database, so Alembic may create and alter its tables in schema public.
CREATE DATABASE :"database" OWNER :"role" ENCODING 'UTF8' TEMPLATE template0;
\connect :"database"
-- Only the owner role uses this database: other roles may not even connect.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
