# syntax=docker/dockerfile:1.7
#
# The fhir-notary image. Stage 1 compiles the server in release from this workspace; the R4
# definitions are vendored in fhir/definitions/ and compiled into the binary, so the image
# fetches nothing at run time. Stage 2 is a slim Debian with that one binary, run as an
# unprivileged user, with a health check on /readyz (the database answers).
#
#   docker build -t fhir-notary .
#   docker run -p 8080:8080 -v notary-data:/var/lib/fhir-notary fhir-notary

ARG RUST_IMAGE=rust:1.95-slim-trixie
ARG RUNTIME_IMAGE=debian:13-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds on one builder; --locked keeps the
# image on exactly the dependency versions CI tested.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fhir-notary \
 && install -D -m 0755 target/release/fhir-notary /out/fhir-notary

FROM ${RUNTIME_IMAGE}
# ca-certificates: the server reaches an OpenID provider and an OTLP collector over TLS when
# they are configured with https:// URLs. Not pinned to a version on purpose: trust roots
# must follow the distribution's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/fhir-notary \
      --shell /usr/sbin/nologin fhir-notary \
 && install -d -o fhir-notary -g fhir-notary -m 0700 /var/lib/fhir-notary
COPY --from=build /out/fhir-notary /usr/local/bin/fhir-notary

# The data directory holds the ledger signing key (and, without a database URL, the SQLite
# file): keep it on a volume and back the key up (docs/deploy.md).
ENV FHIR_NOTARY_LISTEN=0.0.0.0:8080 \
    FHIR_NOTARY_DATA_DIR=/var/lib/fhir-notary \
    FHIR_NOTARY_LOG_FORMAT=json
VOLUME ["/var/lib/fhir-notary"]
WORKDIR /var/lib/fhir-notary
USER 10001:10001
EXPOSE 8080

# No curl in the image: bash's /dev/tcp sends the request, and the status line decides.
# The port follows FHIR_NOTARY_LISTEN, so overriding the listen address keeps it working.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${FHIR_NOTARY_LISTEN##*:} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == *' 200 '* ]]"]

ENTRYPOINT ["fhir-notary"]
CMD ["serve"]
