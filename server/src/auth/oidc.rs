//! oidc mode: an external OpenID Connect provider issues the tokens. Its discovery document
//! (`<issuer>/.well-known/openid-configuration`) is read at start-up, and must name the
//! configured issuer; its JWKS is cached by `kid` and fetched again when a token names a
//! `kid` the cache lacks (at most every [`REFRESH_MIN`], so unknown `kid`s cannot make the
//! server hammer the provider).
//!
//! Plain HTTP (reqwest) rather than the `openidconnect` crate: only two documents are read,
//! and that crate's verifier is for ID tokens (it refuses RFC 9068 access tokens), so the
//! signature checks stay with jsonwebtoken either way while `openidconnect` would add a
//! second OAuth/crypto stack to the build.
//!
//! Accepted keys are RSA, EC and OKP keys meant for signatures; symmetric (`oct`) keys in a
//! JWKS are ignored, so a token can never be checked as HMAC with public material. A key's
//! own `alg`, when present, must match the token's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::token::TokenError;

/// Least time between two JWKS fetches triggered by unknown `kid`s.
pub const REFRESH_MIN: Duration = Duration::from_secs(5);

/// The signature algorithms accepted from a provider.
pub const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint: Option<String>,
}

struct Key {
    decoding: DecodingKey,
    alg: Option<Algorithm>,
}

/// The provider: its endpoints and its cached keys.
pub struct Provider {
    client: reqwest::Client,
    /// The JWKS URI from discovery.
    pub jwks_uri: String,
    /// The token endpoint from discovery.
    pub token_endpoint: Option<String>,
    keys: RwLock<HashMap<String, Key>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("jwks_uri", &self.jwks_uri)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Reads the issuer's discovery document and JWKS.
    pub async fn discover(issuer: &str) -> Result<Provider, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot read the OpenID discovery document {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url} is not an OpenID discovery document: {e}"))?;
        if discovery.issuer.trim_end_matches('/') != issuer {
            return Err(format!(
                "{url} names the issuer '{}', not '{issuer}' (--auth-issuer)",
                discovery.issuer
            ));
        }
        let provider = Provider {
            client,
            jwks_uri: discovery.jwks_uri,
            token_endpoint: discovery.token_endpoint,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        };
        provider.fetch().await?;
        Ok(provider)
    }

    async fn fetch(&self) -> Result<(), String> {
        let set: JwkSet = self
            .client
            .get(&self.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot read the JWKS {}: {e}", self.jwks_uri))?
            .json()
            .await
            .map_err(|e| format!("{} is not a JWKS: {e}", self.jwks_uri))?;
        let keys: HashMap<String, Key> = set.keys.iter().filter_map(usable).collect();
        tracing::info!(keys = keys.len(), jwks_uri = %self.jwks_uri, "token keys loaded");
        *self.keys.write().await = keys;
        *self.last_fetch.lock().await = Some(Instant::now());
        Ok(())
    }

    /// Checks `token` (whose header is `header`) against the provider's keys.
    pub async fn verify(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &str,
        audience: &str,
    ) -> Result<super::token::Claims, TokenError> {
        if !ALLOWED.contains(&header.alg) {
            return Err(TokenError::Invalid("the token's algorithm is not accepted"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or(TokenError::Invalid("the token names no key (kid)"))?;
        if !self.keys.read().await.contains_key(kid) {
            self.refresh().await;
        }
        let keys = self.keys.read().await;
        let key = keys.get(kid).ok_or(TokenError::Invalid(
            "the token was signed by an unknown key",
        ))?;
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(TokenError::Invalid(
                "the token's algorithm does not match its key",
            ));
        }
        super::token::verify(token, header.alg, &key.decoding, issuer, audience)
    }

    /// Fetches the JWKS again unless that was done less than [`REFRESH_MIN`] ago.
    async fn refresh(&self) {
        let recent = self
            .last_fetch
            .lock()
            .await
            .is_some_and(|t| t.elapsed() < REFRESH_MIN);
        if recent {
            return;
        }
        if let Err(e) = self.fetch().await {
            tracing::warn!(error = %e, "refreshing the token keys failed");
            *self.last_fetch.lock().await = Some(Instant::now());
        }
    }
}

/// A JWK this server may verify signatures with, by `kid`.
fn usable(jwk: &Jwk) -> Option<(String, Key)> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    if !matches!(
        jwk.algorithm,
        P::RSA(_) | P::EllipticCurve(_) | P::OctetKeyPair(_)
    ) {
        return None;
    }
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signature_alg(a)?),
    };
    let kid = jwk.common.key_id.clone()?;
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Key { decoding, alg }))
}

fn signature_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    let alg = match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    Some(alg)
}
