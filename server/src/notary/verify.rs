//! `fhir-notary ledger verify-proof`: offline verification of a proof file with nothing but
//! the file and the signer's public key (and, optionally, the resource it proves).

use std::path::Path;

use crate::config::{parse_public_key, VerifyProofArgs};

/// Verifies and returns the lines to print; an error says exactly what broke.
pub fn verify(args: &VerifyProofArgs) -> Result<Vec<String>, String> {
    let key = read_public_key(&args.public_key)?;
    let text = std::fs::read_to_string(&args.proof)
        .map_err(|e| format!("cannot read {}: {e}", args.proof.display()))?;
    let proof: ledger::proof::Proof = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a proof file: {e}", args.proof.display()))?;
    let verified =
        ledger::proof::verify(&proof, &key).map_err(|e| format!("proof does NOT verify: {e}"))?;
    let mut lines = vec![
        format!(
            "OK: {}/{} version {} ({:?}) was notarized",
            proof.entry.resource_type, proof.entry.id, proof.entry.version, proof.entry.operation
        ),
        format!("  content hash  {}", hex::encode(proof.entry.content_hash)),
        format!(
            "  recorded at   {} by {} (request {})",
            proof.entry.recorded_at, proof.entry.actor, proof.entry.request_id
        ),
        format!(
            "  in block      {} (leaf {} of {}), sealed {}",
            proof.block.height, proof.leaf_index, proof.block.entry_count, proof.block.sealed_at
        ),
        format!("  block hash    {}", hex::encode(proof.block.hash())),
        format!("  signed by     {}", hex::encode(key)),
    ];
    let _ = verified;
    if let Some(path) = &args.resource {
        let resource: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        ledger::proof::verify_content(&proof, &resource).map_err(|e| {
            format!(
                "the resource in {} is NOT the notarized version: {e}",
                path.display()
            )
        })?;
        lines.push(format!(
            "  resource      {} matches the notarized content hash",
            path.display()
        ));
    }
    Ok(lines)
}

fn read_public_key(raw: &str) -> Result<[u8; 32], String> {
    if Path::new(raw).is_file() {
        let text = std::fs::read_to_string(raw).map_err(|e| format!("cannot read {raw}: {e}"))?;
        parse_public_key(text.trim())
    } else {
        parse_public_key(raw)
    }
}
