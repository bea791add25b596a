//! The SHA-256 digest of an artifact's bytes (a firmware image, an SBOM, a capture): what a
//! statement's subject names and what a lookup asks for. It is a type of its own so that it
//! cannot be passed where a Merkle tree [`Hash`](crate::Hash) (a leaf, a node, a root) is
//! meant, or the other way round: both are 32 bytes of SHA-256 output, with different meanings.

use sha2::Digest as _;
use std::fmt;

/// The SHA-256 of an artifact.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(data).into())
    }

    /// The bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal, as in-toto digest sets and nospy's files write it.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses exactly 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Sha256> {
        if text.len() != 64 {
            return None;
        }
        let bytes = crate::hex::decode(text)?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Sha256)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;

    #[test]
    fn hex_round_trips_and_only_64_digits_parse() {
        let d = Sha256::of(b"firmware");
        assert_eq!(Sha256::from_hex(&d.to_hex()), Some(d));
        assert_eq!(
            Sha256::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for bad in ["", "00", &"0".repeat(63), &"0".repeat(66), &"g".repeat(64)] {
            assert_eq!(Sha256::from_hex(bad), None, "{bad}");
        }
    }
}
