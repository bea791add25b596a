//! The readers' bounds: what they allocate follows what was read, never what a header declares,
//! and the total across members is capped; arithmetic on header fields cannot overflow.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_diff::{compare_files, Error, Limits};
use std::io::Write;

/// A zip archive of deflated members, each `(name, data, declared uncompressed size)`.
fn zip(members: &[(&str, Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, declared) in members {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        let packed = enc.finish().unwrap();
        let local = out.len() as u32;
        let header = |sig: &[u8], central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(sig);
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&8u16.to_le_bytes()); // deflate
            h.extend_from_slice(&[0; 4]); // time, date
            h.extend_from_slice(&[0; 4]); // crc (not checked)
            h.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            h.extend_from_slice(&declared.to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
                h.extend_from_slice(&[0; 4]); // external attributes
                h.extend_from_slice(&local.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend_from_slice(&header(b"PK\x03\x04", false));
        out.extend_from_slice(&packed);
        central.extend_from_slice(&header(b"PK\x01\x02", true));
    }
    let dir = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&dir.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out
}

fn small() -> Limits {
    Limits {
        member: 1 << 20,
        total: 2 << 20,
        depth: 4,
    }
}

/// Compares `a` with a copy whose last byte differs, so the readers open both.
fn against_altered(a: &[u8], limits: Limits) -> Result<nospy_diff::Report, Error> {
    let mut b = a.to_vec();
    let last = b.len() - 1;
    b[last] ^= 1;
    compare_files("x", a, &b, limits)
}

#[test]
fn a_zip_declaring_four_gibibytes_reserves_nothing_and_is_refused() {
    let z = zip(&[("big", vec![0; 10], u32::MAX)]);
    let e = against_altered(&z, Limits::default()).unwrap_err();
    assert!(
        matches!(e, Error::TooLarge { ref at, .. } if at == "x!big"),
        "{e}"
    );
}

#[test]
fn a_zip_bomb_is_read_only_as_far_as_it_declares() {
    // 64 MiB of zeros declared as 1,000 bytes: inflating stops after 1,001.
    let z = zip(&[("bomb", vec![0; 64 << 20], 1000)]);
    let e = against_altered(&z, small()).unwrap_err();
    assert!(
        matches!(e, Error::Malformed { ref problem, .. } if problem.contains("inflates to 1001 bytes")),
        "{e}"
    );
}

#[test]
fn a_member_over_the_member_limit_is_refused() {
    let z = zip(&[("m", vec![7; (1 << 20) + 1], (1 << 20) + 1)]);
    let e = against_altered(&z, small()).unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            at: "x!m".into(),
            limit: 1 << 20
        }
    );
}

#[test]
fn members_together_over_the_total_are_refused() {
    // Three members of 900 KiB: each within the member limit, together past the total of 2 MiB
    // (counted across both archives of the comparison).
    let m = |n| (n, vec![1; 900 << 10], 900 << 10);
    let z = zip(&[m("a"), m("b"), m("c")]);
    let e = against_altered(&z, small()).unwrap_err();
    assert!(
        matches!(e, Error::TooLarge { limit, .. } if limit == 2 << 20),
        "{e}"
    );
    // Within the limits, the same archives compare.
    let r = against_altered(&z, Limits::default()).unwrap();
    assert!(!r.identical);
}

#[test]
fn a_gzip_stream_expanding_past_the_member_limit_is_refused() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0; 4 << 20]).unwrap();
    let gz = enc.finish().unwrap();
    let e = against_altered(&gz, small()).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[test]
fn header_fields_at_their_maximum_are_errors_not_overflows() {
    // An ELF whose section header table and name table sit at the end of the address space.
    let mut elf = vec![0u8; 128];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[0x28..0x30].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    let e = against_altered(&elf, small()).unwrap_err();
    assert!(
        matches!(e, Error::Malformed { ref problem, .. } if problem.contains("ELF")),
        "{e}"
    );

    // A cpio header whose name size is the largest 8 hex digits allow.
    let mut cpio = b"070701".to_vec();
    cpio.extend_from_slice(&[b'0'; 104]);
    cpio[94..102].copy_from_slice(b"FFFFFFFF");
    cpio.extend_from_slice(b"a\0");
    let e = against_altered(&cpio, small()).unwrap_err();
    assert!(
        matches!(e, Error::Malformed { ref problem, .. } if problem.contains("runs past the end")),
        "{e}"
    );

    // A tar header declaring the largest size 11 octal digits hold (8 GiB).
    let mut h = [0u8; 512];
    h[0] = b'a';
    h[124..135].copy_from_slice(b"77777777777");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&c| c as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut tar = h.to_vec();
    tar.extend_from_slice(&[0; 1024]);
    let e = against_altered(&tar, small()).unwrap_err();
    assert!(
        matches!(e, Error::Malformed { ref problem, .. } if problem.contains("runs past the end")),
        "{e}"
    );
}

#[test]
fn a_summary_counts_each_kind_of_change() {
    let a = zip(&[("same", vec![1; 10], 10), ("old", vec![2; 10], 10)]);
    let b = zip(&[("same", vec![1; 10], 10), ("new", vec![3; 10], 10)]);
    let r = compare_files("fw.zip", &a, &b, Limits::default()).unwrap();
    let s = r.summary(1);
    assert_eq!(s.summary, "0 changed, 1 added, 1 removed");
    assert_eq!((s.total, s.differences.len()), (2, 1));
}
