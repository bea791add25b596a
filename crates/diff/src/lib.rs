//! Where two builds differ (`nospy diff`, and the diff summary of a failing `nospy attest`):
//! bytes in, a report out, no I/O. Equal bytes end it; otherwise tar (plain or gzip-compressed),
//! zip and cpio (newc and odc) archives are compared member by member, recursively into members
//! that are archives themselves, and ELF files section by section. Directories are compared as
//! [`Tree`]s, which the caller reads.
//!
//! Tar archives are read with the `tar` crate and ELF section tables with `object`; zip and cpio
//! with small readers of nospy's own (the `zip` crate would bring a fast-changing major version and
//! a dozen crates for the two methods, stored and deflate, that firmware images use). Whatever
//! reads them, anything malformed becomes an [`Error`] naming the member and the place. What they
//! allocate is bounded by what was actually read, never by what a header declares (a zip that
//! declares a terabyte reserves nothing; a tar member's data must lie within the bytes given), and
//! by [`Limits`]: per member, and in total across every member copied or decompressed during one
//! comparison. Arithmetic on header fields is checked.

#![forbid(unsafe_code)]

use nospy_statement::predicate::{DiffSummary, Difference};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;

/// A tree of members: path to contents (`None` for a directory; a link is its target, as
/// `symlink -> target` or `link -> target`).
pub type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// What one comparison may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest member (or decompressed stream) held in memory, in bytes.
    pub member: u64,
    /// Largest total of bytes copied or decompressed out of archives during one comparison.
    pub total: u64,
    /// How deep archives inside archives are opened.
    pub depth: usize,
}

impl Default for Limits {
    /// 2 GiB a member, 4 GiB in all, archives four deep.
    fn default() -> Self {
        Limits {
            member: 2 << 30,
            total: 4 << 30,
            depth: 4,
        }
    }
}

/// Why a comparison could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An archive, a gzip stream or an ELF file is malformed: `at` names the member (its path
    /// inside the outer archives, separated by `!`) and `problem` the place and the fault.
    Malformed {
        /// The member.
        at: String,
        /// Where in it, and what is wrong.
        problem: String,
    },
    /// A member, or all members together, would take more than a [`Limits`] bound.
    TooLarge {
        /// The member.
        at: String,
        /// The bound that would be passed, in bytes.
        limit: u64,
    },
    /// A format feature these readers do not read: zip64, compression other than stored and
    /// deflate.
    Unsupported {
        /// The member.
        at: String,
        /// What is not supported.
        what: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed { at, problem } => write!(f, "{at}: {problem}"),
            Error::TooLarge { at, limit } => {
                write!(f, "{at}: over the limit of {limit} bytes held in memory")
            }
            Error::Unsupported { at, what } => write!(f, "{at}: {what} is not supported"),
        }
    }
}

impl std::error::Error for Error {}

fn malformed(at: &str, problem: impl Into<String>) -> Error {
    Error::Malformed {
        at: at.to_string(),
        problem: problem.into(),
    }
}

/// The result of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// True when the inputs are identical (same bytes, or same tree of same files).
    pub identical: bool,
    /// What differs, in path order.
    pub differences: Vec<Difference>,
    /// The two top-level SHA-256 digests, hex (files only).
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

/// Counts what one comparison has copied or decompressed, against [`Limits::total`].
struct Budget {
    limits: Limits,
    used: Cell<u64>,
}

impl Budget {
    fn new(limits: Limits) -> Self {
        Budget {
            limits,
            used: Cell::new(0),
        }
    }

    /// How many more bytes one member at `at` may take.
    fn room(&self) -> u64 {
        self.limits
            .member
            .min(self.limits.total.saturating_sub(self.used.get()))
    }

    /// Takes `n` bytes of the budget for member `at`.
    fn take(&self, at: &str, n: u64) -> Result<(), Error> {
        if n > self.room() {
            return Err(self.refuse(at, n));
        }
        self.used.set(self.used.get() + n);
        Ok(())
    }

    /// The error for `n` bytes more than [`Budget::room`]: the bound it passes.
    fn refuse(&self, at: &str, n: u64) -> Error {
        let limit = if n > self.limits.member {
            self.limits.member
        } else {
            self.limits.total
        };
        Error::TooLarge {
            at: at.to_string(),
            limit,
        }
    }

    /// Copies `data` out as member `at`.
    fn copy(&self, at: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.take(at, data.len() as u64)?;
        Ok(data.to_vec())
    }

