//! `fhir-notary import`: bulk loading for migrations, through the same validation,
//! Bundle processing and notarization as the REST API (every imported version gets its
//! ledger entry in the transaction that writes it).
//!
//! # Inputs
//! FHIR Bundles (`*.json`) and NDJSON files (`*.ndjson`, one resource per line), either
//! optionally compressed (`.gz`, `.bz2`). Each command-line argument is a group loaded
//! completely before the next one starts, so dependencies load first
//! (`import data/0-practitioners.json.bz2 data/`); the files of a directory (in name order)
//! load up to `--jobs` at a time.
//!
//! # Records and failures
//! A transaction Bundle is one record: all of it loads or none. The entries of a batch
//! Bundle and the lines of an NDJSON file are records of their own: they load in chunks of
//! `--chunk` per database transaction, and when a chunk fails it is retried record by
//! record, so a bad record is reported (with its position and reason) and skipped while
//! every good one loads. NDJSON resources keep their ids (PUT semantics); those without one
//! get a new id.
//!
//! Once loaded, the database's planner statistics are refreshed (`ANALYZE`).
//!
//! # Resuming
//! How far each file got is written in the same database transaction as the records it
//! counts (`import_progress`), so an interrupted import, run again with the same files,
//! resumes exactly where it stopped: nothing loads twice and nothing is skipped. A file
//! that failed as a whole (a transaction whose entry failed) is not marked done and is
//! retried by the next run. `--restart` forgets the recorded progress of the named files.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use fhir::bundle::{BundleKind, Entry, Method};
use futures_util::StreamExt;
use serde_json::Value;

use crate::config::ImportArgs;
use crate::http::handlers::transaction::Run;
use crate::http::interactions::Writer;
use crate::http::negotiate::ReturnPreference;
use crate::store::{Store, WriteContext};

/// The actor recorded in the ledger entries of imported versions.
pub const IMPORT_ACTOR: &str = "fhir-notary import";

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Bundle,
    Ndjson,
}

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
}

/// A file to import.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    /// The key its progress is recorded under: the canonical path.
    key: String,
    format: Format,
    compression: Compression,
}

