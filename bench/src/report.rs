//! The figures a run produces, and how they are shown: the final table, the
//! progress line, and the `--json` document.
//!
//! Throughput (`ops/s`) counts successful requests over the whole run, from
//! the first user's start until the last in-flight request ended, ramp
//! included; percentiles are of successful requests' latency (see
//! [`crate::stats`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::stats::{ErrorKind, Op, OpStats, Stats};

/// One row of the final table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Operation name, or `total`.
    pub name: &'static str,
    /// Requests made.
    pub count: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Successful requests per second over the run.
    pub ops_per_s: f64,
    /// Latency percentiles and maximum of successful requests, microseconds.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Mean, microseconds.
    pub mean_us: f64,
}

impl Row {
    /// Reduces one operation's outcomes over a run of length `elapsed`.
    pub fn new(name: &'static str, stats: &OpStats, elapsed: Duration) -> Row {
        let h = &stats.latency;
        let secs = elapsed.as_secs_f64();
        Row {
            name,
            count: stats.count(),
            ok: stats.ok(),
            errors: stats.errors.clone(),
            ops_per_s: if secs > 0.0 {
                stats.ok() as f64 / secs
            } else {
                0.0
            },
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    fn json(&self) -> Value {
        let errors: serde_json::Map<String, Value> = self
            .errors
            .iter()
            .map(|(kind, n)| (kind.key(), json!(n)))
            .collect();
        json!({
            "count": self.count,
            "ok": self.ok,
            "errors": self.failed(),
            "errors_by_kind": errors,
            "ops_per_s": round2(self.ops_per_s),
            "latency_ms": {
                "p50": ms(self.p50_us),
                "p95": ms(self.p95_us),
                "p99": ms(self.p99_us),
                "max": ms(self.max_us),
                "mean": round2(self.mean_us / 1000.0),
            },
        })
    }
}

/// The state of the run at one progress tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Time since the start.
    pub at: Duration,
    /// Users running.
    pub users: usize,
    /// Requests completed so far.
    pub done: u64,
    /// Requests failed so far.
    pub failed: u64,
    /// Requests completed per second since the previous tick.
    pub recent_ops_per_s: f64,
}

impl Sample {
    /// The progress line printed to stderr.
    pub fn line(&self, max_users: u32) -> String {
        let secs = self.at.as_secs_f64();
        let avg = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        format!(
            "[{secs:>6.1}s] users {:>5}/{max_users}  requests {:>9}  {:>8.1} req/s now  {:>8.1} req/s avg  errors {}",
            self.users, self.done, self.recent_ops_per_s, avg, self.failed
        )
    }
}

/// Everything a run measured, with the settings that produced it.
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// The server's base URL.
    pub base_url: String,
    /// Users at the start of the ramp.
    pub start_users: u32,
    /// Users at the end of the ramp.
    pub max_users: u32,
    /// Ramp length.
    pub ramp: Duration,
    /// Hold after the ramp.
    pub hold: Duration,
    /// From the start until the last request ended.
    pub elapsed: Duration,
    /// One row per operation of the scenario.
    pub rows: Vec<Row>,
    /// All operations together.
    pub total: Row,
    /// Progress ticks.
    pub timeline: Vec<Sample>,
}

impl Report {
    /// Reduces `stats` for the operations in `ops`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &'static str,
        base_url: String,
        start_users: u32,
        max_users: u32,
        ramp: Duration,
        hold: Duration,
        ops: &[Op],
        stats: &Stats,
        elapsed: Duration,
        timeline: Vec<Sample>,
    ) -> Report {
        Report {
            scenario,
            base_url,
            start_users,
            max_users,
            ramp,
            hold,
            elapsed,
            rows: ops
                .iter()
                .map(|&op| Row::new(op.name(), stats.op(op), elapsed))
                .collect(),
            total: Row::new("total", &stats.total(), elapsed),
            timeline,
        }
    }

    /// The busiest progress interval's request rate; `None` if the run
    /// ended before the first progress tick.
    pub fn peak_ops_per_s(&self) -> Option<f64> {
        self.timeline
            .iter()
            .map(|s| s.recent_ops_per_s)
            .reduce(f64::max)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {} against {}: {} -> {} users over {}, hold {}; ran {:.1}s\n\n",
            self.scenario,
            self.base_url,
            self.start_users,
            self.max_users,
            secs(self.ramp),
            secs(self.hold),
            self.elapsed.as_secs_f64(),
        );
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "operation", "requests", "errors", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for row in self.rows.iter().chain([&self.total]) {
            let _ = writeln!(
                out,
                "{:<10} {:>10} {:>8} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
                row.name,
                row.count,
                row.failed(),
                row.ops_per_s,
                ms_text(row.p50_us),
                ms_text(row.p95_us),
                ms_text(row.p99_us),
                ms_text(row.max_us),
            );
        }
        out.push('\n');
        if let Some(peak) = self.peak_ops_per_s() {
            let _ = writeln!(out, "peak {peak:.1} req/s over a progress interval");
        }
        if self.total.failed() == 0 {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors:\n");
            for row in self.rows.iter().filter(|r| r.failed() > 0) {
                let kinds: Vec<String> =
                    row.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
                let _ = writeln!(out, "  {}: {}", row.name, kinds.join(", "));
            }
        }
        out
    }

    /// The `--json` document.
    pub fn json(&self) -> Value {
        let operations: serde_json::Map<String, Value> = self
            .rows
            .iter()
            .map(|r| (r.name.to_owned(), r.json()))
            .collect();
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|s| {
                json!({
                    "t_s": round2(s.at.as_secs_f64()),
                    "users": s.users,
                    "requests": s.done,
                    "errors": s.failed,
                    "req_per_s": round2(s.recent_ops_per_s),
                })
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "base_url": self.base_url,
            "start_users": self.start_users,
            "max_users": self.max_users,
            "ramp_s": self.ramp.as_secs_f64(),
            "hold_s": self.hold.as_secs_f64(),
            "elapsed_s": round2(self.elapsed.as_secs_f64()),
            "peak_req_per_s": self.peak_ops_per_s().map(round2),
            "operations": operations,
            "total": self.total.json(),
            "timeline": timeline,
        })
    }
}

