//! Where statements come from, and the server's API as its clients see it.
//!
//! - [`LogSource`]: a log directory or a `nospy serve` server, read the same way (every entry
//!   about a set of digests, with inclusion proofs under one checkpoint) and appended to the
//!   same way.
//! - [`api`]: the JSON bodies of the server's API beyond tlog-tiles (`/add`, `/proof/...`,
//!   `/lookup`), written by the server and read here from the same types.
//! - [`artifact`]: firmware files' digests.
//! - [`http`]: the plain-HTTP client, async for the server's witnessing and blocking for the
//!   command line.
//!
//! Nothing read here is trusted: a [`nospy_policy::Verifier`] checks every signature and proof
//! of the [`nospy_policy::Evidence`] gathered.

#![forbid(unsafe_code)]

pub mod api;
pub mod artifact;
pub mod http;
mod source;

pub use source::{Appended, EvidenceMap, FleetVerdicts, ListedRelease, LogSource, Progress};

use std::path::PathBuf;

/// Why statements could not be read from or appended to a log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A server could not be reached, or did not answer in time.
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// A server answered with another HTTP status than 200.
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// The start of what it said.
        said: String,
    },
    /// A server's answer is not what its API defines.
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What is wrong with the answer.
        problem: String,
    },
    /// A server refused a statement sent to `/add`; the ones before it were appended.
    Refused {
        /// The server.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// Which statement (from 0), and so how many were appended before it.
        position: usize,
        /// How many were to be sent.
        of: usize,
        /// What it said.
        said: String,
    },
    /// Reading or appending to a local log failed.
    Log(nospy_log::LogError),
    /// A log directory without a private key file in its configuration was asked to append.
    NoPrivateKey(PathBuf),
    /// An option that needs a local log (its name) was used with a server.
    NeedsLocalLog(&'static str),
    /// The log holds no entry about an artifact up to the checkpoint's size (for a server, as
    /// its index answers).
    NothingAbout {
        /// The log.
        log: String,
        /// The artifact.
        digest: nospy_tlog::Sha256,
        /// The checkpoint's size.
        size: u64,
    },
    /// An entry asked for is not under the checkpoint.
    BeyondCheckpoint {
        /// The entry's index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

impl Error {
    pub(crate) fn status(url: &str, status: u16, body: &[u8]) -> Error {
        let text = String::from_utf8_lossy(body);
        Error::Status {
            url: url.to_string(),
            status,
            said: text.trim().chars().take(200).collect(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable { url, problem } if url.is_empty() => f.write_str(problem),
            Error::Unreachable { url, problem } => write!(f, "{url}: {problem}"),
            Error::Status { url, status, said } => write!(f, "{url}: HTTP {status}: {said}"),
            Error::BadAnswer { url, problem } => write!(f, "{url}: {problem}"),
            Error::Refused {
                url,
                status,
                position,
                of,
                said,
            } => write!(
                f,
                "{url} answered HTTP {status} to statement {} of {of} ({position} appended before it): {said}",
                position + 1
            ),
            Error::Log(e) => write!(f, "{e}"),
            Error::NoPrivateKey(dir) => write!(
                f,
                "{}: this log remembers no private key file, so nothing can be appended to it here; append through its server (--server) instead",
                dir.display()
            ),
            Error::NeedsLocalLog(option) => {
                write!(f, "{option} needs --log (a local log or a mirror)")
            }
            Error::NothingAbout { log, digest, size } => write!(
                f,
                "no entry of {log} up to size {size} is about {}",
                digest.to_hex()
            ),
            Error::BeyondCheckpoint { index, size } => write!(
                f,
                "entry {index} is not under the checkpoint (its size is {size})"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Log(e) => Some(e),
            _ => None,
        }
    }
}

impl From<nospy_log::LogError> for Error {
    fn from(e: nospy_log::LogError) -> Self {
        Error::Log(e)
    }
}
