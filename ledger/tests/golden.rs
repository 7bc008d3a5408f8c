//! Golden vectors: the committed files in `tests/vectors/` must be exactly what the code
//! produces, so any change to a byte of the format shows up here as a diff.
//!
//! Regenerate after a deliberate format change with
//! `UPDATE_GOLDEN=1 cargo test -p notary-ledger --test golden`.

use std::path::PathBuf;

use ledger::block::{genesis, seal, BlockHeader, NodeKey};
use ledger::canonical::{canonical_json, content_hash, tombstone, tombstone_hash};
use ledger::encoding::{from_hex, to_hex};
use ledger::entry::{Entry, Operation};
use ledger::proof::{self, Proof};
use ledger::{merkle, Hash};
use serde_json::{json, Value};

const SEED: [u8; 32] = [1; 32];
const PROVEN_INDEX: usize = 2;

/// (name, JSON text as a client would send or the server would serve it).
const RESOURCES: &[(&str, &str)] = &[
    (
        "patient-v1",
        r#"{"resourceType":"Patient","id":"pat-1","meta":{"versionId":"1","lastUpdated":"2026-11-23T13:40:00.123Z"},"name":[{"family":"Ångström","given":["Zoë","李"]}],"gender":"female","birthDate":"1970-01-01"}"#,
    ),
    (
        "observation-v1",
        r#"{"resourceType":"Observation","id":"obs-1","meta":{"versionId":"1","lastUpdated":"2026-11-23T13:40:00.456Z"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},"subject":{"reference":"Patient/pat-1"},"valueQuantity":{"value":185.50,"unit":"lb","system":"http://unitsofmeasure.org","code":"[lb_av]"}}"#,
    ),
    (
        "patient-v2",
        r#"{"resourceType":"Patient","id":"pat-1","meta":{"versionId":"2","lastUpdated":"2026-11-23T13:40:00.789Z"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoë 𝄞 \"quoted\"\ttab</div>"},"name":[{"family":"Ångström","given":["Zoë","李"]}],"gender":"female","birthDate":"1970-01-01"}"#,
    ),
    (
        "observation-v2",
        r#"{"resourceType":"Observation","id":"obs-1","meta":{"versionId":"2","lastUpdated":"2026-11-23T13:40:00.999Z"},"extension":[{"url":"http://example.org/fhir/StructureDefinition/big","valueDecimal":1e21},{"url":"http://example.org/fhir/StructureDefinition/small","valueDecimal":0.0000001}],"status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/pat-1"},"valueQuantity":{"value":185.50,"unit":"lb"}}"#,
    ),
    (
        "utf16-key-order",
        r#"{"z":{"😀":"U+1F600 sorts as D83D DE00, before U+FB01","ﬁ":"U+FB01","é":"U+00E9","a":"a","A":"A","\u0080":"U+0080"},"big":9007199254740993,"neg":-0.0,"e":1E-7}"#,
    ),
    (
        "rfc8785-example",
        r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
    ),
];

fn resource(name: &str) -> Value {
    let text = RESOURCES.iter().find(|(n, _)| *n == name).unwrap().1;
    serde_json::from_str(text).unwrap()
}

fn entries() -> Vec<Entry> {
    let entry =
        |rt: &str, id: &str, version, operation, content_hash, actor: &str, at: &str, req: &str| {
            Entry {
                resource_type: rt.into(),
                id: id.into(),
                version,
                operation,
                content_hash,
                actor: actor.into(),
                recorded_at: at.into(),
                request_id: req.into(),
            }
        };
    let hash = |name| content_hash(&resource(name)).unwrap();
    vec![
        entry(
            "Patient",
            "pat-1",
            1,
            Operation::Create,
            hash("patient-v1"),
            "anonymous",
            "2026-11-23T13:40:00.123Z",
            "req-0001",
        ),
        entry(
            "Observation",
            "obs-1",
            1,
            Operation::Create,
            hash("observation-v1"),
            "Practitioner/123",
            "2026-11-23T13:40:00.456Z",
            "req-0002",
        ),
        entry(
            "Patient",
            "pat-1",
            2,
            Operation::Update,
            hash("patient-v2"),
            "anonymous",
            "2026-11-23T13:40:00.789Z",
            "req-0003",
        ),
        entry(
            "Observation",
            "obs-1",
            2,
            Operation::Patch,
            hash("observation-v2"),
            "Practitioner/123",
            "2026-11-23T13:40:00.999Z",
            "req-0004",
        ),
        entry(
            "Patient",
            "pat-1",
            3,
            Operation::Delete,
            tombstone_hash("Patient", "pat-1", 3),
            "anonymous",
            "2026-11-23T13:40:01.000Z",
            "req-0005",
        ),
    ]
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

fn canonical_vectors() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(name, input)| {
            let value: Value = serde_json::from_str(input).unwrap();
            json!({
                "name": name,
                "input": input,
                "canonical": canonical_json(&value).unwrap(),
                "contentHash": to_hex(&content_hash(&value).unwrap()),
            })
        })
        .collect();
    json!({
        "resources": resources,
        "tombstone": {
            "resourceType": "Patient", "id": "pat-1", "version": 3,
            "canonical": canonical_json(&tombstone("Patient", "pat-1", 3)).unwrap(),
            "contentHash": to_hex(&tombstone_hash("Patient", "pat-1", 3)),
        },
    })
}

fn entry_vectors() -> Value {
    let list: Vec<Value> = entries()
        .iter()
        .map(|e| json!({ "entry": e, "bytes": text(e.to_bytes()), "leafHash": to_hex(&e.leaf_hash()) }))
        .collect();
    Value::Array(list)
}

