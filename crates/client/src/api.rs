//! The JSON bodies of `nospy serve`'s API beyond tlog-tiles, written by the server and read by
//! the clients from these same types.

use nospy_tlog::{Hash, Sha256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `POST /add`: where the entry is, once durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResponse {
    /// The entry's index.
    pub index: u64,
    /// Its leaf hash (RFC 6962), hex.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// Whether the log held the entry already (its index is the first one's).
    pub duplicate: bool,
}

/// `GET /proof/inclusion?index=&size=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionResponse {
    /// The entry's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The proof's hashes, base64 (RFC 9162 §2.1.3).
    #[serde(with = "base64_hashes")]
    pub proof: Vec<Hash>,
}

/// `GET /proof/consistency?from=&to=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyResponse {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof's hashes, base64 (RFC 9162 §2.1.4).
    #[serde(with = "base64_hashes")]
    pub proof: Vec<Hash>,
}

/// `GET /lookup?digest=`: the entries the server's index lists about an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// The artifact's SHA-256, hex.
    #[serde(with = "hex_sha256")]
    pub digest: Sha256,
    /// How many entries of the log the index covered: entries at and beyond this index are not
    /// in the answer and must be read from the log.
    pub size: u64,
    /// The entries about the digest, in log order: one page of them.
    pub entries: Vec<LookupEntry>,
    /// When the answer is one page of several: ask again with `&after=` this index for the
    /// entries after it. A client must read every page, or it may miss a revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// One entry of a [`LookupResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupEntry {
    /// The entry's index.
    pub index: u64,
    /// Its leaf hash, hex.
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    /// The statement's predicate type.
    pub predicate_type: String,
    /// The verifier keys its signatures name.
    pub signers: Vec<String>,
}

mod hex_hash {
    use super::*;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s)
            .filter(|_| s.len() == 64)
            .ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

mod hex_sha256 {
    use super::*;

    pub fn serialize<S: Serializer>(h: &Sha256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256, D::Error> {
        let s = String::deserialize(d)?;
        Sha256::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

mod base64_hashes {
    use super::*;

    pub fn serialize<S: Serializer>(hs: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hs.iter().map(|h| h.to_base64()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                Hash::from_base64(s)
                    .ok_or_else(|| serde::de::Error::custom("a hash is not base64 of 32 bytes"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failing test
    use super::*;

    #[test]
    fn bodies_read_back_as_written() {
        let h = Hash([7; 32]);
        let a = AddResponse {
            index: 3,
            hash: h,
            duplicate: true,
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"index":3,"hash":"{}","duplicate":true}}"#, h.to_hex())
        );
        assert_eq!(serde_json::from_str::<AddResponse>(&text).unwrap(), a);
        let p = InclusionResponse {
            index: 1,
            size: 9,
            proof: vec![h, Hash([1; 32])],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<InclusionResponse>(&text).unwrap(), p);
        assert!(serde_json::from_str::<InclusionResponse>(
            r#"{"index":1,"size":9,"proof":["AAAA"]}"#
        )
        .is_err());
    }
}
