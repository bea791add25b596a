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
    /// A signature's keyid names no key the reader accepts.
    UnknownKey(String),
    /// A bundle is malformed.
    Bundle(String),
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
            StatementError::UnknownKey(e) | StatementError::Bundle(e) => write!(f, "{e}"),
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

/// Opens many envelopes at once: like [`open`] for each, but the signatures whose keyid names a
/// trusted key are checked together with one Ed25519 batch verification. If the batch fails,
/// each is checked alone; a signature the batch could judge otherwise than strict verification
/// (see `VerifierKey::batchable`) is never batched; so the result is always [`open`]'s. (The
/// check that keeps the batch strict, R free of torsion, costs about what the batch saves:
/// measured, 10.4k bundles/s per core before it and 5.0k after, as without batching.)
pub fn open_many(envelopes: &[&[u8]], keys: &[VerifierKey]) -> Vec<Result<Opened, StatementError>> {
    let parsed: Vec<Result<(Envelope, Statement, Predicate), StatementError>> = envelopes
        .iter()
        .map(|b| {
            let e = Envelope::parse(b)?;
            let (s, p) = parse_payload(&e)?;
            Ok((e, s, p))
        })
        .collect();
    // The batch: (envelope, key, PAE, signature) for every hinted signature whose batch verdict
    // is strict verification's ([`VerifierKey::batchable`]); any other sends its envelope to
    // strict verification one signature at a time, so that the answers are `open`'s.
    let mut items: Vec<(usize, usize, Vec<u8>, ed25519_dalek::Signature)> = Vec::new();
    let mut vks: Vec<ed25519_dalek::VerifyingKey> = Vec::new();
    let mut alone = vec![false; parsed.len()];
    for (i, p) in parsed.iter().enumerate() {
        let Ok((e, _, _)) = p else { continue };
        let m = dsse::pae(&e.payload_type, &e.payload);
        for s in &e.signatures {
            let Some(k) = s.hinted_key(keys) else {
                continue;
            };
            match keys[k].batchable(&s.sig) {
                Some((vk, sig)) => {
                    items.push((i, k, m.clone(), sig));
                    vks.push(vk);
                }
                None => alone[i] = true,
            }
        }
    }
    let batch_ok = !items.is_empty() && {
        let msgs: Vec<&[u8]> = items.iter().map(|(_, _, m, _)| m.as_slice()).collect();
        let sigs: Vec<ed25519_dalek::Signature> = items.iter().map(|(_, _, _, s)| *s).collect();
        ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok()
    };
    parsed
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (envelope, statement, predicate) = p?;
            let all_hinted = envelope
                .signatures
                .iter()
                .all(|s| s.hinted_key(keys).is_some());
            let signers = if batch_ok && all_hinted && !alone[i] {
                let mut s: Vec<usize> = Vec::new();
                for (_, k, ..) in items.iter().filter(|(e, ..)| *e == i) {
                    if !s.contains(k) {
                        s.push(*k);
                    }
                }
                s
            } else {
                envelope.signers(keys)
            };
            if signers.is_empty() {
                return Err(StatementError::Envelope(dsse::DsseError::NoValidSignature));
            }
            Ok(Opened {
                envelope,
                statement,
                predicate,
                signers,
            })
        })
        .collect()
}

/// A statement parsed but whose signatures are not yet checked: for a sequencer that checks the
/// signatures of a whole batch at once ([`check_named_signatures`]).
#[derive(Debug, Clone)]
pub struct Unverified {
    /// The envelope.
    pub envelope: Envelope,
    /// The statement, parsed from the payload.
    pub statement: Statement,
    /// The predicate, parsed strictly.
    pub predicate: Predicate,
    /// For each signature, the verifier key its keyid names.
    pub named: Vec<VerifierKey>,
}

