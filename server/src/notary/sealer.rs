//! The sealer: a background task that, while it holds the sealer lock, seals waiting ledger
//! entries into signed blocks every interval (and at once, block after block, when a
//! backlog exceeds a block). Processes that do not hold the lock keep trying, so sealing
//! resumes on another process when the sealing one dies.

use std::time::Duration;

use ledger::block::NodeKey;
use time::OffsetDateTime;

use crate::store::Store;

/// What the sealer needs.
pub struct Sealer {
    /// The database.
    pub store: Store,
    /// This node's signing key.
    pub key: NodeKey,
    /// The permissioned signer set recorded in a new genesis block (this node's key first).
    pub members: Vec<[u8; 32]>,
    /// How often to seal.
    pub interval: Duration,
    /// Most entries per block.
    pub max_entries: u64,
}

impl Sealer {
    /// Runs until the surrounding runtime stops.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await;
    }

    /// Runs until `stop` completes, finishing the seal under way, then lets go of the
    /// sealer lock. The server stops it this way before closing the database, so no seal
    /// is cut off by a closing pool.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut lock = None;
        loop {
            if lock.is_none() {
                match self.store.try_sealer_lock().await {
                    Ok(Some(l)) => match self.is_member().await {
                        Ok(true) => {
                            tracing::info!("this process is the ledger sealer");
                            lock = Some(l);
                        }
                        Ok(false) => {
                            tracing::error!(
                                public_key = %hex::encode(self.key.public_key()),
                                "this node's key is not a member of the ledger's genesis block; not sealing \
                                 (configure the members' key with --ledger-key-file)"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the genesis block"),
                    },
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot contend for the sealer lock"),
                }
            }
            if let Some(held) = lock.as_mut() {
                if held.is_held().await {
                    self.seal_backlog().await;
                } else {
                    tracing::warn!("lost the sealer lock; contending again");
                    lock = None;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = &mut stop => break,
            }
        }
    }

    /// Whether this node's key may sign: true on a ledger without genesis (this node will
    /// create it) or when the genesis block lists the key.
    async fn is_member(&self) -> crate::store::StoreResult<bool> {
        let genesis = self.store.ledger_blocks(0, 0, 1).await?;
        Ok(genesis
            .first()
            .is_none_or(|g| g.header.members.contains(&self.key.public_key())))
    }

    /// Seals until no entry waits (or sealing fails, which is retried next interval).
    pub async fn seal_backlog(&self) {
        loop {
            let now = fhir::primitives::format_instant(OffsetDateTime::now_utc());
            match self
                .store
                .seal_block(&self.key, &self.members, self.max_entries, now)
                .await
            {
                Ok(Some(header)) => {
                    crate::telemetry::metrics().record_sealed(header.height, header.entry_count);
                    tracing::debug!(
                        height = header.height,
                        entries = header.entry_count,
                        "sealed a block"
                    );
                    if header.entry_count < self.max_entries {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "sealing failed; will retry");
                    return;
                }
            }
        }
    }
}
