//! Access tokens: the claims this server reads, the dev-mode signing key, minting (for
//! `fhir-notary token`) and validation (one path for both modes).
//!
//! Validation checks the signature with an algorithm allow-list fixed by the key's type
//! (EdDSA for the dev key; RS*/PS*/ES*/EdDSA for an OIDC provider's JWKS keys, never `none`
//! and never HMAC, since no HMAC key is ever built), then `iss`, `aud`, `exp` and `nbf` with
//! [`LEEWAY_SECS`] of clock skew. Failures are reported as a short reason that names no key
//! material.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Clock skew accepted on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The file in the data directory holding the dev-mode token signing key (hex seed).
pub const DEV_KEY_FILE: &str = "auth.key";

/// The claims of an access token, as read from it. The role claim's name is configurable,
/// so it is read from `extra`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user or client.
    pub sub: String,
    /// Audience: one string or several.
    pub aud: Value,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// SMART scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// SMART launch context: the patient in context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// SMART `fhirUser`: the FHIR resource of the user (`Practitioner/123`).
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// Every other claim (the role claim among them).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Why a token was refused (what the 401 says; no key material, no token content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("an access token is required (Authorization: Bearer …)")]
    Missing,
    /// Anything wrong with the token itself.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The dev-mode key pair: an Ed25519 key kept in the data directory.
pub struct DevKey {
    /// Key id, in token headers and the JWKS.
    pub kid: String,
    /// The public key (raw 32 bytes).
    pub public: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey").field("kid", &self.kid).finish()
    }
}

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl DevKey {
    /// Loads the key at `path`, creating it (owner-only permissions) when missing.
    pub fn load_or_create(path: &Path) -> Result<DevKey, String> {
        let seed = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
                    format!(
                        "{} does not hold a token signing key (64 hex characters)",
                        path.display()
                    )
                })?;
                seed
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_seed(path)?,
            Err(e) => {
                return Err(format!(
                    "cannot read the token signing key {}: {e}",
                    path.display()
                ))
            }
        };
        Ok(DevKey::from_seed(seed))
    }

    fn from_seed(seed: [u8; 32]) -> DevKey {
        let public = ledger::block::NodeKey::from_seed(seed).public_key();
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        DevKey {
            kid: format!("dev-{}", &hex::encode(public)[..16]),
            public,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(&public),
        }
    }

    /// The public key as a JWK (`OKP`, `Ed25519`).
    pub fn jwk(&self) -> Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public),
        })
    }

    /// Signs `claims` into a compact JWT (`typ: at+jwt`, RFC 9068).
    pub fn mint(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| format!("cannot sign the token: {e}"))
    }

    /// The key for a token's `kid` (a token without `kid` is assumed to mean this key).
    pub fn decoding_key(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            None => Some(&self.decoding),
            Some(k) if k == self.kid => Some(&self.decoding),
            Some(_) => None,
        }
    }
}

fn create_seed(path: &Path) -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a new token key: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write the token key {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new token signing key");
            Ok(seed)
        }
        // Another process (the server, a `token` command) created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token key {}: {e}", path.display()))?;
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|_| format!("{} does not hold a token key", path.display()))?;
            Ok(seed)
        }
        Err(e) => Err(format!(
            "cannot create the token key {}: {e}",
            path.display()
        )),
    }
}

/// The `kid` and `alg` of a token, read before its signature is checked.
pub fn header(token: &str) -> Result<Header, TokenError> {
    // `alg: none` and unknown algorithms fail here: jsonwebtoken has no such Algorithm.
    jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("the token is malformed"))
}

/// Checks `token`'s signature with `key` (whose algorithm family must match `alg`), then
/// `iss`, `aud`, `exp` and `nbf`.
pub fn verify(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    issuer: &str,
    audience: &str,
) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            TokenError::Invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidIssuer => "the token was issued by an issuer this server does not trust",
                K::InvalidAudience => "the token is not meant for this server",
                K::InvalidSignature => "the token's signature does not verify",
                K::MissingRequiredClaim(_) => "the token lacks a required claim",
                K::InvalidAlgorithm => "the token's algorithm does not match its key",
                _ => "the token is malformed",
            })
        })
}

/// Parses a duration such as `90`, `90s`, `15m`, `12h` or `7d`.
pub fn parse_ttl(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration such as 3600, 90s, 15m, 12h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("'{raw}' has an unknown unit (use s, m, h or d)")),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err(format!("'{raw}' must be between 1 s and 366 days"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iss: &str, aud: &str, exp_from_now: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: iss.into(),
            sub: "someone".into(),
            aud: aud.into(),
            exp: now + exp_from_now,
            iat: Some(now),
            nbf: None,
            scope: Some("user/*.rs".into()),
            patient: None,
            fhir_user: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_minted_token_verifies_and_tampering_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DevKey::load_or_create(&dir.path().join(DEV_KEY_FILE)).expect("key");
        let again = DevKey::load_or_create(&dir.path().join(DEV_KEY_FILE)).expect("key");
        assert_eq!(key.public, again.public);
        let token = key.mint(&claims("iss", "aud", 60)).expect("mint");
        let h = header(&token).expect("header");
        let dk = key.decoding_key(h.kid.as_deref()).expect("kid known");
        assert_eq!(
            verify(&token, h.alg, dk, "iss", "aud").expect("ok").sub,
            "someone"
        );
        assert!(verify(&token, h.alg, dk, "other", "aud").is_err());
        assert!(verify(&token, h.alg, dk, "iss", "other").is_err());
        let expired = key.mint(&claims("iss", "aud", -120)).expect("mint");
        assert_eq!(
            verify(&expired, h.alg, dk, "iss", "aud").unwrap_err(),
            TokenError::Invalid("the token has expired")
        );
        let other = DevKey::from_seed([7; 32]);
        let forged = other.mint(&claims("iss", "aud", 60)).expect("mint");
        assert!(verify(&forged, h.alg, dk, "iss", "aud").is_err());
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_ttl("12h").unwrap().as_secs(), 43_200);
        assert!(parse_ttl("0").is_err() && parse_ttl("5y").is_err() && parse_ttl("x").is_err());
    }
}
