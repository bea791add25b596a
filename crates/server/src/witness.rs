//! `nospy witness serve`: a c2sp.org/tlog-witness. It cosigns a log's checkpoint only if it is
//! signed by the log and extends, by a verified consistency proof, the checkpoint it cosigned
//! last for that log, which it keeps in SQLite; the check and the update are one transaction.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use nospy_tlog::checkpoint::Checkpoint;
use nospy_tlog::merkle::verify_consistency;
use nospy_tlog::note::{Note, NoteError, SignerKey, VerifierKey};
use nospy_tlog::Hash;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Largest add-checkpoint body accepted.
const MAX_BODY: usize = 64 * 1024;

/// How to run a witness.
#[derive(Debug, Clone)]
pub struct WitnessOptions {
    /// The witness's key (its cosignature form is derived).
    pub key: SignerKey,
    /// The logs it witnesses: origin and verifier key.
    pub logs: Vec<(String, VerifierKey)>,
    /// The SQLite database of its state.
    pub db: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
}

/// Parses the logs file (`[[log]] origin = "..." key = "..."`).
pub fn parse_logs(text: &str) -> Result<Vec<(String, VerifierKey)>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        log: Vec<RawLog>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawLog {
        origin: String,
        key: String,
    }
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!(
            "{}{}",
            line.map(|l| format!("line {l}: ")).unwrap_or_default(),
            e.message()
        )
    })?;
    raw.log
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let k = VerifierKey::parse(&l.key).map_err(|e| format!("log {}: {e}", i + 1))?;
            if k.name() != l.origin {
                return Err(format!(
                    "log {}: the key is named {:?}, the origin is {:?}",
                    i + 1,
                    k.name(),
                    l.origin
                ));
            }
            Ok((l.origin, k))
        })
        .collect()
}

struct WState {
    key: SignerKey,
    logs: Vec<(String, VerifierKey)>,
    db: Mutex<rusqlite::Connection>,
}

/// A running witness.
pub struct RunningWitness {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl RunningWitness {
    /// Stops it.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.done.await;
    }

