//! `fhir-notary-search`: a search benchmark over data already loaded (the Synthea set, say).
//! It samples real values from the server (patients, families, birth dates, LOINC and
//! SNOMED codes, practitioners, locations), then `--clients` clients run a mix of realistic
//! queries for `--seconds`, and it prints each query's count, throughput and latency
//! percentiles, and the overall searches/s. Every response must be a 200 searchset.
//!
//! ```text
//! fhir-notary-search --base-url http://127.0.0.1:8080/fhir --clients 32 --seconds 30
//! ```

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::Value;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "fhir-notary-search", version, about)]
struct Args {
    /// The server's FHIR base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    base_url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: u16,
    /// How long the mix runs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// `Authorization` header value, if the server needs one (`Bearer …`).
    #[arg(long, env = "FHIR_NOTARY_LOAD_AUTHORIZATION")]
    authorization: Option<String>,
    /// Seed of the query choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Real values to search for, sampled from the server.
#[derive(Debug, Default)]
struct Samples {
    patients: Vec<String>,
    families: Vec<String>,
    birth_years: Vec<String>,
    loinc: Vec<String>,
    snomed_conditions: Vec<String>,
    snomed_procedures: Vec<String>,
    practitioners: Vec<String>,
    locations: Vec<String>,
}

/// The query mix: a name and a template filled from the samples.
const QUERIES: &[&str] = &[
    "Patient?family",
    "Patient?gender&birthdate",
    "Observation?subject",
    "Observation?code",
    "Observation?code&date",
    "Observation?subject&_include",
    "Condition?code",
    "Procedure?code",
    "Encounter?subject",
    "Encounter?participant",
    "Encounter?location",
    "MedicationRequest?subject",
    "Patient?_id&_revinclude",
    "Observation?subject:Patient.family",
];

/// A small deterministic generator (xorshift64*): the mix must be the same run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn url(base: &str, query: &str, s: &Samples, rng: &mut Rng) -> String {
    let q = match query {
        "Patient?family" => format!("Patient?family={}", rng.pick(&s.families)),
        "Patient?gender&birthdate" => format!(
            "Patient?gender={}&birthdate=ge{}",
            if rng.next() % 2 == 0 {
                "male"
            } else {
                "female"
            },
            rng.pick(&s.birth_years)
        ),
        "Observation?subject" => format!("Observation?subject=Patient/{}", rng.pick(&s.patients)),
        "Observation?code" => format!("Observation?code=http://loinc.org|{}", rng.pick(&s.loinc)),
        "Observation?code&date" => format!(
            "Observation?code=http://loinc.org|{}&date=ge2015-01-01&date=lt2020-01-01",
            rng.pick(&s.loinc)
        ),
        "Observation?subject&_include" => format!(
            "Observation?subject=Patient/{}&_include=Observation:patient",
            rng.pick(&s.patients)
        ),
        "Condition?code" => format!(
            "Condition?code=http://snomed.info/sct|{}",
            rng.pick(&s.snomed_conditions)
        ),
        "Procedure?code" => format!(
            "Procedure?code=http://snomed.info/sct|{}",
            rng.pick(&s.snomed_procedures)
        ),
        "Encounter?subject" => format!("Encounter?subject=Patient/{}", rng.pick(&s.patients)),
        "Encounter?participant" => format!(
            "Encounter?participant=Practitioner/{}",
            rng.pick(&s.practitioners)
        ),
        "Encounter?location" => format!("Encounter?location=Location/{}", rng.pick(&s.locations)),
        "MedicationRequest?subject" => format!(
            "MedicationRequest?subject=Patient/{}",
            rng.pick(&s.patients)
        ),
        "Patient?_id&_revinclude" => format!(
            "Patient?_id={}&_revinclude=Encounter:subject",
            rng.pick(&s.patients)
        ),
        _ => format!(
            "Observation?subject:Patient.family={}&_count=20",
            rng.pick(&s.families)
        ),
    };
    format!("{base}/{q}")
}

