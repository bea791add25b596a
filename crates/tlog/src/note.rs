//! c2sp.org/signed-note: keys in verifier-key and Go private-key form, key ids, signing, and
//! verifying notes with several signatures (unknown signers ignored, known ones all checked).

use crate::hash::sha256;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use std::fmt;

/// Signature type byte of plain Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of tlog-cosignature/v1 Ed25519 witness cosignatures.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Signature type byte of static-ct-api RFC 6962 tree-head signatures (parsed, not verified here).
pub const ALG_RFC6962: u8 = 0x05;
/// Signature type byte of ML-DSA-44 cosignatures (parsed, not verified here).
pub const ALG_MLDSA44: u8 = 0x06;

/// Most signature lines a note may carry (Go's limit; the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Largest note nospy reads.
pub const MAX_NOTE_LEN: usize = 1 << 20;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Signature lines are decoded as Go's `note` package decodes them: standard alphabet, padded,
/// but accepting non-zero trailing bits. Which string encoded the bytes changes nothing (the
/// signature over the text is what is checked), and witnesses written in Go answer a garbled
/// signature with 403, not 400, which conformance scenarios expect.
const SIG_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// What went wrong with a key or a note.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// A key string does not parse; the message says why.
    BadKey(String),
    /// The note does not follow the signed-note format.
    Malformed {
        /// 1-based line of the note where the problem is (0 for the note as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A signature from a known key does not verify: the whole note is refused.
    BadSignature {
        /// The key's name.
        name: String,
        /// The key id, hex.
        id: String,
    },
    /// No signature from any of the given keys is on the note.
    NoKnownSignature,
    /// Signing was asked with text that is not a valid note text.
    BadText(String),
    /// A known key's signature is of a type nospy cannot verify (RFC 6962, ML-DSA-44).
    UnsupportedType {
        /// The key's name.
        name: String,
        /// The signature type byte.
        alg: u8,
    },
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::BadKey(r) => write!(f, "bad key: {r}"),
            NoteError::Malformed { line: 0, reason } => write!(f, "malformed note: {reason}"),
            NoteError::Malformed { line, reason } => {
                write!(f, "malformed note, line {line}: {reason}")
            }
            NoteError::BadSignature { name, id } => {
                write!(f, "signature by {name}+{id} does not verify")
            }
            NoteError::NoKnownSignature => f.write_str("note carries no signature by a known key"),
            NoteError::BadText(r) => write!(f, "cannot sign: {r}"),
            NoteError::UnsupportedType { name, alg } => {
                write!(
                    f,
                    "signature by {name} is of type 0x{alg:02x}, which nospy cannot verify"
                )
            }
        }
    }
}

impl std::error::Error for NoteError {}

fn bad_key(r: impl Into<String>) -> NoteError {
    NoteError::BadKey(r.into())
}

/// Key names must be non-empty and contain no Unicode space and no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || 0x0A || type || key material)[:4]`, big-endian.
pub fn key_id(name: &str, alg: u8, material: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 2 + material.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(alg);
    buf.extend_from_slice(material);
    let h = sha256(&buf);
    u32::from_be_bytes([h.0[0], h.0[1], h.0[2], h.0[3]])
}

/// A public key in signed-note verifier-key form, `name+hex(keyid)+base64(type||key)`.
///
/// Parsing checks the key id against the material for every type it knows how to hash (Ed25519,
/// cosignature, RFC 6962, ML-DSA-44), so a key whose id does not match is refused; only the Ed25519
/// types (0x01, 0x04) can verify signatures here.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    alg: u8,
    material: Vec<u8>,
    ed25519: Option<VerifyingKey>,
    /// Whether a batch verification's verdict on this key's signatures can be strict's: the
    /// key is not of small order and has no torsion component ([`VerifierKey::batchable`]).
    batch_safe: bool,
}

/// Whether batch verification agrees with strict verification for every signature by `vk`
/// whose `R` is canonical and torsion-free: `vk` is not weak and has no torsion component.
fn batch_safe(vk: &VerifyingKey) -> bool {
    !vk.is_weak() && vk.to_edwards().is_torsion_free()
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({})", self)
    }
}

