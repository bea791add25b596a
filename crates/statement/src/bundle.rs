//! Bundles: the self-contained, offline-verifiable package for one artifact. One signed
//! checkpoint (with its witness cosignatures) and the log entries about the artifact (its release,
//! the attestations, any revocations found), each with a c2sp.org/tlog-proof against that
//! checkpoint.

use base64::Engine as _;
use nospy_tlog::checkpoint::TlogProof;
use nospy_tlog::Hash;
use serde::{Deserialize, Serialize};

/// The bundle format identifier.
pub const BUNDLE_V1: &str = "https://nospy.example/bundle/v1";

/// Largest bundle read.
pub const MAX_BUNDLE_LEN: usize = 16 << 20;

/// A bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The artifact's SHA-256.
    pub artifact: nospy_tlog::Sha256,
    /// The signed checkpoint, with cosignatures, verbatim.
    pub checkpoint: String,
    /// The entries with their proofs.
    pub entries: Vec<BundleEntry>,
    /// A consistency proof from an earlier tree size to the checkpoint's, if the bundle was made
    /// for a verifier that remembers that size.
    pub consistency: Option<(u64, Vec<Hash>)>,
}

/// One log entry in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// The entry (a DSSE envelope), byte for byte as logged.
    pub entry: Vec<u8>,
    /// Its inclusion proof.
    pub proof: TlogProof,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: String,
    artifact_sha256: String,
    checkpoint: String,
    entries: Vec<RawEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consistency: Option<RawConsistency>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    entry: String,
    proof: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsistency {
    from_size: u64,
    proof: Vec<String>,
}

impl Bundle {
    /// The size of the tree its checkpoint signs.
    pub fn checkpoint_size(&self) -> Result<u64, crate::StatementError> {
        nospy_tlog::checkpoint::SignedCheckpoint::parse(self.checkpoint.as_bytes())
            .map(|sc| sc.checkpoint.size)
            .map_err(|e| crate::StatementError::Bundle(format!("its checkpoint: {e}")))
    }

    /// The JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let raw = Raw {
            format: BUNDLE_V1.into(),
            artifact_sha256: self.artifact.to_hex(),
            checkpoint: self.checkpoint.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| RawEntry {
                    entry: b64.encode(&e.entry),
                    proof: e.proof.to_text(),
                })
                .collect(),
            consistency: self.consistency.as_ref().map(|(n, p)| RawConsistency {
                from_size: *n,
                proof: p.iter().map(|h| h.to_base64()).collect(),
            }),
        };
        // invariant: strings and numbers always serialise.
        serde_json::to_vec_pretty(&raw).unwrap_or_default()
    }

    /// Parses the JSON form; errors say which entry is bad.
    pub fn parse(json: &[u8]) -> Result<Bundle, crate::StatementError> {
        Bundle::parse_text(json).map_err(crate::StatementError::Bundle)
    }

    fn parse_text(json: &[u8]) -> Result<Bundle, String> {
        if json.len() > MAX_BUNDLE_LEN {
            return Err(format!(
                "bundle is {} bytes, over the 16 MiB limit",
                json.len()
            ));
        }
        let raw: Raw =
            serde_json::from_slice(json).map_err(|e| format!("not a nospy bundle: {e}"))?;
        if raw.format != BUNDLE_V1 {
            return Err(format!("bundle format {:?} is not {BUNDLE_V1}", raw.format));
        }
        let artifact = nospy_tlog::Sha256::from_hex(&raw.artifact_sha256)
            .ok_or("artifact_sha256 is not 64 hex digits")?;
        let mut entries = Vec::with_capacity(raw.entries.len());
        for (i, e) in raw.entries.into_iter().enumerate() {
            let entry = crate::dsse::decode_b64(&e.entry)
                .ok_or_else(|| format!("entry {}: not base64", i + 1))?;
            let proof = TlogProof::parse(&e.proof)
                .map_err(|err| format!("entry {}: proof: {err}", i + 1))?;
            entries.push(BundleEntry { entry, proof });
        }
        let consistency = match raw.consistency {
            None => None,
            Some(c) => {
                let p = c
                    .proof
                    .iter()
                    .map(|h| Hash::from_base64(h))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("consistency proof hash is not base64 of 32 bytes")?;
                Some((c.from_size, p))
            }
        };
        Ok(Bundle {
            artifact,
            checkpoint: raw.checkpoint,
            entries,
            consistency,
        })
    }
}
