//! The body of a c2sp.org/tlog-witness `add-checkpoint` request: `old <size>`, the consistency
//! proof from that size (one base64 hash a line), a blank line, the checkpoint note. Written by
//! the log asking a witness, read by the witness.

use crate::Hash;

/// An `add-checkpoint` request body: the old size, the consistency proof from it, a blank
/// line, the checkpoint.
pub fn request_body(old: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&h.to_base64());
        b.push('\n');
    }
    b.push('\n');
    b.push_str(checkpoint);
    b
}

/// Why an `add-checkpoint` request body is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRequest(pub String);

impl std::fmt::Display for MalformedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedRequest {}

impl From<&str> for MalformedRequest {
    fn from(s: &str) -> Self {
        MalformedRequest(s.to_string())
    }
}

impl From<String> for MalformedRequest {
    fn from(s: String) -> Self {
        MalformedRequest(s)
    }
}

/// Splits a tlog-witness `add-checkpoint` request body: old size, consistency proof, checkpoint
/// note (not yet verified).
pub fn parse_request(body: &str) -> Result<(u64, Vec<Hash>, &str), MalformedRequest> {
    let (first, mut rest) = body.split_once('\n').ok_or("no old size line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(crate::checkpoint::parse_decimal)
        .ok_or_else(|| format!("first line {first:?} is not \"old <size>\""))?;
    let mut proof = Vec::new();
    loop {
        let (line, r) = rest
            .split_once('\n')
            .ok_or("no blank line before the checkpoint")?;
        rest = r;
        if line.is_empty() {
            break;
        }
        if proof.len() == 63 {
            return Err("more than 63 consistency proof lines".into());
        }
        proof.push(
            Hash::from_base64(line)
                .ok_or_else(|| format!("proof line {line:?} is not base64 of 32 bytes"))?,
        );
    }
    Ok((old, proof, rest))
}
