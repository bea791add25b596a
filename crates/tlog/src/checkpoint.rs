//! c2sp.org/tlog-checkpoint: the signed statement of a log's size and root, and
//! c2sp.org/tlog-proof, the offline proof that an entry is in a checkpointed tree.

use crate::hash::{leaf_hash, Hash};
use crate::merkle::{verify_inclusion, ProofError};
use crate::note::{Note, NoteError, SignerKey, Verified, VerifierKey};
use crate::position::{LogIndex, TreeSize};
use base64::Engine as _;
use std::fmt;

/// What is wrong with a checkpoint or a proof file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A line does not follow the format; `line` is 1-based.
    Malformed {
        /// Line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The signed note around it is bad or not signed by the log.
    Note(NoteError),
    /// The checkpoint names another log than expected.
    WrongOrigin {
        /// Origin expected.
        expected: String,
        /// Origin found.
        found: String,
    },
    /// The inclusion proof does not verify.
    Proof(ProofError),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            CheckpointError::Note(e) => write!(f, "{e}"),
            CheckpointError::WrongOrigin { expected, found } => {
                write!(f, "checkpoint is for log {found:?}, expected {expected:?}")
            }
            CheckpointError::Proof(e) => write!(f, "inclusion proof: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl From<NoteError> for CheckpointError {
    fn from(e: NoteError) -> Self {
        CheckpointError::Note(e)
    }
}

fn mal(line: usize, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed {
        line,
        reason: reason.into(),
    }
}

/// A checkpoint body: origin, tree size, root hash, and optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// Root hash of the tree of `size` entries.
    pub root: Hash,
    /// Extension lines (opaque, each non-empty).
    pub extensions: Vec<String>,
}

/// Parses a decimal with no sign and no leading zeros (except "0").
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty()
        || s.len() > 20
        || (s.len() > 1 && s.starts_with('0'))
        || !s.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

impl Checkpoint {
    /// Parses checkpoint text (the note text, final newline included).
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or_else(|| {
            mal(
                text.matches('\n').count() + 1,
                "text does not end in a newline",
            )
        })?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(mal(
                lines.len() + 1,
                "a checkpoint has an origin, a tree size and a root hash",
            ));
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(mal(1, "origin is empty"));
        }
        let size = parse_decimal(lines[1]).ok_or_else(|| {
            mal(
                2,
                format!("tree size {:?} is not a decimal number", lines[1]),
            )
        })?;
        let root = Hash::from_base64(lines[2]).ok_or_else(|| {
            mal(
                3,
                format!("root hash {:?} is not base64 of 32 bytes", lines[2]),
            )
        })?;
        let extensions: Vec<String> = lines[3..].iter().map(|s| s.to_string()).collect();
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(mal(4 + i, "extension line is empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The checkpoint text, ready to sign.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Signs the checkpoint with the log key.
    pub fn sign(&self, key: &SignerKey) -> Result<SignedCheckpoint, CheckpointError> {
        let note = Note::sign(&self.to_text(), &[key])?;
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note,
        })
    }
}

/// A checkpoint with its signature lines (the log's, and any witness cosignatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The note it came in, with every signature line.
    pub note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint and checks the log's signature. The checkpoint's origin must be
    /// the log key's name.
    pub fn open(bytes: &[u8], log_key: &VerifierKey) -> Result<SignedCheckpoint, CheckpointError> {
        let sc = SignedCheckpoint::parse(bytes)?;
        sc.note.verify(std::slice::from_ref(log_key))?;
        if sc.checkpoint.origin != log_key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: log_key.name().to_string(),
                found: sc.checkpoint.origin,
            });
        }
        Ok(sc)
    }

    /// Parses without checking any signature.
    pub fn parse(bytes: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The witnesses among `witnesses` whose cosignatures verify, with their timestamps.
    pub fn cosignatures(
        &self,
        witnesses: &[VerifierKey],
    ) -> Result<Vec<Verified>, CheckpointError> {
        Ok(self.note.verify_known(witnesses)?)
    }

    /// The whole signed note text.
    pub fn to_text(&self) -> String {
        self.note.to_text()
    }
}

/// A c2sp.org/tlog-proof@v1 file: an entry's index, its inclusion proof, and the checkpoint
/// (verbatim, cosignatures included) it is proven against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data.
    pub extra: Option<Vec<u8>>,
    /// Index of the entry.
    pub index: u64,
    /// Inclusion proof, leaf sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// First line of a tlog-proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

impl TlogProof {
    /// Parses a tlog-proof file.
    pub fn parse(text: &str) -> Result<TlogProof, CheckpointError> {
        let mut rest = text
            .strip_prefix(TLOG_PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| mal(1, format!("first line is not {TLOG_PROOF_HEADER}")))?;
        let mut line = 2;
        let next = |rest: &mut &str| -> Option<String> {
            let (l, r) = rest.split_once('\n')?;
            *rest = r;
            Some(l.to_string())
        };
        let mut l = next(&mut rest).ok_or_else(|| mal(line, "proof ends early"))?;
        let mut extra = None;
        if let Some(e) = l.strip_prefix("extra ") {
            extra = Some(
                base64::engine::general_purpose::STANDARD
                    .decode(e)
                    .map_err(|_| mal(line, "extra data is not valid base64"))?,
            );
            line += 1;
            l = next(&mut rest).ok_or_else(|| mal(line, "proof ends early"))?;
        }
        let index = l
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| mal(line, format!("expected \"index N\", found {l:?}")))?;
        let mut proof = Vec::new();
        loop {
            line += 1;
            let l =
                next(&mut rest).ok_or_else(|| mal(line, "no blank line before the checkpoint"))?;
            if l.is_empty() {
                break;
            }
            if proof.len() == 64 {
                return Err(mal(line, "more than 64 proof hashes"));
            }
            proof.push(
                Hash::from_base64(&l)
                    .ok_or_else(|| mal(line, "proof hash is not base64 of 32 bytes"))?,
            );
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: rest.to_string(),
        })
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!(
                "extra {}\n",
                base64::engine::general_purpose::STANDARD.encode(e)
            ));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Verifies that `entry` is in the log: the checkpoint is signed by `log_key`, and the proof
    /// leads from the entry's leaf hash to its root. Returns the verified checkpoint.
    pub fn verify(
        &self,
        entry: &[u8],
        log_key: &VerifierKey,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let sc = SignedCheckpoint::open(self.checkpoint.as_bytes(), log_key)?;
        let cp = &sc.checkpoint;
        verify_inclusion(
            LogIndex(self.index),
            TreeSize(cp.size),
            leaf_hash(entry).as_ref(),
            &self.proof,
            cp.root.as_ref(),
        )
        .map_err(CheckpointError::Proof)?;
        Ok(sc)
    }
}
