//! `nospy diff` on real archive formats (written here byte by byte, as the formats define them)
//! and real ELF files, and on broken ones.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::io::Write;
use std::path::Path;

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&c| c as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(data).unwrap();
        let comp = d.finish().unwrap();
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&8u16.to_le_bytes()); // deflate
            v.extend_from_slice(&[0; 4]); // time, date
            v.extend_from_slice(&0u32.to_le_bytes()); // crc (not checked by the reader)
            v.extend_from_slice(&(comp.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&comp);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&[0; 4]); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn cpio(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8]| {
        let namez = format!("{name}\0");
        out.extend_from_slice(
            format!("070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}", 1, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, namez.len(), 0).as_bytes(),
        );
        out.extend_from_slice(namez.as_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    for (n, d) in members {
        entry(n, 0o100644, d);
    }
    entry("TRAILER!!!", 0, b"");
    out
}

fn diff(a: &Path, b: &Path) -> (i32, serde_json::Value) {
    let r = run(&["diff", "--json", s(a), s(b)]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    (r.code, serde_json::from_str(&r.stdout).unwrap())
}

fn paths(v: &serde_json::Value) -> Vec<String> {
    v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["change"].as_str().unwrap(),
                d["path"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn archives_are_compared_member_by_member() {
    let t = tempfile::tempdir().unwrap();
    let inner_a = zip(&[("etc/config", b"debug=0\n"), ("bin/agent", b"agent v1")]);
    let inner_b = zip(&[
        ("etc/config", b"debug=1\n"),
        ("bin/agent", b"agent v1"),
        ("bin/backdoor", b"!"),
    ]);
    let a = tar(&[
        ("README", b"same"),
        ("rootfs.zip", &inner_a),
        ("boot.cpio", &cpio(&[("init", b"#!/bin/sh\n")])),
    ]);
    let b = tar(&[
        ("README", b"same"),
        ("rootfs.zip", &inner_b),
        ("boot.cpio", &cpio(&[("init", b"#!/bin/sh\nnc -l 4444\n")])),
        ("extra", b"x"),
    ]);
    for (name, da, db) in [
        ("fw.tar", a.clone(), b.clone()),
        ("fw.tar.gz", gzip(&a), gzip(&b)),
    ] {
        let (pa, pb) = (
            t.path().join(format!("a-{name}")),
            t.path().join(format!("b-{name}")),
        );
        std::fs::write(&pa, &da).unwrap();
        std::fs::write(&pb, &db).unwrap();
        let (code, v) = diff(&pa, &pb);
        assert_eq!(code, 1);
        let got = paths(&v);
        let want = [
            format!("changed a-{name}!boot.cpio!init"),
            format!("changed a-{name}!rootfs.zip!etc/config"),
            format!("added a-{name}!rootfs.zip!bin/backdoor"),
            format!("added a-{name}!extra"),
        ];
        for w in &want {
            assert!(got.contains(w), "{w} missing from {got:?}");
        }
        assert_eq!(got.len(), 4, "{got:?}");
        // The same file against itself: identical, exit 0.
        assert_eq!(diff(&pa, &pa).0, 0);
    }
}

#[test]
fn directories_and_elf_sections() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("lib")).unwrap();
        std::fs::write(d.join("lib/same"), b"same").unwrap();
    }
    std::fs::write(a.join("gone"), b"x").unwrap();
    std::fs::copy("/bin/true", a.join("lib/tool")).unwrap();
    std::fs::copy("/bin/false", b.join("lib/tool")).unwrap();
    let (code, v) = diff(&a, &b);
    assert_eq!(code, 1);
    let got = paths(&v);
    assert!(got.contains(&"removed gone".to_string()), "{got:?}");
    assert!(
        got.iter()
            .any(|p| p.starts_with("changed lib/tool: section .")),
        "ELF sections expected: {got:?}"
    );
    assert!(!got.iter().any(|p| p.contains("lib/same")), "{got:?}");
}

#[test]
fn broken_archives_are_errors_that_name_the_place() {
    let t = tempfile::tempdir().unwrap();
    let good = tar(&[("a", b"hello")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.tar", good[..514].to_vec(), "runs past the end"),
        (
            "badsum.tar",
            {
                let mut g = good.clone();
                g[0] = b'b';
                g
            },
            "checksum",
        ),
        ("short.zip", zip(&[("a", b"hello")])[..40].to_vec(), "zip"),
        (
            "cut.cpio",
            cpio(&[("a", b"hello world")])[..120].to_vec(),
            "cpio",
        ),
        (
            "elf",
            {
                let mut e = std::fs::read("/bin/true").unwrap();
                let n = e.len();
                e[0x28..0x30].copy_from_slice(&(n as u64 * 4).to_le_bytes());
                e
            },
            "ELF section header table at byte",
        ),
    ];
    for (name, data, why) in cases {
        let (pa, pb) = (
            t.path().join(format!("a-{name}")),
            t.path().join(format!("b-{name}")),
        );
        std::fs::write(&pa, &data).unwrap();
        let mut other = data.clone();
        other.push(0);
        if name == "elf" {
            other = std::fs::read("/bin/false").unwrap();
        }
        std::fs::write(&pb, &other).unwrap();
        let r = run(&["diff", s(&pa), s(&pb)]);
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
        assert_eq!(r.code, 2, "{name}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(why) && r.stderr.contains(name),
            "{name}: want {why:?}: {}",
            r.stderr
        );
    }
}
