//! The subcommands: each reads its typed configuration, sets up what it needs and reports
//! failures as one clear line on stderr with a non-zero exit code.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{
    AuditArgs, Cli, Command, DatabaseArgs, LedgerCommand, MigrateArgs, PublicKeyArgs, ReindexArgs,
    ServeArgs, TokenArgs,
};
use crate::http::AppState;
use crate::store::Store;

/// Entry point of the `fhir-notary` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse_with_default();
    let result = match cli.command {
        Command::Serve(args) => crate::telemetry::init(&args.telemetry).and_then(|telemetry| {
            let result = crate::logging::init(&args.log, telemetry.tracer())
                .and_then(|()| run_async(serve(args)));
            telemetry.shutdown();
            result
        }),
        Command::Migrate(args) => {
            crate::logging::init(&args.log, None).and_then(|()| run_async(migrate(args)))
        }
        Command::Ledger(ledger) => match ledger.command {
            LedgerCommand::Audit(args) => run_async(audit(args)),
            LedgerCommand::VerifyProof(args) => crate::notary::verify::verify(&args).map(|lines| {
                for line in lines {
                    println!("{line}");
                }
            }),
            LedgerCommand::PublicKey(args) => public_key(&args),
        },
        Command::Reindex(args) => run_async(reindex(args)),
        Command::Import(args) => crate::import::main(args),
        Command::Token(args) => run_async(token(args)),
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

pub(crate) async fn open_store(db: &DatabaseArgs) -> Result<Store, String> {
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
    let key_path = crate::notary::key::key_path(&args.seal.key, &args.database.data_dir);
    let key = crate::notary::key::load_or_create(&key_path)?;
    let mut members = vec![key.public_key()];
    members.extend(
        args.seal
            .ledger_members
            .iter()
            .filter(|m| **m != key.public_key()),
    );
    tracing::info!(public_key = %hex::encode(key.public_key()), "ledger signing key loaded");
    let seal_interval = Duration::from_millis(args.seal.seal_interval_ms);
    // The sealer and the AuditEvent trail keep writing after the HTTP workers stop, so they
    // use connections no worker opened.
    let background = store.with_own_pool(crate::audit_trail::WRITERS as u32 + 1);
    let (stop_sealer, sealer_stopped) = tokio::sync::oneshot::channel::<()>();
    let sealer = actix_web::rt::spawn(
        crate::notary::sealer::Sealer {
            store: background.clone(),
            key,
            members,
            interval: seal_interval,
            max_entries: args.seal.seal_max_entries,
        }
        .run_until(async {
            let _ = sealer_stopped.await;
        }),
    );
    actix_web::rt::spawn(crate::telemetry::sample_store(store.clone()));
    let auth = crate::auth::Auth::from_args(&args.auth, &args.database.data_dir).await?;
    tracing::info!(mode = ?args.auth.auth_mode, issuer = auth.issuer(), "access tokens required");
    let (audit, writer) = crate::audit_trail::AuditTrail::new(background.clone());
    let writer = actix_web::rt::spawn(writer.run());
    if !args.audit {
        tracing::warn!("--audit false: no AuditEvents are recorded");
    }
    let state = AppState {
        auth,
        audit: args.audit.then(|| audit.clone()),
        store: store.clone(),
        base_url: args.base_url.clone(),
        max_body_bytes: args.max_body_bytes,
        seal_interval,
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
    // Requests have finished: store the AuditEvents still queued, then close.
    audit.shutdown().await;
    let _ = writer.await;
    // The sealer finishes the seal under way before the pool closes under it.
    let _ = stop_sealer.send(());
    let _ = sealer.await;
    background.close().await;
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

async fn audit(args: AuditArgs) -> Result<(), String> {
    let store = open_store(&args.database).await?;
    let started = std::time::Instant::now();
    let report = crate::notary::audit::audit(&store, args.progress_every, |done, total| {
        eprintln!(
            "audit: {done} of {total} versions checked ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    })
    .await
    .map_err(|e| format!("the audit could not read the database: {e}"))?;
    store.close().await;
    for finding in &report.findings {
        println!("FINDING: {}", finding.0);
    }
    println!(
        "audit: {} versions, {} blocks, {} sealed entries checked, {} entries awaiting sealing; {} finding(s) in {:.1} s",
        report.versions,
        report.blocks,
        report.sealed_entries,
        report.pending_entries,
        report.findings.len(),
        started.elapsed().as_secs_f64()
    );
    if report.findings.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the audit found {} discrepancies",
            report.findings.len()
        ))
    }
}

async fn token(args: TokenArgs) -> Result<(), String> {
    if args.auth.auth_mode != crate::config::AuthMode::Dev {
        return Err("tokens can only be minted in dev mode (--auth-mode dev)".into());
    }
    if args.role == crate::auth::Role::Patient && args.patient.is_none() {
        return Err("a patient token needs --patient <Patient id>".into());
    }
    let auth = crate::auth::Auth::from_args(&args.auth, &args.data_dir).await?;
    let token = auth.mint(&crate::auth::MintRequest {
        role: args.role,
        subject: args
            .subject
            .clone()
            .unwrap_or_else(|| args.role.as_str().to_owned()),
        patient: args.patient.clone(),
        fhir_user: args.fhir_user.clone(),
        scope: args.scope.clone(),
        ttl: args.ttl,
    })?;
    println!("{token}");
    Ok(())
}

fn public_key(args: &PublicKeyArgs) -> Result<(), String> {
    let path = crate::notary::key::key_path(&args.ledger, &args.data_dir);
    let key = crate::notary::key::load_or_create(&path)?;
    println!("{}", hex::encode(key.public_key()));
    Ok(())
}

async fn reindex(args: ReindexArgs) -> Result<(), String> {
    if let Some(t) = &args.resource_type {
        if !fhir::definitions::r4().is_resource_type(t) {
            return Err(format!("--type {t} is not a FHIR R4 resource type"));
        }
    }
    let store = open_store(&args.database).await?;
    let started = std::time::Instant::now();
    let (mut resources, mut rows) = (0u64, 0u64);
    let mut after: Option<(String, String)> = None;
    loop {
        let batch = store
            .reindex_batch(
                args.resource_type.as_deref(),
                after.as_ref().map(|(t, id)| (t.as_str(), id.as_str())),
                args.batch,
            )
            .await
            .map_err(|e| format!("reindexing failed after {resources} resources: {e}"))?;
        resources += batch.resources;
        rows += batch.rows;
        if batch.resources > 0 {
            eprintln!(
                "reindex: {resources} resources, {rows} index rows ({:.0} resources/s)",
                resources as f64 / started.elapsed().as_secs_f64().max(1e-3)
            );
        }
        match batch.last {
            Some(last) if batch.resources == args.batch => after = Some(last),
            _ => break,
        }
    }
    store.close().await;
    println!(
        "reindex: {resources} resources reindexed, {rows} index rows, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
