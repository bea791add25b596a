//! `nospy witness serve`: a c2sp.org/tlog-witness. It cosigns a log's checkpoint only if it is
//! signed by the log and extends, by a verified consistency proof, the checkpoint it cosigned
//! last for that log, which it keeps in SQLite ([`crate::state::SqliteState`]); the check and
//! the update are one transaction, committed before the cosignature is made, off the async
//! workers.

use crate::state::SqliteState;
use crate::{Cosigned, Error};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use nospy_tlog::checkpoint::Checkpoint;
use nospy_tlog::note::{Note, NoteError, SignerKey, VerifierKey};
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
    /// The time its cosignatures carry.
    pub clock: Arc<dyn nospy_log::clock::Clock>,
}

struct WState {
    key: SignerKey,
    logs: Vec<(String, VerifierKey)>,
    db: Mutex<SqliteState>,
    clock: Arc<dyn nospy_log::clock::Clock>,
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
pub async fn start(opts: WitnessOptions) -> Result<RunningWitness, Error> {
    let db = SqliteState::open(&opts.db)?;
    let state = Arc::new(WState {
        key: opts.key,
        logs: opts.logs,
        db: Mutex::new(db),
        clock: opts.clock,
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    let listen = opts.listen;
    let listen_error = |e: std::io::Error| Error::Start(format!("listening on {listen}: {e}"));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
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

async fn add_checkpoint(
    State(s): State<Arc<WState>>,
    req: axum::extract::Request,
) -> Response<Body> {
    let body = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        axum::body::to_bytes(req.into_body(), MAX_BODY),
    )
    .await
    {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body took too long",
            )
        }
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY} bytes"),
            )
        }
        Ok(Ok(b)) => b,
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let (old, proof, note_text) = match nospy_tlog::witness::parse_request(body) {
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
    // Check against the stored checkpoint and commit it in one transaction, off the async
    // workers; only then cosign.
    let next = Cosigned {
        size: cp.size,
        root: cp.root,
    };
    let decided = {
        let s = s.clone();
        let origin = cp.origin.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = s.db.lock().unwrap_or_else(|e| e.into_inner());
            db.check_and_commit(&origin, next, |prev| crate::check(prev, &cp, old, &proof))
        })
        .await
    };
    match decided {
        Ok(Ok(())) => {}
        Ok(Err(Error::OldSize { cosigned })) => return size_conflict(cosigned),
        Ok(Err(Error::Fork { size })) => return size_conflict(size),
        Ok(Err(e @ (Error::Inconsistent(_) | Error::Rollback { .. }))) => {
            return text(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("state: {e}")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("state: {e}")),
    }
    let sig = s.key.cosign(&note.text, s.clock.now());
    reply(StatusCode::OK, "text/plain; charset=utf-8", sig.line())
}

/// 409 with the size this witness cosigned last (c2sp.org/tlog-witness).
fn size_conflict(size: u64) -> Response<Body> {
    reply(
        StatusCode::CONFLICT,
        "text/x.tlog.size",
        format!("{size}\n"),
    )
}

/// Runs a witness until SIGTERM or Ctrl-C (the entry point of `nospy witness serve`).
pub fn run(opts: WitnessOptions) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Start(format!("starting the runtime: {e}")))?;
    rt.block_on(async {
        let w = start(opts).await?;
        eprintln!("nospy witness: listening on http://{}", w.addr);
        w.wait().await;
        Ok(())
    })
}
