//! Command-line options, and their validation into a [`Plan`].
//!
//! [`Args`] is what clap parses; [`Plan::from_args`] checks every value once
//! (URL scheme, user counts, durations, headers) so a mistyped option stops the
//! run before any request is sent instead of producing a misleading report.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::ramp::Ramp;
use crate::BenchError;

/// What each virtual user does in its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Create a Patient, read it, update it, read its history; repeat.
    Crud,
    /// Create a pool of Patients first, then only read random ones.
    Read,
    /// Only create Patients.
    Create,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Crud => "crud",
            Scenario::Read => "read",
            Scenario::Create => "create",
        }
    }
}

/// Load generator for FHIR R4 servers: ramps virtual users linearly and
/// reports throughput and latency percentiles per operation.
#[derive(Debug, Parser)]
#[command(name = "fhir-notary-bench", version)]
pub struct Args {
    /// FHIR R4 base URL; Patients are addressed as `{base}/Patient/{id}`.
    #[arg(
        long,
        env = "FHIR_NOTARY_BENCH_BASE_URL",
        default_value = "http://127.0.0.1:8080/fhir"
    )]
    pub base_url: String,

    /// What each virtual user does.
    #[arg(long, value_enum, default_value_t = Scenario::Crud)]
    pub scenario: Scenario,

    /// Virtual users running from the first instant.
    #[arg(long, default_value_t = 10)]
    pub start_users: u32,

    /// Virtual users running at the end of the ramp.
    #[arg(long, default_value_t = 2000)]
    pub max_users: u32,

    /// How long the linear ramp from --start-users to --max-users takes
    /// (e.g. `100s`, `2m`, `500ms`; a bare number is seconds).
    #[arg(long, default_value = "100s", value_parser = parse_duration)]
    pub ramp: Duration,

    /// How long to keep --max-users running after the ramp.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub hold: Duration,

    /// Pause each user takes after every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub think_time: u64,

    /// Per-request time limit (connect, send and whole body); a request that
    /// exceeds it counts as a `timeout` error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Number of Patients the `read` scenario creates before it starts.
    #[arg(long, default_value_t = 1000)]
    pub pool_size: u32,

    /// Bearer token sent as `Authorization: Bearer TOKEN` on every request.
    #[arg(long, env = "FHIR_NOTARY_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Extra request header as `NAME:VALUE`; may be repeated.
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    pub headers: Vec<ExtraHeader>,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Exit with status 1 if any request failed.
    #[arg(long)]
    pub fail_on_error: bool,

    /// How often to print progress to stderr.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub progress: Duration,

    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seed for the generated Patient data and the `read` scenario's choices
    /// (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A `--header NAME:VALUE` after parsing.
#[derive(Clone, Debug)]
pub struct ExtraHeader {
    /// Header name.
    pub name: HeaderName,
    /// Header value.
    pub value: HeaderValue,
}

/// A validated run description: everything [`crate::load`] needs.
#[derive(Debug)]
pub struct Plan {
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// What users do.
    pub scenario: Scenario,
    /// How many users run at each moment of the ramp.
    pub ramp: Ramp,
    /// How long max users keep running after the ramp.
    pub hold: Duration,
    /// Pause after each request.
    pub think_time: Duration,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Patients to create before the `read` scenario starts.
    pub pool_size: usize,
    /// Headers sent with every request (Accept, Authorization, --header).
    pub headers: HeaderMap,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Whether errors make the exit status non-zero.
    pub fail_on_error: bool,
    /// Progress interval.
    pub progress: Duration,
    /// Tokio worker threads.
    pub threads: usize,
    /// Seed for generated data.
    pub seed: u64,
}