    /// Reads `r` to its end as member `at`: at most [`Budget::room`] bytes, growing the buffer
    /// only as bytes arrive.
    fn read_all(&self, at: &str, r: impl Read, what: &str) -> Result<Vec<u8>, Error> {
        let room = self.room();
        let mut out = Vec::new();
        r.take(room.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| malformed(at, format!("{what} is corrupt: {e}")))?;
        self.take(at, out.len() as u64)?;
        Ok(out)
    }
}

/// Compares two files, `name` naming them in the report: their digests, and when they differ,
/// where (inside archives and ELF files).
pub fn compare_files(name: &str, a: &[u8], b: &[u8], limits: Limits) -> Result<Report, Error> {
    let (ha, hb) = (sha256_hex(a), sha256_hex(b));
    let mut diffs = Vec::new();
    if ha != hb {
        let budget = Budget::new(limits);
        compare_bytes(name, a, b, 0, &budget, &mut diffs)?;
        if diffs.is_empty() {
            diffs.push(Difference {
                path: name.to_string(),
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

/// Compares two trees of members (two directories, say), recursively into members that are
/// archives or ELF files.
pub fn compare_trees(a: &Tree, b: &Tree, limits: Limits) -> Result<Report, Error> {
    let mut diffs = Vec::new();
    let budget = Budget::new(limits);
    trees(a, b, "", 0, &budget, &mut diffs)?;
    Ok(Report {
        identical: diffs.is_empty(),
        differences: diffs,
        digests: None,
    })
}

fn sha256_hex(b: &[u8]) -> String {
    nospy_tlog::hex::encode(&Sha256::digest(b))
}

fn trees(
    a: &Tree,
    b: &Tree,
    prefix: &str,
    depth: usize,
    budget: &Budget,
    out: &mut Vec<Difference>,
) -> Result<(), Error> {
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
                    match compare_bytes(&path(k), x, y, depth + 1, budget, out) {
                        // A bound passed is the comparison's failure, not this member's.
                        Err(e @ Error::TooLarge { .. }) => return Err(e),
                        // A member that only looks like an archive is compared as bytes.
                        Err(_) => out.truncate(before),
                        Ok(()) => {}
                    }
                    if out.len() == before {
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
    Ok(())
}

/// Looks inside two differing byte strings of the same kind; adds nothing if neither is a format
/// it knows (the caller then records a plain change).
fn compare_bytes(
    name: &str,
    a: &[u8],
    b: &[u8],
    depth: usize,
    budget: &Budget,
    out: &mut Vec<Difference>,
) -> Result<(), Error> {
    if depth > budget.limits.depth {
        return Ok(());
    }
    let (a, b) = (gunzip_if(name, a, budget)?, gunzip_if(name, b, budget)?);
    if let (Some(ta), Some(tb)) = (archive_in(name, &a, budget)?, archive_in(name, &b, budget)?) {
        return trees(&ta, &tb, name, depth, budget, out);
    }
    if is_elf(&a) && is_elf(&b) {
        let (sa, sb) = (elf_sections(name, &a)?, elf_sections(name, &b)?);
        let before = out.len();
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
        if out.len() == before {
            out.push(Difference {
                path: name.to_string(),
                change: "changed".into(),
                detail: Some("ELF headers or data outside sections differ".into()),
            });
        }
    }
    Ok(())
}

fn gunzip_if<'a>(at: &str, b: &'a [u8], budget: &Budget) -> Result<Cow<'a, [u8]>, Error> {
    if !b.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(b));
    }
    let out = budget.read_all(at, flate2::read::MultiGzDecoder::new(b), "gzip data")?;
    Ok(Cow::Owned(out))
}

/// The members of a tar, zip or cpio archive; `None` if `b` is none of these. `at` names the
/// archive in errors; members are bounded by [`Limits::default`].
pub fn archive(at: &str, b: &[u8]) -> Result<Option<Tree>, Error> {
    archive_in(at, b, &Budget::new(Limits::default()))
}

fn archive_in(at: &str, b: &[u8], budget: &Budget) -> Result<Option<Tree>, Error> {
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") {
        return zip(at, b, budget).map(Some);
    }
    if b.starts_with(b"070701") || b.starts_with(b"070702") || b.starts_with(b"070707") {
        return cpio(at, b, budget).map(Some);
    }
    if b.len() >= 512 && (&b[257..262] == b"ustar" || tar_checksum_ok(&b[..512])) {
        return tar(at, b, budget).map(Some);
    }
    Ok(None)
}

/// `b[start..start + len]`, or `None` when it is not all there (or the end overflows).
fn span(b: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    b.get(start..end)
}

fn octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    let s = std::str::from_utf8(&field[..end]).ok()?.trim();
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

/// A tar archive, through the `tar` crate (ustar, GNU long names, pax paths). Every member's
/// data lies within `b`, which was read already: nothing is reserved for what a header declares.
fn tar(at: &str, b: &[u8], budget: &Budget) -> Result<Tree, Error> {
    let bad = |p: String| malformed(at, format!("tar archive: {p}"));
    let mut t = Tree::new();
    let mut archive = tar::Archive::new(std::io::Cursor::new(b));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| bad(format!("{e}")))?;
    let mut seen_at = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("header after byte {seen_at}: {e}")))?;
        let off = entry.raw_header_position();
        seen_at = off;
        let start = entry.raw_file_position();
        let size = entry.size();
        if start
            .checked_add(size)
            .is_none_or(|end| end > b.len() as u64)
        {
            return Err(bad(format!("member at byte {off} runs past the end")));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let member = format!("{at}!{name}");
        match entry.header().entry_type() {
            tar::EntryType::XGlobalHeader => {}
            tar::EntryType::Directory => {
                t.insert(name.trim_end_matches('/').to_string(), None);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(l.as_ref()).into_owned())
                    .unwrap_or_default();
                t.insert(name, Some(format!("link -> {target}").into_bytes()));
            }
            _ => {
                let content = budget.read_all(&member, &mut entry, "tar member")?;
                t.insert(name, Some(content));
            }
        }
    }
    Ok(t)
}

