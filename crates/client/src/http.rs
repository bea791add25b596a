//! Plain HTTP/1.1 with keep-alive on hyper: the async client the server asks witnesses with, and
//! a blocking one for the command line (`nospy log add --server`, `nospy log mirror`,
//! `nospy verify --server`). No TLS stack: see ARCHITECTURE.md.

use crate::Error;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Largest response body read (a full entry bundle of 256 maximal entries is under 17 MiB).
const MAX_RESPONSE: usize = 32 << 20;

/// An async HTTP client (plain HTTP, keep-alive).
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A new async client; call it inside a tokio runtime.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A blocking client.
pub struct Blocking {
    rt: tokio::runtime::Runtime,
    client: HttpClient,
    timeout: Duration,
}

impl Blocking {
    /// A client whose requests each time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Blocking, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Unreachable {
                url: String::new(),
                problem: format!("starting the HTTP client: {e}"),
            })?;
        let client = rt.block_on(async { client() });
        Ok(Blocking {
            rt,
            client,
            timeout,
        })
    }

    /// GET: the status and the body.
    pub fn get(&self, url: &str) -> Result<(u16, Vec<u8>), Error> {
        let req = hyper::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(url, e))?;
        self.send(req, url)
    }

    /// GET that must answer 200: the body, or [`Error::Status`] with the start of what the
    /// server said.
    pub fn get_ok(&self, url: &str) -> Result<Vec<u8>, Error> {
        let (status, body) = self.get(url)?;
        if status != 200 {
            return Err(Error::status(url, status, &body));
        }
        Ok(body)
    }

    /// POST with a body: the status and the body.
    pub fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), Error> {
        let req = hyper::Request::post(url)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(url, e))?;
        self.send(req, url)
    }

    fn send(&self, req: hyper::Request<Full<Bytes>>, url: &str) -> Result<(u16, Vec<u8>), Error> {
        if !url.starts_with("http://") {
            return Err(Error::Unreachable {
                url: url.to_string(),
                problem: "only http:// URLs are supported (put a TLS-terminating proxy in front)"
                    .into(),
            });
        }
        self.rt.block_on(async {
            tokio::time::timeout(self.timeout, async {
                let res = self
                    .client
                    .request(req)
                    .await
                    .map_err(|e| unreachable(url, e))?;
                let status = res.status().as_u16();
                let body = Limited::new(res.into_body(), MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| unreachable(url, e))?
                    .to_bytes()
                    .to_vec();
                Ok((status, body))
            })
            .await
            .map_err(|_| Error::Unreachable {
                url: url.to_string(),
                problem: format!("no answer within {:?}", self.timeout),
            })?
        })
    }
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Unreachable {
        url: url.to_string(),
        problem: e.to_string(),
    }
}
