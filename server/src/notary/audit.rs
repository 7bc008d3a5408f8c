//! The full audit: everything the ledger promises, recomputed from the database.
//!
//! - every block: consecutive heights from genesis, the stored hash equal to the header's,
//!   the chain link to its predecessor, a contiguous entry range, a signer from the genesis
//!   member set and a valid signature, and a Merkle root equal to the root of its leaves;
//! - every sealed entry: its leaf hash equal to the one its block committed to;
//! - every version: exactly one entry, whose fields and content hash match the stored
//!   version (the hash of its canonical JSON, or the tombstone of a delete);
//! - every entry: a version that still exists.
//!
//! Each discrepancy is reported with what it concerns (resource version, entry, block).

use std::collections::HashSet;

use ledger::block::BlockHeader;
use ledger::entry::Operation;

use crate::store::ledger::{StoredBlock, StoredEntry};
use crate::store::{Store, StoreResult, VersionRecord, WriteMethod};

/// One discrepancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(pub String);

/// What an audit saw and found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// Versions checked.
    pub versions: u64,
    /// Blocks checked.
    pub blocks: u64,
    /// Entries checked against their blocks.
    pub sealed_entries: u64,
    /// Entries not sealed yet (normal for the last second of writes).
    pub pending_entries: u64,
    /// Everything that does not hold.
    pub findings: Vec<Finding>,
}

const BATCH: u64 = 5_000;

/// Audits the whole database, calling `progress(done, total)` every `progress_every`
/// versions.
pub async fn audit(
    store: &Store,
    progress_every: u64,
    mut progress: impl FnMut(u64, u64),
) -> StoreResult<AuditReport> {
    let mut report = AuditReport::default();
    audit_blocks(store, &mut report).await?;

    let total = store.version_count().await?;
    let mut after = i64::MIN;
    loop {
        let rows = store.audit_versions(after, BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.version.as_ref().map_or(after, |v| v.seq);
        // Hashing dominates the audit: spread each batch over the cores.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = rows.len().div_ceil(threads).max(1);
        let findings: Vec<Vec<Finding>> = std::thread::scope(|scope| {
            let workers: Vec<_> = rows
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let mut found = Vec::new();
                        for row in part {
                            if let Some(version) = &row.version {
                                check_version(version, row.entry.as_ref(), &mut found);
                            }
                        }
                        found
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        vec![Finding(
                            "an audit worker failed; this batch is unchecked".into(),
                        )]
                    })
                })
                .collect()
        });
        report.findings.extend(findings.into_iter().flatten());
        let before = report.versions;
        report.versions += rows.iter().filter(|r| r.version.is_some()).count() as u64;
        if progress_every > 0 && report.versions / progress_every > before / progress_every {
            progress(report.versions, total);
        }
    }
    for orphan in store.audit_orphan_entries().await? {
        if let Some(e) = orphan.entry {
            report.findings.push(Finding(format!(
                "entry {} notarizes {} version {}, which is no longer stored (history row deleted?)",
                e.entry_seq,
                resource(&e.entry.resource_type, &e.entry.id),
                e.entry.version
            )));
        }
    }
    report.pending_entries = store.ledger_pending().await?;
    Ok(report)
}

fn resource(t: &str, id: &str) -> String {
    format!("{t}/{id}")
}

async fn audit_blocks(store: &Store, report: &mut AuditReport) -> StoreResult<()> {
    let mut expected_height = 0u64;
    let mut prev: Option<BlockHeader> = None;
    let mut members: HashSet<[u8; 32]> = HashSet::new();
    loop {
        let blocks = store.ledger_blocks(expected_height, u64::MAX, 200).await?;
        if blocks.is_empty() {
            break;
        }
        for block in blocks {
            let height = block.stored_height;
            if height != expected_height {
                report.findings.push(Finding(format!(
                    "block {expected_height} is missing (the next stored block is {height})"
                )));
            }
            if block.header.height != height {
                report.findings.push(Finding(format!(
                    "the block stored at height {height} is block {} (blocks moved or re-ordered)",
                    block.header.height
                )));
            }
            if height == 0 {
                members = block.header.members.iter().copied().collect();
            }
            check_block(&block, prev.as_ref(), &members, report);
            let entries = store.ledger_block_entries(height).await?;
            check_block_entries(&block, &entries, report);
            report.blocks += 1;
            expected_height = height + 1;
            prev = Some(block.header);
        }
    }
    Ok(())
}

