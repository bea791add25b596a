//! Conformance against data published by other implementations, read in place from
//! `../shared/vectors/tlog` (see that folder's README for the origin of every file).

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use base64::Engine as _;
use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint, TlogProof};
use nospy_tlog::hash::{leaf_hash, node_hash, Hash};
use nospy_tlog::merkle::{self, MemoryTree, NodeSource};
use nospy_tlog::note::{Note, NoteError, SignerKey, VerifierKey, ALG_COSIGNATURE_V1};
use nospy_tlog::tile::{self, TileId};
use nospy_tlog::{LogIndex, TreeSize};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/tlog")
}

fn json(rel: &str) -> Value {
    let p = vectors().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Decodes base64; text that is not base64 decodes to a value no hash can equal (the vectors
/// include such garbage on purpose).
fn b64(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|_| {
            eprintln!("not base64, kept as an invalid hash: {s:?}");
            vec![0xff]
        })
}

fn hex(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// Proof elements that are not 32 bytes cannot be a proof: verification must fail. A `null`
/// proof (Go's nil slice) is the empty proof.
fn proof_hashes(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        v => v
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_slice(&b64(h)))
            .collect(),
    }
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let mut files = Vec::new();
    json_files(
        &vectors().join("transparency-dev-merkle/testdata/inclusion"),
        &mut files,
    );
    assert!(
        files.len() > 90,
        "found only {} inclusion vectors",
        files.len()
    );
    let (mut pass, mut fail) = (0, 0);
    for f in &files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match proof_hashes(&v["proof"]) {
            None => Err("proof element is not 32 bytes".to_string()),
            Some(proof) => merkle::verify_inclusion(
                LogIndex(v["leafIdx"].as_u64().unwrap()),
                TreeSize(v["treeSize"].as_u64().unwrap()),
                &b64(&v["leafHash"]),
                &proof,
                &b64(&v["root"]),
            )
            .map_err(|e| e.to_string()),
        };
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", f.display());
        if want_err {
            fail += 1
        } else {
            pass += 1
        }
    }
    eprintln!("inclusion vectors: {pass} valid, {fail} invalid, all as expected");
    assert!(pass >= 5 && fail >= 80);
}

#[test]
fn transparency_dev_consistency_vectors() {
    let mut files = Vec::new();
    json_files(
        &vectors().join("transparency-dev-merkle/testdata/consistency"),
        &mut files,
    );
    assert!(
        files.len() > 60,
        "found only {} consistency vectors",
        files.len()
    );
    for f in &files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match proof_hashes(&v["proof"]) {
            None => Err("proof element is not 32 bytes".to_string()),
            Some(proof) => merkle::verify_consistency(
                TreeSize(v["size1"].as_u64().unwrap()),
                TreeSize(v["size2"].as_u64().unwrap()),
                &proof,
                &b64(&v["root1"]),
                &b64(&v["root2"]),
            )
            .map_err(|e| e.to_string()),
        };
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", f.display());
    }
}

#[test]
fn generated_proofs_match_the_published_happy_paths() {
    // Our generator must produce exactly the proofs transparency-dev published for the reference
    // tree, not merely proofs that our own verifier accepts.
    let t = reference_tree();
    for dir in ["0", "1", "2", "3", "4"] {
        let v = json(&format!(
            "transparency-dev-merkle/testdata/inclusion/{dir}/happy-path.json"
        ));
        let (i, n) = (
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
        );
        let want: Vec<Hash> = proof_hashes(&v["proof"]).unwrap();
        assert_eq!(
            merkle::inclusion_proof(&t, LogIndex(i), TreeSize(n)).unwrap(),
            want,
            "inclusion {i} in {n}"
        );
        let v = json(&format!(
            "transparency-dev-merkle/testdata/consistency/{dir}/happy-path.json"
        ));
        let (a, b) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        let want: Vec<Hash> = proof_hashes(&v["proof"]).unwrap();
        assert_eq!(
            merkle::consistency_proof(&t, TreeSize(a), TreeSize(b)).unwrap(),
            want,
            "consistency {a} to {b}"
        );
    }
}

