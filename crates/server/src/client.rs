//! A small blocking HTTP client for the command line (`nospy log add --server`,
//! `nospy log mirror`): plain HTTP/1.1 with keep-alive, over the same hyper client the server
//! uses for witnesses.

use crate::witnessing::{client, HttpClient};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use std::time::Duration;

/// Largest response body read (a full entry bundle of 256 maximal entries is under 17 MiB).
const MAX_RESPONSE: usize = 32 << 20;

/// A blocking client.
pub struct Blocking {
    rt: tokio::runtime::Runtime,
    client: HttpClient,
    timeout: Duration,
}

impl Blocking {
    /// A client whose requests each time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Blocking, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = rt.block_on(async { client() });
        Ok(Blocking {
            rt,
            client,
            timeout,
        })
    }

    /// GET: the status and the body.
    pub fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.send(
            hyper::Request::get(url)
                .body(Full::new(Bytes::new()))
                .map_err(|e| format!("{url}: {e}"))?,
            url,
        )
    }

    /// GET that must answer 200: the body, or an error naming the URL, the status and the
    /// start of what the server said.
    pub fn get_ok(&self, url: &str) -> Result<Vec<u8>, String> {
        let (status, body) = self.get(url)?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            let said: String = text.trim().chars().take(200).collect();
            return Err(format!("{url}: HTTP {status}: {said}"));
        }
        Ok(body)
    }

    /// POST with a body: the status and the body.
    pub fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.send(
            hyper::Request::post(url)
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| format!("{url}: {e}"))?,
            url,
        )
    }

    fn send(&self, req: hyper::Request<Full<Bytes>>, url: &str) -> Result<(u16, Vec<u8>), String> {
        if !url.starts_with("http://") {
            return Err(format!(
                "{url}: only http:// URLs are supported (put a TLS-terminating proxy in front)"
            ));
        }
        self.rt.block_on(async {
            tokio::time::timeout(self.timeout, async {
                let res = self
                    .client
                    .request(req)
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let status = res.status().as_u16();
                let body = Limited::new(res.into_body(), MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?
                    .to_bytes()
                    .to_vec();
                Ok((status, body))
            })
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
        })
    }
}
