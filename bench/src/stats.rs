//! Recording outcomes: a latency histogram and error counts per operation.
//!
//! Users record into one of a few mutex-guarded shards (by user number), so
//! two thousand users neither contend on one lock nor each carry their own
//! histograms (a 3-significant-figure histogram is ~150 KB). Two atomic
//! counters give the progress line its totals without taking any lock.
//!
//! Latency is recorded for successful requests only, in microseconds: a
//! timeout's 30 s would say nothing about the server's speed, and errors are
//! counted separately by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// The highest latency a histogram tracks exactly; longer ones are clamped.
const MAX_LATENCY_US: u64 = 10 * 60 * 1_000_000;

/// One kind of request a user makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST [base]/Patient`.
    Create,
    /// `GET [base]/Patient/[id]`.
    Read,
    /// `PUT [base]/Patient/[id]`.
    Update,
    /// `GET [base]/Patient/[id]/_history`.
    History,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 4] = [Op::Create, Op::Read, Op::Update, Op::History];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Read => "read",
            Op::Update => "update",
            Op::History => "history",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server answered with a non-2xx status.
    Status(u16),
    /// The request did not complete within `--timeout`.
    Timeout,
    /// No connection could be made (refused, reset while connecting, no
    /// file descriptors left…).
    Connect,
    /// The connection failed after it was made (reset, malformed response).
    Transport,
    /// A create succeeded but named no valid id in `Location` or the body.
    MissingId,
}

impl ErrorKind {
    /// Classifies a reqwest error.
    pub fn from_reqwest(e: &reqwest::Error) -> ErrorKind {
        // A connect timeout is both; it is reported as a timeout.
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else {
            ErrorKind::Transport
        }
    }

    /// A stable machine-readable name, used as the JSON key.
    pub fn key(self) -> String {
        match self {
            ErrorKind::Status(code) => format!("status_{code}"),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Transport => "transport".into(),
            ErrorKind::MissingId => "missing_id".into(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "status {code}"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Transport => f.write_str("transport"),
            ErrorKind::MissingId => f.write_str("missing id"),
        }
    }
}

/// Outcomes of one operation.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    /// Records a successful request that took `elapsed`.
    pub fn success(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency.saturating_record(us);
    }

    /// Records a failed request.
    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.latency.len()
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// All requests.
    pub fn count(&self) -> u64 {
        self.ok() + self.failed()
    }

    /// Adds `other`'s outcomes to these.
    pub fn merge(&mut self, other: &OpStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
    }
}

/// Outcomes of every operation.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    per_op: [OpStats; 4],
}

impl Stats {
    /// The outcomes of `op`.
    pub fn op(&self, op: Op) -> &OpStats {
        &self.per_op[op.index()]
    }

    /// The outcomes of `op`, to record into.
    pub fn op_mut(&mut self, op: Op) -> &mut OpStats {
        &mut self.per_op[op.index()]
    }

    /// All operations together.
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::default();
        for s in &self.per_op {
            total.merge(s);
        }
        total
    }

    fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.per_op.iter_mut().zip(&other.per_op) {
            mine.merge(theirs);
        }
    }
}

/// Where all users record, shared between them.
pub struct Recorder {
    shards: Box<[Mutex<Stats>]>,
    done: AtomicU64,
    failed: AtomicU64,
}

impl Recorder {
    /// A recorder with `shards` independently locked shards.
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn shard(&self, user: usize) -> std::sync::MutexGuard<'_, Stats> {
        // A panic while holding the lock cannot leave counts half-written in a
        // way that matters for a report, so poisoning is ignored.
        self.shards[user % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a successful `op` by `user`.
    pub fn success(&self, user: usize, op: Op, elapsed: Duration) {
        self.shard(user).op_mut(op).success(elapsed);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed `op` by `user`.
    pub fn error(&self, user: usize, op: Op, kind: ErrorKind) {
        self.shard(user).op_mut(op).error(kind);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests completed and failed so far, without locking.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// All shards merged.
    pub fn snapshot(&self) -> Stats {
        let mut all = Stats::default();
        for user in 0..self.shards.len() {
            all.merge(&self.shard(user));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_merges_shards() {
        let r = Recorder::new(4);
        for user in 0..10 {
            r.success(user, Op::Read, Duration::from_millis(user as u64 + 1));
        }
        r.error(3, Op::Create, ErrorKind::Status(500));
        r.error(5, Op::Create, ErrorKind::Status(500));
        r.error(5, Op::Create, ErrorKind::Timeout);
        assert_eq!(r.progress(), (13, 3));

        let s = r.snapshot();
        assert_eq!(s.op(Op::Read).ok(), 10);
        assert_eq!(
            s.op(Op::Read).latency.max(),
            s.op(Op::Read).latency.highest_equivalent(10_000)
        );
        assert_eq!(s.op(Op::Create).count(), 3);
        assert_eq!(s.op(Op::Create).errors[&ErrorKind::Status(500)], 2);
        let total = s.total();
        assert_eq!((total.ok(), total.failed(), total.count()), (10, 3, 13));
    }

    #[test]
    fn tiny_and_huge_latencies_are_kept() {
        let mut s = OpStats::default();
        s.success(Duration::ZERO);
        s.success(Duration::from_secs(3600));
        assert_eq!(s.ok(), 2);
        assert_eq!(s.latency.min(), 1);
    }

    #[test]
    fn error_names() {
        assert_eq!(ErrorKind::Status(503).to_string(), "status 503");
        assert_eq!(ErrorKind::Status(503).key(), "status_503");
        assert_eq!(ErrorKind::MissingId.key(), "missing_id");
    }
}
