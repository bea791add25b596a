//! `nospy diff`: where two builds differ. Equal digests end it; otherwise directories, tar
//! (plain or gzip-compressed), zip, cpio (newc and odc) are compared member by member,
//! recursively into members that are archives themselves, and ELF files section by section.
//!
//! The archive readers here are small and strict: they read only what a comparison needs, bound
//! what they allocate, and turn anything malformed into an error naming the file and the place.

use anyhow::{bail, Context as _, Result};
use nospy_statement::predicate::{DiffSummary, Difference};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Largest input (or decompressed member) read into memory.
const MAX_BYTES: u64 = 2 << 30;
/// How deep archives inside archives are opened.
const MAX_DEPTH: usize = 4;

/// The result of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// True when the inputs are identical (same bytes, or same tree of same files).
    pub identical: bool,
    /// What differs, in path order.
    pub differences: Vec<Difference>,
    /// The two top-level digests (files only).
    pub digests: Option<(String, String)>,
}

impl Report {
    /// A summary for an attestation, keeping the first `limit` differences.
    pub fn summary(&self, limit: usize) -> DiffSummary {
        let (mut a, mut r, mut c) = (0, 0, 0);
        for d in &self.differences {
            match d.change.as_str() {
                "added" => a += 1,
                "removed" => r += 1,
                _ => c += 1,
            }
        }
        let summary = if self.differences.is_empty() {
            "the builds are identical".to_string()
        } else {
            format!("{c} changed, {a} added, {r} removed")
        };
        DiffSummary {
            summary,
            differences: self.differences.iter().take(limit).cloned().collect(),
            total: self.differences.len() as u64,
        }
    }
}

/// Compares two files or directories.
pub fn compare(a: &Path, b: &Path) -> Result<Report> {
    let mut diffs = Vec::new();
    match (a.is_dir(), b.is_dir()) {
        (true, true) => {
            let (ta, tb) = (read_dir_tree(a)?, read_dir_tree(b)?);
            compare_trees(&ta, &tb, "", 0, &mut diffs);
            Ok(Report {
                identical: diffs.is_empty(),
                differences: diffs,
                digests: None,
            })
        }
        (false, false) => {
            let (da, db) = (read_limited(a)?, read_limited(b)?);
            let (ha, hb) = (sha256_hex(&da), sha256_hex(&db));
            if ha != hb {
                let name = a
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                compare_bytes(&name, &da, &db, 0, &mut diffs)
                    .with_context(|| format!("comparing {} with {}", a.display(), b.display()))?;
                if diffs.is_empty() {
                    diffs.push(Difference {
                        path: name,
                        change: "changed".into(),
                        detail: Some("the bytes differ".into()),
                    });
                }
            }
            Ok(Report {
                identical: ha == hb,
                differences: diffs,
                digests: Some((ha, hb)),
            })
        }
        _ => bail!(
            "{} and {} are not both files or both directories",
            a.display(),
            b.display()
        ),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    nospy_tlog::hex::encode(&Sha256::digest(b))
}

fn read_limited(p: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut v = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut v)
        .with_context(|| format!("reading {}", p.display()))?;
    if v.len() as u64 > MAX_BYTES {
        bail!("{} is over 2 GiB", p.display());
    }
    Ok(v)
}

/// A tree of members: path to contents (`None` for a directory).
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn read_dir_tree(root: &Path) -> Result<Tree> {
    let mut t = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.is_dir() {
                t.insert(rel, None);
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p)?;
                t.insert(
                    rel,
                    Some(format!("symlink -> {}", target.display()).into_bytes()),
                );
            } else {
                t.insert(rel, Some(read_limited(&p)?));
            }
        }
    }
    Ok(t)
}

fn compare_trees(a: &Tree, b: &Tree, prefix: &str, depth: usize, out: &mut Vec<Difference>) {
    let path = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}!{k}")
        }
    };
    for (k, va) in a {
        match b.get(k) {
            None => out.push(Difference {
                path: path(k),
                change: "removed".into(),
                detail: None,
            }),
            Some(vb) => match (va, vb) {
                (Some(x), Some(y)) if x != y => {
                    let before = out.len();
                    if compare_bytes(&path(k), x, y, depth + 1, out).is_err() || out.len() == before
                    {
                        out.truncate(before);
                        out.push(Difference {
                            path: path(k),
                            change: "changed".into(),
                            detail: Some(format!("{} bytes, was {}", y.len(), x.len())),
                        });
                    }
                }
                (None, Some(_)) | (Some(_), None) => out.push(Difference {
                    path: path(k),
                    change: "changed".into(),
                    detail: Some("file and directory".into()),
                }),
                _ => {}
            },
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(Difference {
            path: path(k),
            change: "added".into(),
            detail: None,
        });
    }
}