impl VerifierKey {
    /// Parses a verifier key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad_key("a verifier key is name+keyid+base64(key)")),
        };
        if !valid_key_name(name) {
            return Err(bad_key(format!(
                "key name {name:?} is empty or has a space or +"
            )));
        }
        let id = parse_key_id(id)?;
        let raw = B64
            .decode(key)
            .map_err(|_| bad_key("key material is not valid base64"))?;
        let (&alg, material) = raw
            .split_first()
            .ok_or_else(|| bad_key("key material is empty"))?;
        let (expected, ed) = match alg {
            ALG_ED25519 | ALG_COSIGNATURE_V1 => {
                let pk: [u8; 32] = material.try_into().map_err(|_| {
                    bad_key(format!("Ed25519 key is {} bytes, not 32", material.len()))
                })?;
                let vk = VerifyingKey::from_bytes(&pk)
                    .map_err(|_| bad_key("Ed25519 key is not a valid curve point"))?;
                (key_id(name, alg, material), Some(vk))
            }
            ALG_RFC6962 => (key_id(name, alg, &sha256(material).0), None),
            ALG_MLDSA44 => {
                if material.len() != 1312 {
                    return Err(bad_key(format!(
                        "ML-DSA-44 key is {} bytes, not 1312",
                        material.len()
                    )));
                }
                (key_id(name, alg, material), None)
            }
            other => return Err(bad_key(format!("unknown signature type 0x{other:02x}"))),
        };
        if expected != id {
            return Err(bad_key(format!(
                "key id {id:08x} does not match the key (expected {expected:08x})"
            )));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            id,
            alg,
            material: material.to_vec(),
            batch_safe: ed.as_ref().is_some_and(batch_safe),
            ed25519: ed,
        })
    }

    /// Builds the verifier key of an Ed25519 public key with signature type `alg` (0x01 or 0x04).
    pub fn from_ed25519(name: &str, alg: u8, key: &VerifyingKey) -> Result<VerifierKey, NoteError> {
        if !valid_key_name(name) {
            return Err(bad_key(format!(
                "key name {name:?} is empty or has a space or +"
            )));
        }
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(bad_key(format!(
                "signature type 0x{alg:02x} is not an Ed25519 type"
            )));
        }
        let material = key.to_bytes().to_vec();
        Ok(VerifierKey {
            name: name.to_string(),
            id: key_id(name, alg, &material),
            alg,
            material,
            ed25519: Some(*key),
            batch_safe: batch_safe(key),
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The signature type byte.
    pub fn alg(&self) -> u8 {
        self.alg
    }

    /// The same Ed25519 key with another signature type (for example its cosignature form).
    pub fn with_alg(&self, alg: u8) -> Result<VerifierKey, NoteError> {
        let vk = self
            .ed25519
            .as_ref()
            .ok_or_else(|| bad_key("not an Ed25519 key"))?;
        VerifierKey::from_ed25519(&self.name, alg, vk)
    }

    /// The Ed25519 public key, for the key types that have one (0x01, 0x04).
    pub fn ed25519(&self) -> Option<&VerifyingKey> {
        self.ed25519.as_ref()
    }

    /// The key and signature for an Ed25519 batch verification, when the batch's verdict on
    /// this signature is the one [`VerifierKey::verify_ed25519`] would give: nospy has one
    /// acceptance rule, strict RFC 8032 verification. A batch checks the cofactored equation,
    /// which accepts what strict refuses: a key or an `R` of small order, an `R` encoded
    /// non-canonically, and any torsion component of `R` or of the key. A signature with none
    /// of these passes the batch exactly when it passes strict verification; the others (no
    /// honest signer makes them) return `None` and must be checked alone.
    pub fn batchable(
        &self,
        sig: &[u8],
    ) -> Option<(ed25519_dalek::VerifyingKey, ed25519_dalek::Signature)> {
        let vk = self
            .ed25519
            .filter(|_| self.batch_safe && self.alg == ALG_ED25519)?;
        let sig = <[u8; 64]>::try_from(sig).ok()?;
        let mut r = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        let compressed = curve25519_dalek::edwards::CompressedEdwardsY(r);
        let point = compressed.decompress()?;
        (point.compress() == compressed && !point.is_small_order() && point.is_torsion_free())
            .then(|| (vk, ed25519_dalek::Signature::from_bytes(&sig)))
    }

    /// Verifies an Ed25519 signature by this key over `msg` (strict RFC 8032 verification).
    pub fn verify_ed25519(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (Some(vk), Ok(sig)) = (&self.ed25519, <[u8; 64]>::try_from(sig)) else {
            return false;
        };
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(1 + self.material.len());
        raw.push(self.alg);
        raw.extend_from_slice(&self.material);
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

fn parse_key_id(id: &str) -> Result<u32, NoteError> {
    if id.len() != 8 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad_key(format!(
            "key id {id:?} is not 8 hexadecimal digits"
        )));
    }
    u32::from_str_radix(id, 16).map_err(|_| bad_key("key id is not hexadecimal"))
}

/// An Ed25519 private key in Go's form, `PRIVATE+KEY+name+hex(keyid)+base64(0x01||seed)`.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}+{:08x}, private)", self.name, self.id)
    }
}

