//! The command line and its environment twins: one typed clap definition for every
//! subcommand. Values are checked here, before anything starts, so bad configuration stops
//! the process with a clear message instead of being quietly replaced by a default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// FHIR Notary: a FHIR R4 server whose every write is notarized into a signed ledger.
#[derive(Debug, Parser)]
#[command(name = "fhir-notary", version, about)]
pub struct Cli {
    /// What to do; `serve` when no subcommand is given.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `fhir-notary`.
// Parsed once at start-up: the size of the serve variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the FHIR REST server (the default).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Inspect and verify the ledger.
    Ledger(LedgerArgs),
    /// Print an access token signed with the dev-mode key in the data directory.
    Token(TokenArgs),
    /// Rebuild the search indexes of current resources (after an upgrade that changes
    /// definitions or extraction), in short batches while the server keeps running.
    Reindex(ReindexArgs),
    /// Load FHIR Bundles and NDJSON files (optionally .gz/.bz2) through the same validation
    /// and notarization as the API, resumably.
    Import(ImportArgs),
}

/// Options of `fhir-notary import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    /// Files and directories to load. Each argument loads completely before the next
    /// starts; the files of a directory load in name order, `--jobs` at a time.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,

    /// Files loaded at the same time within one directory.
    #[arg(long, env = "FHIR_NOTARY_IMPORT_JOBS", default_value_t = 2,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub jobs: usize,

    /// Records (batch entries, NDJSON lines) per database transaction.
    #[arg(long, env = "FHIR_NOTARY_IMPORT_CHUNK", default_value_t = 500,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub chunk: usize,

    /// The server's public FHIR base URL: absolute references under it are local ones.
    #[arg(long, env = "FHIR_NOTARY_BASE_URL", default_value = "http://127.0.0.1:8080/fhir",
          value_parser = parse_base_url)]
    pub base_url: String,

    /// Forget the recorded progress of the named files and load them from the start.
    #[arg(long)]
    pub restart: bool,
}

/// How access tokens are checked.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Where tokens come from: `dev` (this server signs them with a key kept in the data
    /// directory, `fhir-notary token` prints one) or `oidc` (an OpenID provider at
    /// `--auth-issuer`). There is no mode without tokens.
    #[arg(long, env = "FHIR_NOTARY_AUTH_MODE", value_enum, default_value_t = AuthMode::Dev)]
    pub auth_mode: AuthMode,

    /// The `iss` tokens must carry. oidc: the provider's issuer URL (required; its
    /// discovery document is read from `<issuer>/.well-known/openid-configuration`).
    /// dev: default `fhir-notary-dev`.
    #[arg(long, env = "FHIR_NOTARY_AUTH_ISSUER", value_parser = parse_issuer)]
    pub auth_issuer: Option<String>,

    /// The `aud` tokens must carry.
    #[arg(long, env = "FHIR_NOTARY_AUTH_AUDIENCE", default_value = "fhir-notary")]
    pub auth_audience: String,

    /// The token claim holding the caller's role (patient, practitioner, auditor, admin,
    /// system): a string, or an array whose first known role counts.
    #[arg(
        long,
        env = "FHIR_NOTARY_AUTH_ROLE_CLAIM",
        default_value = "fhir_notary_role"
    )]
    pub auth_role_claim: String,

    /// Casbin model file; default: the embedded `policies/model.conf`.
    #[arg(long, env = "FHIR_NOTARY_AUTH_MODEL")]
    pub auth_model: Option<PathBuf>,

    /// Casbin policy file; default: the embedded `policies/policy.csv`.
    #[arg(long, env = "FHIR_NOTARY_AUTH_POLICY")]
    pub auth_policy: Option<PathBuf>,
}

impl AuthArgs {
    /// The options the flags default to: dev mode, the embedded policy, audience
    /// `fhir-notary`, role claim `fhir_notary_role` (for tests and tools that start a
    /// server or mint tokens in process).
    pub fn dev() -> AuthArgs {
        AuthArgs {
            auth_mode: AuthMode::Dev,
            auth_issuer: None,
            auth_audience: "fhir-notary".into(),
            auth_role_claim: "fhir_notary_role".into(),
            auth_model: None,
            auth_policy: None,
        }
    }
}

