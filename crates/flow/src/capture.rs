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

/// A capture being read.
pub struct Capture<'a> {
    data: &'a [u8],
    pos: usize,
    format: Format,
    big_endian: bool,
    /// Classic pcap: the one link type and timestamp resolution.
    pcap_if: Interface,
    /// pcapng: the interfaces of the current section.
    interfaces: Vec<Interface>,
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
            format: Format::Pcap,
            big_endian: false,
            pcap_if: Interface {
                linktype: 0,
                units_per_s: 1_000_000,
            },
            interfaces: Vec::new(),
        };
        let (be, units) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, 1_000_000),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, 1_000_000),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, 1_000_000_000),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, 1_000_000_000),
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                c.format = Format::Pcapng;
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
        c.big_endian = be;
        c.pcap_if = Interface {
            linktype: (linktype & 0xffff) as u16,
            units_per_s: units,
        };
        c.pos = 24;
        Ok(c)
    }

    /// Which kind of file this is.
    pub fn format(&self) -> Format {
        self.format
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
        self.big_endian = match u32::from_le_bytes(bom) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            m => {
                return err(
                    at + 8,
                    format!("section header with an unknown byte-order magic {m:08x}"),
                )
            }
        };
        let major = u16_at(self.data, at + 12, self.big_endian)?;
        if major != 1 {
            return err(
                at + 12,
                format!("pcapng major version {major} (only 1 exists)"),
            );
        }
        let len = self.block_len(at)?;
        self.interfaces.clear();
        self.pos = at + len;
        Ok(())
    }

    /// The total length of the pcapng block at `at`, checked: a multiple of 4, at least 12, within
    /// the file, and repeated at its end.
    fn block_len(&self, at: usize) -> Result<usize, CaptureError> {
        let len = u32_at(self.data, at + 4, self.big_endian)? as usize;
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
        let trailer = u32_at(self.data, end - 4, self.big_endian)? as usize;
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
        match self.format {
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
        let be = self.big_endian;
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
        if frac >= self.pcap_if.units_per_s {
            return err(at + 4, format!("timestamp fraction {frac} is out of range"));
        }
        self.pos = start + caplen;
        Ok(Some(Packet {
            ts_ns: secs * 1_000_000_000 + frac * (1_000_000_000 / self.pcap_if.units_per_s),
            linktype: self.pcap_if.linktype,
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
            let be = self.big_endian;
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
                    if self.interfaces.len() >= 65_536 {
                        return err(at, "more than 65,536 interfaces in one section");
                    }
                    self.interfaces.push(Interface {
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
                    let Some(i) = self.interfaces.get(iface).copied() else {
                        return err(
                            at + 8,
                            format!(
                                "packet on interface {iface}, but the section describes {}",
                                self.interfaces.len()
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
                    let Some(i) = self.interfaces.first().copied() else {
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