impl SignerKey {
    /// Parses a Go-form private key.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let text = text.trim();
        let parts: Vec<&str> = text.splitn(5, '+').collect();
        if parts.len() != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
            return Err(bad_key(
                "a private key is PRIVATE+KEY+name+keyid+base64(key)",
            ));
        }
        let (name, id) = (parts[2], parse_key_id(parts[3])?);
        if !valid_key_name(name) {
            return Err(bad_key(format!(
                "key name {name:?} is empty or has a space or +"
            )));
        }
        // The decoded key and its seed are secret: wiped when dropped, whatever happens.
        let raw = zeroize::Zeroizing::new(
            B64.decode(parts[4])
                .map_err(|_| bad_key("private key is not valid base64"))?,
        );
        if raw.first() != Some(&ALG_ED25519) {
            return Err(bad_key("private key is not an Ed25519 (type 0x01) key"));
        }
        let seed: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(raw[1..].try_into().map_err(|_| {
                bad_key(format!("Ed25519 seed is {} bytes, not 32", raw.len() - 1))
            })?);
        let k = SignerKey::from_seed(name, *seed)?;
        if k.id != id {
            return Err(bad_key(format!(
                "key id {id:08x} does not match the key (expected {:08x})",
                k.id
            )));
        }
        Ok(k)
    }

    /// The signer for an Ed25519 seed (the caller wipes its copy of the seed; the key wipes its
    /// own when dropped).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        if !valid_key_name(name) {
            return Err(bad_key(format!(
                "key name {name:?} is empty or has a space or +"
            )));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(SignerKey {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The note verifier key (type 0x01).
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            alg: ALG_ED25519,
            material: self.key.verifying_key().to_bytes().to_vec(),
            ed25519: Some(self.key.verifying_key()),
            batch_safe: batch_safe(&self.key.verifying_key()),
        }
    }

    /// The same key's witness form (tlog-cosignature, type 0x04).
    pub fn cosigner_verifier(&self) -> VerifierKey {
        let vk = self.key.verifying_key();
        VerifierKey {
            name: self.name.clone(),
            id: key_id(&self.name, ALG_COSIGNATURE_V1, vk.as_bytes()),
            alg: ALG_COSIGNATURE_V1,
            material: vk.to_bytes().to_vec(),
            ed25519: Some(vk),
            batch_safe: batch_safe(&vk),
        }
    }

    /// The Go private-key string. Secret: write it only to owner-only files.
    pub fn to_private_string(&self) -> zeroize::Zeroizing<String> {
        let mut raw = zeroize::Zeroizing::new(vec![ALG_ED25519]);
        raw.extend_from_slice(self.key.as_bytes());
        zeroize::Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(&*raw)
        ))
    }

    /// Raw Ed25519 signature over `msg`.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// A note signature over `text` (type 0x01).
    pub fn sign_note(&self, text: &str) -> NoteSignature {
        let sig = self.sign_raw(text.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            id: self.id,
            sig: sig.to_vec(),
        }
    }

    /// A tlog-cosignature/v1 over a checkpoint's note `text`, made at `timestamp` (POSIX seconds).
    pub fn cosign(&self, text: &str, timestamp: u64) -> NoteSignature {
        let msg = cosignature_message(text, timestamp);
        let sig = self.sign_raw(msg.as_bytes());
        let mut payload = timestamp.to_be_bytes().to_vec();
        payload.extend_from_slice(&sig);
        let id = key_id(
            &self.name,
            ALG_COSIGNATURE_V1,
            self.key.verifying_key().as_bytes(),
        );
        NoteSignature {
            name: self.name.clone(),
            id,
            sig: payload,
        }
    }
}

/// The message an Ed25519 cosignature/v1 signs: `cosignature/v1\ntime <t>\n` then the note text.
pub fn cosignature_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// One signature line of a note: key name, key id and the signature bytes after the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub id: u32,
    /// Signature bytes (after the 4-byte key id).
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, with its final newline: `— name base64(id||sig)\n`.
    pub fn line(&self) -> String {
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.sig);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A signed note: text (ending in a newline) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    /// The signatures, in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