/// Looks inside two differing byte strings of the same kind; adds nothing if neither is a format
/// it knows (the caller then records a plain change).
fn compare_bytes(
    name: &str,
    a: &[u8],
    b: &[u8],
    depth: usize,
    out: &mut Vec<Difference>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let (a, b) = (gunzip_if(a)?, gunzip_if(b)?);
    if let (Some(ta), Some(tb)) = (archive(&a)?, archive(&b)?) {
        compare_trees(&ta, &tb, name, depth, out);
        return Ok(());
    }
    if is_elf(&a) && is_elf(&b) {
        let (sa, sb) = (elf_sections(&a)?, elf_sections(&b)?);
        for (k, ha) in &sa {
            match sb.get(k) {
                None => out.push(Difference {
                    path: format!("{name}: section {k}"),
                    change: "removed".into(),
                    detail: None,
                }),
                Some(hb) if hb != ha => out.push(Difference {
                    path: format!("{name}: section {k}"),
                    change: "changed".into(),
                    detail: None,
                }),
                _ => {}
            }
        }
        for k in sb.keys().filter(|k| !sa.contains_key(*k)) {
            out.push(Difference {
                path: format!("{name}: section {k}"),
                change: "added".into(),
                detail: None,
            });
        }
        if out.is_empty() {
            out.push(Difference {
                path: name.to_string(),
                change: "changed".into(),
                detail: Some("ELF headers or data outside sections differ".into()),
            });
        }
    }
    Ok(())
}

fn gunzip_if(b: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    if b.len() < 2 || b[0] != 0x1f || b[1] != 0x8b {
        return Ok(std::borrow::Cow::Borrowed(b));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut out)
        .context("gzip data is corrupt")?;
    if out.len() as u64 > MAX_BYTES {
        bail!("gzip data expands past 2 GiB");
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// The members of a tar, zip or cpio archive; `None` if `b` is none of these.
pub fn archive(b: &[u8]) -> Result<Option<Tree>> {
    if b.len() >= 4 && &b[..4] == b"PK\x03\x04" || b.len() >= 4 && &b[..4] == b"PK\x05\x06" {
        return zip(b).map(Some).context("zip archive");
    }
    if b.len() >= 6 && (&b[..6] == b"070701" || &b[..6] == b"070702" || &b[..6] == b"070707") {
        return cpio(b).map(Some).context("cpio archive");
    }
    if b.len() >= 512 && (&b[257..262] == b"ustar" || tar_checksum_ok(&b[..512])) {
        return tar(b).map(Some).context("tar archive");
    }
    Ok(None)
}

fn octal(field: &[u8]) -> Option<u64> {
    let s: String = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let Some(want) = octal(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                c as u64
            }
        })
        .sum();
    sum == want && h.iter().any(|&c| c != 0)
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).into_owned()
}

fn tar(b: &[u8]) -> Result<Tree> {
    let mut t = Tree::new();
    let mut off = 0usize;
    let mut long_name: Option<String> = None;
    while off + 512 <= b.len() {
        let h = &b[off..off + 512];
        if h.iter().all(|&c| c == 0) {
            break;
        }
        if !tar_checksum_ok(h) {
            bail!("header at byte {off}: bad checksum");
        }
        let size = octal(&h[124..136])
            .with_context(|| format!("header at byte {off}: size is not octal"))?;
        let data_start = off + 512;
        let data_end = data_start
            .checked_add(size as usize)
            .filter(|&e| e <= b.len())
            .with_context(|| format!("member at byte {off} runs past the end"))?;
        let data = &b[data_start..data_end];
        let typ = h[156];
        let mut name = cstr(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        match typ {
            b'L' => long_name = Some(cstr(data)),
            b'x' => {
                // A pax header: take `path=` if present.
                let text = String::from_utf8_lossy(data);
                long_name = text
                    .lines()
                    .find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_string()));
            }
            b'g' => {}
            b'5' => {
                t.insert(name.trim_end_matches('/').to_string(), None);
            }
            b'2' | b'1' => {
                t.insert(
                    name,
                    Some(format!("link -> {}", cstr(&h[157..257])).into_bytes()),
                );
            }
            _ => {
                t.insert(name, Some(data.to_vec()));
            }
        }
        off = data_start + (size as usize).div_ceil(512) * 512;
    }
    Ok(t)
}

