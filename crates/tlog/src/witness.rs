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
#[non_exhaustive]
pub enum MalformedRequest {
    /// The body has no first line (the old size).
    NoOldSize,
    /// The first line (given) is not `old <size>`.
    OldSize(String),
    /// No blank line ends the consistency proof before the checkpoint.
    NoBlankLine,
    /// The consistency proof has more than 63 lines.
    ProofTooLong,
    /// A proof line (given) is not base64 of 32 bytes.
    ProofLine(String),
}

impl std::fmt::Display for MalformedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MalformedRequest::NoOldSize => f.write_str("no old size line"),
            MalformedRequest::OldSize(first) => {
                write!(f, "first line {first:?} is not \"old <size>\"")
            }
            MalformedRequest::NoBlankLine => f.write_str("no blank line before the checkpoint"),
            MalformedRequest::ProofTooLong => f.write_str("more than 63 consistency proof lines"),
            MalformedRequest::ProofLine(line) => {
                write!(f, "proof line {line:?} is not base64 of 32 bytes")
            }
        }
    }
}

impl std::error::Error for MalformedRequest {}

/// Splits a tlog-witness `add-checkpoint` request body: old size, consistency proof, checkpoint
/// note (not yet verified).
pub fn parse_request(body: &str) -> Result<(u64, Vec<Hash>, &str), MalformedRequest> {
    let (first, mut rest) = body.split_once('\n').ok_or(MalformedRequest::NoOldSize)?;
    let old = first
        .strip_prefix("old ")
        .and_then(crate::checkpoint::parse_decimal)
        .ok_or_else(|| MalformedRequest::OldSize(first.to_string()))?;
    let mut proof = Vec::new();
    loop {
        let (line, r) = rest.split_once('\n').ok_or(MalformedRequest::NoBlankLine)?;
        rest = r;
        if line.is_empty() {
            break;
        }
        if proof.len() == 63 {
            return Err(MalformedRequest::ProofTooLong);
        }
        proof.push(
            Hash::from_base64(line).ok_or_else(|| MalformedRequest::ProofLine(line.to_string()))?,
        );
    }
    Ok((old, proof, rest))
}

#[cfg(test)]
mod tests {
    use super::{parse_request, MalformedRequest as M};

    #[test]
    fn a_malformed_request_says_its_kind() {
        let h = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let long = format!("old 1\n{}\ncheckpoint", format!("{h}\n").repeat(64));
        for (body, kind) in [
            ("old 1", M::NoOldSize),
            ("new 1\n\ncp", M::OldSize("new 1".into())),
            ("old 1\nAAAA", M::NoBlankLine),
            (long.as_str(), M::ProofTooLong),
            ("old 1\nnot base64\n\ncp", M::ProofLine("not base64".into())),
        ] {
            assert_eq!(parse_request(body).unwrap_err(), kind, "{body:?}");
        }
        let body = format!("old 7\n{h}\n\ncp\n");
        let (old, proof, note) = parse_request(&body).unwrap();
        assert_eq!((old, proof.len(), note), (7, 1, "cp\n"));
    }
}