impl Source {
    fn from_path(path: &Path) -> Option<Source> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, compression) = if let Some(s) = name.strip_suffix(".bz2") {
            (s, Compression::Bzip2)
        } else if let Some(s) = name.strip_suffix(".gz") {
            (s, Compression::Gzip)
        } else {
            (name.as_str(), Compression::None)
        };
        let format = if stem.ends_with(".ndjson") {
            Format::Ndjson
        } else if stem.ends_with(".json") {
            Format::Bundle
        } else {
            return None;
        };
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        Some(Source {
            path: path.to_path_buf(),
            key,
            format,
            compression,
        })
    }

    fn reader(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let file = BufReader::with_capacity(1 << 20, std::fs::File::open(&self.path)?);
        Ok(match self.compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// A record that did not load.
#[derive(Debug, Clone)]
struct Failure {
    source: String,
    /// The record's position in its file: an entry index or a line number (from 1); None
    /// for a whole file.
    record: Option<u64>,
    reason: String,
}

/// Shared counters of one import run.
#[derive(Debug, Default)]
struct Tally {
    resources: AtomicU64,
    files_done: AtomicU64,
    files_skipped: AtomicU64,
    reads_skipped: AtomicU64,
    failures: Mutex<Vec<Failure>>,
    /// Resources loaded per source key.
    per_file: Mutex<std::collections::HashMap<String, u64>>,
}

impl Tally {
    fn loaded(&self, source: &Source, n: u64) {
        self.resources.fetch_add(n, Ordering::Relaxed);
        let mut per_file = self.per_file.lock().unwrap_or_else(|e| e.into_inner());
        *per_file.entry(source.key.clone()).or_default() += n;
    }

    fn file_resources(&self, source: &Source) -> u64 {
        let per_file = self.per_file.lock().unwrap_or_else(|e| e.into_inner());
        per_file.get(&source.key).copied().unwrap_or(0)
    }

    fn fail(&self, source: &Source, record: Option<u64>, reason: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.push(Failure {
            source: source.name(),
            record,
            reason,
        });
    }
}

/// Expands the arguments into groups of files, refusing what cannot be imported.
fn groups(paths: &[PathBuf]) -> Result<Vec<Vec<Source>>, String> {
    let mut groups = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("cannot list {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let sources: Vec<Source> = files.iter().filter_map(|f| Source::from_path(f)).collect();
            if sources.is_empty() {
                return Err(format!(
                    "{} holds no .json or .ndjson files (optionally .gz or .bz2)",
                    path.display()
                ));
            }
            groups.push(sources);
        } else {
            let source = Source::from_path(path).ok_or_else(|| {
                format!(
                    "{}: not a .json Bundle or .ndjson file (optionally .gz or .bz2)",
                    path.display()
                )
            })?;
            groups.push(vec![source]);
        }
    }
    Ok(groups)
}

/// Runs `fhir-notary import`.
pub fn main(args: ImportArgs) -> Result<(), String> {
    if args.paths.is_empty() {
        return Err("name at least one file or directory to import".into());
    }
    let groups = groups(&args.paths)?;
    // A multi-threaded runtime: decompression and JSON parsing run on blocking threads
    // beside the database work.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(args, groups))
}

async fn run(args: ImportArgs, groups: Vec<Vec<Source>>) -> Result<(), String> {
    let store = crate::cli::open_store(&args.database).await?;
    if args.restart {
        for source in groups.iter().flatten() {
            let mut tx = store
                .begin(context())
                .await
                .map_err(|e| format!("cannot reset progress: {e}"))?;
            tx.set_import_position(&source.key, 0, false)
                .await
                .map_err(|e| format!("cannot reset progress: {e}"))?;
            tx.commit()
                .await
                .map_err(|e| format!("cannot reset progress: {e}"))?;
        }
    }
    let tally = Tally::default();
    let total_files: usize = groups.iter().map(Vec::len).sum();
    let bar = indicatif::ProgressBar::new(total_files as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} files  {msg}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    for group in groups {
        futures_util::stream::iter(group)
            .for_each_concurrent(args.jobs, |source| {
                let (store, tally, bar) = (&store, &tally, &bar);
                let (chunk, base) = (args.chunk, args.base_url.as_str());
                async move {
                    let file_started = Instant::now();
                    let loaded = match load(store, base, &source, chunk, tally).await {
                        Ok(n) => n,
                        Err(reason) => {
                            tally.fail(&source, None, reason);
                            0
                        }
                    };
                    bar.inc(1);
                    let done = tally.resources.load(Ordering::Relaxed);
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    let failures = tally.failures.lock().map(|f| f.len()).unwrap_or(0);
                    bar.set_message(format!(
                        "{done} resources, {rate:.0}/s, {failures} failure(s)"
                    ));
                    if bar.is_hidden() {
                        eprintln!(
                            "import: {} — {} resources in {:.1} s",
                            source.name(),
                            loaded,
                            file_started.elapsed().as_secs_f64()
                        );
                    }
                }
            })
            .await;
    }
    bar.finish();
    // The planner's statistics must describe what was just loaded, or searches run with
    // plans made for empty tables until autovacuum gets round to it.
    store
        .analyze()
        .await
        .map_err(|e| format!("cannot refresh the planner statistics: {e}"))?;
    store.close().await;

    let elapsed = started.elapsed().as_secs_f64();
    let resources = tally.resources.load(Ordering::Relaxed);
    let failures = std::mem::take(&mut *tally.failures.lock().unwrap_or_else(|e| e.into_inner()));
    for f in &failures {
        match f.record {
            Some(r) => println!("FAILED {} record {r}: {}", f.source, f.reason),
            None => println!("FAILED {}: {}", f.source, f.reason),
        }
    }
    println!(
        "import: {} files ({} already done before), {resources} resources in {elapsed:.1} s \
         ({:.0} resources/s); {} read entries skipped; {} failure(s)",
        tally.files_done.load(Ordering::Relaxed),
        tally.files_skipped.load(Ordering::Relaxed),
        resources as f64 / elapsed.max(1e-3),
        tally.reads_skipped.load(Ordering::Relaxed),
        failures.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} record(s) did not load (listed above); everything else did. A new run \
             retries files that failed as a whole; skipped records must be fixed and loaded \
             on their own",
            failures.len()
        ))
    }
}

