//! The HTTP exchanges a virtual user makes, over one shared connection pool.
//!
//! Each call returns only what the load loop needs (the new id for a create,
//! nothing otherwise) or the [`ErrorKind`] that ended it. Response bodies are
//! drained chunk by chunk, never collected or parsed, so the connection goes
//! back to the pool for keep-alive while the client spends almost no CPU; the
//! one exception is a create answered without a usable `Location`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Client, Response};

use crate::fhir;
use crate::stats::ErrorKind;

fn fhir_json() -> HeaderValue {
    HeaderValue::from_static("application/fhir+json")
}

/// A client for the Patient endpoints of one FHIR base URL.
#[derive(Clone, Debug)]
pub struct FhirClient {
    http: Client,
    patients: String,
}

impl FhirClient {
    /// A client for `base_url` (no trailing slash) that sends `headers` on
    /// every request, keeps up to `connections` idle connections, and gives
    /// each request `timeout` from connect to the end of the body.
    pub fn new(
        base_url: &str,
        headers: HeaderMap,
        connections: usize,
        timeout: Duration,
    ) -> reqwest::Result<FhirClient> {
        let http = Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(connections)
            .timeout(timeout)
            .tcp_nodelay(true)
            // A proxy from the environment would measure the proxy, not the
            // server.
            .no_proxy()
            .build()?;
        Ok(FhirClient {
            http,
            patients: format!("{base_url}/Patient"),
        })
    }

    /// `POST [base]/Patient`; the new id, from `Location` or else the body.
    pub async fn create(&self, body: String) -> Result<String, ErrorKind> {
        let resp = self
            .http
            .post(&self.patients)
            .header(CONTENT_TYPE, fhir_json())
            .body(body)
            .send()
            .await
            .map_err(|e| ErrorKind::from_reqwest(&e))?;
        let resp = success(resp).await?;
        let id = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| fhir::id_from_location(l, "Patient"))
            .map(str::to_owned);
        match id {
            Some(id) => {
                drain(resp).await?;
                Ok(id)
            }
            None => {
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| ErrorKind::from_reqwest(&e))?;
                fhir::id_from_body(&body).ok_or(ErrorKind::MissingId)
            }
        }
    }

    /// `GET [base]/Patient/[id]`.
    pub async fn read(&self, id: &str) -> Result<(), ErrorKind> {
        self.exchange(self.http.get(format!("{}/{id}", self.patients)))
            .await
    }

    /// `PUT [base]/Patient/[id]` with `body`.
    pub async fn update(&self, id: &str, body: String) -> Result<(), ErrorKind> {
        let req = self
            .http
            .put(format!("{}/{id}", self.patients))
            .header(CONTENT_TYPE, fhir_json())
            .body(body);
        self.exchange(req).await
    }

    /// `GET [base]/Patient/[id]/_history`.
    pub async fn history(&self, id: &str) -> Result<(), ErrorKind> {
        self.exchange(self.http.get(format!("{}/{id}/_history", self.patients)))
            .await
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<(), ErrorKind> {
        let resp = req.send().await.map_err(|e| ErrorKind::from_reqwest(&e))?;
        drain(success(resp).await?).await
    }
}

/// The response if it is 2xx; otherwise its status as the error, after
/// draining it so the connection can be reused.
async fn success(resp: Response) -> Result<Response, ErrorKind> {
    let status = resp.status();
    if status.is_success() {
        Ok(resp)
    } else {
        // The status is the error worth reporting even if draining fails.
        let _ = drain(resp).await;
        Err(ErrorKind::Status(status.as_u16()))
    }
}

/// Reads the body to its end without keeping it.
async fn drain(mut resp: Response) -> Result<(), ErrorKind> {
    while resp
        .chunk()
        .await
        .map_err(|e| ErrorKind::from_reqwest(&e))?
        .is_some()
    {}
    Ok(())
}
