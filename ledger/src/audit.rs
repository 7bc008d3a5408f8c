//! Pure checks over stored blocks, for the server's full audit: each takes what the
//! database holds and names precisely what does not fit.

use crate::block::{verify_signature, BlockHeader};
use crate::{merkle, Error, Hash};

/// `next` follows `prev`: height + 1, `prevHash` = `prev.hash()`, and its entries start
/// where `prev`'s end (no entry missing, none sealed twice).
pub fn check_chain(prev: &BlockHeader, next: &BlockHeader) -> Result<(), Error> {
    if prev.height.checked_add(1) != Some(next.height) {
        return Err(Error::ChainHeight {
            prev_height: prev.height,
            found: next.height,
        });
    }
    let expected = prev.hash();
    if next.prev_hash != expected {
        return Err(Error::ChainPrevHash {
            height: next.height,
            expected,
            found: next.prev_hash,
        });
    }
    let expected = prev.first_index.checked_add(prev.entry_count);
    if expected != Some(next.first_index) {
        return Err(Error::ChainIndex {
            height: next.height,
            expected: expected.unwrap_or(u64::MAX),
            found: next.first_index,
        });
    }
    Ok(())
}

/// `header` has the fixed shape of a genesis block and its signer is a member.
pub fn check_genesis(header: &BlockHeader) -> Result<(), Error> {
    let reason = if header.height != 0 {
        "height is not 0"
    } else if header.prev_hash != [0; 32] {
        "prevHash is not zero"
    } else if header.entry_count != 0 || header.first_index != 0 {
        "genesis holds no entries"
    } else if header.merkle_root != merkle::empty_root() {
        "merkleRoot is not the empty tree's root"
    } else if !header.members.contains(&header.signer) {
        "the signer is not a member"
    } else {
        return Ok(());
    };
    Err(Error::InvalidGenesis { reason })
}

/// `header` is signed by one of the genesis `members`.
pub fn check_signer(members: &[[u8; 32]], header: &BlockHeader) -> Result<(), Error> {
    if members.contains(&header.signer) {
        Ok(())
    } else {
        Err(Error::SignerNotMember {
            height: header.height,
            signer: header.signer,
        })
    }
}

/// One block on its own: integer ranges, the signature by its `signer`, the entry count and
/// the Merkle root over `leaves` (the leaf hashes recomputed from the stored entries).
pub fn check_block(
    header: &BlockHeader,
    signature: &[u8; 64],
    leaves: &[Hash],
) -> Result<(), Error> {
    header.check_ranges()?;
    verify_signature(header, signature, &header.signer)?;
    if leaves.len() as u64 != header.entry_count {
        return Err(Error::EntryCount {
            height: header.height,
            expected: header.entry_count,
            found: leaves.len() as u64,
        });
    }
    let computed = merkle::root(leaves);
    if computed != header.merkle_root {
        return Err(Error::MerkleRootMismatch {
            height: header.height,
            computed,
            expected: header.merkle_root,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{genesis, seal, NodeKey};
    use crate::entry::{tests::sample, Entry};

    /// A stored block as the audit sees it: header, signature, recomputed leaf hashes.
    type Stored = (BlockHeader, [u8; 64], Vec<Hash>);

    fn chain() -> (NodeKey, Vec<Stored>) {
        let key = NodeKey::from_seed([1; 32]);
        let (g, g_sig) = genesis(&key, vec![], "2026-11-23T13:00:00Z".into());
        let mut blocks = vec![(g, g_sig, vec![])];
        for n in 1..=3 {
            let entries: Vec<Entry> = (1..=n).map(sample).collect();
            let leaves = entries.iter().map(Entry::leaf_hash).collect();
            let (b, sig) = seal(
                &key,
                &blocks.last().unwrap().0,
                &entries,
                format!("2026-11-23T13:00:0{n}Z"),
            );
            blocks.push((b, sig, leaves));
        }
        (key, blocks)
    }

    #[test]
    fn an_untouched_chain_passes() {
        let (key, blocks) = chain();
        check_genesis(&blocks[0].0).unwrap();
        for pair in blocks.windows(2) {
            check_chain(&pair[0].0, &pair[1].0).unwrap();
        }
        for (header, sig, leaves) in &blocks {
            check_block(header, sig, leaves).unwrap();
            check_signer(&blocks[0].0.members, header).unwrap();
        }
        assert!(check_signer(&[], &blocks[1].0).is_err());
        assert_eq!(blocks[0].0.members, vec![key.public_key()]);
    }

    #[test]
    fn tampering_is_named() {
        let (_, blocks) = chain();
        let (b1, b2, b3) = (&blocks[1].0, &blocks[2].0, &blocks[3].0);
        assert!(matches!(
            check_chain(b1, b3),
            Err(Error::ChainHeight { .. })
        ));
        let mut edited = b1.clone();
        edited.sealed_at = "2026-11-23T14:00:00Z".into();
        assert!(matches!(
            check_chain(&edited, b2),
            Err(Error::ChainPrevHash { .. })
        ));
        assert!(matches!(
            check_block(&edited, &blocks[1].1, &blocks[1].2),
            Err(Error::BadSignature { .. })
        ));
        let mut shifted = b2.clone();
        shifted.first_index += 1;
        assert!(matches!(
            check_chain(b1, &shifted),
            Err(Error::ChainIndex { .. })
        ));
        let (_, sig, leaves) = &blocks[2];
        assert!(matches!(
            check_block(b2, sig, &leaves[..1]),
            Err(Error::EntryCount { .. })
        ));
        let mut altered = leaves.clone();
        altered[0][0] ^= 1;
        assert!(matches!(
            check_block(b2, sig, &altered),
            Err(Error::MerkleRootMismatch { .. })
        ));
        assert!(matches!(
            check_genesis(b1),
            Err(Error::InvalidGenesis { .. })
        ));
    }
}