/// Token modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// This server is its own issuer (embedded, local use).
    Dev,
    /// An external OpenID Connect provider issues the tokens.
    Oidc,
}

/// An issuer is kept without a trailing slash and must not be empty.
fn parse_issuer(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("the issuer must not be empty".into());
    }
    Ok(trimmed.to_owned())
}

/// Options of `fhir-notary token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The caller's role.
    #[arg(long, value_enum)]
    pub role: crate::auth::Role,

    /// The patient in context (a Patient id); required for `--role patient`.
    #[arg(long)]
    pub patient: Option<String>,

    /// SMART scopes, space-separated; default: the role's usual scopes
    /// (patient `patient/*.rs patient/Patient.u`, practitioner and admin `user/*.cruds`, auditor `user/*.rs`,
    /// system `system/*.cruds`).
    #[arg(long)]
    pub scope: Option<String>,

    /// Lifetime: seconds, or with a unit (`15m`, `12h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = crate::auth::token::parse_ttl)]
    pub ttl: std::time::Duration,

    /// The `sub` claim; default: the role's name.
    #[arg(long)]
    pub subject: Option<String>,

    /// The `fhirUser` claim, e.g. `Practitioner/123`.
    #[arg(long)]
    pub fhir_user: Option<String>,

    /// Directory holding the dev-mode token key (see `serve --data-dir`).
    #[arg(long, env = "FHIR_NOTARY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: AuthArgs,
}

/// Options of `fhir-notary reindex`.
#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    /// Only this resource type.
    #[arg(long = "type", env = "FHIR_NOTARY_REINDEX_TYPE")]
    pub resource_type: Option<String>,

    /// Resources per transaction.
    #[arg(long, env = "FHIR_NOTARY_REINDEX_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
}

/// `fhir-notary ledger …`
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// What to do with the ledger.
    #[command(subcommand)]
    pub command: LedgerCommand,
}

/// The ledger subcommands.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every version's hash, every block's Merkle root, the chain links and the
    /// signatures against the database; exits non-zero naming each discrepancy.
    Audit(AuditArgs),
    /// Verify a proof file offline, with nothing but the proof and the signer's public key.
    VerifyProof(VerifyProofArgs),
    /// Print this node's ledger public key (hex), creating the key if it does not exist.
    PublicKey(PublicKeyArgs),
}

/// Options of `fhir-notary ledger audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    /// Print progress to stderr every this many versions (0: never).
    #[arg(long, env = "FHIR_NOTARY_AUDIT_PROGRESS", default_value_t = 100_000)]
    pub progress_every: u64,
}

/// Options of `fhir-notary ledger verify-proof`.
#[derive(Debug, Clone, Args)]
pub struct VerifyProofArgs {
    /// The proof file, as served by `GET /ledger/proof/{type}/{id}/{version}`.
    pub proof: PathBuf,

    /// The signer's Ed25519 public key: 64 hex characters, or a file holding them.
    #[arg(long, env = "FHIR_NOTARY_PUBLIC_KEY")]
    pub public_key: String,

    /// Optionally, the resource version (FHIR JSON file) whose content hash must match.
    #[arg(long)]
    pub resource: Option<PathBuf>,
}

/// Options of `fhir-notary ledger public-key`.
#[derive(Debug, Clone, Args)]
pub struct PublicKeyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub ledger: LedgerKeyArgs,

    /// Directory holding the node key (see `serve --data-dir`).
    #[arg(long, env = "FHIR_NOTARY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Which key signs blocks.
#[derive(Debug, Clone, Args)]
pub struct LedgerKeyArgs {
    /// File with this node's Ed25519 signing key (hex seed). Default: `ledger.key` in the
    /// data directory, created on first start with owner-only permissions. Nodes that
    /// share one database share this key (or are listed in `--ledger-members`).
    #[arg(long, env = "FHIR_NOTARY_LEDGER_KEY_FILE")]
    pub ledger_key_file: Option<PathBuf>,
}

