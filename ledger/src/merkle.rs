//! RFC 6962 Merkle trees over leaf hashes: the root a block header commits to, the audit
//! path a proof carries, and the verifier's side that recomputes the root from a path.
//!
//! Building uses `rs_merkle` with [`Rfc6962Hasher`]. rs_merkle pairs nodes left to right
//! level by level and promotes a level's unpaired last node unchanged; that yields exactly
//! RFC 6962's MTH (split at the largest power of two below n), which the tests check against
//! a direct recursive implementation for every size 1..=64. Verification does not use
//! rs_merkle: its proof check ignores surplus path hashes, while RFC 9162's algorithm
//! (implemented in [`root_from_path`]) requires the path to have exactly the right length.

use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};

use crate::Hash;

/// RFC 6962 hashing for rs_merkle: `hash` is the leaf hash, `concat_and_hash` the node hash;
/// an unpaired node is promoted as is (never hashed with itself).
#[derive(Clone, Copy, Debug)]
pub struct Rfc6962Hasher;

impl Hasher for Rfc6962Hasher {
    type Hash = Hash;

    fn hash(data: &[u8]) -> Hash {
        leaf_hash(data)
    }

    fn concat_and_hash(left: &Hash, right: Option<&Hash>) -> Hash {
        match right {
            Some(right) => node_hash(left, right),
            None => *left,
        }
    }
}

/// SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(data)
        .finalize()
        .into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of an empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 MTH over `leaves` (already leaf hashes); [`empty_root`] for none.
pub fn root(leaves: &[Hash]) -> Hash {
    MerkleTree::<Rfc6962Hasher>::from_leaves(leaves)
        .root()
        .unwrap_or_else(empty_root)
}

/// RFC 6962 audit path PATH(index, leaves): sibling hashes from the leaf's level upwards.
///
/// # Panics
/// If `index >= leaves.len()`, like slice indexing: there is no path to a missing leaf.
pub fn audit_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    assert!(
        index < leaves.len(),
        "audit path for leaf {index} of a {}-leaf tree",
        leaves.len()
    );
    MerkleTree::<Rfc6962Hasher>::from_leaves(leaves)
        .proof(&[index])
        .proof_hashes()
        .to_vec()
}

/// The root that `path` leads to from `leaf` at `index` in a tree of `leaf_count` leaves
/// (RFC 9162 §2.1.3.2), or `None` if the path's length does not fit that position.
pub fn root_from_path(leaf: &Hash, index: usize, leaf_count: usize, path: &[Hash]) -> Option<Hash> {
    if index >= leaf_count {
        return None;
    }
    let (mut f_n, mut s_n) = (index, leaf_count - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            // Skip the levels where this node is promoted without a sibling.
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 §2.1 MTH, written from the text.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// RFC 6962 §2.1.1 PATH(m, D[n]).
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// The largest power of two smaller than n (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i as u8])).collect()
    }

    #[test]
    fn rs_merkle_agrees_with_rfc6962_for_every_size_up_to_64() {
        for n in 1..=64 {
            let d = leaves(n);
            let r = root(&d);
            assert_eq!(r, mth(&d), "root, n = {n}");
            for m in 0..n {
                let p = audit_path(&d, m);
                assert_eq!(p, path(m, &d), "path, n = {n}, m = {m}");
                assert_eq!(
                    root_from_path(&d[m], m, n, &p),
                    Some(r),
                    "verify, n = {n}, m = {m}"
                );
            }
        }
    }

    #[test]
    fn certificate_transparency_reference_roots() {
        // The leaf inputs and roots of the reference implementation's merkle_tree_test.
        let inputs = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves: Vec<Hash> = inputs
            .iter()
            .map(|i| leaf_hash(&hex::decode(i).unwrap()))
            .collect();
        for (n, expected) in roots.iter().enumerate() {
            assert_eq!(
                crate::encoding::to_hex(&root(&leaves[..=n])),
                *expected,
                "n = {}",
                n + 1
            );
        }
    }

    #[test]
    fn the_empty_tree_is_the_hash_of_nothing() {
        assert_eq!(
            crate::encoding::to_hex(&root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn paths_of_the_wrong_shape_are_rejected() {
        let d = leaves(5);
        let p = audit_path(&d, 2);
        let mut longer = p.clone();
        longer.push(d[0]);
        assert_eq!(root_from_path(&d[2], 2, 5, &longer), None);
        assert_eq!(root_from_path(&d[2], 2, 5, &p[..p.len() - 1]), None);
        assert_eq!(root_from_path(&d[2], 5, 5, &p), None);
        assert_ne!(root_from_path(&d[2], 3, 5, &p), Some(root(&d)));
        // The tree size only matters through the path's shape (leaf 2 of 5 and of 6 walk the
        // same way), which is why a proof takes the size from the signed header.
        assert_eq!(root_from_path(&d[2], 2, 6, &p), Some(root(&d)));
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut concat = a.to_vec();
        concat.extend(b);
        assert_ne!(node_hash(&a, &b), leaf_hash(&concat));
        assert_eq!(<Rfc6962Hasher as Hasher>::hash(b"a"), a);
    }
}