fn le16(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .with_context(|| format!("truncated at byte {at}"))
}

fn le32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .with_context(|| format!("truncated at byte {at}"))
}

fn zip(b: &[u8]) -> Result<Tree> {
    // The end of central directory record: within the last 64 KiB + 22 bytes.
    let lo = b.len().saturating_sub(65_557);
    let eocd = (lo..b.len().saturating_sub(21))
        .rev()
        .find(|&i| &b[i..i + 4] == b"PK\x05\x06")
        .context("no end of central directory record")?;
    let count = le16(b, eocd + 10)? as usize;
    let mut p = le32(b, eocd + 16)? as usize;
    if p == 0xffff_ffff {
        bail!("zip64 archives are not supported");
    }
    let mut t = Tree::new();
    for i in 0..count {
        if b.get(p..p + 4) != Some(b"PK\x01\x02") {
            bail!(
                "central directory entry {} at byte {p} has a bad signature",
                i + 1
            );
        }
        let method = le16(b, p + 10)?;
        let csize = le32(b, p + 20)? as usize;
        let usize_ = le32(b, p + 24)? as u64;
        let (nlen, elen, clen) = (
            le16(b, p + 28)? as usize,
            le16(b, p + 30)? as usize,
            le16(b, p + 32)? as usize,
        );
        let local = le32(b, p + 42)? as usize;
        let name = String::from_utf8_lossy(
            b.get(p + 46..p + 46 + nlen)
                .context("entry name runs past the end")?,
        )
        .into_owned();
        p += 46 + nlen + elen + clen;
        if b.get(local..local + 4) != Some(b"PK\x03\x04") {
            bail!("{name}: local header at byte {local} has a bad signature");
        }
        let start = local + 30 + le16(b, local + 26)? as usize + le16(b, local + 28)? as usize;
        let data = b
            .get(start..start + csize)
            .with_context(|| format!("{name}: data runs past the end"))?;
        if name.ends_with('/') {
            t.insert(name.trim_end_matches('/').to_string(), None);
            continue;
        }
        if usize_ > MAX_BYTES {
            bail!("{name}: declares {usize_} bytes, over 2 GiB");
        }
        let content = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(usize_ as usize);
                flate2::read::DeflateDecoder::new(data)
                    .take(usize_ + 1)
                    .read_to_end(&mut out)
                    .with_context(|| format!("{name}: deflate data is corrupt"))?;
                if out.len() as u64 != usize_ {
                    bail!(
                        "{name}: inflates to {} bytes, the directory says {usize_}",
                        out.len()
                    );
                }
                out
            }
            m => bail!("{name}: compression method {m} is not supported (only stored and deflate)"),
        };
        t.insert(name, Some(content));
    }
    Ok(t)
}

fn hex_field(b: &[u8], at: usize, len: usize) -> Result<u64> {
    let s = std::str::from_utf8(
        b.get(at..at + len)
            .with_context(|| format!("header truncated at byte {at}"))?,
    )?;
    u64::from_str_radix(s, 16)
        .with_context(|| format!("header field {s:?} at byte {at} is not hex"))
}

fn oct_field(b: &[u8], at: usize, len: usize) -> Result<u64> {
    let s = std::str::from_utf8(
        b.get(at..at + len)
            .with_context(|| format!("header truncated at byte {at}"))?,
    )?;
    u64::from_str_radix(s, 8)
        .with_context(|| format!("header field {s:?} at byte {at} is not octal"))
}

