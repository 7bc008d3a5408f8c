//! Running the load: virtual users started along the ramp, their loops, the
//! progress ticker, and the bounded stop.
//!
//! One task per virtual user, all sharing one [`FhirClient`] (one keep-alive
//! connection pool). The run's main task sleeps until the next user is due
//! according to [`crate::ramp::Ramp::start_offset`], prints progress, and at
//! ramp + hold (or Ctrl-C) raises the stop flag. Users check that flag before
//! each request, so in-flight requests finish and are counted; whatever is
//! still running after `--timeout` plus a grace period is aborted.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use crate::client::FhirClient;
use crate::config::{Plan, Scenario};
use crate::fhir::{self, Rng};
use crate::report::{Report, Sample};
use crate::stats::{ErrorKind, Op, Recorder};
use crate::BenchError;

/// After a connect error a user waits this long, so a server that is down
/// is not hammered by thousands of users in a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// How many creates run at once while filling the `read` scenario's pool.
const POOL_CONCURRENCY: usize = 64;

/// Extra time, beyond `--timeout`, that stopping users get to finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The operations each scenario makes, in report order.
pub fn operations(scenario: Scenario) -> &'static [Op] {
    match scenario {
        Scenario::Crud => &Op::ALL,
        Scenario::Read => &[Op::Read],
        Scenario::Create => &[Op::Create],
    }
}

/// What every user task shares.
struct Shared {
    client: FhirClient,
    recorder: Recorder,
    scenario: Scenario,
    stop: AtomicBool,
    deadline: Instant,
    think_time: Duration,
    active: AtomicUsize,
    /// Patient ids the `read` scenario picks from.
    pool: Vec<String>,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Awaits one request, records its outcome, then thinks.
    async fn timed<T>(
        &self,
        user: usize,
        op: Op,
        request: impl Future<Output = Result<T, ErrorKind>>,
    ) -> Option<T> {
        let started = Instant::now();
        let outcome = match request.await {
            Ok(value) => {
                self.recorder.success(user, op, started.elapsed());
                Some(value)
            }
            Err(kind) => {
                self.recorder.error(user, op, kind);
                if kind == ErrorKind::Connect {
                    sleep(CONNECT_BACKOFF).await;
                }
                None
            }
        };
        if !self.think_time.is_zero() {
            sleep(self.think_time).await;
        }
        outcome
    }
}

/// Counts a user as active for as long as its task lives, abort included.
struct ActiveGuard<'a>(&'a AtomicUsize);

