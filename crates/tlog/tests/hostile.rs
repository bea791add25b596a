//! Every parser meets hostile input: each truncation and each single-byte change of valid
//! documents, and random bytes. Parsers must return errors, never panic; what parses must print
//! back to what it parsed.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint, TlogProof};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::note::{Note, SignerKey, VerifierKey};
use nospy_tlog::tile::{self, TileId};

fn documents() -> Vec<(&'static str, String)> {
    let log = SignerKey::from_seed("log.example/hostile", [3; 32]).unwrap();
    let w = SignerKey::from_seed("witness.example/w", [4; 32]).unwrap();
    let cp = Checkpoint {
        origin: "log.example/hostile".into(),
        size: 1234567,
        root: leaf_hash(b"root"),
        extensions: vec!["ext line".into()],
    };
    let mut sc = cp.sign(&log).unwrap();
    sc.note
        .signatures
        .push(w.cosign(&sc.note.text, 1_700_000_000));
    let proof = TlogProof {
        extra: Some(b"extra".to_vec()),
        index: 77,
        proof: vec![leaf_hash(b"a"), leaf_hash(b"b")],
        checkpoint: sc.to_text(),
    };
    vec![
        ("checkpoint", sc.to_text()),
        ("proof", proof.to_text()),
        ("vkey", log.verifier().to_string()),
        ("witness vkey", w.cosigner_verifier().to_string()),
        ("private key", log.to_private_string().to_string()),
        ("tile path", "tile/3/x001/x234/067.p/255".to_string()),
        ("bundle path", "tile/entries/x999/000".to_string()),
    ]
}

fn parse_all(text: &str) {
    let b = text.as_bytes();
    // Parse, print, parse again: the same value. (Printing is canonical, so a signature written
    // with non-zero trailing base64 bits, which parsing accepts as Go does, prints differently.)
    if let Ok(n) = Note::parse(b) {
        assert_eq!(
            Note::parse(n.to_text().as_bytes()).unwrap(),
            n,
            "note round trip"
        );
    }
    if let Ok(sc) = SignedCheckpoint::parse(b) {
        assert_eq!(
            SignedCheckpoint::parse(sc.to_text().as_bytes()).unwrap(),
            sc,
            "checkpoint round trip"
        );
        assert_eq!(
            Checkpoint::parse(&sc.note.text).unwrap().to_text(),
            sc.note.text
        );
    }
    if let Ok(p) = TlogProof::parse(text) {
        assert_eq!(
            TlogProof::parse(&p.to_text()).unwrap(),
            p,
            "proof round trip"
        );
    }
    if let Ok(k) = VerifierKey::parse(text) {
        assert_eq!(k.to_string(), text.trim(), "vkey round trip");
    }
    let _ = SignerKey::parse(text);
    if let Ok((id, bundle)) = TileId::parse(text) {
        let back = if bundle { id.entries_path() } else { id.path() };
        assert_eq!(back, text, "tile path round trip");
    }
    let _ = tile::parse_sumdb_tile_path(text);
    for w in [1u16, 2, 3, 255, 256] {
        let _ = tile::parse_bundle(b, w);
        let _ = tile::parse_tile(b, w);
    }
}

#[test]
fn truncations_and_byte_changes_never_panic() {
    let mut n = 0;
    for (_what, doc) in documents() {
        parse_all(&doc);
        let bytes = doc.as_bytes();
        for cut in 0..bytes.len() {
            if let Ok(s) = std::str::from_utf8(&bytes[..cut]) {
                parse_all(s);
                n += 1;
            }
            let _ = Note::parse(&bytes[..cut]);
        }
        for pos in 0..bytes.len() {
            for b in [0u8, b'\n', b' ', b'+', b'/', b'0', b'9', b'x', 0x7f, 0xff] {
                let mut m = bytes.to_vec();
                m[pos] = b;
                let _ = Note::parse(&m);
                if let Ok(s) = std::str::from_utf8(&m) {
                    parse_all(s);
                    n += 1;
                }
            }
        }
    }
    assert!(n > 10_000, "only {n} variants");
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x1234_5678_9abc_def0u64;
    let alphabet =
        b"tile/entries/x0123456789.p\n\n\xe2\x80\x94 +=AZaz-index c2sp.org/tlog-proof@v1";
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut v = Vec::with_capacity(len);
        let mut y = x;
        for _ in 0..len {
            y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
            v.push(alphabet[(y >> 33) as usize % alphabet.len()]);
        }
        let _ = Note::parse(&v);
        if let Ok(s) = std::str::from_utf8(&v) {
            parse_all(s);
        }
    }
}