fn reference_tree() -> MemoryTree {
    let v = json("rfc6962-reference-tree/rfc6962-8-leaves.json");
    let mut t = MemoryTree::new();
    for l in v["leaf_inputs_hex"].as_array().unwrap() {
        t.push(leaf_hash(
            &nospy_tlog::hex::decode(l.as_str().unwrap()).unwrap(),
        ));
    }
    t
}

#[test]
fn rfc6962_reference_tree_roots_nodes_and_hasher() {
    let v = json("rfc6962-reference-tree/rfc6962-8-leaves.json");
    let t = reference_tree();
    for (size, want) in v["root_hashes_by_size_0_to_8"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            merkle::root(&t, TreeSize(size as u64)).unwrap(),
            hex(want),
            "root of size {size}"
        );
    }
    for (level, nodes) in v["node_hashes_by_level"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (i, want) in nodes.as_array().unwrap().iter().enumerate() {
            assert_eq!(t.node(level as u8, i as u64).unwrap(), hex(want));
        }
    }
    let g = &v["hasher_goldens"];
    assert_eq!(Hash::EMPTY_ROOT, hex(&g["empty_root"]));
    assert_eq!(leaf_hash(b""), hex(&g["leaf('')"]));
    assert_eq!(leaf_hash(b"L123456"), hex(&g["leaf('L123456')"]));
    let mut l = [0u8; 32];
    let mut r = [0u8; 32];
    l[..4].copy_from_slice(b"N123");
    r[..4].copy_from_slice(b"N456");
    // The golden hashes the raw strings, not 32-byte values: check through the same formula.
    let mut buf = vec![1u8];
    buf.extend_from_slice(b"N123N456");
    assert_eq!(
        nospy_tlog::hash::sha256(&buf),
        hex(&g["node('N123','N456')"])
    );
    assert_ne!(node_hash(&Hash(l), &Hash(r)), Hash::EMPTY_ROOT);
}

#[test]
fn sigsum_inclusion_vectors() {
    for (file, valid) in [
        ("sigsum-rs/inclusion-valid.json", true),
        ("sigsum-rs/inclusion-invalid.json", false),
    ] {
        for (k, v) in json(file).as_array().unwrap().iter().enumerate() {
            let r = match proof_hashes(&v["inclusion_path"]) {
                None => Err(()),
                Some(p) => merkle::verify_inclusion(
                    LogIndex(v["leaf_index"].as_u64().unwrap()),
                    TreeSize(v["tree_size"].as_u64().unwrap()),
                    &b64(&v["leaf_hash"]),
                    &p,
                    &b64(&v["root_hash"]),
                )
                .map_err(|_| ()),
            };
            assert_eq!(r.is_ok(), valid, "{file} case {k}");
        }
    }
}