async fn get(client: &reqwest::Client, args: &Args, url: &str) -> Result<Value, String> {
    let mut request = client.get(url);
    if let Some(auth) = &args.authorization {
        request = request.header("Authorization", auth);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status != 200 || body["type"] != "searchset" {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

/// Collects the distinct values `pick` finds in the resources of one search.
async fn sample(
    client: &reqwest::Client,
    args: &Args,
    query: &str,
    pick: impl Fn(&Value) -> Vec<String>,
) -> Result<Vec<String>, String> {
    let body = get(client, args, &format!("{}/{query}", args.base_url)).await?;
    let mut values = BTreeSet::new();
    for entry in body["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        values.extend(pick(&entry["resource"]));
    }
    if values.is_empty() {
        return Err(format!("no values found by {query}: is the data loaded?"));
    }
    Ok(values.into_iter().collect())
}

fn codes(resource: &Value, system: &str) -> Vec<String> {
    resource["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == system)
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

async fn samples(client: &reqwest::Client, args: &Args) -> Result<Samples, String> {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .into_iter()
            .collect::<Vec<_>>()
    };
    Ok(Samples {
        patients: sample(client, args, "Patient?_count=500&_elements=id", |r| {
            text(&r["id"])
        })
        .await?,
        families: sample(client, args, "Patient?_count=500&_elements=name", |r| {
            text(&r["name"][0]["family"])
        })
        .await?,
        birth_years: sample(
            client,
            args,
            "Patient?_count=500&_elements=birthDate",
            |r| {
                r["birthDate"]
                    .as_str()
                    .map(|d| d[..4].to_owned())
                    .into_iter()
                    .collect()
            },
        )
        .await?,
        loinc: sample(
            client,
            args,
            "Observation?_count=1000&_elements=code",
            |r| codes(r, "http://loinc.org"),
        )
        .await?,
        snomed_conditions: sample(client, args, "Condition?_count=500&_elements=code", |r| {
            codes(r, "http://snomed.info/sct")
        })
        .await?,
        snomed_procedures: sample(client, args, "Procedure?_count=500&_elements=code", |r| {
            codes(r, "http://snomed.info/sct")
        })
        .await?,
        practitioners: sample(client, args, "Practitioner?_count=500&_elements=id", |r| {
            text(&r["id"])
        })
        .await?,
        locations: sample(client, args, "Location?_count=500&_elements=id", |r| {
            text(&r["id"])
        })
        .await?,
    })
}

struct Stats {
    histograms: Vec<Mutex<Histogram<u64>>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fhir-notary-search: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fhir-notary-search: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::from(args.clients))
        .build()
        .map_err(|e| e.to_string())?;
    let samples = Arc::new(samples(&client, &args).await?);
    eprintln!(
        "sampled {} patients, {} families, {} LOINC codes, {} SNOMED conditions, {} procedures, {} practitioners, {} locations",
        samples.patients.len(),
        samples.families.len(),
        samples.loinc.len(),
        samples.snomed_conditions.len(),
        samples.snomed_procedures.len(),
        samples.practitioners.len(),
        samples.locations.len()
    );
    let stats = Arc::new(Stats {
        histograms: QUERIES
            .iter()
            .map(|_| Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")))
            .collect(),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let args = Arc::new(args);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client_no in 0..args.clients {
        let (client, args, samples, stats, stop) = (
            client.clone(),
            args.clone(),
            samples.clone(),
            stats.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut rng = Rng(args.seed.wrapping_mul(1_000_003) + u64::from(client_no) + 1);
            while !stop.load(Ordering::Relaxed) {
                let q = (rng.next() % QUERIES.len() as u64) as usize;
                let target = url(&args.base_url, QUERIES[q], &samples, &mut rng);
                let t = Instant::now();
                match get(&client, &args, &target).await {
                    Ok(_) => {
                        let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let mut h = stats.histograms[q]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        let _ = h.record(micros.max(1));
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = stats.first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(format!("{target}: {e}"));
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();

    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "query", "count", "per s", "p50 ms", "p95 ms", "p99 ms"
    );
    let mut total = 0;
    let mut worst_p95: f64 = 0.0;
    for (q, h) in QUERIES.iter().zip(&stats.histograms) {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        total += h.len();
        worst_p95 = worst_p95.max(ms(0.95));
        println!(
            "{:<36} {:>8} {:>8.0} {:>8.1} {:>8.1} {:>8.1}",
            q,
            h.len(),
            h.len() as f64 / elapsed,
            ms(0.5),
            ms(0.95),
            ms(0.99)
        );
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    println!(
        "overall: {total} searches in {elapsed:.1} s = {:.0} searches/s at {} clients; worst p95 {worst_p95:.1} ms; {errors} errors",
        total as f64 / elapsed,
        args.clients
    );
    if let Some(e) = stats
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        eprintln!("first error: {e}");
    }
    Ok(errors == 0)
}