impl<'a> ActiveGuard<'a> {
    fn new(active: &'a AtomicUsize) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(active)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One virtual user's whole life.
async fn virtual_user(s: Arc<Shared>, user: usize, seed: u64) {
    let _active = ActiveGuard::new(&s.active);
    let mut rng = Rng::new(seed);
    match s.scenario {
        Scenario::Crud => {
            while s.running() {
                let create = s.client.create(fhir::new_patient(&mut rng));
                let Some(id) = s.timed(user, Op::Create, create).await else {
                    continue;
                };
                if !s.running() {
                    break;
                }
                s.timed(user, Op::Read, s.client.read(&id)).await;
                if !s.running() {
                    break;
                }
                let update = s.client.update(&id, fhir::updated_patient(&mut rng, &id));
                s.timed(user, Op::Update, update).await;
                if !s.running() {
                    break;
                }
                s.timed(user, Op::History, s.client.history(&id)).await;
            }
        }
        Scenario::Read => {
            while s.running() {
                let id = &s.pool[rng.below(s.pool.len())];
                s.timed(user, Op::Read, s.client.read(id)).await;
            }
        }
        Scenario::Create => {
            while s.running() {
                let create = s.client.create(fhir::new_patient(&mut rng));
                s.timed(user, Op::Create, create).await;
            }
        }
    }
}

/// A distinct, reproducible seed per user.
fn user_seed(seed: u64, user: u32) -> u64 {
    seed ^ u64::from(user)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Creates `size` Patients for the `read` scenario; fails if any create does,
/// since reads of a partial pool would measure something else.
async fn create_pool(
    client: &FhirClient,
    size: usize,
    seed: u64,
) -> Result<Vec<String>, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(size)));
    let mut workers = JoinSet::new();
    for worker in 0..POOL_CONCURRENCY.min(size) {
        let (client, next, failed, first_error, ids) = (
            client.clone(),
            next.clone(),
            failed.clone(),
            first_error.clone(),
            ids.clone(),
        );
        let mut rng = Rng::new(user_seed(!seed, worker as u32));
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < size {
                match client.create(fhir::new_patient(&mut rng)).await {
                    Ok(id) => ids.lock().unwrap_or_else(PoisonError::into_inner).push(id),
                    Err(kind) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(kind);
                    }
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let first = *first_error.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(first) = first {
        return Err(BenchError::Pool {
            failed: failed.load(Ordering::Relaxed),
            total: size,
            first,
        });
    }
    let ids = std::mem::take(&mut *ids.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(ids)
}

/// Runs the whole benchmark described by `plan` and returns its report.
pub async fn run(plan: &Plan) -> Result<Report, BenchError> {
    let max_users = plan.ramp.max();
    let client = FhirClient::new(
        &plan.base_url,
        plan.headers.clone(),
        max_users as usize,
        plan.timeout,
    )
    .map_err(BenchError::Client)?;

    let pool = if plan.scenario == Scenario::Read {
        eprintln!("creating {} Patients to read…", plan.pool_size);
        let started = Instant::now();
        let ids = create_pool(&client, plan.pool_size, plan.seed).await?;
        eprintln!("pool ready in {:.1}s", started.elapsed().as_secs_f64());
        ids
    } else {
        Vec::new()
    };

    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        // A few shards per worker thread keeps lock contention negligible.
        recorder: Recorder::new(plan.threads * 4),
        scenario: plan.scenario,
        stop: AtomicBool::new(false),
        deadline: start + plan.duration(),
        think_time: plan.think_time,
        active: AtomicUsize::new(0),
        pool,
    });
    let deadline = shared.deadline;

    let mut users = JoinSet::new();
    let mut next_user = 0u32;
    let mut ticker = tokio::time::interval_at(start + plan.progress, plan.progress);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut timeline = Vec::new();
    let (mut last_tick, mut last_done) = (start, 0u64);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        let now = Instant::now();
        while next_user < max_users
            && start + plan.ramp.start_offset(next_user) <= now
            && now < deadline
        {
            let seed = user_seed(plan.seed, next_user);
            users.spawn(virtual_user(shared.clone(), next_user as usize, seed));
            next_user += 1;
        }
        let next_due = (next_user < max_users)
            .then(|| start + plan.ramp.start_offset(next_user))
            .filter(|due| *due < deadline);

        // Biased so that a progress tick due at the deadline is still printed.
        tokio::select! {
            biased;
            _ = ticker.tick() => {
                let now = Instant::now();
                let (done, failed) = shared.recorder.progress();
                let interval = (now - last_tick).as_secs_f64();
                let sample = Sample {
                    at: now - start,
                    users: shared.active.load(Ordering::Relaxed),
                    done,
                    failed,
                    recent_ops_per_s: if interval > 0.0 { (done - last_done) as f64 / interval } else { 0.0 },
                };
                eprintln!("{}", sample.line(max_users));
                timeline.push(sample);
                (last_tick, last_done) = (now, done);
            }
            _ = &mut ctrl_c => {
                eprintln!("interrupted: letting in-flight requests finish (Ctrl-C again to abort)");
                break;
            }
            () = sleep_until(deadline) => break,
            () = sleep_until(next_due.unwrap_or(deadline)), if next_due.is_some() => {}
            Some(joined) = users.join_next() => {
                // Users only end early by panicking; that is a bug to surface.
                if let Err(e) = joined {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }

    shared.stop.store(true, Ordering::Relaxed);
    let grace = plan.timeout + STOP_GRACE;
    let drained = tokio::select! {
        drained = tokio::time::timeout(grace, async {
            while let Some(joined) = users.join_next().await {
                if let Err(e) = joined {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
        }) => drained.is_ok(),
        _ = tokio::signal::ctrl_c() => false,
    };
    if !drained {
        eprintln!(
            "warning: {} users still had requests in flight; aborted them (not counted)",
            users.len()
        );
        users.abort_all();
    }
    let elapsed = start.elapsed();

    Ok(Report::new(
        plan.scenario.name(),
        plan.base_url.clone(),
        plan.ramp.start(),
        max_users,
        plan.ramp.duration(),
        plan.hold,
        operations(plan.scenario),
        &shared.recorder.snapshot(),
        elapsed,
        timeline,
    ))
}
