//! The subcommands: each reads its typed configuration, sets up what it needs and reports
//! failures as one clear line on stderr with a non-zero exit code.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Cli, Command, DatabaseArgs, MigrateArgs, ServeArgs};
use crate::http::AppState;
use crate::store::Store;

/// Entry point of the `fhir-notary` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse_with_default();
    let result = match cli.command {
        Command::Serve(args) => {
            crate::logging::init(&args.log).and_then(|()| run_async(serve(args)))
        }
        Command::Migrate(args) => {
            crate::logging::init(&args.log).and_then(|()| run_async(migrate(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fhir-notary: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(fut: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    actix_web::rt::System::new().block_on(fut)
}

async fn open_store(db: &DatabaseArgs) -> Result<Store, String> {
    let store = Store::open(db.database_url.as_deref(), &db.data_dir, db.db_pool_size)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the database: {e}"))?;
    Ok(store)
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let store = open_store(&args.database).await?;
    tracing::info!(
        listen = %args.listen,
        backend = ?store.backend(),
        base_url = args.base_url.as_deref().unwrap_or("(from requests)"),
        "FHIR Notary serving at http://{}/fhir",
        args.listen
    );
    let state = AppState {
        store: store.clone(),
        base_url: args.base_url.clone(),
        max_body_bytes: args.max_body_bytes,
    };
    crate::start(
        listener,
        state,
        args.workers,
        Duration::from_secs(args.shutdown_timeout),
    )
    .map_err(|e| format!("cannot start the server: {e}"))?
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(args: MigrateArgs) -> Result<(), String> {
    let store = open_store(&args.database).await?;
    store.close().await;
    eprintln!("fhir-notary: migrations applied ({:?})", store.backend());
    Ok(())
}