/// One signature of a note that verified against a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index of the key in the list given to [`Note::verify`].
    pub key: usize,
    /// Cosignature timestamp (POSIX seconds), for type 0x04 keys.
    pub timestamp: Option<u64>,
}

impl Note {
    /// Parses a signed note strictly (c2sp.org/signed-note and Go's `note.Open` rules).
    pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
        let mal = |line, reason: &str| NoteError::Malformed {
            line,
            reason: reason.to_string(),
        };
        if msg.len() > MAX_NOTE_LEN {
            return Err(mal(0, "note is over 1 MiB"));
        }
        let s = std::str::from_utf8(msg).map_err(|e| {
            let line = msg[..e.valid_up_to()]
                .iter()
                .filter(|&&c| c == b'\n')
                .count()
                + 1;
            mal(line, "not valid UTF-8")
        })?;
        if let Some(pos) = s.find(|c: char| (c as u32) < 0x20 && c != '\n') {
            let line = s[..pos].matches('\n').count() + 1;
            return Err(mal(line, "control character other than newline"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| mal(0, "no blank line before the signatures"))?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        let first_sig_line = text.matches('\n').count() + 2;
        if sigs.is_empty() {
            return Err(mal(first_sig_line, "no signature lines"));
        }
        if !sigs.ends_with('\n') {
            return Err(mal(
                first_sig_line + sigs.matches('\n').count(),
                "last signature line has no final newline",
            ));
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(mal(0, "more than 100 signatures"));
        }
        let mut signatures = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let at = first_sig_line + i;
            let rest = l
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| mal(at, "signature line does not start with \"— \""))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| mal(at, "signature line has no space after the key name"))?;
            if !valid_key_name(name) {
                return Err(mal(at, "key name is empty or has a space or +"));
            }
            let raw = SIG_B64
                .decode(b64)
                .map_err(|_| mal(at, "signature is not valid base64"))?;
            if raw.len() < 5 {
                return Err(mal(at, "signature is shorter than a key id and one byte"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                sig: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Checks the signatures made by `keys`. Signatures by other keys are ignored; a signature by
    /// a known key that fails refuses the whole note; at least one known signature must verify.
    /// A key that signed twice is reported once.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<Verified>, NoteError> {
        let out = self.verify_known(keys)?;
        if out.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(out)
    }

    /// Like [`Note::verify`], but a note with no signature by any of `keys` gives an empty list
    /// instead of an error (for counting witness cosignatures).
    pub fn verify_known(&self, keys: &[VerifierKey]) -> Result<Vec<Verified>, NoteError> {
        let mut out: Vec<Verified> = Vec::new();
        for s in &self.signatures {
            let Some(k) = keys.iter().position(|k| k.name == s.name && k.id == s.id) else {
                continue;
            };
            let key = &keys[k];
            let (ok, timestamp) = match key.alg {
                ALG_ED25519 => (key.verify_ed25519(self.text.as_bytes(), &s.sig), None),
                ALG_COSIGNATURE_V1 if s.sig.len() == 72 => {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&s.sig[..8]);
                    let ts = u64::from_be_bytes(t);
                    let msg = cosignature_message(&self.text, ts);
                    (
                        ts <= i64::MAX as u64 && key.verify_ed25519(msg.as_bytes(), &s.sig[8..]),
                        Some(ts),
                    )
                }
                ALG_COSIGNATURE_V1 => (false, None),
                alg => {
                    return Err(NoteError::UnsupportedType {
                        name: s.name.clone(),
                        alg,
                    })
                }
            };
            if !ok {
                return Err(NoteError::BadSignature {
                    name: s.name.clone(),
                    id: format!("{:08x}", s.id),
                });
            }
            if !out.iter().any(|v| v.key == k) {
                out.push(Verified { key: k, timestamp });
            }
        }
        Ok(out)
    }

    /// The whole note: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    /// Signs `text` with each signer, in order. The text must be valid note text ending in a newline.
    pub fn sign(text: &str, signers: &[&SignerKey]) -> Result<Note, NoteError> {
        check_text(text)?;
        Ok(Note {
            text: text.to_string(),
            signatures: signers.iter().map(|k| k.sign_note(text)).collect(),
        })
    }
}

/// Checks that `text` can be the text of a signed note.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::BadText("text does not end in a newline".into()));
    }
    if text == "\n" || text.ends_with("\n\n") {
        return Err(NoteError::BadText("text ends with a blank line".into()));
    }
    if text.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(NoteError::BadText(
            "text contains a control character".into(),
        ));
    }
    Ok(())
}