/// Parses an envelope and its statement, and finds the verifier key each signature's keyid
/// names with `resolve` (which may look the keyid up among known keys, or parse it), without
/// checking any signature. A keyid that is missing or that `resolve` does not know is an error.
pub fn parse_unverified(
    envelope_json: &[u8],
    resolve: impl Fn(&str) -> Option<VerifierKey>,
) -> Result<Unverified, StatementError> {
    let envelope = Envelope::parse(envelope_json)?;
    let named = envelope
        .signatures
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = s.keyid.as_deref().ok_or_else(|| {
                StatementError::Envelope(dsse::DsseError::Malformed(format!(
                    "signature {} has no keyid naming its key",
                    i + 1
                )))
            })?;
            match resolve(id) {
                Some(k) => Ok(k),
                None => Err(StatementError::UnknownKey(format!(
                    "signature {}: keyid {id:?} names no key this reader accepts",
                    i + 1
                ))),
            }
        })
        .collect::<Result<Vec<_>, StatementError>>()?;
    let (statement, predicate) = parse_payload(&envelope)?;
    Ok(Unverified {
        envelope,
        statement,
        predicate,
        named,
    })
}

/// What checking an envelope's signatures needs, and nothing more: the PAE bytes, and each
/// signature with the key its keyid names. Small, so that it can travel to a batch verifier.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    pae: Vec<u8>,
    sigs: Vec<(Vec<u8>, VerifierKey)>,
}

impl Unverified {
    /// The signature check of this envelope.
    pub fn signature_check(&self) -> SignatureCheck {
        SignatureCheck {
            pae: dsse::pae(&self.envelope.payload_type, &self.envelope.payload),
            sigs: self
                .envelope
                .signatures
                .iter()
                .map(|s| s.sig.clone())
                .zip(self.named.iter().cloned())
                .collect(),
        }
    }
}

/// Checks, for each envelope, that every signature verifies with the key its keyid names: all
/// of them in one Ed25519 batch, and one by one only if the batch fails (to find which).
pub fn check_signatures(items: &[&SignatureCheck]) -> Vec<bool> {
    let mut msgs: Vec<&[u8]> = Vec::new();
    let mut sigs = Vec::new();
    let mut vks = Vec::new();
    // Envelopes with a signature the batch could judge otherwise than strict verification
    // ([`VerifierKey::batchable`]) are checked alone, strictly; the batch holds the others.
    let alone: Vec<bool> = items
        .iter()
        .map(|c| {
            let pairs: Option<Vec<_>> = c.sigs.iter().map(|(s, k)| k.batchable(s)).collect();
            match pairs {
                Some(pairs) if !pairs.is_empty() => {
                    for (vk, sig) in pairs {
                        msgs.push(c.pae.as_slice());
                        sigs.push(sig);
                        vks.push(vk);
                    }
                    false
                }
                _ => true,
            }
        })
        .collect();
    // One signature alone is cheaper to check directly than through the batch equation.
    let batch_ok = sigs.len() > 1 && ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok();
    items
        .iter()
        .zip(alone)
        .map(|(c, alone)| {
            (batch_ok && !alone)
                || (!c.sigs.is_empty() && c.sigs.iter().all(|(s, k)| k.verify_ed25519(&c.pae, s)))
        })
        .collect()
}

/// [`check_signatures`] on parsed envelopes.
pub fn check_named_signatures(items: &[&Unverified]) -> Vec<bool> {
    let checks: Vec<SignatureCheck> = items.iter().map(|u| u.signature_check()).collect();
    check_signatures(&checks.iter().collect::<Vec<_>>())
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

/// Whether a log entry is a statement with `digest` among its subjects' SHA-256 digests.
/// Signatures are not checked: this finds candidates, which a verdict then checks.
pub fn is_about(entry: &[u8], digest: &nospy_tlog::Sha256) -> bool {
    let Ok(env) = Envelope::parse(entry) else {
        return false;
    };
    // Cheap filter first: the digest's hex must appear in the payload.
    let hex = digest.to_hex();
    env.payload
        .windows(hex.len())
        .any(|w| w.eq_ignore_ascii_case(hex.as_bytes()))
        && Statement::parse(&env.payload).is_ok_and(|s| s.is_about(digest))
}

fn parse_payload(envelope: &Envelope) -> Result<(Statement, Predicate), StatementError> {
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(StatementError::PayloadType(envelope.payload_type.clone()));
    }
    let statement = Statement::parse(&envelope.payload)?;
    if statement.subject_sha256().is_empty() {
        return Err(StatementError::Statement(
            "no subject has a SHA-256 digest".into(),
        ));
    }
    let predicate = Predicate::parse(&statement.predicate_type, &statement.predicate)?;
    Ok((statement, predicate))
}
