//! The witness (c2sp.org/tlog-witness, c2sp.org/tlog-cosignature): it cosigns a log's
//! checkpoint only when the checkpoint is signed by the log and extends, by a verified
//! consistency proof, the checkpoint it cosigned last for that log.
//!
//! - [`check`]: the one rule, for the online and the offline witness alike.
//! - [`state`]: what a witness cosigned last, kept in a file (the offline witness) or in SQLite
//!   (the online one), each read, checked and committed durably under a lock before a
//!   cosignature leaves ([`state::FileState::check_and_commit`]).
//! - [`offline::cosign`]: `nospy witness cosign`, against a log directory.
//! - [`serve`]: `nospy witness serve`, `POST /add-checkpoint`.
//! - [`logs`]: the file naming the logs a witness witnesses.
//!
//! **Invariant:** a cosignature is made only after the checkpoint it signs is durably recorded
//! as the witness's latest, under a lock that excludes every other cosigning of the same state.
//! A crash can lose a cosignature (the caller asks again); it cannot make the witness sign two
//! trees of one size, nor a tree that does not extend one it signed.

#![forbid(unsafe_code)]

pub mod logs;
pub mod offline;
pub mod serve;
pub mod state;

use nospy_tlog::checkpoint::Checkpoint;
use nospy_tlog::merkle::verify_consistency;
use nospy_tlog::{Hash, TreeSize};
use std::path::PathBuf;

/// What a witness cosigned last for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

/// Why a checkpoint was not cosigned.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request's old size is not the size this witness cosigned last (tlog-witness answers
    /// 409 with that size, so that the log retries from there).
    OldSize {
        /// The size cosigned last (0: none).
        cosigned: u64,
    },
    /// The checkpoint is smaller than the one cosigned last: a rollback.
    Rollback {
        /// The size cosigned last.
        cosigned: u64,
        /// The checkpoint's size.
        offered: u64,
    },
    /// The checkpoint has another root for the size cosigned last: a fork.
    Fork {
        /// The size.
        size: u64,
    },
    /// The consistency proof from the checkpoint cosigned last does not verify, or a proof was
    /// given where none belongs: the checkpoint does not extend what was cosigned.
    Inconsistent(String),
    /// The state does not belong to this log (another origin in a state file).
    OtherLog {
        /// The state file.
        path: PathBuf,
        /// The origin it is for.
        origin: String,
    },
    /// The state could not be read, locked or made durable: nothing was cosigned.
    State {
        /// The file or database.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The witness server could not start: listening on its address, or starting its runtime,
    /// failed.
    Start(String),
    /// Reading the log (for a consistency proof) failed.
    Log(nospy_log::LogError),
}

impl Error {
    /// True for a refusal (the checkpoint does not extend what was cosigned), false for a
    /// failure to decide (state, log).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::OldSize { .. }
                | Error::Rollback { .. }
                | Error::Fork { .. }
                | Error::Inconsistent(_)
        )
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::OldSize { cosigned } => {
                write!(f, "the size cosigned last is {cosigned}, not the old size given")
            }
            Error::Rollback { cosigned, offered } => write!(
                f,
                "checkpoint size {offered} is smaller than the {cosigned} already cosigned (rollback)"
            ),
            Error::Fork { size } => write!(
                f,
                "another root for size {size} than the one already cosigned (a fork)"
            ),
            Error::Inconsistent(e) => write!(
                f,
                "the checkpoint does not extend the one already cosigned: {e}"
            ),
            Error::OtherLog { path, origin } => {
                write!(f, "{}: this state is for log {origin:?}", path.display())
            }
            Error::State { path, problem } => write!(f, "{}: {problem}", path.display()),
            Error::Start(e) => f.write_str(e),
            Error::Log(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<nospy_log::LogError> for Error {
    fn from(e: nospy_log::LogError) -> Self {
        Error::Log(e)
    }
}

/// Whether `cp` may be cosigned after `prev` (what was cosigned last, `None` for nothing),
/// given the old size and consistency proof of a c2sp.org/tlog-witness `add-checkpoint`
/// request: the old size must be the size cosigned last; the checkpoint must not be smaller;
/// at the same size it must have the same root (and an empty proof); from size 0 the proof is
/// empty; otherwise the proof must show that `cp` extends `prev`.
pub fn check(
    prev: Option<&Cosigned>,
    cp: &Checkpoint,
    old: u64,
    proof: &[Hash],
) -> Result<(), Error> {
    let stored = prev.map_or(0, |p| p.size);
    if old != stored {
        return Err(Error::OldSize { cosigned: stored });
    }
    if cp.size < old {
        return Err(Error::Rollback {
            cosigned: old,
            offered: cp.size,
        });
    }
    match prev {
        Some(p) if p.size == cp.size && p.size > 0 => {
            if p.root != cp.root {
                return Err(Error::Fork { size: p.size });
            }
            if !proof.is_empty() {
                return Err(Error::Inconsistent(
                    "consistency proof must be empty between equal sizes".into(),
                ));
            }
        }
        Some(p) if p.size > 0 => {
            verify_consistency(
                TreeSize(p.size),
                TreeSize(cp.size),
                proof,
                p.root.as_ref(),
                cp.root.as_ref(),
            )
            .map_err(|e| Error::Inconsistent(format!("invalid consistency proof: {e}")))?;
        }
        _ => {
            if !proof.is_empty() {
                return Err(Error::Inconsistent(
                    "consistency proof must be empty from size 0".into(),
                ));
            }
        }
    }
    Ok(())
}
