//! Asking witnesses for cosignatures (c2sp.org/tlog-witness `add-checkpoint`).

use crate::config::Witness;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use nospy_client::http::HttpClient;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::{Note, NoteSignature};
use nospy_tlog::Hash;
use std::time::Duration;

/// What one witness said.
#[derive(Debug)]
pub enum Reply {
    /// Its cosignature.
    Cosigned(NoteSignature),
    /// It has cosigned another size: retry with a proof from there.
    Conflict(u64),
    /// Anything else, described.
    Failed(String),
}

/// Sends one add-checkpoint request and checks the cosignature it returns against the witness's
/// key and the checkpoint.
pub async fn add_checkpoint(
    client: &HttpClient,
    w: &Witness,
    sc: &SignedCheckpoint,
    old: u64,
    proof: &[Hash],
    timeout: Duration,
) -> Reply {
    let req = match hyper::Request::post(format!("{}/add-checkpoint", w.url))
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(nospy_tlog::witness::request_body(
            old,
            proof,
            &sc.to_text(),
        )))) {
        Ok(r) => r,
        Err(e) => return Reply::Failed(format!("bad request: {e}")),
    };
    let res = match tokio::time::timeout(timeout, async {
        let res = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    })
    .await
    {
        Err(_) => return Reply::Failed(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => return Reply::Failed(e),
        Ok(Ok(r)) => r,
    };
    let (status, bytes) = res;
    let text = String::from_utf8_lossy(&bytes);
    match status {
        200 => {
            // Concatenated to the checkpoint, the reply must verify as a note with the witness key.
            let note_text = format!("{}{}", sc.to_text(), text);
            let note = match Note::parse(note_text.as_bytes()) {
                Ok(n) => n,
                Err(e) => return Reply::Failed(format!("malformed cosignature: {e}")),
            };
            match note.verify_known(std::slice::from_ref(&w.key)) {
                Ok(v) if !v.is_empty() => {}
                Ok(_) => return Reply::Failed("no cosignature by its key in the reply".into()),
                Err(e) => return Reply::Failed(format!("bad cosignature: {e}")),
            }
            match note
                .signatures
                .into_iter()
                .rev()
                .find(|s| s.name == w.key.name() && s.id == w.key.id())
            {
                Some(s) => Reply::Cosigned(s),
                None => Reply::Failed("no cosignature by its key in the reply".into()),
            }
        }
        409 => match text.trim().parse() {
            Ok(n) => Reply::Conflict(n),
            Err(_) => Reply::Failed(format!("409 with body {:?}", text.trim())),
        },
        s => Reply::Failed(format!("HTTP {s}: {}", text.trim())),
    }
}