fn cpio(b: &[u8]) -> Result<Tree> {
    let mut t = Tree::new();
    let mut off = 0usize;
    while off < b.len() {
        let magic = b.get(off..off + 6).context("truncated header")?;
        let (mode, namesize, filesize, hdr, align) = match magic {
            b"070701" | b"070702" => (
                hex_field(b, off + 14, 8)?,
                hex_field(b, off + 94, 8)? as usize,
                hex_field(b, off + 54, 8)? as usize,
                110,
                4,
            ),
            b"070707" => (
                oct_field(b, off + 18, 6)?,
                oct_field(b, off + 59, 6)? as usize,
                oct_field(b, off + 65, 11)? as usize,
                76,
                1,
            ),
            _ => bail!("bad header magic at byte {off}"),
        };
        let name_start = off + hdr;
        let name = cstr(
            b.get(name_start..name_start + namesize)
                .with_context(|| format!("name at byte {name_start} runs past the end"))?,
        );
        let data_start = (name_start + namesize).next_multiple_of(align);
        let data = b
            .get(data_start..data_start + filesize)
            .with_context(|| format!("{name}: data runs past the end"))?;
        if name == "TRAILER!!!" {
            break;
        }
        match mode & 0o170000 {
            0o040000 => {
                t.insert(name, None);
            }
            0o120000 => {
                t.insert(name, Some([b"symlink -> ".as_slice(), data].concat()));
            }
            _ => {
                t.insert(name, Some(data.to_vec()));
            }
        }
        off = (data_start + filesize).next_multiple_of(align);
    }
    Ok(t)
}

fn is_elf(b: &[u8]) -> bool {
    b.len() >= 16 && &b[..4] == b"\x7fELF"
}

/// Section name to the SHA-256 of its contents (`NOBITS` sections by size alone).
fn elf_sections(b: &[u8]) -> Result<BTreeMap<String, String>> {
    let class64 = match b[4] {
        1 => false,
        2 => true,
        c => bail!("ELF class {c} is neither 32- nor 64-bit"),
    };
    let le = match b[5] {
        1 => true,
        2 => false,
        d => bail!("ELF data encoding {d} is neither little- nor big-endian"),
    };
    let rd = |at: usize, n: usize| -> Result<u64> {
        let s = b
            .get(at..at + n)
            .with_context(|| format!("ELF truncated at byte {at}"))?;
        let mut v: u64 = 0;
        for i in 0..n {
            let byte = if le { s[n - 1 - i] } else { s[i] } as u64;
            v = (v << 8) | byte;
        }
        Ok(v)
    };
    let (shoff, shentsize, shnum, shstrndx) = if class64 {
        (
            rd(0x28, 8)? as usize,
            rd(0x3a, 2)? as usize,
            rd(0x3c, 2)? as usize,
            rd(0x3e, 2)? as usize,
        )
    } else {
        (
            rd(0x20, 4)? as usize,
            rd(0x2e, 2)? as usize,
            rd(0x30, 2)? as usize,
            rd(0x32, 2)? as usize,
        )
    };
    if shnum == 0 {
        return Ok(BTreeMap::new());
    }
    if shnum > 65_535 || shentsize < if class64 { 64 } else { 40 } || shstrndx >= shnum {
        bail!("ELF section header table is malformed");
    }
    let sect = |i: usize| -> Result<(u64, u64, u64, u64)> {
        let at = shoff
            .checked_add(i.checked_mul(shentsize).context("overflow")?)
            .context("section header offset overflows")?;
        Ok(if class64 {
            (
                rd(at, 4)?,
                rd(at + 4, 4)?,
                rd(at + 0x18, 8)?,
                rd(at + 0x20, 8)?,
            )
        } else {
            (
                rd(at, 4)?,
                rd(at + 4, 4)?,
                rd(at + 0x10, 4)?,
                rd(at + 0x14, 4)?,
            )
        })
    };
    let (_, _, stroff, strsize) = sect(shstrndx)?;
    let strtab = b
        .get(stroff as usize..(stroff + strsize) as usize)
        .context("section name table runs past the end")?;
    let mut out = BTreeMap::new();
    for i in 0..shnum {
        let (name_off, typ, off, size) = sect(i)?;
        let name = cstr(strtab.get(name_off as usize..).unwrap_or(b""));
        let name = if name.is_empty() {
            format!("#{i}")
        } else {
            name
        };
        let digest = if typ == 8 || typ == 0 {
            format!("size {size}")
        } else {
            let data = b
                .get(off as usize..off.saturating_add(size) as usize)
                .with_context(|| format!("section {name} runs past the end"))?;
            sha256_hex(data)
        };
        out.insert(name, digest);
    }
    Ok(out)
}
