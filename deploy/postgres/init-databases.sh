#!/bin/bash
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# one role and one database each for FHIR Notary and for Keycloak, so neither service holds
# the superuser password nor can touch the other's data. Passwords come from the
# environment (the compose file passes them from .env), never from this file.
set -euo pipefail

: "${FHIR_NOTARY_DB_PASSWORD:?FHIR_NOTARY_DB_PASSWORD is not set}"
: "${KEYCLOAK_DB_PASSWORD:?KEYCLOAK_DB_PASSWORD is not set}"

psql --no-psqlrc -v ON_ERROR_STOP=1 \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v notary_pw="$FHIR_NOTARY_DB_PASSWORD" \
  -v keycloak_pw="$KEYCLOAK_DB_PASSWORD" <<'SQL'
CREATE ROLE fhir_notary LOGIN PASSWORD :'notary_pw';
CREATE DATABASE fhir_notary OWNER fhir_notary;
REVOKE ALL ON DATABASE fhir_notary FROM PUBLIC;
CREATE ROLE keycloak LOGIN PASSWORD :'keycloak_pw';
CREATE DATABASE keycloak OWNER keycloak;
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;
SQL