fn check_block(
    block: &StoredBlock,
    prev: Option<&BlockHeader>,
    members: &HashSet<[u8; 32]>,
    report: &mut AuditReport,
) {
    let h = block.header.height;
    let mut finding = |m: String| report.findings.push(Finding(format!("block {h}: {m}")));
    if block.hash != block.header.hash() {
        finding("the stored block hash does not match its header (header or hash edited)".into());
    }
    if !members.contains(&block.header.signer) {
        finding(format!(
            "signed by {}, which is not a member of the genesis block",
            hex::encode(block.header.signer)
        ));
    }
    if let Err(e) =
        ledger::block::verify_signature(&block.header, &block.signature, &block.header.signer)
    {
        finding(format!("the signature does not verify ({e})"));
    }
    if let Some(prev) = prev {
        if let Err(e) = ledger::audit::check_chain(prev, &block.header) {
            finding(format!("does not follow block {} ({e})", prev.height));
        }
    } else if h == 0 && block.header.prev_hash != [0u8; 32] {
        finding("the genesis block has a previous hash".into());
    }
    if block.leaves.len() as u64 != block.header.entry_count {
        finding(format!(
            "the header counts {} entries but {} leaf hashes are stored",
            block.header.entry_count,
            block.leaves.len()
        ));
    }
    if ledger::merkle::root(&block.leaves) != block.header.merkle_root {
        finding("the Merkle root of the stored leaves does not match the header".into());
    }
}

fn check_block_entries(block: &StoredBlock, entries: &[StoredEntry], report: &mut AuditReport) {
    let h = block.header.height;
    if entries.len() != block.leaves.len() {
        report.findings.push(Finding(format!(
            "block {h}: {} entries are recorded as sealed in it, but it has {} leaves",
            entries.len(),
            block.leaves.len()
        )));
    }
    for (i, (stored, leaf)) in entries.iter().zip(&block.leaves).enumerate() {
        report.sealed_entries += 1;
        if stored.entry.leaf_hash() != *leaf {
            report.findings.push(Finding(format!(
                "entry {} for {} version {} (block {h}, leaf {i}) differs from what was sealed (entry edited)",
                stored.entry_seq,
                resource(&stored.entry.resource_type, &stored.entry.id),
                stored.entry.version
            )));
        }
    }
}

fn check_version(
    version: &VersionRecord,
    entry: Option<&StoredEntry>,
    findings: &mut Vec<Finding>,
) {
    let name = || {
        format!(
            "{} version {}",
            resource(&version.resource_type, &version.id),
            version.version
        )
    };
    let mut finding = |m: String| findings.push(Finding(format!("{}: {m}", name())));
    let Some(stored) = entry else {
        finding("has no ledger entry (inserted behind the API's back?)".into());
        return;
    };
    let entry = &stored.entry;
    let expected_op = match version.method {
        WriteMethod::Create => Operation::Create,
        WriteMethod::Update => Operation::Update,
        WriteMethod::Patch => Operation::Patch,
        WriteMethod::Delete => Operation::Delete,
    };
    if entry.resource_type != version.resource_type
        || entry.id != version.id
        || entry.version != version.version
    {
        finding(format!(
            "its entry {} names {} version {}",
            stored.entry_seq,
            resource(&entry.resource_type, &entry.id),
            entry.version
        ));
    }
    if entry.operation != expected_op {
        finding(format!(
            "stored as {} but notarized as {:?}",
            version.method.as_str(),
            entry.operation
        ));
    }
    if entry.recorded_at != fhir::primitives::format_instant(version.last_updated) {
        finding(format!(
            "last updated {} but notarized at {}",
            fhir::primitives::format_instant(version.last_updated),
            entry.recorded_at
        ));
    }
    let actual = match &version.content {
        None if version.is_delete() => Ok(ledger::canonical::tombstone_hash(
            &version.resource_type,
            &version.id,
            version.version,
        )),
        None => Err("has no content".to_owned()),
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("stored content is not JSON ({e})"))
            .and_then(|v| {
                ledger::canonical::content_hash(&v).map_err(|e| format!("cannot be hashed ({e})"))
            }),
    };
    match actual {
        Ok(hash) if hash == entry.content_hash => {}
        Ok(_) => finding(
            "its content differs from what was notarized (changed behind the API's back)".into(),
        ),
        Err(m) => finding(m),
    }
}