fn le16(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]) as u64)
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

fn zip(at: &str, b: &[u8], budget: &Budget) -> Result<Tree, Error> {
    let bad = |p: String| malformed(at, format!("zip archive: {p}"));
    let truncated = |p: usize| bad(format!("truncated at byte {p}"));
    // The end of central directory record: within the last 64 KiB + 22 bytes.
    let lo = b.len().saturating_sub(65_557);
    let eocd = (lo..b.len().saturating_sub(21))
        .rev()
        .find(|&i| &b[i..i + 4] == b"PK\x05\x06")
        .ok_or_else(|| bad("no end of central directory record".into()))?;
    let count = le16(b, eocd + 10).ok_or_else(|| truncated(eocd + 10))?;
    let dir = le32(b, eocd + 16).ok_or_else(|| truncated(eocd + 16))?;
    if dir == 0xffff_ffff {
        return Err(Error::Unsupported {
            at: at.to_string(),
            what: "zip64".into(),
        });
    }
    let mut p = dir as usize;
    let mut t = Tree::new();
    for i in 0..count {
        if b.get(p..p.saturating_add(4)) != Some(b"PK\x01\x02") {
            return Err(bad(format!(
                "central directory entry {} at byte {p} has a bad signature",
                i + 1
            )));
        }
        // The fixed part of a central directory entry is 46 bytes.
        let fixed = span(b, p as u64, 46).ok_or_else(|| truncated(p))?;
        let field = |o: usize, n: usize| -> u64 {
            // invariant: o + n <= 46, the length of `fixed`.
            fixed[o..o + n]
                .iter()
                .rev()
                .fold(0, |v, &c| (v << 8) | c as u64)
        };
        let (method, csize, declared) = (field(10, 2), field(20, 4), field(24, 4));
        let (nlen, elen, clen, local) = (field(28, 2), field(30, 2), field(32, 2), field(42, 4));
        let name_bytes = span(b, p as u64 + 46, nlen)
            .ok_or_else(|| bad(format!("entry {} name runs past the end", i + 1)))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // Within `b.len() + 3 * 65,535`: no overflow.
        p += 46 + (nlen + elen + clen) as usize;
        let member = format!("{at}!{name}");
        let local = local as usize;
        if b.get(local..local.saturating_add(4)) != Some(b"PK\x03\x04") {
            return Err(bad(format!(
                "{name}: local header at byte {local} has a bad signature"
            )));
        }
        let extra = le16(b, local + 26)
            .zip(le16(b, local + 28))
            .ok_or_else(|| truncated(local + 26))?;
        let start = local as u64 + 30 + extra.0 + extra.1;
        let data =
            span(b, start, csize).ok_or_else(|| bad(format!("{name}: data runs past the end")))?;
        if name.ends_with('/') {
            t.insert(name.trim_end_matches('/').to_string(), None);
            continue;
        }
        if declared > budget.room() {
            return Err(budget.refuse(&member, declared));
        }
        let content = match method {
            0 => budget.copy(&member, data)?,
            8 => {
                let out = budget.read_all(
                    &member,
                    flate2::read::DeflateDecoder::new(data).take(declared + 1),
                    "deflate data",
                )?;
                if out.len() as u64 != declared {
                    return Err(bad(format!(
                        "{name}: inflates to {} bytes, the directory says {declared}",
                        out.len()
                    )));
                }
                out
            }
            m => {
                return Err(Error::Unsupported {
                    at: member,
                    what: format!("compression method {m} (only stored and deflate are read)"),
                })
            }
        };
        t.insert(name, Some(content));
    }
    Ok(t)
}