#[test]
fn go_note_golden_vector() {
    let v = json("go-sumdb/note-and-tlog-vectors.json");
    let signer = SignerKey::parse(v["signer_key_PeterNeumann"].as_str().unwrap()).unwrap();
    let vkey = VerifierKey::parse(v["verifier_key_PeterNeumann"].as_str().unwrap()).unwrap();
    assert_eq!(signer.verifier(), vkey);
    assert_eq!(
        vkey.to_string(),
        v["verifier_key_PeterNeumann"].as_str().unwrap()
    );
    assert_eq!(
        signer.to_private_string().as_str(),
        v["signer_key_PeterNeumann"].as_str().unwrap()
    );
    let text = v["note_text"].as_str().unwrap();
    let golden = v["signed_note_PeterNeumann"].as_str().unwrap();
    // Ed25519 is deterministic: re-signing reproduces the golden note byte for byte.
    assert_eq!(Note::sign(text, &[&signer]).unwrap().to_text(), golden);
    let note = Note::parse(golden.as_bytes()).unwrap();
    assert_eq!(note.verify(std::slice::from_ref(&vkey)).unwrap().len(), 1);
    // A second signer: Enoch's line verifies with Enoch's key; Peter's key ignores it.
    let enoch = VerifierKey::parse(v["verifier_key_EnochRoot"].as_str().unwrap()).unwrap();
    let both = format!("{golden}{}", v["sig_line_EnochRoot"].as_str().unwrap());
    let note = Note::parse(both.as_bytes()).unwrap();
    assert_eq!(
        note.verify(&[vkey.clone(), enoch.clone()]).unwrap().len(),
        2
    );
    assert_eq!(note.verify(std::slice::from_ref(&enoch)).unwrap().len(), 1);
    // Unknown keys only: refused.
    let other = SignerKey::from_seed("someone.else", [7; 32])
        .unwrap()
        .verifier();
    assert_eq!(note.verify(&[other]), Err(NoteError::NoKnownSignature));
    // A tampered text fails with the known key.
    let tampered = golden.replacen("cryptography", "cryptographY", 1);
    let e = Note::parse(tampered.as_bytes())
        .unwrap()
        .verify(&[vkey])
        .unwrap_err();
    assert!(matches!(e, NoteError::BadSignature { .. }), "{e}");
    for bad in v["bad_vkeys_must_fail"].as_array().unwrap() {
        assert!(
            VerifierKey::parse(bad.as_str().unwrap()).is_err(),
            "{bad} must be refused"
        );
    }
    // The sumdb tree note golden is a checkpoint in all but name.
    let g = &v["tlog_tree_note_golden"];
    let cp = Checkpoint::parse(g["text"].as_str().unwrap()).unwrap();
    assert_eq!(cp.size, g["N"].as_u64().unwrap());
    assert_eq!(cp.root, leaf_hash(b"hello world"));
    assert_eq!(cp.to_text(), g["text"].as_str().unwrap());
}

#[test]
fn go_malformed_note_rules() {
    let v = json("go-sumdb/note-and-tlog-vectors.json");
    let golden = v["signed_note_PeterNeumann"].as_str().unwrap();
    let text = v["note_text"].as_str().unwrap();
    let sig_line = golden
        .strip_prefix(text)
        .unwrap()
        .strip_prefix('\n')
        .unwrap();
    let many: String = sig_line.repeat(101);
    let cases = [
        ("text only", text.to_string()),
        ("text and blank line", format!("{text}\n")),
        (
            "no final newline",
            golden.strip_suffix('\n').unwrap().to_string(),
        ),
        ("leading 0x01", format!("\x01{golden}")),
        (
            "key name with a space",
            golden.replace("PeterNeumann", "Peter Neumann"),
        ),
        ("line after signatures", format!("{golden}hello\n")),
        ("101 signatures", format!("{text}\n{many}")),
    ];
    for (what, note) in cases {
        assert!(
            Note::parse(note.as_bytes()).is_err(),
            "{what}: should be malformed"
        );
    }
    assert!(
        Note::parse(b"\xffhello\n\n\xe2\x80\x94 a AAAAAAA=\n").is_err(),
        "invalid UTF-8"
    );
    let hundred: String = sig_line.repeat(100);
    assert!(Note::parse(format!("{text}\n{hundred}").as_bytes()).is_ok());
}

#[test]
fn c2sp_signed_note_example_and_formats() {
    let v = json("c2sp-spec-examples/examples.json");
    let k = VerifierKey::parse(v["signed_note_vkey"].as_str().unwrap()).unwrap();
    let n = Note::parse(v["signed_note"].as_str().unwrap().as_bytes()).unwrap();
    n.verify(&[k]).unwrap();
    let cp = v["checkpoint_with_cosignature_format_only"]
        .as_str()
        .unwrap();
    let sc = SignedCheckpoint::parse(cp.as_bytes()).unwrap();
    assert_eq!(sc.checkpoint.size, 20852163);
    assert_eq!(sc.note.signatures.len(), 2);
    assert_eq!(sc.to_text(), cp);
    let p = v["tlog_proof_format_only"].as_str().unwrap();
    let proof = TlogProof::parse(p).unwrap();
    assert_eq!(proof.index, 73894);
    assert_eq!(proof.proof.len(), 5);
    assert!(proof.extra.is_some());
    assert_eq!(proof.to_text(), p);
    let msg = nospy_tlog::note::cosignature_message(&sc.note.text, 1679315147);
    assert_eq!(
        msg,
        v["cosignature_v1_signed_message_example"].as_str().unwrap()
    );
}

