//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1): the envelope, its
//! pre-authentication encoding (PAE), signing and verification.
//!
//! Signatures cover `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN
//! the decimal byte length. The `keyid` of a signature is a hint and never a security decision:
//! verification tries every trusted key against every signature and counts each key once.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use nospy_tlog::note::{SignerKey, VerifierKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The payload type of in-toto statements.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Largest envelope nospy reads: one log entry.
pub const MAX_ENVELOPE_LEN: usize = 65_535;

const STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64 in the standard or the URL-safe alphabet, padded or not (DSSE allows both).
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    STD.decode(s).or_else(|_| URL.decode(s)).ok()
}

/// What is wrong with an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsseError {
    /// The JSON does not have the envelope's shape; the message says where.
    Malformed(String),
    /// No signature verifies with any of the trusted keys.
    NoValidSignature,
    /// The envelope is over the size limit.
    TooLarge(usize),
}

impl fmt::Display for DsseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DsseError::Malformed(m) => write!(f, "malformed DSSE envelope: {m}"),
            DsseError::NoValidSignature => {
                f.write_str("no signature on the envelope verifies with a trusted key")
            }
            DsseError::TooLarge(n) => write!(
                f,
                "envelope is {n} bytes, over the {MAX_ENVELOPE_LEN}-byte limit"
            ),
        }
    }
}

impl std::error::Error for DsseError {}

/// `PAE(type, body)`, byte for byte as the DSSE protocol defines it.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Unauthenticated hint. nospy writes the signer's verifier key here.
    pub keyid: Option<String>,
    /// The signature bytes.
    pub sig: Vec<u8>,
}

impl Signature {
    /// The key among `keys` that the keyid names (`name+hexid...`), if any: a hint for which key
    /// to try first, never a reason to trust.
    pub fn hinted_key(&self, keys: &[VerifierKey]) -> Option<usize> {
        let id = self.keyid.as_deref()?;
        let mut parts = id.splitn(3, '+');
        let (name, hex) = (parts.next()?, parts.next()?);
        let kid = u32::from_str_radix(hex.get(..8)?, 16).ok()?;
        keys.iter().position(|k| {
            k.name() == name && k.id() == kid && k.alg() == nospy_tlog::note::ALG_ED25519
        })
    }
}

/// A DSSE envelope with its payload decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The payload type.
    pub payload_type: String,
    /// The payload, exactly the bytes that were signed (inside the PAE).
    pub payload: Vec<u8>,
    /// The signatures.
    pub signatures: Vec<Signature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<RawSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
    sig: String,
}

impl Envelope {
    /// Parses the JSON form.
    pub fn parse(json: &[u8]) -> Result<Envelope, DsseError> {
        if json.len() > MAX_ENVELOPE_LEN {
            return Err(DsseError::TooLarge(json.len()));
        }
        let raw: RawEnvelope =
            serde_json::from_slice(json).map_err(|e| DsseError::Malformed(e.to_string()))?;
        let payload = decode_b64(&raw.payload)
            .ok_or_else(|| DsseError::Malformed("payload is not base64".into()))?;
        if raw.signatures.is_empty() {
            return Err(DsseError::Malformed("no signatures".into()));
        }
        if raw.signatures.len() > 64 {
            return Err(DsseError::Malformed("more than 64 signatures".into()));
        }
        let signatures = raw
            .signatures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let sig = decode_b64(&s.sig).ok_or_else(|| {
                    DsseError::Malformed(format!("signature {} is not base64", i + 1))
                })?;
                Ok(Signature {
                    keyid: s.keyid,
                    sig,
                })
            })
            .collect::<Result<_, DsseError>>()?;
        Ok(Envelope {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }

    /// The JSON form (standard base64, padded).
    pub fn to_json(&self) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        let raw = RawEnvelope {
            payload: STANDARD.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| RawSignature {
                    keyid: s.keyid.clone(),
                    sig: STANDARD.encode(&s.sig),
                })
                .collect(),
        };
        // invariant: the raw envelope holds only strings, which always serialise.
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// Signs `payload` with each key (Ed25519 over the PAE); the keyid is the signer's verifier
    /// key.
    pub fn sign(payload_type: &str, payload: Vec<u8>, keys: &[&SignerKey]) -> Envelope {
        let m = pae(payload_type, &payload);
        let signatures = keys
            .iter()
            .map(|k| Signature {
                keyid: Some(k.verifier().to_string()),
                sig: k.sign_raw(&m).to_vec(),
            })
            .collect();
        Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures,
        }
    }

    /// The trusted keys (indexes into `keys`) that signed, each counted once however many
    /// signatures it made. Empty if none.
    ///
    /// The keyid only decides which key is tried first (nospy writes `name+id+...` there): a
    /// signature whose keyid names a trusted key costs one verification. A signature whose keyid
    /// is absent, unknown or lying is tried against every key, so the hint never changes the
    /// answer, only the work.
    pub fn signers(&self, keys: &[VerifierKey]) -> Vec<usize> {
        let m = pae(&self.payload_type, &self.payload);
        let mut out: Vec<usize> = Vec::new();
        for s in &self.signatures {
            let hinted = s.hinted_key(keys);
            if let Some(i) = hinted.filter(|i| !out.contains(i)) {
                if keys[i].alg() == nospy_tlog::note::ALG_ED25519
                    && keys[i].verify_ed25519(&m, &s.sig)
                {
                    out.push(i);
                    continue;
                }
            }
            for (i, k) in keys.iter().enumerate() {
                if Some(i) != hinted
                    && !out.contains(&i)
                    && k.alg() == nospy_tlog::note::ALG_ED25519
                    && k.verify_ed25519(&m, &s.sig)
                {
                    out.push(i);
                    break;
                }
            }
        }
        out
    }

    /// Verifies that at least one trusted key signed; returns the signers and the payload, which
    /// is exactly what they signed.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<(Vec<usize>, &[u8]), DsseError> {
        let s = self.signers(keys);
        if s.is_empty() {
            return Err(DsseError::NoValidSignature);
        }
        Ok((s, &self.payload))
    }

    /// Checks every signature against the verifier key its keyid names (as nospy writes them):
    /// the envelope is signed by whoever those keys are. Returns the keys, or the first problem.
    /// This says nothing about whether the keys are trusted; it keeps unsigned or garbled
    /// envelopes out of a log.
    pub fn self_signed_by(&self) -> Result<Vec<VerifierKey>, DsseError> {
        let m = pae(&self.payload_type, &self.payload);
        let mut keys = Vec::new();
        for (i, s) in self.signatures.iter().enumerate() {
            let id = s.keyid.as_deref().ok_or_else(|| {
                DsseError::Malformed(format!("signature {} has no keyid naming its key", i + 1))
            })?;
            let k = VerifierKey::parse(id).map_err(|e| {
                DsseError::Malformed(format!(
                    "signature {}: keyid is not a verifier key: {e}",
                    i + 1
                ))
            })?;
            if !k.verify_ed25519(&m, &s.sig) {
                return Err(DsseError::Malformed(format!(
                    "signature {} does not verify with the key it names ({k})",
                    i + 1
                )));
            }
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        Ok(keys)
    }
}
