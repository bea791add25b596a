//! Capture files: classic pcap (microsecond and nanosecond, either byte order) and pcapng
//! (sections of either byte order, several interfaces with their own link types and timestamp
//! resolutions), told apart by their magic numbers, never by the file's name.
//!
//! [`Capture::next_packet`] returns one packet at a time, borrowed from the input; anything
//! malformed is an error naming the byte offset and what is wrong. Blocks nospy has no use for
//! (name resolution, statistics, custom blocks) are skipped.

use std::fmt;

/// The largest packet accepted: a record claiming more is malformed (real captures stay far
/// below; this bounds memory whatever the file says).
pub const MAX_PACKET: usize = 256 * 1024;

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Byte offset in the input where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for CaptureError {}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, CaptureError> {
    Err(CaptureError {
        offset,
        message: message.into(),
    })
}

/// Which kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// One captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The link type (LINKTYPE_* number) of the interface it was captured on.
    pub linktype: u16,
    /// The bytes captured (perhaps fewer than were on the wire).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub wire_len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u16,
    /// Timestamp units per second.
    units_per_s: u64,
}

/// What a reader knows of the file beyond the bytes in front of it.
#[derive(Debug, Clone)]
struct State {
    format: Format,
    big_endian: bool,
    /// Classic pcap: the one link type and timestamp resolution.
    pcap_if: Interface,
    /// pcapng: the interfaces of the current section.
    interfaces: Vec<Interface>,
}

impl State {
    /// A placeholder while a reader lends its state to the in-memory parser.
    const EMPTY: State = State {
        format: Format::Pcap,
        big_endian: false,
        pcap_if: Interface {
            linktype: 0,
            units_per_s: 1,
        },
        interfaces: Vec::new(),
    };
}

/// A capture being read from memory.
pub struct Capture<'a> {
    data: &'a [u8],
    pos: usize,
    st: State,
}

/// Reads a u16/u32 in the given byte order, or fails naming the offset.
fn u16_at(d: &[u8], at: usize, be: bool) -> Result<u16, CaptureError> {
    match d.get(at..at + 2) {
        Some(b) => {
            let a = [b[0], b[1]];
            Ok(if be {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            })
        }
        None => err(at, "the file ends inside a header"),
    }
}

fn u32_at(d: &[u8], at: usize, be: bool) -> Result<u32, CaptureError> {
    match d.get(at..at + 4) {
        Some(b) => {
            let a = [b[0], b[1], b[2], b[3]];
            Ok(if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            })
        }
        None => err(at, "the file ends inside a header"),
    }
}

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// How far ahead of its position a reader must see to read any one record: the largest block
/// (a packet of `MAX_PACKET` bytes, its block header and options) with room to spare.
const MAX_RECORD: usize = MAX_PACKET + 128 * 1024;

/// A streaming reader's buffer: large beside `MAX_RECORD`, so that the unread tail moved to its
/// front before each refill is a small part of what passes through.
const BUFFER: usize = 4 << 20;

