//! Log output, human-readable or JSON lines, filtered by a `tracing` directive; and, when
//! traces are exported, the layer that turns `tracing` spans into OpenTelemetry spans.

use opentelemetry_sdk::trace::SdkTracer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber: the log lines, plus span export through `tracer` when
/// given. A malformed filter is a configuration error.
///
/// The log filter applies to the log lines only: spans are exported at `info` and above
/// whatever `--log-level` says, so quieter logs do not cut traces short.
pub fn init(args: &LogArgs, tracer: Option<SdkTracer>) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|e| format!("invalid --log-level '{}': {e}", args.log_level))?;
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match args.log_format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let spans = tracer.map(|tracer| {
        // Leave out what costs per span or per poll and tells an operator little: source
        // locations, thread ids, busy/idle times.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}
