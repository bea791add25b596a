//! in-toto Statement v1 (in-toto/attestation spec v1): subjects as resource descriptors with
//! digest sets, a predicate type and a predicate.

use nospy_tlog::Sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// A digest set: algorithm name to lower-case hex value. Algorithms nospy does not know are kept
/// and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DigestSet(pub BTreeMap<String, String>);

impl DigestSet {
    /// A digest set holding one SHA-256.
    pub fn sha256(h: &Sha256) -> DigestSet {
        DigestSet([("sha256".to_string(), h.to_hex())].into_iter().collect())
    }

    /// The SHA-256 value, if present and well-formed (64 hex digits).
    pub fn get_sha256(&self) -> Option<Sha256> {
        self.0.get("sha256").and_then(|h| Sha256::from_hex(h))
    }
}

/// An in-toto ResourceDescriptor. Fields nospy does not use are kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// Name (for subjects, usually the file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// URI of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Digests of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSet>,
    /// The content itself, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Where to download it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

impl ResourceDescriptor {
    /// Checks the spec's rule: at least one of uri, digest and content.
    pub fn check(&self) -> Result<(), crate::StatementError> {
        self.check_text().map_err(crate::StatementError::Statement)
    }

    fn check_text(&self) -> Result<(), String> {
        if self.uri.is_none()
            && self.digest.as_ref().is_none_or(|d| d.0.is_empty())
            && self.content.is_none()
        {
            return Err("a resource descriptor needs a uri, a digest or content".into());
        }
        Ok(())
    }
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_V1`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// What the statement is about.
    pub subject: Vec<ResourceDescriptor>,
    /// The predicate's type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    #[serde(default)]
    pub predicate: serde_json::Value,
}

impl Statement {
    /// A statement about `subject` with a predicate.
    pub fn new(
        subject: Vec<ResourceDescriptor>,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            type_: STATEMENT_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// Parses and checks a statement: the v1 type, at least one subject, each subject with a
    /// digest set.
    pub fn parse(json: &[u8]) -> Result<Statement, crate::StatementError> {
        Statement::parse_text(json).map_err(crate::StatementError::Statement)
    }

    fn parse_text(json: &[u8]) -> Result<Statement, String> {
        let s: Statement =
            serde_json::from_slice(json).map_err(|e| format!("not an in-toto statement: {e}"))?;
        if s.type_ != STATEMENT_V1 {
            return Err(format!("_type is {:?}, not {STATEMENT_V1}", s.type_));
        }
        if s.subject.is_empty() {
            return Err("statement has no subject".into());
        }
        for (i, sub) in s.subject.iter().enumerate() {
            if sub.digest.as_ref().is_none_or(|d| d.0.is_empty()) {
                return Err(format!("subject {} has no digest", i + 1));
            }
        }
        if s.predicate_type.is_empty() {
            return Err("predicateType is empty".into());
        }
        Ok(s)
    }

    /// The SHA-256 digests of the subjects (those that have one).
    pub fn subject_sha256(&self) -> Vec<Sha256> {
        self.subject
            .iter()
            .filter_map(|s| s.digest.as_ref().and_then(DigestSet::get_sha256))
            .collect()
    }

    /// Whether a subject has SHA-256 `digest`.
    pub fn is_about(&self, digest: &Sha256) -> bool {
        self.subject_sha256().contains(digest)
    }

    /// The JSON bytes to sign.
    pub fn to_json(&self) -> Vec<u8> {
        // invariant: a Statement is made of strings, maps and JSON values, which always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