fn context() -> WriteContext {
    WriteContext {
        actor: IMPORT_ACTOR.to_owned(),
        request_id: format!("import-{}", uuid::Uuid::new_v4()),
    }
}

/// Loads one file, resuming from its recorded position.
async fn load(
    store: &Store,
    base: &str,
    source: &Source,
    chunk: usize,
    tally: &Tally,
) -> Result<u64, String> {
    let before = tally.file_resources(source);
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    let position = match store.import_position(&source.key).await.map_err(db)? {
        Some((_, true)) => {
            tally.files_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(0);
        }
        Some((p, false)) => u64::try_from(p).unwrap_or(0),
        None => 0,
    };
    let run = Run {
        store,
        reader: None,
        who: Writer::Operator,
        base,
        prefer: ReturnPreference::Minimal,
        touched: None,
    };
    match source.format {
        Format::Bundle => {
            let reader_source = source.clone();
            let value: Value = tokio::task::spawn_blocking(move || -> Result<Value, String> {
                let reader = reader_source.reader().map_err(|e| e.to_string())?;
                serde_json::from_reader(reader).map_err(|e| format!("not valid JSON: {e}"))
            })
            .await
            .map_err(|e| e.to_string())??;
            let bundle = fhir::bundle::parse_request_bundle(&value).map_err(|issues| {
                issues
                    .iter()
                    .filter_map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            drop(value);
            match bundle.kind {
                BundleKind::Transaction => {
                    let entries = bundle.entries.len();
                    let mut tx = store.begin(context()).await.map_err(db)?;
                    let (written, reads) = run
                        .import_transaction(&mut tx, bundle)
                        .await
                        .map_err(|e| describe(&e))?;
                    tx.set_import_position(&source.key, entries as i64, true)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    tally.loaded(source, written as u64);
                    tally
                        .reads_skipped
                        .fetch_add(reads as u64, Ordering::Relaxed);
                }
                BundleKind::Batch => {
                    let records = bundle
                        .entries
                        .into_iter()
                        .skip(usize::try_from(position).unwrap_or(usize::MAX))
                        .map(Ok)
                        .collect();
                    load_records(&run, source, records, chunk, tally).await?;
                }
            }
        }
        Format::Ndjson => {
            let (sender, mut receiver) =
                tokio::sync::mpsc::channel::<Result<(u64, String), String>>(4 * chunk);
            let reader_source = source.clone();
            let reader = tokio::task::spawn_blocking(move || {
                let reader = match reader_source.reader() {
                    Ok(r) => BufReader::new(r),
                    Err(e) => {
                        let _ = sender.blocking_send(Err(e.to_string()));
                        return;
                    }
                };
                for (n, line) in reader.lines().enumerate() {
                    let item = line.map(|l| (n as u64, l)).map_err(|e| e.to_string());
                    let failed = item.is_err();
                    if sender.blocking_send(item).is_err() || failed {
                        return;
                    }
                }
            });
            let mut lines = Vec::new();
            while let Some(item) = receiver.recv().await {
                lines.push(item?);
                if lines.len() >= chunk * 8 {
                    load_lines(
                        &run,
                        source,
                        position,
                        std::mem::take(&mut lines),
                        chunk,
                        tally,
                    )
                    .await?;
                }
            }
            load_lines(&run, source, position, lines, chunk, tally).await?;
            reader.await.map_err(|e| e.to_string())?;
        }
    }
    let done = store.import_position(&source.key).await.map_err(db)?;
    let mut tx = store.begin(context()).await.map_err(db)?;
    tx.set_import_position(&source.key, done.map_or(0, |d| d.0), true)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    tally.files_done.fetch_add(1, Ordering::Relaxed);
    Ok(tally.file_resources(source) - before)
}

/// NDJSON lines (0-based line numbers) as records, those before `position` skipped.
async fn load_lines(
    run: &Run<'_>,
    source: &Source,
    position: u64,
    lines: Vec<(u64, String)>,
    chunk: usize,
    tally: &Tally,
) -> Result<(), String> {
    let records = lines
        .into_iter()
        .filter(|(n, line)| *n >= position && !line.trim().is_empty())
        .map(|(n, line)| ndjson_entry(n, &line).map_err(|why| (n, why)))
        .collect();
    load_records(run, source, records, chunk, tally).await
}

/// An NDJSON line as the Bundle entry that stores it.
fn ndjson_entry(n: u64, line: &str) -> Result<Entry, String> {
    let resource: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or("no resourceType")?
        .to_owned();
    let (method, url) = match resource.get("id").and_then(Value::as_str) {
        Some(id) => (Method::Put, format!("{ty}/{id}")),
        None => (Method::Post, ty),
    };
    Ok(Entry {
        index: usize::try_from(n).unwrap_or(usize::MAX),
        full_url: None,
        method,
        url,
        resource: Some(resource),
        if_match: None,
        if_none_exist: None,
        if_none_match: None,
        if_modified_since: None,
    })
}

/// Loads records in chunks of `chunk` per transaction, each chunk's progress committed
/// with it; a failing chunk is retried record by record so only bad records are skipped.
/// A record's position is its `Entry::index`; a record that did not even parse comes as
/// `Err((position, reason))`.
async fn load_records(
    run: &Run<'_>,
    source: &Source,
    records: Vec<Result<Entry, (u64, String)>>,
    chunk: usize,
    tally: &Tally,
) -> Result<(), String> {
    let store = run.store;
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let batch: Vec<Result<Entry, (u64, String)>> = records.by_ref().take(chunk).collect();
        let end = batch
            .last()
            .map(|r| match r {
                Ok(e) => e.index as u64,
                Err((n, _)) => *n,
            })
            .unwrap_or(0)
            + 1;
        // The whole chunk in one transaction, when every record of it is sound.
        if batch.iter().all(Result::is_ok) {
            let mut entries: Vec<Entry> = batch.iter().flatten().cloned().collect();
            let mut tx = store.begin(context()).await.map_err(db)?;
            let mut written = 0u64;
            let mut reads = 0u64;
            let mut failed = false;
            for entry in &mut entries {
                match run.import_entry(&mut tx, entry).await {
                    Ok(true) => written += 1,
                    Ok(false) => reads += 1,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                tx.set_import_position(&source.key, end as i64, false)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tally.loaded(source, written);
                tally.reads_skipped.fetch_add(reads, Ordering::Relaxed);
                continue;
            }
        }
        // Record by record: good ones load, bad ones are reported and passed over.
        for record in batch {
            let (position, outcome) = match record {
                Ok(mut entry) => {
                    let position = entry.index as u64;
                    let mut tx = store.begin(context()).await.map_err(db)?;
                    match run.import_entry(&mut tx, &mut entry).await {
                        Ok(wrote) => {
                            tx.set_import_position(&source.key, position as i64 + 1, false)
                                .await
                                .map_err(db)?;
                            tx.commit().await.map_err(db)?;
                            if wrote {
                                tally.loaded(source, 1);
                            } else {
                                tally.reads_skipped.fetch_add(1, Ordering::Relaxed);
                            }
                            continue;
                        }
                        Err(e) => (position, describe(&e)),
                    }
                }
                Err((position, reason)) => (position, reason),
            };
            tally.fail(source, Some(position + 1), outcome);
            let mut tx = store.begin(context()).await.map_err(db)?;
            tx.set_import_position(&source.key, position as i64 + 1, false)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
    }
    Ok(())
}

/// An API error as one line: its status and what the OperationOutcome says.
fn describe(error: &crate::http::error::ApiError) -> String {
    let outcome = error.outcome();
    let text: Vec<String> = outcome
        .issues
        .iter()
        .map(|i| match (&i.diagnostics, i.expression.first()) {
            (Some(d), Some(at)) => format!("{d} (at {at})"),
            (Some(d), None) => d.clone(),
            (None, Some(at)) => at.clone(),
            (None, None) => String::new(),
        })
        .collect();
    format!("{}: {}", error.status().as_u16(), text.join("; "))
}