fn merkle_vectors() -> Value {
    // Leaves are leaf hashes of the one-byte strings 0x00, 0x01, … so any verifier can make them.
    let leaves: Vec<Hash> = (0u8..8).map(|i| merkle::leaf_hash(&[i])).collect();
    let trees: Vec<Value> = (1..=8)
        .map(|n| {
            let paths: Vec<Value> = (0..n)
                .map(|i| {
                    json!(merkle::audit_path(&leaves[..n], i)
                        .iter()
                        .map(|h| to_hex(h))
                        .collect::<Vec<_>>())
                })
                .collect();
            json!({ "size": n, "root": to_hex(&merkle::root(&leaves[..n])), "auditPaths": paths })
        })
        .collect();
    json!({
        "leafData": (0u8..8).map(|i| to_hex(&[i])).collect::<Vec<_>>(),
        "leafHashes": leaves.iter().map(|h| to_hex(h)).collect::<Vec<_>>(),
        "emptyRoot": to_hex(&merkle::root(&[])),
        "trees": trees,
    })
}

struct Chain {
    key: NodeKey,
    genesis: (BlockHeader, [u8; 64]),
    block: (BlockHeader, [u8; 64]),
}

fn chain() -> Chain {
    let key = NodeKey::from_seed(SEED);
    let genesis = genesis(&key, vec![], "2026-11-23T13:40:00.000Z".into());
    let block = seal(
        &key,
        &genesis.0,
        &entries(),
        "2026-11-23T13:40:02.000Z".into(),
    );
    Chain {
        key,
        genesis,
        block,
    }
}

fn block_vector(header: &BlockHeader, signature: &[u8; 64]) -> Value {
    json!({
        "header": header,
        "bytes": text(header.to_bytes()),
        "hash": to_hex(&header.hash()),
        "signingInput": to_hex(&header.signing_input()),
        "signature": to_hex(signature),
    })
}

fn chain_vectors() -> Value {
    let c = chain();
    json!({
        "seed": to_hex(&SEED),
        "publicKey": to_hex(&c.key.public_key()),
        "genesis": block_vector(&c.genesis.0, &c.genesis.1),
        "block1": {
            "leafHashes": entries().iter().map(|e| to_hex(&e.leaf_hash())).collect::<Vec<_>>(),
            "block": block_vector(&c.block.0, &c.block.1),
        },
    })
}

fn the_proof() -> Proof {
    let c = chain();
    let entries = entries();
    let leaves: Vec<Hash> = entries.iter().map(Entry::leaf_hash).collect();
    proof::build(
        entries[PROVEN_INDEX].clone(),
        PROVEN_INDEX,
        &leaves,
        c.block.0,
        c.block.1,
        c.key.public_key(),
    )
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Compares `produced` with the committed file, or rewrites it under UPDATE_GOLDEN.
fn check(file: &str, produced: String) {
    let path = vectors_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        std::fs::write(&path, &produced).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test -p notary-ledger --test golden",
            path.display()
        )
    });
    assert!(committed == produced, "{file} differs from what the code produces; if the change is deliberate, regenerate with UPDATE_GOLDEN=1");
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn canonical_vectors_reproduce() {
    check("canonical.json", pretty(&canonical_vectors()));
}

#[test]
fn entry_vectors_reproduce() {
    check("entries.json", pretty(&entry_vectors()));
}

#[test]
fn merkle_vectors_reproduce() {
    check("merkle.json", pretty(&merkle_vectors()));
}

#[test]
fn chain_vectors_reproduce() {
    check("chain.json", pretty(&chain_vectors()));
}

#[test]
fn proof_file_reproduces() {
    check("proof.json", pretty(&the_proof()));
}

fn committed_proof() -> (Vec<u8>, [u8; 32]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // The files are being rewritten by the other tests right now: check what they get.
        return (
            pretty(&the_proof()).into_bytes(),
            NodeKey::from_seed(SEED).public_key(),
        );
    }
    let bytes = std::fs::read(vectors_dir().join("proof.json")).unwrap();
    let chain: Value =
        serde_json::from_slice(&std::fs::read(vectors_dir().join("chain.json")).unwrap()).unwrap();
    let key = from_hex(chain["publicKey"].as_str().unwrap()).unwrap();
    (bytes, key)
}

#[test]
fn the_committed_proof_verifies_with_the_committed_key() {
    let (bytes, key) = committed_proof();
    let verified = proof::verify(&Proof::from_json(&bytes).unwrap(), &key).unwrap();
    assert_eq!(
        (verified.block_height, verified.ledger_index),
        (1, PROVEN_INDEX as u64)
    );
    assert_eq!(verified.entry, entries()[PROVEN_INDEX]);
    proof::verify_content(&Proof::from_json(&bytes).unwrap(), &resource("patient-v2")).unwrap();
}

#[test]
fn flipping_any_bit_of_the_committed_proof_file_fails() {
    let (bytes, key) = committed_proof();
    let mut parsed_but_rejected = 0;
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            if let Ok(p) = Proof::from_json(&bad) {
                assert!(
                    proof::verify(&p, &key).is_err(),
                    "byte {i} bit {bit} still verifies"
                );
                parsed_but_rejected += 1;
            }
        }
    }
    // Guard against a test that passes only because nothing parses.
    assert!(
        parsed_but_rejected > 500,
        "only {parsed_but_rejected} flips parsed"
    );
}