/// Microseconds as milliseconds rounded to two decimals, for the table.
/// Integer arithmetic, so 0.995 ms prints as `1.00` and huge values stay exact.
pub fn ms_text(us: u64) -> String {
    let hundredths = us.saturating_add(5) / 10;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn ms(us: u64) -> f64 {
    round2(us as f64 / 1000.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    #[test]
    fn milliseconds_have_two_decimals() {
        assert_eq!(ms_text(0), "0.00");
        assert_eq!(ms_text(1), "0.00");
        assert_eq!(ms_text(5), "0.01");
        assert_eq!(ms_text(1234), "1.23");
        assert_eq!(ms_text(1235), "1.24");
        assert_eq!(ms_text(999), "1.00");
        assert_eq!(ms_text(1995), "2.00");
        assert_eq!(ms_text(30_000_000), "30000.00");
    }

    fn sample_report() -> Report {
        let r = Recorder::new(2);
        for i in 0..100u64 {
            r.success(i as usize, Op::Create, Duration::from_micros(1000 + i * 10));
            r.success(i as usize, Op::Read, Duration::from_micros(200));
        }
        r.error(0, Op::Create, ErrorKind::Status(500));
        r.error(1, Op::Create, ErrorKind::Timeout);
        let timeline = vec![Sample {
            at: Duration::from_secs(5),
            users: 20,
            done: 150,
            failed: 1,
            recent_ops_per_s: 30.0,
        }];
        Report::new(
            "crud",
            "http://h/fhir".into(),
            10,
            20,
            Duration::from_secs(10),
            Duration::ZERO,
            &[Op::Create, Op::Read],
            &r.snapshot(),
            Duration::from_secs(10),
            timeline,
        )
    }

    #[test]
    fn rows_reduce_histograms() {
        let report = sample_report();
        let create = &report.rows[0];
        assert_eq!((create.count, create.ok, create.failed()), (102, 100, 2));
        assert!((create.ops_per_s - 10.0).abs() < 1e-9);
        assert_eq!(create.p50_us, 1490);
        assert_eq!(create.max_us, 1990);
        assert_eq!(report.total.count, 202);
        assert_eq!(report.peak_ops_per_s(), Some(30.0));
    }

    #[test]
    fn table_layout() {
        let table = sample_report().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "scenario crud against http://h/fhir: 10 -> 20 users over 10s, hold 0s; ran 10.0s"
        );
        assert_eq!(
            lines[2],
            "operation    requests   errors      ops/s    p50 ms    p95 ms    p99 ms    max ms"
        );
        assert_eq!(
            lines[3],
            "create            102        2       10.0      1.49      1.94      1.98      1.99"
        );
        assert_eq!(
            lines[4],
            "read              100        0       10.0      0.20      0.20      0.20      0.20"
        );
        assert!(lines[5].starts_with("total             202        2       20.0"));
        assert!(
            table.contains("  create: 1 status 500, 1 timeout\n"),
            "{table}"
        );
    }

    #[test]
    fn json_has_the_same_figures() {
        let v = sample_report().json();
        assert_eq!(v["operations"]["create"]["count"], 102);
        assert_eq!(v["operations"]["create"]["errors_by_kind"]["status_500"], 1);
        assert_eq!(v["operations"]["create"]["errors_by_kind"]["timeout"], 1);
        assert_eq!(
            v["operations"]["create"]["latency_ms"]["p50"].as_f64(),
            Some(1.49)
        );
        assert_eq!(v["total"]["ok"], 200);
        assert_eq!(v["timeline"][0]["users"], 20);
    }

    #[test]
    fn progress_line() {
        let s = Sample {
            at: Duration::from_secs(10),
            users: 205,
            done: 25_000,
            failed: 3,
            recent_ops_per_s: 2600.0,
        };
        assert_eq!(
            s.line(2000),
            "[  10.0s] users   205/2000  requests     25000    2600.0 req/s now    2500.0 req/s avg  errors 3"
        );
    }
}