/// How the ledger seals blocks.
#[derive(Debug, Clone, Args)]
pub struct SealArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: LedgerKeyArgs,

    /// Further public keys (hex, comma-separated) allowed to sign blocks, recorded in the
    /// genesis block when the ledger is created.
    #[arg(long, env = "FHIR_NOTARY_LEDGER_MEMBERS", value_delimiter = ',', value_parser = parse_public_key)]
    pub ledger_members: Vec<[u8; 32]>,

    /// Seal a block at least this often, in milliseconds, when entries wait.
    #[arg(long, env = "FHIR_NOTARY_SEAL_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub seal_interval_ms: u64,

    /// Most entries in one block; a backlog is sealed in blocks of this size at once.
    #[arg(long, env = "FHIR_NOTARY_SEAL_MAX_ENTRIES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub seal_max_entries: u64,
}

/// A 32-byte Ed25519 public key in hex.
pub fn parse_public_key(raw: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(raw.trim(), &mut key)
        .map_err(|e| format!("'{raw}' is not an Ed25519 public key (64 hex characters): {e}"))?;
    Ok(key)
}

/// Where the data lives: shared by every subcommand that opens the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL. `postgres://user@host/db` selects PostgreSQL; when absent, an embedded
    /// SQLite file `fhir-notary.db` in the data directory is used.
    #[arg(long, env = "FHIR_NOTARY_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for the embedded database and the server's keys; created when missing.
    #[arg(long, env = "FHIR_NOTARY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Largest number of database connections in the pool (PostgreSQL; SQLite uses one
    /// writer and this many readers).
    #[arg(long, env = "FHIR_NOTARY_DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
}

/// How to log.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax, e.g. `info` or `info,server=debug`.
    #[arg(long, env = "FHIR_NOTARY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, env = "FHIR_NOTARY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Options of `fhir-notary serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "FHIR_NOTARY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Public base URL of the FHIR endpoint, used in Location headers and Bundle links
    /// (e.g. `https://fhir.example.org/fhir`). When absent, it is taken from each request's
    /// Host header and scheme.
    #[arg(long, env = "FHIR_NOTARY_BASE_URL", value_parser = parse_base_url)]
    pub base_url: Option<String>,

    /// Largest accepted request body in bytes; larger bodies are answered 413.
    #[arg(long, env = "FHIR_NOTARY_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_body_bytes: u64,

    /// Number of HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "FHIR_NOTARY_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Seconds to let in-flight requests finish after SIGTERM or ctrl-c.
    #[arg(long, env = "FHIR_NOTARY_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub seal: SealArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub auth: AuthArgs,

    /// Record an AuditEvent for every request to /fhir and /ledger. Only for measuring
    /// what the trail costs: `--audit false` leaves no trail.
    #[arg(long, env = "FHIR_NOTARY_AUDIT", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub audit: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub telemetry: TelemetryArgs,
}

/// Traces and metrics (see `docs/observability.md`). Nothing is exported unless an OTLP
/// endpoint is given; `GET /metrics` serves the metrics to Prometheus either way.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver, e.g.
    /// `http://otel-collector:4318`; traces go to `/v1/traces` and metrics to `/v1/metrics`
    /// below it, as protobuf. Plain http only: put TLS in the collector or a sidecar.
    #[arg(long, env = "FHIR_NOTARY_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Share of traces to record and export, from 0 to 1, for traces this server starts;
    /// a caller's `traceparent` decides for the traces it continues.
    #[arg(long, env = "FHIR_NOTARY_OTEL_SAMPLING_RATIO", default_value_t = 1.0,
          value_parser = parse_ratio)]
    pub otel_sampling_ratio: f64,

    /// `service.name` of the exported traces and metrics.
    #[arg(
        long,
        env = "FHIR_NOTARY_OTEL_SERVICE_NAME",
        default_value = "fhir-notary"
    )]
    pub otel_service_name: String,

    /// How often, in milliseconds, database-derived gauges (connection pools, ledger
    /// height and sealing lag) are sampled and metrics are pushed over OTLP.
    #[arg(long, env = "FHIR_NOTARY_METRICS_INTERVAL_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub metrics_interval_ms: u64,
}

/// An OTLP/HTTP base URL: absolute `http://`, no query or fragment, kept without a trailing
/// slash so the signal paths can be appended.
fn parse_otlp_endpoint(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("http://") else {
        return Err(format!(
            "'{raw}' is not an http:// URL (https is not built in: terminate TLS in the collector \
             or a sidecar)"
        ));
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "'{raw}' is not a usable OTLP endpoint (host missing, or query/fragment present)"
        ));
    }
    Ok(trimmed.to_owned())
}

