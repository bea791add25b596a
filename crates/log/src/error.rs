use nospy_tlog::{CheckpointError, NoteError, ProofError, TileError};
use std::fmt;
use std::path::PathBuf;

/// What can go wrong with a log on disk.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// Reading or writing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file of the log is missing, or its contents are wrong; `problem` says how.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An entry is over the 65,535-byte limit of tlog-tiles; nothing was appended.
    EntryTooLong {
        /// Position of the entry in the batch.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// The directory is not a nospy log, or is one already (on init).
    NotALog {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the log's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A request names an entry or tree size the log does not have.
    OutOfRange(String),
    /// A key does not fit the log (wrong name, not the log's key).
    Key(String),
    /// A proof could not be produced.
    Proof(ProofError),
    /// A checkpoint given from outside the log (a file) is not this log's: not signed by its
    /// key, beyond its size, or with another root than its tree has at that size.
    Disagrees {
        /// The checkpoint's file.
        path: PathBuf,
        /// How it disagrees.
        problem: String,
    },
    /// An earlier append failed part-way; the log must be reopened (which recovers) first.
    Poisoned,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LogError::Corrupt { path, problem } => write!(f, "{}: {problem}", path.display()),
            LogError::EntryTooLong { position, len } => write!(
                f,
                "entry {position} of the batch is {len} bytes, over the 65,535-byte limit; nothing was appended"
            ),
            LogError::NotALog { dir, reason } => write!(f, "{}: {reason}", dir.display()),
            LogError::Locked { path } => {
                write!(f, "{}: the log is in use by another process", path.display())
            }
            LogError::OutOfRange(m) => f.write_str(m),
            LogError::Key(m) => f.write_str(m),
            LogError::Proof(e) => write!(f, "{e}"),
            LogError::Disagrees { path, problem } => write!(f, "{}: {problem}", path.display()),
            LogError::Poisoned => f.write_str(
                "an earlier append failed part-way; reopen the log (recovery runs on open) before appending again",
            ),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ProofError> for LogError {
    fn from(e: ProofError) -> Self {
        LogError::Proof(e)
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.into();
    move |source| LogError::Io { path, source }
}

pub(crate) fn corrupt(path: impl Into<PathBuf>, problem: impl fmt::Display) -> LogError {
    LogError::Corrupt {
        path: path.into(),
        problem: problem.to_string(),
    }
}

/// Turns a format error into a [`LogError::Corrupt`] naming the file.
pub(crate) trait InFile<T> {
    fn in_file(self, path: &std::path::Path) -> Result<T, LogError>;
}

macro_rules! in_file {
    ($($e:ty),*) => {$(
        impl<T> InFile<T> for Result<T, $e> {
            fn in_file(self, path: &std::path::Path) -> Result<T, LogError> {
                self.map_err(|e| corrupt(path, e))
            }
        }
    )*};
}
in_file!(TileError, CheckpointError, NoteError);
