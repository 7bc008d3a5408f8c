//! `fhir-notary-bench`: a load generator for FHIR R4 servers.
//!
//! It reproduces the origin system's load test: virtual users ramp linearly
//! (10 to 2,000 over 100 s by default) and each loops create → read → update
//! → history on Patient, or only reads (`--scenario read`) or only creates
//! (`--scenario create`). At the end it prints, per operation, the request
//! count, errors by kind, throughput and latency percentiles.
//!
//! # Layout
//! - [`config`]: command-line options, validated into a [`Plan`].
//! - [`ramp`]: how many users run at time `t`, and when each one starts.
//! - [`fhir`]: Patient bodies and parsing the id out of `Location`.
//! - [`client`]: the four HTTP exchanges over one shared connection pool.
//! - [`stats`]: latency histograms and error counts per operation.
//! - [`load`]: the user tasks, the spawner that follows the ramp, progress,
//!   and the bounded stop.
//! - [`report`]: the final table, progress line and JSON.
//! - [`rlimit`]: raising the open-file limit for thousands of sockets.

pub mod client;
pub mod config;
pub mod fhir;
pub mod load;
pub mod ramp;
pub mod report;
pub mod rlimit;
pub mod stats;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

pub use config::{Args, Plan};

use stats::ErrorKind;

/// Descriptors kept beyond one per user: stdio, the runtime's own, the
/// `--json` file, and connections being replaced.
const SPARE_FILES: u64 = 64;

/// Why a run could not be made or reported.
#[derive(Debug)]
pub enum BenchError {
    /// An option has a value that cannot work.
    InvalidOption {
        /// The option, as typed (`--max-users`).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    Client(reqwest::Error),
    /// The async runtime could not be started.
    Runtime(std::io::Error),
    /// Creating the `read` scenario's pool of Patients failed.
    Pool {
        /// Creates that failed.
        failed: u64,
        /// Creates attempted.
        total: usize,
        /// The first failure.
        first: ErrorKind,
    },
    /// The `--json` report could not be written.
    WriteJson {
        /// Where it was to go.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::InvalidOption { option, reason } => write!(f, "{option}: {reason}"),
            BenchError::Client(e) => write!(f, "cannot build the HTTP client: {e}"),
            BenchError::Runtime(e) => write!(f, "cannot start the async runtime: {e}"),
            BenchError::Pool {
                failed,
                total,
                first,
            } => write!(
                f,
                "{failed} of {total} creates for the read pool failed (first: {first}); is the server up at --base-url?"
            ),
            BenchError::WriteJson { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Client(e) => Some(e),
            BenchError::Runtime(e) | BenchError::WriteJson { source: e, .. } => Some(e),
            BenchError::InvalidOption { .. } | BenchError::Pool { .. } => None,
        }
    }
}

/// Runs the benchmark the arguments describe. Exit status: 0 done, 1 done
/// with errors under `--fail-on-error`, 2 could not run.
pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fhir-notary-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, BenchError> {
    let plan = Plan::from_args(args)?;

    let needed = u64::from(plan.ramp.max()) + SPARE_FILES;
    match rlimit::raise_open_files() {
        Ok(files) if files.after < needed => eprintln!(
            "warning: the open-file limit is {} but {} users need about {needed}; \
             raise it (`ulimit -n {needed}`) or expect connect errors",
            files.after,
            plan.ramp.max()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot read the open-file limit: {e}"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let report = runtime.block_on(load::run(&plan))?;
    // Aborted users may still be unwinding; they have nothing left to report.
    runtime.shutdown_background();

    print!("{}", report.table());
    if let Some(path) = &plan.json {
        let mut text =
            serde_json::to_string_pretty(&report.json()).expect("a JSON value always serializes");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| BenchError::WriteJson {
            path: path.clone(),
            source,
        })?;
    }

    Ok(if plan.fail_on_error && report.total.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