fn cpio(at: &str, b: &[u8], budget: &Budget) -> Result<Tree, Error> {
    let bad = |p: String| malformed(at, format!("cpio archive: {p}"));
    let field = |off: usize, len: usize, radix: u32| -> Result<u64, Error> {
        let raw = off
            .checked_add(len)
            .and_then(|end| b.get(off..end))
            .ok_or_else(|| bad(format!("header truncated at byte {off}")))?;
        let s = std::str::from_utf8(raw)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("header field at byte {off} is not a number")))?;
        u64::from_str_radix(s, radix).map_err(|_| {
            bad(format!(
                "header field {s:?} at byte {off} is not base {radix}"
            ))
        })
    };
    let mut t = Tree::new();
    let mut off = 0usize;
    while off < b.len() {
        let magic = b
            .get(off..off.saturating_add(6))
            .ok_or_else(|| bad(format!("truncated header at byte {off}")))?;
        let (mode, namesize, filesize, hdr, align) = match magic {
            b"070701" | b"070702" => (
                field(off + 14, 8, 16)?,
                field(off + 94, 8, 16)?,
                field(off + 54, 8, 16)?,
                110u64,
                4u64,
            ),
            b"070707" => (
                field(off + 18, 6, 8)?,
                field(off + 59, 6, 8)?,
                field(off + 65, 11, 8)?,
                76,
                1,
            ),
            _ => return Err(bad(format!("bad header magic at byte {off}"))),
        };
        let name_start = off as u64 + hdr;
        let name = cstr(
            span(b, name_start, namesize)
                .ok_or_else(|| bad(format!("name at byte {name_start} runs past the end")))?,
        );
        // The name was all there: these are within `b.len() + 4`.
        let data_start = (name_start + namesize).next_multiple_of(align);
        let data = span(b, data_start, filesize)
            .ok_or_else(|| bad(format!("{name}: data runs past the end")))?;
        if name == "TRAILER!!!" {
            break;
        }
        match mode & 0o170000 {
            0o040000 => {
                t.insert(name, None);
            }
            0o120000 => {
                budget.take(&format!("{at}!{name}"), data.len() as u64)?;
                t.insert(name, Some([b"symlink -> ".as_slice(), data].concat()));
            }
            _ => {
                let content = budget.copy(&format!("{at}!{name}"), data)?;
                t.insert(name, Some(content));
            }
        }
        off = usize::try_from((data_start + filesize).next_multiple_of(align))
            .map_err(|_| bad(format!("member at byte {off} runs past the end")))?;
    }
    Ok(t)
}

fn is_elf(b: &[u8]) -> bool {
    b.len() >= 16 && &b[..4] == b"\x7fELF"
}

/// Section name to the SHA-256 of its contents (`NOBITS` sections by size alone), read with the
/// `object` crate's ELF section table (32- and 64-bit, either byte order).
fn elf_sections(at: &str, b: &[u8]) -> Result<BTreeMap<String, String>, Error> {
    use object::elf::{FileHeader32, FileHeader64};
    match b[4] {
        1 => elf_table::<FileHeader32<object::Endianness>>(at, b),
        2 => elf_table::<FileHeader64<object::Endianness>>(at, b),
        c => Err(malformed(
            at,
            format!("ELF class {c} is neither 32- nor 64-bit"),
        )),
    }
}

fn elf_table<H>(at: &str, b: &[u8]) -> Result<BTreeMap<String, String>, Error>
where
    H: object::read::elf::FileHeader<Endian = object::Endianness>,
{
    use object::read::elf::SectionHeader as _;
    let bad = |p: String| malformed(at, p);
    let header = H::parse(b).map_err(|e| bad(format!("ELF header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| bad(format!("ELF data encoding: {e}")))?;
    let table = header.sections(endian, b).map_err(|e| {
        let at = header.e_shoff(endian).into();
        bad(format!("ELF section header table at byte {at}: {e}"))
    })?;
    let mut out = BTreeMap::new();
    for (i, sect) in table.iter().enumerate() {
        let name = table
            .section_name(endian, sect)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let name = if name.is_empty() {
            format!("#{i}")
        } else {
            name
        };
        let typ = sect.sh_type(endian);
        let digest = if typ == object::elf::SHT_NOBITS || typ == object::elf::SHT_NULL {
            format!("size {}", sect.sh_size(endian).into())
        } else {
            let data = sect
                .data(endian, b)
                .map_err(|_| bad(format!("section {name} runs past the end")))?;
            sha256_hex(data)
        };
        out.insert(name, digest);
    }
    Ok(out)
}
