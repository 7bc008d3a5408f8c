//! The ledger API (JSON, documented in `docs/ledger.md`):
//!
//! - `GET /ledger/head`: the newest block (height, hash, seal time, signer) and how many
//!   entries wait to be sealed.
//! - `GET /ledger/blocks/{height}`: a block's header, hash, signature and leaf hashes.
//! - `GET /ledger/blocks?from=&to=`: headers, hashes and signatures of up to 100 blocks,
//!   for walking the chain, with a `next` URL while more follow.
//! - `GET /ledger/proof/{type}/{id}/{version}`: a self-contained proof that the version was
//!   notarized, verifiable offline (`fhir-notary ledger verify-proof`). A version whose block
//!   is not sealed yet answers 202 with `Retry-After`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use fhir::outcome::{Issue, IssueType, OperationOutcome};
use serde_json::{json, Value};

use super::{known_type, valid_id};
use crate::auth::{Interaction, Principal};
use crate::http::error::{outcome_response, ApiError};
use crate::http::negotiate::Params;
use crate::http::AppState;
use crate::store::ledger::StoredBlock;

const MAX_BLOCKS: u64 = 100;

fn block_json(block: &StoredBlock, with_leaves: bool) -> Value {
    let mut value = json!({
        "header": block.header,
        "blockHash": hex::encode(block.hash),
        "signature": hex::encode(block.signature),
    });
    if with_leaves {
        value["leafHashes"] = json!(block.leaves.iter().map(hex::encode).collect::<Vec<_>>());
    }
    value
}

fn retry_after(state: &AppState) -> String {
    state.seal_interval.as_secs().max(1).to_string()
}

/// An OperationOutcome answer telling the client when to ask again.
fn come_back_later(status: StatusCode, issue: Issue, state: &AppState) -> HttpResponse {
    let mut res = outcome_response(status, &OperationOutcome::single(issue));
    if let Ok(v) = header::HeaderValue::from_str(&retry_after(state)) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// `GET /ledger/head`.
pub async fn head(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(Interaction::Ledger, None, None)?;
    let pending = state.store.ledger_pending().await?;
    let Some(block) = state.store.ledger_head().await? else {
        return Ok(come_back_later(
            StatusCode::SERVICE_UNAVAILABLE,
            Issue::error(
                IssueType::Transient,
                "the ledger has no block yet; the sealer creates the genesis block at start",
            ),
            &state,
        ));
    };
    Ok(HttpResponse::Ok().json(json!({
        "height": block.header.height,
        "blockHash": hex::encode(block.hash),
        "sealedAt": block.header.sealed_at,
        "signer": hex::encode(block.header.signer),
        "sealedEntries": block.header.first_index + block.header.entry_count,
        "pendingEntries": pending,
    })))
}

/// `GET /ledger/blocks/{height}`.
pub async fn block(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(Interaction::Ledger, None, None)?;
    let height: u64 = path
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("'{}' is not a block height", path.as_str())))?;
    let block = state
        .store
        .ledger_blocks(height, height, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("there is no block {height}")))?;
    Ok(HttpResponse::Ok().json(block_json(&block, true)))
}

/// `GET /ledger/blocks?from=&to=`.
pub async fn blocks(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(Interaction::Ledger, None, None)?;
    let params = Params::parse(req.query_string());
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        params
            .single(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("{name} must be a block height, not '{v}'"))
                })
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let from = number("from", 0)?;
    let to = number("to", u64::MAX)?;
    if to < from {
        return Err(ApiError::BadRequest("to must not be below from".into()));
    }
    let blocks = state.store.ledger_blocks(from, to, MAX_BLOCKS).await?;
    let mut body =
        json!({ "blocks": blocks.iter().map(|b| block_json(b, false)).collect::<Vec<_>>() });
    if let Some(last) = blocks.last() {
        if blocks.len() as u64 == MAX_BLOCKS && last.header.height < to {
            let to_param = if to == u64::MAX {
                String::new()
            } else {
                format!("&to={to}")
            };
            body["next"] = json!(format!(
                "/ledger/blocks?from={}{to_param}",
                last.header.height + 1
            ));
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /ledger/proof/{type}/{id}/{version}`.
pub async fn proof(
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(Interaction::Ledger, None, None)?;
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    let version: i64 = path.2.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "'{}' is not a version of {resource_type}/{id}",
            path.2
        ))
    })?;
    let stored = state
        .store
        .ledger_entry(resource_type, id, version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{resource_type}/{id} version {version} was never notarized here"
            ))
        })?;
    let Some(height) = stored.block_height else {
        return Ok(come_back_later(
            StatusCode::ACCEPTED,
            Issue::information(
                IssueType::Informational,
                format!(
                    "{resource_type}/{id} version {version} is notarized but its block is not sealed yet; retry after {} s",
                    retry_after(&state)
                ),
            ),
            &state,
        ));
    };
    let block = state
        .store
        .ledger_blocks(height, height, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!(
                "entry {} names missing block {height}",
                stored.entry_seq
            ))
        })?;
    let index = state
        .store
        .ledger_leaf_index(height, stored.entry_seq)
        .await?;
    let signer = block.header.signer;
    let proof = ledger::proof::build(
        stored.entry,
        usize::try_from(index).unwrap_or(usize::MAX),
        &block.leaves,
        block.header,
        block.signature,
        signer,
    );
    Ok(HttpResponse::Ok().json(proof))
}
