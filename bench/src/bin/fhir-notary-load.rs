//! `fhir-notary-load`: loads FHIR Bundles (`.json`, `.json.bz2`, `.json.gz`) into a FHIR
//! server by `POST [base]`, as an EHR export or Synthea would, and reports throughput
//! (resources and Bundles per second) and per-Bundle latency percentiles.
//!
//! Each argument is a group loaded completely before the next (so Synthea's `0-*`
//! hospital and practitioner batches go first); the files of a directory are sent
//! `--concurrency` at a time. Every entry of every response must be 200 or 201; anything
//! else is counted and the first few are printed.
//!
//! ```text
//! fhir-notary-load --base-url http://127.0.0.1:8080/fhir --concurrency 4 \
//!     data/0-hospital*.json.bz2 data/0-practitioner*.json.bz2 data/
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::Value;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "fhir-notary-load", version, about)]
struct Args {
    /// The server's FHIR base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    base_url: String,
    /// Bundles in flight at once within a directory.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// `Authorization` header value, if the server needs one (`Bearer …`).
    #[arg(long, env = "FHIR_NOTARY_LOAD_AUTHORIZATION")]
    authorization: Option<String>,
    /// Files and directories of Bundles.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut all: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".json") || n.ends_with(".json.bz2") || n.ends_with(".json.gz")
            })
            .collect();
        all.sort();
        Ok(all)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let name = path.to_string_lossy();
    if name.ends_with(".bz2") {
        bzip2::read::MultiBzDecoder::new(file).read_to_end(&mut out)?;
    } else if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    } else {
        std::io::BufReader::new(file).read_to_end(&mut out)?;
    }
    Ok(out)
}

#[derive(Default)]
struct Totals {
    resources: AtomicU64,
    bundles: AtomicU64,
    failed_entries: AtomicU64,
    failed_bundles: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Totals {
    fn error(&self, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 10 {
            errors.push(message);
        }
    }
}

async fn send(
    client: &reqwest::Client,
    args: &Args,
    path: &Path,
    totals: &Totals,
    latency: &Mutex<Histogram<u64>>,
) {
    let body = match tokio::task::block_in_place(|| read(path)) {
        Ok(b) => b,
        Err(e) => {
            totals.failed_bundles.fetch_add(1, Ordering::Relaxed);
            totals.error(format!("{}: {e}", path.display()));
            return;
        }
    };
    let started = Instant::now();
    let mut request = client
        .post(&args.base_url)
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=minimal")
        .body(body);
    if let Some(auth) = &args.authorization {
        request = request.header("Authorization", auth);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            totals.failed_bundles.fetch_add(1, Ordering::Relaxed);
            totals.error(format!("{}: {e}", path.display()));
            return;
        }
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let elapsed = started.elapsed();
    if !status.is_success() {
        totals.failed_bundles.fetch_add(1, Ordering::Relaxed);
        totals.error(format!(
            "{}: {status} {}",
            path.display(),
            &text[..text.len().min(300)]
        ));
        return;
    }
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let entries = value["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut ok = 0;
    for e in entries {
        let s = e["response"]["status"].as_str().unwrap_or("");
        if s.starts_with("200") || s.starts_with("201") {
            ok += 1;
        } else {
            totals.failed_entries.fetch_add(1, Ordering::Relaxed);
            totals.error(format!("{}: entry {s}", path.display()));
        }
    }
    totals.resources.fetch_add(ok, Ordering::Relaxed);
    totals.bundles.fetch_add(1, Ordering::Relaxed);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let _ = latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .record(micros.max(1));
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fhir-notary-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> std::process::ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fhir-notary-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let args = Arc::new(args);
    let totals = Arc::new(Totals::default());
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
    ));
    let started = Instant::now();
    // A file named by an earlier argument (Synthea's 0-* files, then their directory) is
    // sent once.
    let mut sent = std::collections::HashSet::new();
    for path in &args.paths {
        let group = match files(path) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("fhir-notary-load: {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        };
        let group: Vec<PathBuf> = group
            .into_iter()
            .filter(|f| sent.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())))
            .collect();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(usize::from(args.concurrency)));
        let mut tasks = tokio::task::JoinSet::new();
        for file in group {
            let Ok(permit) = semaphore.clone().acquire_owned().await else {
                break;
            };
            let (client, args, totals, latency) = (
                client.clone(),
                args.clone(),
                totals.clone(),
                latency.clone(),
            );
            tasks.spawn(async move {
                send(&client, &args, &file, &totals, &latency).await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
    let elapsed = started.elapsed().as_secs_f64();
    let resources = totals.resources.load(Ordering::Relaxed);
    let bundles = totals.bundles.load(Ordering::Relaxed);
    let h = latency.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "loaded {resources} resources in {bundles} Bundles in {elapsed:.1} s: \
         {:.0} resources/s, {:.2} Bundles/s",
        resources as f64 / elapsed.max(1e-3),
        bundles as f64 / elapsed.max(1e-3)
    );
    println!(
        "Bundle latency ms: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    let failed = totals.failed_bundles.load(Ordering::Relaxed)
        + totals.failed_entries.load(Ordering::Relaxed);
    for e in totals
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        eprintln!("error: {e}");
    }
    if failed > 0 {
        eprintln!(
            "{} Bundles and {} entries failed",
            totals.failed_bundles.load(Ordering::Relaxed),
            totals.failed_entries.load(Ordering::Relaxed)
        );
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