    /// Waits until it stops (SIGTERM or Ctrl-C).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Opens the state database and starts serving `POST /add-checkpoint`.
pub async fn start(opts: WitnessOptions) -> Result<RunningWitness, String> {
    let db =
        rusqlite::Connection::open(&opts.db).map_err(|e| format!("{}: {e}", opts.db.display()))?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS checkpoints (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL);",
    )
    .map_err(|e| format!("{}: {e}", opts.db.display()))?;
    let state = Arc::new(WState {
        key: opts.key,
        logs: opts.logs,
        db: Mutex::new(db),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let stop = async move {
            tokio::select! {
                _ = rx => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
    });
    Ok(RunningWitness {
        addr,
        stop: Some(tx),
        done,
    })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

/// Splits a tlog-witness `add-checkpoint` request body: old size, consistency proof, checkpoint
/// note (not yet verified).
pub fn parse_request(body: &str) -> Result<(u64, Vec<Hash>, &str), String> {
    let (first, mut rest) = body.split_once('\n').ok_or("no old size line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(nospy_tlog::checkpoint::parse_decimal)
        .ok_or_else(|| format!("first line {first:?} is not \"old <size>\""))?;
    let mut proof = Vec::new();
    loop {
        let (line, r) = rest
            .split_once('\n')
            .ok_or("no blank line before the checkpoint")?;
        rest = r;
        if line.is_empty() {
            break;
        }
        if proof.len() == 63 {
            return Err("more than 63 consistency proof lines".into());
        }
        proof.push(
            Hash::from_base64(line)
                .ok_or_else(|| format!("proof line {line:?} is not base64 of 32 bytes"))?,
        );
    }
    Ok((old, proof, rest))
}

async fn add_checkpoint(
    State(s): State<Arc<WState>>,
    req: axum::extract::Request,
) -> Response<Body> {
    let body = match crate::read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err((status, message)) => return text(status, message),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let (old, proof, note_text) = match parse_request(body) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let note = match Note::parse(note_text.as_bytes()) {
        Ok(n) => n,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("malformed checkpoint: {e}"),
            )
        }
    };
    let cp = match Checkpoint::parse(&note.text) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("malformed checkpoint: {e}"),
            )
        }
    };
    let keys: Vec<VerifierKey> = s
        .logs
        .iter()
        .filter(|(o, _)| *o == cp.origin)
        .map(|(_, k)| k.clone())
        .collect();
    if keys.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            format!("unknown log {:?}", cp.origin),
        );
    }
    match note.verify(&keys) {
        Ok(_) => {}
        Err(NoteError::NoKnownSignature) => {
            return text(StatusCode::FORBIDDEN, "no signature by the log's key")
        }
        Err(e) => return text(StatusCode::FORBIDDEN, format!("invalid signature: {e}")),
    }
    if old > cp.size {
        return text(
            StatusCode::BAD_REQUEST,
            format!("old size {old} is larger than the checkpoint's {}", cp.size),
        );
    }
    // Check against the stored checkpoint and update it in one transaction, under the lock.
    let decision = {
        let mut db = s.db.lock().unwrap_or_else(|e| e.into_inner());
        check_and_update(&mut db, &cp, old, &proof)
    };
    match decision {
        Ok(()) => {}
        Err((status, msg, size_body)) => {
            return match size_body {
                Some(size) => reply(status, "text/x.tlog.size", format!("{size}\n")),
                None => text(status, msg),
            };
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sig = s.key.cosign(&note.text, now);
    reply(StatusCode::OK, "text/plain; charset=utf-8", sig.line())
}

type Refusal = (StatusCode, String, Option<u64>);

fn check_and_update(
    db: &mut rusqlite::Connection,
    cp: &Checkpoint,
    old: u64,
    proof: &[Hash],
) -> Result<(), Refusal> {
    let internal = |e: rusqlite::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("state: {e}"),
            None,
        )
    };
    let tx = db
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(internal)?;
    let stored: Option<(u64, Vec<u8>)> = {
        let mut st = tx
            .prepare("SELECT size, root FROM checkpoints WHERE origin = ?1")
            .map_err(internal)?;
        let mut rows = st.query([&cp.origin]).map_err(internal)?;
        match rows.next().map_err(internal)? {
            Some(r) => Some((
                r.get::<_, i64>(0).map_err(internal)? as u64,
                r.get(1).map_err(internal)?,
            )),
            None => None,
        }
    };
    let (stored_size, stored_root) = stored.unwrap_or((0, Vec::new()));
    if old != stored_size {
        return Err((StatusCode::CONFLICT, String::new(), Some(stored_size)));
    }
    if old == cp.size {
        if old > 0 && stored_root != cp.root.0 {
            return Err((StatusCode::CONFLICT, String::new(), Some(stored_size)));
        }
        if !proof.is_empty() {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "consistency proof must be empty between equal sizes".into(),
                None,
            ));
        }
    } else if old == 0 {
        if !proof.is_empty() {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "consistency proof must be empty from size 0".into(),
                None,
            ));
        }
    } else if let Err(e) = verify_consistency(old, cp.size, proof, &stored_root, cp.root.as_ref()) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid consistency proof: {e}"),
            None,
        ));
    }
    tx.execute(
        "INSERT INTO checkpoints (origin, size, root) VALUES (?1, ?2, ?3)
         ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root",
        rusqlite::params![cp.origin, cp.size as i64, cp.root.0.to_vec()],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(())
}

/// Runs a witness until SIGTERM or Ctrl-C (the entry point of `nospy witness serve`).
pub fn run(opts: WitnessOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let w = start(opts).await?;
        eprintln!("nospy witness: listening on http://{}", w.addr);
        w.wait().await;
        Ok(())
    })
}