#[test]
fn transparency_dev_vkeys() {
    let v = json("transparency-dev-formats/vkeys-and-rfc6962.json");
    for k in v["vkeys"].as_array().unwrap() {
        let s = k["vkey"].as_str().unwrap();
        let r = VerifierKey::parse(s);
        if s.starts_with("test+5893dc2c+") {
            let e = r.expect_err("the ML-DSA key whose id does not match must be refused");
            assert!(e.to_string().contains("31236897"), "{e}");
        } else {
            let key = r.unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(key.to_string(), s);
        }
    }
    // The Rome checkpoint's signature is a static-ct-api one (0x05): it parses, and with its key
    // nospy says plainly that it cannot verify that type rather than passing or ignoring it.
    let sc = SignedCheckpoint::parse(v["rome_checkpoint"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(sc.checkpoint.size, 115474666);
    let rome = VerifierKey::parse(v["vkeys"][4]["vkey"].as_str().unwrap()).unwrap();
    let e = sc.note.verify(&[rome]).unwrap_err();
    assert!(
        matches!(e, NoteError::UnsupportedType { alg: 0x05, .. }),
        "{e}"
    );
}

#[test]
fn witness_network_log_lists_parse() {
    let mut n = 0;
    for f in [
        "witness-network/log-list.1",
        "witness-network/log-list-10qps-4klogs.1",
        "witness-network/log-list-100qps-40klogs.1",
    ] {
        for line in std::fs::read_to_string(vectors().join(f)).unwrap().lines() {
            if let Some(k) = line.strip_prefix("vkey ") {
                VerifierKey::parse(k).unwrap_or_else(|e| panic!("{f}: {k}: {e}"));
                n += 1;
            }
        }
    }
    assert!(n >= 21, "only {n} keys");
}

#[test]
fn sunlight_cosignatures_verify() {
    let dir = vectors().join("sunlight-skylight/witness");
    let witness = VerifierKey::parse(
        "witness.example.org+b8a2cf20+BFLN3yikSfFkVAJtrnh/CiY3Zozkoy7clp+P7XB28qUN",
    )
    .unwrap();
    assert_eq!(witness.alg(), ALG_COSIGNATURE_V1);
    let sub = "000de184301123b9278c086a7d9f68c9577e83872224c197058fd90784ea9706";
    let cp = std::fs::read(dir.join(sub).join("checkpoint")).unwrap();
    let sc = SignedCheckpoint::parse(&cp).unwrap();
    let cos = sc.cosignatures(std::slice::from_ref(&witness)).unwrap();
    assert_eq!(cos.len(), 1);
    assert_eq!(cos[0].timestamp, Some(1767139200));
    // The mirror: a real 300-leaf tree whose tiles we read and whose root we recompute.
    let mirror = VerifierKey::parse(
        "mirror.example.org+3fb148ef+BAAjjch9GyYz0sJsJx7ALhbdAtz2ov0unbzSl1vMp94O",
    )
    .unwrap();
    let mdir = dir.join("mirror").join(sub);
    let sc = SignedCheckpoint::parse(&std::fs::read(mdir.join("checkpoint")).unwrap()).unwrap();
    assert_eq!(sc.cosignatures(&[mirror]).unwrap().len(), 1);
    let mut t = MemoryTree::new();
    for (path, w) in [("tile/0/000", 256u16), ("tile/0/001.p/44", 44)] {
        let (id, bundle) = TileId::parse(path).unwrap();
        assert!(!bundle && id.width == w);
        for h in tile::parse_tile(&std::fs::read(mdir.join(path)).unwrap(), w).unwrap() {
            t.push(h);
        }
    }
    for i in 0..300u64 {
        assert_eq!(
            t.node(0, i).unwrap(),
            leaf_hash(format!("record {i}").as_bytes())
        );
    }
    assert_eq!(t.root(), sc.checkpoint.root);
    let l1 = tile::parse_tile(&std::fs::read(mdir.join("tile/1/000.p/1")).unwrap(), 1).unwrap();
    assert_eq!(l1[0], t.node(8, 0).unwrap());
}

#[test]
fn tile_paths() {
    let v = json("tile-paths.json");
    for c in v["c2sp_tile_path"].as_array().unwrap() {
        let id = TileId {
            level: c["level"].as_u64().unwrap() as u8,
            index: c["index"].as_u64().unwrap(),
            width: c["width"].as_u64().unwrap() as u16,
        };
        let path = c["path"].as_str().unwrap();
        assert_eq!(id.path(), path);
        assert_eq!(TileId::parse(path).unwrap(), (id, false));
    }
    for c in v["c2sp_entries_path"].as_array().unwrap() {
        let id = TileId {
            level: 0,
            index: c["index"].as_u64().unwrap(),
            width: c["width"].as_u64().unwrap() as u16,
        };
        let path = c["path"].as_str().unwrap();
        assert_eq!(id.entries_path(), path);
        assert_eq!(TileId::parse(path).unwrap(), (id, true));
    }
    for c in v["entries_path_for_log_index"].as_array().unwrap() {
        let got = tile::entries_path_for_index(
            c["seq"].as_u64().unwrap(),
            c["log_size"].as_u64().unwrap(),
        );
        assert_eq!(got.as_deref(), c["path"].as_str());
    }
    for c in v["go_sumdb_tile_path_with_height"].as_array().unwrap() {
        if let Some(bad) = c["invalid"].as_str() {
            assert!(tile::parse_sumdb_tile_path(bad).is_err(), "{bad}");
            continue;
        }
        let (h, l, n, w) = (
            c["H"].as_u64().unwrap() as u8,
            c["L"].as_i64().unwrap() as i8,
            c["N"].as_u64().unwrap(),
            c["W"].as_u64().unwrap() as u16,
        );
        let path = c["path"].as_str().unwrap();
        assert_eq!(tile::sumdb_tile_path(h, l, n, w), path);
        assert_eq!(tile::parse_sumdb_tile_path(path).unwrap(), (h, l, n, w));
    }
    for c in v["c2sp_tiles_for_tree_size"].as_array().unwrap() {
        let tiles = tile::tiles_for_size(c["size"].as_u64().unwrap());
        let full = |l: u8| tiles.iter().filter(|t| t.level == l && t.is_full()).count() as u64;
        assert_eq!(full(0), c["full_level0"].as_u64().unwrap());
        assert_eq!(full(1), c["full_level1"].as_u64().unwrap());
        let partial: Vec<(String, u64)> = tiles
            .iter()
            .filter(|t| !t.is_full())
            .map(|t| (t.level.to_string(), t.width as u64))
            .collect();
        let want: Vec<(String, u64)> = c["partial"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(partial, want);
    }
}

#[test]
fn cosign_and_verify_round_trip() {
    let log = SignerKey::from_seed("log.example/one", [1; 32]).unwrap();
    let w = SignerKey::from_seed("witness.example/a", [2; 32]).unwrap();
    let cp = Checkpoint {
        origin: "log.example/one".into(),
        size: 3,
        root: leaf_hash(b"x"),
        extensions: vec![],
    };
    let mut sc = cp.sign(&log).unwrap();
    sc.note
        .signatures
        .push(w.cosign(&sc.note.text, 1_700_000_000));
    let text = sc.to_text();
    let back = SignedCheckpoint::open(text.as_bytes(), &log.verifier()).unwrap();
    let got = back.cosignatures(&[w.cosigner_verifier()]).unwrap();
    assert_eq!(got[0].timestamp, Some(1_700_000_000));
    // The witness's plain (0x01) key is another key: the cosignature does not count for it.
    assert!(back.cosignatures(&[w.verifier()]).unwrap().is_empty());
    // A cosignature moved to another checkpoint fails.
    let other = Checkpoint { size: 4, ..cp }.sign(&log).unwrap();
    let forged = format!("{}{}", other.to_text(), sc.note.signatures[1].line());
    let f = SignedCheckpoint::open(forged.as_bytes(), &log.verifier()).unwrap();
    assert!(f.cosignatures(&[w.cosigner_verifier()]).is_err());
}