/// A capture read from a stream (a file) through a buffer of bounded size: memory stays the
/// same whatever the size of the capture, and nothing is read twice. Error offsets are offsets
/// in the stream.
pub struct CaptureReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`; `buf[0]` is at offset `base` of the stream.
    start: usize,
    end: usize,
    base: usize,
    eof: bool,
    st: State,
}

impl<R: std::io::Read> CaptureReader<R> {
    /// Reads the file header and recognises the format by its magic number.
    pub fn new(src: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut r = CaptureReader {
            src,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            st: State::EMPTY,
        };
        r.fill()?;
        let c = Capture::new(&r.buf[..r.end])?;
        r.start = c.pos;
        r.st = c.st;
        Ok(r)
    }

    /// Which kind of file this is.
    pub fn format(&self) -> Format {
        self.st.format
    }

    /// Bytes of the stream read so far (for progress).
    pub fn position(&self) -> usize {
        self.base + self.start
    }

    /// Moves the unread bytes to the front and reads until the buffer is full or the stream
    /// ends.
    fn fill(&mut self) -> Result<(), CaptureError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start;
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < self.buf.len() && !self.eof {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return err(self.base + self.end, format!("reading failed: {e}")),
            }
        }
        Ok(())
    }

    /// The next packet, `None` at the end of the stream.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        // A record is parsed from the buffer once at least `MAX_RECORD` bytes (or the rest of
        // the stream) are in front of it, so any record that fits the limits is whole there and
        // an error is the record's own. The in-memory reader may skip blocks past that window;
        // where it then meets the buffer's end, the buffer is refilled and reading goes on.
        let found = loop {
            if self.end - self.start < MAX_RECORD && !self.eof {
                self.fill()?;
            }
            let before = self.start;
            let mut c = Capture {
                data: &self.buf[..self.end],
                pos: self.start,
                st: std::mem::replace(&mut self.st, State::EMPTY),
            };
            let r = c.next_packet().map(|p| {
                p.map(|p| {
                    (
                        p.ts_ns,
                        p.linktype,
                        p.data.as_ptr() as usize,
                        p.data.len(),
                        p.wire_len,
                    )
                })
            });
            self.st = c.st;
            self.start = c.pos;
            match r {
                Ok(Some(found)) => break found,
                Ok(None) if self.eof => return Ok(None),
                Ok(None) => {}
                Err(_) if !self.eof && self.start > before => {}
                Err(e) => {
                    return err(e.offset + self.base, e.message);
                }
            }
        };
        let (ts_ns, linktype, at, len, wire_len) = found;
        let off = at - self.buf.as_ptr() as usize;
        Ok(Some(Packet {
            ts_ns,
            linktype,
            data: &self.buf[off..off + len],
            wire_len,
        }))
    }
}

impl<'a> Capture<'a> {
    /// Recognises the format by its magic number and reads the file header.
    pub fn new(data: &'a [u8]) -> Result<Capture<'a>, CaptureError> {
        let Some(magic) = data.get(0..4) else {
            return err(0, "too short to be a capture (no magic number)");
        };
        let magic = [magic[0], magic[1], magic[2], magic[3]];
        let mut c = Capture {
            data,
            pos: 0,
            st: State {
                format: Format::Pcap,
                big_endian: false,
                pcap_if: Interface {
                    linktype: 0,
                    units_per_s: 1_000_000,
                },
                interfaces: Vec::new(),
            },
        };
        let (be, units) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, 1_000_000),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, 1_000_000),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, 1_000_000_000),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, 1_000_000_000),
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                c.st.format = Format::Pcapng;
                c.section_header()?;
                return Ok(c);
            }
            _ => {
                return err(
                    0,
                    format!(
                        "not a pcap or pcapng file (magic number {:02x}{:02x}{:02x}{:02x})",
                        magic[0], magic[1], magic[2], magic[3]
                    ),
                )
            }
        };
        if data.len() < 24 {
            return err(
                data.len(),
                "the file ends inside the pcap header (24 bytes)",
            );
        }
        let major = u16_at(data, 4, be)?;
        if major != 2 {
            return err(4, format!("pcap version {major} (only 2 exists)"));
        }
        let linktype = u32_at(data, 20, be)?;
        // The upper bits carry an FCS length and flags; the link type is the low 16.
        c.st.big_endian = be;
        c.st.pcap_if = Interface {
            linktype: (linktype & 0xffff) as u16,
            units_per_s: units,
        };
        c.pos = 24;
        Ok(c)
    }

    /// Which kind of file this is.
    pub fn format(&self) -> Format {
        self.st.format
    }

    /// Bytes read so far (for progress).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads a pcapng section header block at `self.pos`: its byte order, and a new, empty list of
    /// interfaces.
    fn section_header(&mut self) -> Result<(), CaptureError> {
        let at = self.pos;
        let bom = match self.data.get(at + 8..at + 12) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => return err(at, "the file ends inside a section header block"),
        };
        self.st.big_endian = match u32::from_le_bytes(bom) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            m => {
                return err(
                    at + 8,
                    format!("section header with an unknown byte-order magic {m:08x}"),
                )
            }
        };
        let major = u16_at(self.data, at + 12, self.st.big_endian)?;
        if major != 1 {
            return err(
                at + 12,
                format!("pcapng major version {major} (only 1 exists)"),
            );
        }
        let len = self.block_len(at)?;
        self.st.interfaces.clear();
        self.pos = at + len;
        Ok(())
    }

    /// The total length of the pcapng block at `at`, checked: a multiple of 4, at least 12, within
    /// the file, and repeated at its end.
    fn block_len(&self, at: usize) -> Result<usize, CaptureError> {
        let len = u32_at(self.data, at + 4, self.st.big_endian)? as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return err(
                at + 4,
                format!("block length {len} (must be a multiple of 4, at least 12)"),
            );
        }
        if len > MAX_PACKET + 64 * 1024 {
            return err(at + 4, format!("block length {len} is absurd"));
        }
        let Some(end) = at.checked_add(len).filter(|e| *e <= self.data.len()) else {
            return err(
                at,
                format!(
                    "the block claims {len} bytes but the file has {} left",
                    self.data.len() - at
                ),
            );
        };
        let trailer = u32_at(self.data, end - 4, self.st.big_endian)? as usize;
        if trailer != len {
            return err(
                end - 4,
                format!("the block's trailing length {trailer} differs from its leading {len}"),
            );
        }
        Ok(len)
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'a>>, CaptureError> {
        match self.st.format {
            Format::Pcap => self.next_pcap(),
            Format::Pcapng => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Packet<'a>>, CaptureError> {
        let at = self.pos;
        if at == self.data.len() {
            return Ok(None);
        }
        if self.data.len() - at < 16 {
            return err(at, "the file ends inside a packet record header");
        }
        let be = self.st.big_endian;
        let secs = u32_at(self.data, at, be)? as u64;
        let frac = u32_at(self.data, at + 4, be)? as u64;
        let caplen = u32_at(self.data, at + 8, be)? as usize;
        let wire_len = u32_at(self.data, at + 12, be)?;
        if caplen > MAX_PACKET {
            return err(
                at + 8,
                format!("a packet of {caplen} captured bytes (at most {MAX_PACKET})"),
            );
        }
        let start = at + 16;
        let Some(data) = self.data.get(start..start + caplen) else {
            return err(
                at,
                format!(
                    "the packet record claims {caplen} bytes but the file has {} left",
                    self.data.len() - start
                ),
            );
        };
        if frac >= self.st.pcap_if.units_per_s {
            return err(at + 4, format!("timestamp fraction {frac} is out of range"));
        }
        self.pos = start + caplen;
        Ok(Some(Packet {
            ts_ns: secs * 1_000_000_000 + frac * (1_000_000_000 / self.st.pcap_if.units_per_s),
            linktype: self.st.pcap_if.linktype,
            data,
            wire_len,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'a>>, CaptureError> {
        loop {
            let at = self.pos;
            if at == self.data.len() {
                return Ok(None);
            }
            if self.data.len() - at < 12 {
                return err(at, "the file ends inside a block header");
            }
            // A section header may change the byte order: read its type both ways.
            let raw_type = u32_at(self.data, at, false)?;
            if raw_type == PCAPNG_SHB {
                self.section_header()?;
                continue;
            }
            let be = self.st.big_endian;
            let btype = u32_at(self.data, at, be)?;
            let len = self.block_len(at)?;
            let body = &self.data[at + 8..at + len - 4];
            self.pos = at + len;
            match btype {
                // Interface description.
                1 => {
                    if body.len() < 8 {
                        return err(at, "interface description block too short");
                    }
                    let linktype = u16_at(body, 0, be)?;
                    let units_per_s =
                        if_tsresol(&body[8..], be).map_err(|(o, m)| CaptureError {
                            offset: at + 16 + o,
                            message: m,
                        })?;
                    if self.st.interfaces.len() >= 65_536 {
                        return err(at, "more than 65,536 interfaces in one section");
                    }
                    self.st.interfaces.push(Interface {
                        linktype,
                        units_per_s,
                    });
                }
                // Enhanced packet, and the obsolete packet block of the pcapng drafts (the same
                // layout but for a 16-bit interface id followed by a drop count).
                2 | 6 => {
                    if body.len() < 20 {
                        return err(at, "packet block too short");
                    }
                    let iface = if btype == 6 {
                        u32_at(body, 0, be)? as usize
                    } else {
                        u16_at(body, 0, be)? as usize
                    };
                    let hi = u32_at(body, 4, be)? as u64;
                    let lo = u32_at(body, 8, be)? as u64;
                    let caplen = u32_at(body, 12, be)? as usize;
                    let wire_len = u32_at(body, 16, be)?;
                    let Some(i) = self.st.interfaces.get(iface).copied() else {
                        return err(
                            at + 8,
                            format!(
                                "packet on interface {iface}, but the section describes {}",
                                self.st.interfaces.len()
                            ),
                        );
                    };
                    let Some(data) = body.get(20..20 + caplen) else {
                        return err(
                            at + 20,
                            format!("captured length {caplen} overruns its block"),
                        );
                    };
                    return Ok(Some(Packet {
                        ts_ns: scale((hi << 32) | lo, i.units_per_s),
                        linktype: i.linktype,
                        data,
                        wire_len,
                    }));
                }
                // Simple packet: interface 0, no timestamp.
                3 => {
                    if body.len() < 4 {
                        return err(at, "simple packet block too short");
                    }
                    let wire_len = u32_at(body, 0, be)?;
                    let Some(i) = self.st.interfaces.first().copied() else {
                        return err(at, "simple packet block before any interface description");
                    };
                    let caplen = (wire_len as usize).min(body.len() - 4);
                    return Ok(Some(Packet {
                        ts_ns: 0,
                        linktype: i.linktype,
                        data: &body[4..4 + caplen],
                        wire_len,
                    }));
                }
                _ => {}
            }
        }
    }
}

/// Timestamp units to nanoseconds.
fn scale(units: u64, per_s: u64) -> u64 {
    if per_s == 1_000_000_000 {
        units
    } else {
        ((units as u128 * 1_000_000_000) / per_s as u128).min(u64::MAX as u128) as u64
    }
}

/// The `if_tsresol` option of an interface description's options, in units per second
/// (default microseconds). Errors carry the offset within the options.
fn if_tsresol(opts: &[u8], be: bool) -> Result<u64, (usize, String)> {
    let mut at = 0;
    while at + 4 <= opts.len() {
        let rd = |o: usize| {
            let a = [opts[o], opts[o + 1]];
            if be {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            }
        };
        let (code, len) = (rd(at), rd(at + 2) as usize);
        if code == 0 {
            break;
        }
        let Some(v) = opts.get(at + 4..at + 4 + len) else {
            return Err((at, format!("option {code} overruns its block")));
        };
        if code == 9 {
            let Some(&r) = v.first() else {
                return Err((at, "if_tsresol is empty".into()));
            };
            let exp = (r & 0x7f) as u32;
            let per_s = if r & 0x80 == 0 {
                10u64.checked_pow(exp)
            } else {
                2u64.checked_pow(exp)
            };
            return match per_s {
                Some(p) if p > 0 && p <= 1_000_000_000_000 => Ok(p),
                _ => Err((at, format!("if_tsresol {r:#04x} is out of range"))),
            };
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Ok(1_000_000)
}
