//! Signed statements: DSSE envelopes ([`dsse`]) around in-toto statements ([`intoto`]) whose
//! predicates are nospy's own ([`predicate`]). Keys are signed-note verifier keys everywhere
//! (`nospy_tlog::note`). No I/O.
//!
//! A statement is always read from the bytes that were signed: [`open`] verifies the envelope
//! and parses exactly its payload, never a re-serialisation.

#![forbid(unsafe_code)]

pub mod bundle;
pub mod dsse;
pub mod intoto;
pub mod predicate;
pub mod time;

pub use dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
pub use intoto::{DigestSet, ResourceDescriptor, Statement};
pub use predicate::Predicate;

use nospy_tlog::note::{SignerKey, VerifierKey};
use std::fmt;

/// Why a signed statement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementError {
    /// The envelope is malformed or not signed by a trusted key.
    Envelope(dsse::DsseError),
    /// The payload type is not in-toto's.
    PayloadType(String),
    /// The payload is not a valid in-toto statement.
    Statement(String),
    /// The predicate is not a valid nospy predicate.
    Predicate(String),
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementError::Envelope(e) => write!(f, "{e}"),
            StatementError::PayloadType(t) => {
                write!(f, "payload type {t:?} is not {INTOTO_PAYLOAD_TYPE}")
            }
            StatementError::Statement(e) => write!(f, "{e}"),
            StatementError::Predicate(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StatementError {}

impl From<dsse::DsseError> for StatementError {
    fn from(e: dsse::DsseError) -> Self {
        StatementError::Envelope(e)
    }
}

/// A signed nospy statement, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The envelope.
    pub envelope: Envelope,
    /// The statement, parsed from the signed payload.
    pub statement: Statement,
    /// The predicate, parsed strictly.
    pub predicate: Predicate,
    /// Indexes of the trusted keys that signed (each once).
    pub signers: Vec<usize>,
}

/// Signs a statement about `subject` with `predicate`.
pub fn sign(
    subject: Vec<ResourceDescriptor>,
    predicate: &Predicate,
    keys: &[&SignerKey],
) -> Envelope {
    let st = Statement::new(subject, predicate.type_uri(), predicate.to_json());
    Envelope::sign(INTOTO_PAYLOAD_TYPE, st.to_json(), keys)
}

/// Parses an envelope, verifies it against `keys` (at least one must have signed), and parses
/// the signed payload as a nospy statement.
pub fn open(envelope_json: &[u8], keys: &[VerifierKey]) -> Result<Opened, StatementError> {
    let envelope = Envelope::parse(envelope_json)?;
    let (signers, _) = envelope.verify(keys)?;
    let (statement, predicate) = parse_payload(&envelope)?;
    Ok(Opened {
        envelope,
        statement,
        predicate,
        signers,
    })
}

/// Parses an envelope and its statement, checking each signature against the key its keyid
/// names: for keeping malformed or unsigned entries out of a log, not for trusting anyone.
pub fn inspect(envelope_json: &[u8]) -> Result<(Opened, Vec<VerifierKey>), StatementError> {
    let envelope = Envelope::parse(envelope_json)?;
    let keys = envelope.self_signed_by()?;
    let (statement, predicate) = parse_payload(&envelope)?;
    let signers = (0..keys.len()).collect();
    Ok((
        Opened {
            envelope,
            statement,
            predicate,
            signers,
        },
        keys,
    ))
}

fn parse_payload(envelope: &Envelope) -> Result<(Statement, Predicate), StatementError> {
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(StatementError::PayloadType(envelope.payload_type.clone()));
    }
    let statement = Statement::parse(&envelope.payload).map_err(StatementError::Statement)?;
    if statement.subject_sha256().is_empty() {
        return Err(StatementError::Statement(
            "no subject has a SHA-256 digest".into(),
        ));
    }
    let predicate = Predicate::parse(&statement.predicate_type, &statement.predicate)
        .map_err(StatementError::Predicate)?;
    Ok((statement, predicate))
}