/// A ratio between 0 and 1 inclusive.
fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{raw}' is not a number from 0 to 1")),
    }
}

/// Options of `fhir-notary migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogArgs,
}

/// A base URL must be absolute http(s) and is kept without a trailing slash.
fn parse_base_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| format!("'{raw}' is not an absolute http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "'{raw}' is not a usable base URL (host missing, or query/fragment present)"
        ));
    }
    Ok(trimmed.to_owned())
}

impl Cli {
    /// Parses the process arguments, treating a command line without a subcommand as `serve`.
    pub fn parse_with_default() -> Self {
        Self::parse_from(with_default_subcommand(std::env::args_os().collect()))
    }
}

/// Inserts `serve` when the first argument is not a subcommand (nor a request for help or
/// the version), so `fhir-notary --listen …` means `fhir-notary serve --listen …`.
fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let needs_serve = match first.as_deref() {
        None => true,
        Some("-h" | "--help" | "-V" | "--version" | "help") => false,
        Some(flag) => flag.starts_with('-'),
    };
    if needs_serve {
        args.insert(1, "serve".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = args.iter().map(|a| (*a).into()).collect();
        Cli::try_parse_from(with_default_subcommand(args))
    }

    #[test]
    fn serve_is_the_default() {
        let cli = parse(&["fhir-notary", "--listen", "127.0.0.1:9999"]).expect("parses");
        match cli.command {
            Command::Serve(args) => assert_eq!(args.listen.port(), 9999),
            other => panic!("expected serve, got {other:?}"),
        }
        assert!(matches!(
            parse(&["fhir-notary"]).expect("parses").command,
            Command::Serve(_)
        ));
    }

    #[test]
    fn bad_values_are_rejected_not_defaulted() {
        assert!(parse(&["fhir-notary", "--listen", "nonsense"]).is_err());
        assert!(parse(&["fhir-notary", "--base-url", "ftp://x"]).is_err());
        assert!(parse(&["fhir-notary", "--log-format", "xml"]).is_err());
        assert!(parse(&["fhir-notary", "--max-body-bytes", "10"]).is_err());
        assert!(parse(&["fhir-notary", "--otlp-endpoint", "https://collector:4318"]).is_err());
        assert!(parse(&["fhir-notary", "--otlp-endpoint", "collector:4318"]).is_err());
        assert!(parse(&["fhir-notary", "--otel-sampling-ratio", "1.5"]).is_err());
        assert!(parse(&["fhir-notary", "--otel-sampling-ratio", "NaN"]).is_err());
        assert!(parse(&["fhir-notary", "--metrics-interval-ms", "5"]).is_err());
    }

    #[test]
    fn telemetry_is_off_unless_an_endpoint_is_given() {
        let Command::Serve(args) = parse(&["fhir-notary"]).expect("parses").command else {
            panic!("expected serve");
        };
        assert_eq!(args.telemetry.otlp_endpoint, None);
        let Command::Serve(args) = parse(&["fhir-notary", "--otlp-endpoint", "http://c:4318/"])
            .expect("parses")
            .command
        else {
            panic!("expected serve");
        };
        assert_eq!(
            args.telemetry.otlp_endpoint.as_deref(),
            Some("http://c:4318")
        );
    }

    #[test]
    fn dev_auth_args_are_the_flags_defaults() {
        let Command::Serve(args) = parse(&["fhir-notary"]).expect("parses").command else {
            panic!("expected serve");
        };
        let (parsed, dev) = (args.auth, AuthArgs::dev());
        assert_eq!(parsed.auth_mode, dev.auth_mode);
        assert_eq!(parsed.auth_issuer, dev.auth_issuer);
        assert_eq!(parsed.auth_audience, dev.auth_audience);
        assert_eq!(parsed.auth_role_claim, dev.auth_role_claim);
        assert_eq!(parsed.auth_model, dev.auth_model);
        assert_eq!(parsed.auth_policy, dev.auth_policy);
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        assert_eq!(
            parse_base_url("https://h.example/fhir/").as_deref(),
            Ok("https://h.example/fhir")
        );
    }
}
