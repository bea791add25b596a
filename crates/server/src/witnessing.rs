//! Asking witnesses for cosignatures (c2sp.org/tlog-witness `add-checkpoint`).

use crate::config::{self, Witness};
use crate::{lock_read, Shared};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use nospy_client::http::HttpClient;
use nospy_log::TileReader;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::merkle;
use nospy_tlog::note::{Note, NoteSignature};
use nospy_tlog::{Hash, TreeSize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
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

/// Most bytes of a witness's reply read.
pub const MAX_REPLY: usize = 64 * 1024;

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
        // A witness's reply is a cosignature line or a size: a few hundred bytes. Read no more
        // than MAX_REPLY of whatever it sends.
        let bytes = http_body_util::Limited::new(res.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the reply is over {MAX_REPLY} bytes")
                } else {
                    format!("{e}")
                }
            })?
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

/// What the server saw of one witness.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Seen {
    /// The largest tree size it cosigned for this server (0: none yet).
    pub cosigned_size: u64,
    /// When it last cosigned.
    #[serde(skip)]
    pub cosigned_at: Option<std::time::Instant>,
    /// Rounds in which it cosigned.
    pub cosigned: u64,
    /// Rounds in which it did not.
    pub failures: u64,
    /// Why it last did not.
    pub last_error: Option<String>,
}

/// Records a witness's answer for the dashboard.
fn saw(shared: &Shared, w: &config::Witness, cosigned: Option<u64>, error: Option<String>) {
    shared.metrics.witness(w.key.name(), cosigned.is_some());
    let mut all = shared.witnesses.lock().unwrap_or_else(|e| e.into_inner());
    let seen = all.entry(w.key.name().to_string()).or_default();
    match cosigned {
        Some(size) => {
            seen.cosigned_size = seen.cosigned_size.max(size);
            seen.cosigned_at = Some(std::time::Instant::now());
            seen.cosigned += 1;
        }
        None => {
            seen.failures += 1;
            seen.last_error = error;
        }
    }
}

/// The witnessing thread: for the latest checkpoint the sequencer sent (older ones still queued
/// are skipped), asks the witnesses to cosign and sends the cosigned checkpoint back. A witness
/// that is slow or down costs this thread its timeout, never the sequencer.
pub(crate) fn run_witnessing(
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    rx: std::sync::mpsc::Receiver<SignedCheckpoint>,
    cosigned: std::sync::mpsc::Sender<SignedCheckpoint>,
) {
    let client = nospy_client::http::client();
    // What each witness last cosigned, learnt from 409 answers.
    let mut sizes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    while let Ok(mut sc) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            sc = newer;
        }
        let size = sc.checkpoint.size;
        match witness(sc, &shared, &rt, &client, &mut sizes) {
            // Published (and the round marked done) by the sequencer thread.
            Some(done) => {
                if cosigned.send(done).is_err() {
                    return;
                }
            }
            None => shared
                .progress
                .send_modify(|p| p.witnessed = p.witnessed.max(size)),
        }
    }
}

/// Asks every configured witness to cosign the sequencer's latest checkpoint, then publishes it
/// with the cosignatures received.
pub(crate) fn witness(
    sc: SignedCheckpoint,
    shared: &Shared,
    rt: &tokio::runtime::Handle,
    client: &nospy_client::http::HttpClient,
    sizes: &mut std::collections::HashMap<String, u64>,
) -> Option<SignedCheckpoint> {
    let cfg = lock_read(&shared.config).clone();
    if cfg.witnesses.is_empty() {
        return None;
    }
    let size = sc.checkpoint.size;
    let reader = TileReader::new(shared.source.as_ref(), &shared.cache, size);
    let proof_from = |old: u64| -> Vec<nospy_tlog::Hash> {
        if old == 0 || old >= size {
            Vec::new()
        } else {
            merkle::consistency_proof(&reader, TreeSize(old), TreeSize(size)).unwrap_or_default()
        }
    };
    let requests: Vec<(config::Witness, u64, Vec<nospy_tlog::Hash>)> = cfg
        .witnesses
        .iter()
        .map(|w| {
            let old = sizes.get(&w.url).copied().unwrap_or(0).min(size);
            (w.clone(), old, proof_from(old))
        })
        .collect();
    let timeout = cfg.witness_timeout;
    let replies = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (w, old, proof)) in requests.iter().cloned().enumerate() {
            let client = client.clone();
            let sc = sc.clone();
            set.spawn(async move {
                (
                    i,
                    add_checkpoint(&client, &w, &sc, old, &proof, timeout).await,
                )
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            out.push(r);
        }
        out
    });
    let mut cosigs = Vec::new();
    let mut retry = Vec::new();
    for (i, reply) in replies {
        let w = &requests[i].0;
        match reply {
            Reply::Cosigned(s) => {
                sizes.insert(w.url.clone(), size);
                saw(shared, w, Some(size), None);
                cosigs.push(s);
            }
            Reply::Conflict(n) if n <= size => {
                sizes.insert(w.url.clone(), n);
                retry.push((w.clone(), n, proof_from(n)));
            }
            Reply::Conflict(n) => {
                let why = format!("it has cosigned size {n}, beyond this log's {size}");
                eprintln!("nospy serve: witness {}: {why}", w.key.name());
                saw(shared, w, None, Some(why));
            }
            Reply::Failed(e) => {
                saw(shared, w, None, Some(e.to_string()));
                eprintln!(
                    "nospy serve: witness {} did not cosign size {size}: {e}",
                    w.key.name()
                );
            }
        }
    }
    // Those that had seen another size are asked once more, with a proof from that size.
    if !retry.is_empty() {
        let again = rt.block_on(async {
            let mut out = Vec::new();
            for (w, old, proof) in &retry {
                out.push((
                    w.clone(),
                    add_checkpoint(client, w, &sc, *old, proof, timeout).await,
                ));
            }
            out
        });
        for (w, reply) in again {
            match reply {
                Reply::Cosigned(s) => {
                    sizes.insert(w.url.clone(), size);
                    saw(shared, &w, Some(size), None);
                    cosigs.push(s);
                }
                other => {
                    let why = match &other {
                        Reply::Conflict(n) => format!("it has cosigned size {n}, after a retry"),
                        Reply::Failed(e) => e.clone(),
                        Reply::Cosigned(_) => String::new(),
                    };
                    saw(shared, &w, None, Some(why));
                    eprintln!(
                        "nospy serve: witness {} did not cosign size {size}: {other:?}",
                        w.key.name()
                    );
                }
            }
        }
    }
    if cosigs.len() < cfg.witness_quorum {
        shared.metrics.quorum_missed.fetch_add(1, Relaxed);
        eprintln!(
            "nospy serve: checkpoint of size {size} has {} of the {} cosignatures of the quorum",
            cosigs.len(),
            cfg.witness_quorum
        );
    }
    if cosigs.is_empty() {
        return None;
    }
    let mut cosigned = sc;
    cosigned.note.signatures.extend(cosigs);
    Some(cosigned)
}