impl Plan {
    /// Checks every option and builds the plan, or says which option is wrong.
    pub fn from_args(args: Args) -> Result<Plan, BenchError> {
        let invalid =
            |option: &'static str, reason: String| BenchError::InvalidOption { option, reason };

        let url = reqwest::Url::parse(&args.base_url).map_err(|e| {
            invalid(
                "--base-url",
                format!("{:?} is not a URL: {e}", args.base_url),
            )
        })?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(invalid(
                    "--base-url",
                    "https needs the bench built with `--features tls`".into(),
                ))
            }
            other => {
                return Err(invalid(
                    "--base-url",
                    format!("unsupported scheme {other:?}"),
                ))
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "--base-url",
                "must not have a query or fragment".into(),
            ));
        }
        let base_url = url.as_str().trim_end_matches('/').to_owned();

        if args.max_users == 0 {
            return Err(invalid("--max-users", "must be at least 1".into()));
        }
        let ramp = Ramp::new(args.start_users, args.max_users, args.ramp).ok_or_else(|| {
            invalid(
                "--start-users",
                format!(
                    "{} is more than --max-users {}",
                    args.start_users, args.max_users
                ),
            )
        })?;
        if args.timeout.is_zero() {
            return Err(invalid("--timeout", "must be more than zero".into()));
        }
        if args.progress.is_zero() {
            return Err(invalid("--progress", "must be more than zero".into()));
        }
        if args.scenario == Scenario::Read && args.pool_size == 0 {
            return Err(invalid(
                "--pool-size",
                "the read scenario needs at least 1".into(),
            ));
        }
        if args.threads == Some(0) {
            return Err(invalid("--threads", "must be at least 1".into()));
        }

        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/fhir+json"),
        );
        if let Some(token) = &args.token {
            if token.is_empty() {
                return Err(invalid("--token", "is empty".into()));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                invalid(
                    "--token",
                    "contains characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for h in args.headers {
            headers.insert(h.name, h.value);
        }

        let threads = args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });

        Ok(Plan {
            base_url,
            scenario: args.scenario,
            ramp,
            hold: args.hold,
            think_time: Duration::from_millis(args.think_time),
            timeout: args.timeout,
            pool_size: args.pool_size as usize,
            headers,
            json: args.json,
            fail_on_error: args.fail_on_error,
            progress: args.progress,
            threads,
            seed,
        })
    }

    /// Ramp plus hold: when users stop starting new requests.
    pub fn duration(&self) -> Duration {
        self.ramp.duration() + self.hold
    }
}

/// Parses `100s`, `2m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 100s, 2m or 500ms"))?;
    let per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    n.checked_mul(per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Parses `NAME:VALUE` (spaces around the value are trimmed).
pub fn parse_header(s: &str) -> Result<ExtraHeader, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NAME:VALUE"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} has characters not allowed in a header"))?;
    Ok(ExtraHeader { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> Result<Plan, BenchError> {
        let mut argv = vec!["fhir-notary-bench"];
        argv.extend_from_slice(extra);
        Plan::from_args(Args::try_parse_from(argv).expect("clap parses"))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100s"), Ok(Duration::from_secs(100)));
        assert_eq!(parse_duration("100"), Ok(Duration::from_secs(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    #[test]
    fn headers() {
        let h = parse_header("X-Tenant: acme").unwrap();
        assert_eq!(h.name, "x-tenant");
        assert_eq!(h.value, "acme");
        // Only the first colon separates, so values may hold colons.
        assert_eq!(parse_header("X-At:12:30").unwrap().value, "12:30");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name:x").is_err());
    }

    #[test]
    fn defaults_match_the_origin_load_test() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.base_url, "http://127.0.0.1:8080/fhir");
        assert_eq!(p.ramp.users_at(Duration::ZERO), 10);
        assert_eq!(p.ramp.max(), 2000);
        assert_eq!(p.duration(), Duration::from_secs(100));
        assert_eq!(p.scenario, Scenario::Crud);
        assert!(p.headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn token_and_headers_become_request_headers() {
        let p = plan(&[
            "--base-url",
            "http://localhost:1/fhir/",
            "--token",
            "abc",
            "--header",
            "X-Tenant:acme",
        ])
        .unwrap();
        assert_eq!(p.base_url, "http://localhost:1/fhir");
        assert_eq!(p.headers[AUTHORIZATION], "Bearer abc");
        assert_eq!(p.headers["x-tenant"], "acme");
    }

    #[test]
    fn bad_values_are_refused() {
        for argv in [
            &["--base-url", "not a url"][..],
            &["--base-url", "ftp://x/fhir"],
            &["--base-url", "http://x/fhir?a=1"],
            &["--start-users", "20", "--max-users", "10"],
            &["--max-users", "0", "--start-users", "0"],
            &["--timeout", "0s"],
            &["--scenario", "read", "--pool-size", "0"],
            &["--token", ""],
        ] {
            assert!(plan(argv).is_err(), "{argv:?} should be refused");
        }
    }
}
