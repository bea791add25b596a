//! The two binary formats on the streams: a **batch** (what a collector publishes to a partition:
//! flows, DNS answers, and counts of flows of no device) and a **part** (what a worker appends to
//! its partition's chain: what it counted, per window, over a stretch of the partition).
//!
//! Both are read as hostile: anyone who can publish to a subject can put bytes there. A reader
//! checks the magic and version, bounds every count by the bytes left, and names the byte
//! offset of what it refuses; it never panics and never allocates more than the message's size
//! allows.
//!
//! All integers are big-endian. An address is a family byte (4 or 6) and its 4 or 16 bytes.
//!
//! ```text
//! batch  = "NSB3" numbering:32 base_ns:u64 count:u32 item*
//! item   = head:u8 (0xe0: dns; 0xe1: unknown; below 0xc0: flow)
//! flow   = head [families:u8] start:var duration:var src dst sport dport proto:u8
//!          packets:var bytes:var
//!          (head: bit 0 initiator known, bit 1 times in ms (else ns), bit 2 the end before
//!          the start, bits 3 and 4 sport and dport below 256 (one byte; else two, and at
//!          least 256), bits 5-7 how src and dst are written: 0 src a device's, dst 4 bytes;
//!          1 src a device's, dst 16 bytes; 2 src 4 bytes, dst a device's; 3 src 16 bytes,
//!          dst a device's; 4 both a device's; 5 neither, and the `families` byte follows the
//!          head (bit 0 src IPv6, bit 1 dst IPv6). A device's address is its number in the
//!          `numbering` (`crate::numbering`: every device's addresses in the inventory's
//!          order, as a var); any other address its 4 or 16 bytes. start is the step from the
//!          flow before's start (the first: from base_ns), modulo 2^64, zigzag-signed; var is
//!          LEB128 in its shortest form, at most 10 bytes: a flow from an exporter takes about
//!          17 bytes)
//! dns    = ts_ns:u64 client:addr addr:addr ttl:u32 name:str16
//! unknown= second:u64 flows:u64 packets:u64 bytes:u64 (flows of no device, by start second)
//!
//! part   = "NSP4" inventory:32 partition:u32 after:u64 last:u64 watermark_ns:u64
//!          window_secs:u64 refused:u64 count:u32 (start_s:u64 delta)*
//! delta  = flows packets bytes unknown dropped:u64 ndev:u32 (device flows violations
//!          unattributable:var)* nsets:u32 (n:u32 str16*)* nviol:u32 row* nunat:u32 row*
//!          names:u8 [npeers:u32 (peer:addr set:var)*]
//!          (names: 1 when the names violation rows' peers stood for are recorded, then each
//!          peer that stood for any with its set; 0 when they are not. "NSP3" is the same
//!          without side's bit 4; "NSP2" without `names` too, read as not recorded)
//! chunk  = "NSK1" partition:u32 before:u64 index:u32 count:u32 last:u64 watermark_ns:u64
//!          bytes (a part too large for one message, cut: its chunks' bytes in order are the
//!          part's; `before` is where the chain ended before the first; `last` and
//!          `watermark_ns` are the part's)
//! row    = device:var side:u8 peer:addr proto:u8 port:u16 flows packets bytes:var
//!          first:var span:var names:var
//!          (side: bit 0 to the device, bits 1-3 who opened its flows: the device, the peer,
//!          not known; all clear when the writer did not record it; bit 4 first and span in
//!          milliseconds, set exactly when both are whole milliseconds)
//!          (first is first_ns after the window's start, span is last_ns after first_ns,
//!          both modulo 2^64: a row takes about 22 bytes in milliseconds, 28 in nanoseconds)
//! ```
//!
//! A part is as large as the rows it carries (a fifth of the flows may be violations to
//! scattered peers), and every part is written once and read by every report: hence the
//! numbers as LEB128, the times relative to what they cannot be far from and in milliseconds
//! where they are whole ones (exporters' times mostly are). "NSP1" (fixed 8-byte numbers) is
//! refused with its name; "NSP2" and "NSP3" are still read. Batches are what the
//! engine stores and carries most of (its work grows with their bytes): "NSB2" (every address
//! written out, the flow's head otherwise arranged, 0x80 DNS and 0x81 unknown; about 20 bytes
//! a flow) and "NSB1" (kind and flags bytes, starts after the batch's earliest, ports as
//! LEB128; about 24) are still read, as collectors of an earlier version may have written them:
//! their flows' devices are found by the reader's numbering.
//!
//! An NSB3 batch is read only under the numbering it was written under (its digest is in the
//! batch): device numbers mean nothing under another inventory.

use crate::numbering::{Numbering, Refs};
use nospy_flow::dns::Answer;
use nospy_flow::{DnsSeen, Flow};
use nospy_monitor::{Delta, DeviceCounts, NamedPeer, RowParts};
use nospy_tlog::Sha256;
use std::net::IpAddr;

pub(crate) const BATCH_MAGIC: &[u8; 4] = b"NSB3";
/// The batches before a device's address was written as its number.
const BATCH_MAGIC_2: &[u8; 4] = b"NSB2";
/// The batches before a flow's start was a step from the one before and ports took one or
/// two bytes.
const BATCH_MAGIC_1: &[u8; 4] = b"NSB1";
/// An NSB3 flow's head: these bits, and the form of its addresses in bits 5-7 (`FORM_*`).
const FLOW_INITIATOR: u8 = 1;
const FLOW_MS: u8 = 2;
const FLOW_BACKWARDS: u8 = 4;
const FLOW_SPORT8: u8 = 8;
const FLOW_DPORT8: u8 = 16;
/// The source a device's (its number), the destination 4 bytes; then the other forms.
const FORM_SRC_DST4: u8 = 0;
const FORM_SRC_DST6: u8 = 1;
const FORM_SRC4_DST: u8 = 2;
const FORM_SRC6_DST: u8 = 3;
const FORM_BOTH: u8 = 4;
/// Neither a device's: a byte follows the head, bit 0 the source IPv6, bit 1 the destination.
const FORM_NEITHER: u8 = 5;
/// An NSB3 item's head when it is not a flow (form 7).
const HEAD_DNS: u8 = 0xE0;
const HEAD_UNKNOWN: u8 = 0xE1;
/// NSB2's: a flow's head below 0x80, with these bits; 0x80 DNS, 0x81 unknown.
const NSB2_INITIATOR: u8 = 1;
const NSB2_MS: u8 = 2;
const NSB2_SRC6: u8 = 4;
const NSB2_DST6: u8 = 8;
const NSB2_BACKWARDS: u8 = 16;
const NSB2_SPORT8: u8 = 32;
const NSB2_DPORT8: u8 = 64;
const PART_MAGIC: &[u8; 4] = b"NSP4";
/// The parts before rows' times could be written in milliseconds.
const PART_MAGIC_3: &[u8; 4] = b"NSP3";
/// The parts before the names of violation rows' peers were recorded.
const PART_MAGIC_2: &[u8; 4] = b"NSP2";
/// A part row's side bit: its times in milliseconds.
const ROW_MS: u8 = 16;
/// Nanoseconds in a millisecond (the unit of a batch's flow times, and a part row's, where
/// they are whole ones).
const MS: u64 = 1_000_000;
/// A chunk of a part too large for one message.
const CHUNK_MAGIC: &[u8; 4] = b"NSK1";

/// Why bytes are not a batch or a part: the offset and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset in the message.
    pub offset: usize,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.problem)
    }
}

impl std::error::Error for WireError {}

/// One item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A flow of a device of this partition, and which of its addresses are a device's, by
    /// their numbers in the inventory's [`Numbering`] (as the collector found them; read from an
    /// NSB1 or NSB2 batch, as the reader's numbering finds them).
    Flow(Flow, Refs),
    /// A DNS answer seen (sent to every partition, in its place among the flows).
    Dns(DnsSeen),
    /// Flows of no device of the inventory that started in this second (Unix time).
    Unknown {
        /// The second.
        second: u64,
        /// How many.
        flows: u64,
        /// Their packets.
        packets: u64,
        /// Their bytes.
        bytes: u64,
    },
}

/// Writes a batch (NSB3) under `numbering`: a flow's address that is a device's is written as
/// its number (the item's, when it is that address's; else the numbering's).
pub fn encode_batch(numbering: &Numbering, items: &[Item]) -> Vec<u8> {
    let mut w = BatchWriter::new(numbering, items.len());
    for it in items {
        w.push(numbering, it);
    }
    w.finish()
}

/// Where an NSB3 batch's base, its count of items and its first item are.
const BATCH_BASE_AT: usize = 4 + 32;
const BATCH_COUNT_AT: usize = BATCH_BASE_AT + 8;
const BATCH_ITEMS_AT: usize = BATCH_COUNT_AT + 4;

/// The most a flow takes in an NSB3 batch: head, the families' byte, two 10-byte times, two
/// IPv6 addresses, two 2-byte ports, the protocol, two 10-byte counts.
const FLOW_MOST: usize = 2 + 20 + 32 + 4 + 1 + 20;
/// The most a count of flows of no device takes.
const UNKNOWN_MOST: usize = 1 + 32;

/// A batch (NSB3) written an item at a time, as a collector attributes flows: the bytes
/// [`encode_batch`] writes for the same items, with no item kept (the base is set at the first
/// flow, the count when finished).
#[derive(Debug)]
pub struct BatchWriter {
    w: Vec<u8>,
    items: u32,
    /// What the items take at their largest encodings.
    most: usize,
    /// The start of the flow before; `None` until the first flow (which sets the base).
    prev: Option<u64>,
}

impl BatchWriter {
    /// An empty batch under `numbering`, with room for about `items` flows.
    pub fn new(numbering: &Numbering, items: usize) -> BatchWriter {
        let mut w = Vec::with_capacity(BATCH_ITEMS_AT + items.saturating_mul(20));
        w.extend_from_slice(BATCH_MAGIC);
        w.extend_from_slice(numbering.digest());
        w.extend_from_slice(&[0; BATCH_ITEMS_AT - BATCH_BASE_AT]);
        BatchWriter {
            w,
            items: 0,
            most: 0,
            prev: None,
        }
    }

    /// Items written.
    pub fn items(&self) -> usize {
        self.items as usize
    }

    /// What the items written would take at their largest encodings (a flow 79 bytes, a DNS
    /// answer 49 and its name): what a collector bounds a batch by, whatever the items' values.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Appends an item.
    pub fn push(&mut self, numbering: &Numbering, it: &Item) {
        match it {
            Item::Flow(f, refs) => self.flow(numbering, f, *refs),
            Item::Dns(d) => self.dns(d),
            &Item::Unknown {
                second,
                flows,
                packets,
                bytes,
            } => self.unknown(second, flows, packets, bytes),
        }
    }

    /// Appends a flow; `refs`, the numbers of its addresses that are a device's (a number
    /// that is not its address's is looked up again).
    pub fn flow(&mut self, numbering: &Numbering, f: &Flow, refs: Refs) {
        let prev = match self.prev {
            Some(p) => p,
            None => {
                self.w[BATCH_BASE_AT..BATCH_COUNT_AT].copy_from_slice(&f.first_ns.to_be_bytes());
                f.first_ns
            }
        };
        self.prev = Some(f.first_ns);
        self.items = self.items.wrapping_add(1);
        self.most += FLOW_MOST;
        let w = &mut self.w;
        // The start as a step from the flow before, modulo 2^64 (exporters send flows
        // roughly in order: most steps take a byte or two).
        let step = f.first_ns.wrapping_sub(prev) as i64;
        let forward = f.last_ns >= f.first_ns;
        let dur = if forward {
            f.last_ns - f.first_ns
        } else {
            f.first_ns - f.last_ns
        };
        let ms = forward && step % MS as i64 == 0 && dur % MS == 0;
        let number = |r: Option<u32>, a: IpAddr| match r {
            Some(r) if numbering.addr(r) == Some(a) => Some(r),
            Some(_) => numbering.of(a),
            None => None,
        };
        let (src, dst) = (number(refs[0], f.src), number(refs[1], f.dst));
        let form = match (src, dst) {
            (Some(_), None) if f.dst.is_ipv4() => FORM_SRC_DST4,
            (Some(_), None) => FORM_SRC_DST6,
            (None, Some(_)) if f.src.is_ipv4() => FORM_SRC4_DST,
            (None, Some(_)) => FORM_SRC6_DST,
            (Some(_), Some(_)) => FORM_BOTH,
            (None, None) => FORM_NEITHER,
        };
        let mut head = (FLOW_INITIATOR * u8::from(f.initiator_known)) | (form << 5);
        if ms {
            head |= FLOW_MS;
        }
        if !forward {
            head |= FLOW_BACKWARDS;
        }
        if f.sport < 256 {
            head |= FLOW_SPORT8;
        }
        if f.dport < 256 {
            head |= FLOW_DPORT8;
        }
        w.push(head);
        if form == FORM_NEITHER {
            w.push(u8::from(f.src.is_ipv6()) | u8::from(f.dst.is_ipv6()) << 1);
        }
        if ms {
            put_var(w, zigzag(step / MS as i64));
            put_var(w, dur / MS);
        } else {
            put_var(w, zigzag(step));
            put_var(w, dur);
        }
        for (r, a) in [(src, f.src), (dst, f.dst)] {
            match r {
                Some(r) => put_var(w, u64::from(r)),
                None => put_bare_addr(w, a),
            }
        }
        for port in [f.sport, f.dport] {
            if port < 256 {
                w.push(port as u8);
            } else {
                w.extend_from_slice(&port.to_be_bytes());
            }
        }
        w.push(f.proto);
        put_var(w, f.packets);
        put_var(w, f.bytes);
    }

    /// Appends a DNS answer seen.
    pub fn dns(&mut self, d: &DnsSeen) {
        self.items = self.items.wrapping_add(1);
        self.most += 1 + 8 + 17 + 17 + 4 + 2 + d.answer.name.len();
        let w = &mut self.w;
        w.push(HEAD_DNS);
        put_u64(w, d.ts_ns);
        put_addr(w, d.client);
        put_addr(w, d.answer.addr);
        w.extend_from_slice(&d.answer.ttl.to_be_bytes());
        put_str(w, &d.answer.name);
    }

    /// Appends the count of flows of no device that started in `second`.
    pub fn unknown(&mut self, second: u64, flows: u64, packets: u64, bytes: u64) {
        self.items = self.items.wrapping_add(1);
        self.most += UNKNOWN_MOST;
        self.w.push(HEAD_UNKNOWN);
        for v in [second, flows, packets, bytes] {
            put_u64(&mut self.w, v);
        }
    }

    /// The batch's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.w[BATCH_COUNT_AT..BATCH_ITEMS_AT].copy_from_slice(&self.items.to_be_bytes());
        self.w
    }
}

/// A signed number as an unsigned one, small either way: 0, -1, 1, -2 ... as 0, 1, 2, 3 ...
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// A flow's start from the start before (`prev`) and its step; `None` when the step, in
/// milliseconds, is beyond what 64 bits of nanoseconds hold.
#[inline]
fn step_from(prev: u64, z: u64, ms: bool) -> Option<u64> {
    let step = unzigzag(z);
    let step = if ms {
        step.checked_mul(MS as i64)?
    } else {
        step
    };
    Some(prev.wrapping_add(step as u64))
}

/// Reads a batch under `numbering` (the reader's inventory): an NSB3 batch written under
/// another is refused.
pub fn decode_batch(b: &[u8], numbering: &Numbering) -> Result<Vec<Item>, WireError> {
    let mut items = Vec::new();
    decode_batch_into(b, numbering, &mut items)?;
    Ok(items)
}

/// Reads a batch into `items` (emptied first), so that a reader of many batches reuses one
/// buffer. On an error `items` holds what was read before the fault: the caller must not use
/// it (a batch is taken whole or not at all).
pub fn decode_batch_into(
    b: &[u8],
    numbering: &Numbering,
    items: &mut Vec<Item>,
) -> Result<(), WireError> {
    read_batch::<true>(b, numbering, items)
}

/// How an address of a flow is written: 4 or 16 bytes, or the number of a device's address.
#[derive(Clone, Copy)]
enum Form {
    V4,
    V6,
    Number,
}

/// An address written out, IPv6 or not.
fn raw(v6: bool) -> Form {
    if v6 {
        Form::V6
    } else {
        Form::V4
    }
}

/// Where the numbers of a flow's addresses that are a device's come from: written in the
/// batch (NSB3: an address written out is no device's, as the collector found), or found by
/// the reader's numbering (NSB1, NSB2).
#[derive(Clone, Copy)]
enum Found<'a> {
    Written(&'a Numbering),
    By(&'a Numbering),
}

/// The forms of an NSB3 flow's source and destination, from its head's form (and, for
/// [`FORM_NEITHER`], the byte of families after the head); `None` for a form there is not.
fn forms(form: u8, families: u8) -> Option<[Form; 2]> {
    Some(match form {
        FORM_SRC_DST4 => [Form::Number, Form::V4],
        FORM_SRC_DST6 => [Form::Number, Form::V6],
        FORM_SRC4_DST => [Form::V4, Form::Number],
        FORM_SRC6_DST => [Form::V6, Form::Number],
        FORM_BOTH => [Form::Number, Form::Number],
        FORM_NEITHER => [raw(families & 1 != 0), raw(families & 2 != 0)],
        _ => return None,
    })
}

/// [`decode_batch_into`]; `QUICK`: flows read first by [`quick_flow`] (the tests compare both).
fn read_batch<const QUICK: bool>(
    b: &[u8],
    numbering: &Numbering,
    items: &mut Vec<Item>,
) -> Result<(), WireError> {
    items.clear();
    let mut r = Reader { b, at: 0 };
    match b.get(..4) {
        Some(m) if m == BATCH_MAGIC_1 => return read_batch_1(r, numbering, items),
        Some(m) if m == BATCH_MAGIC_2 => return read_batch_2(r, numbering, items),
        _ => {}
    }
    r.magic(BATCH_MAGIC, "a flow batch")?;
    let at = r.at;
    // `take` gives the 32 bytes asked for.
    let digest = Sha256(r.take(32)?.try_into().unwrap_or([0; 32]));
    if digest.0 != *numbering.digest() {
        return Err(r.err(
            at,
            format!(
                "written under another inventory (its devices and addresses: {}; this reader's: {}): its device numbers mean nothing here",
                digest.to_hex(),
                Sha256(*numbering.digest()).to_hex()
            ),
        ));
    }
    let mut prev = r.u64()?;
    // The smallest item is a flow from a device (a one-byte number) to an IPv4 address, with
    // one-byte numbers and ports: 1 + 1 + 1 + 1 + 4 + 1 + 1 + 1 + 1 + 1 bytes.
    let n = r.count(13, "items")?;
    items.reserve(n);
    for _ in 0..n {
        // A flow read in one go; anything out of the ordinary (a fault, the end of the
        // message) is read again below, which says what and where.
        if QUICK {
            if let Some((f, refs, len)) = b.get(r.at..).and_then(|s| quick_flow(s, prev, numbering))
            {
                prev = f.first_ns;
                items.push(Item::Flow(f, refs));
                r.at += len;
                continue;
            }
        }
        let at = r.at;
        let head = r.u8()?;
        let it = match head {
            HEAD_DNS => dns(&mut r)?,
            HEAD_UNKNOWN => unknown(&mut r)?,
            _ => {
                let families = if head >> 5 == FORM_NEITHER {
                    let fat = r.at;
                    match r.u8()? {
                        f if f <= 3 => f,
                        f => return Err(r.err(fat, format!("address families {f:#04x}"))),
                    }
                } else {
                    0
                };
                let Some(forms) = forms(head >> 5, families) else {
                    return Err(r.err(
                        at,
                        format!(
                            "item head {head:#04x} (below 0xc0 a flow, 0xe0 DNS, 0xe1 unknown)"
                        ),
                    ));
                };
                let tat = r.at;
                let (start, dur) = (r.var()?, r.var()?);
                let ms = head & FLOW_MS != 0;
                let Some(first_ns) = step_from(prev, start, ms) else {
                    return Err(r.err(
                        tat,
                        "a flow's start beyond 2^63 ns from the one before".into(),
                    ));
                };
                prev = first_ns;
                let Some(last_ns) = end_of(first_ns, dur, ms, head & FLOW_BACKWARDS != 0) else {
                    return Err(r.err(at, "flow times beyond 2^64 ns".into()));
                };
                let one = |bit| Some(head & bit != 0);
                rest_of_flow(
                    &mut r,
                    Found::Written(numbering),
                    (first_ns, last_ns),
                    forms,
                    [one(FLOW_SPORT8), one(FLOW_DPORT8)],
                    head & FLOW_INITIATOR != 0,
                )?
            }
        };
        items.push(it);
    }
    r.end()
}

/// A batch of the earlier format NSB2 (every address written out; the head's bits otherwise
/// arranged), written by collectors before NSB3: read carefully, for the stream's retention
/// after an upgrade, its flows' devices found by `numbering`.
fn read_batch_2(
    mut r: Reader<'_>,
    numbering: &Numbering,
    items: &mut Vec<Item>,
) -> Result<(), WireError> {
    r.magic(BATCH_MAGIC_2, "a flow batch")?;
    let mut prev = r.u64()?;
    let n = r.count(16, "items")?;
    items.reserve(n);
    for _ in 0..n {
        let at = r.at;
        let it = match r.u8()? {
            head if head & 0x80 == 0 => {
                let (start, dur) = (r.var()?, r.var()?);
                let ms = head & NSB2_MS != 0;
                let Some(first_ns) = step_from(prev, start, ms) else {
                    return Err(r.err(
                        at + 1,
                        "a flow's start beyond 2^63 ns from the one before".into(),
                    ));
                };
                prev = first_ns;
                let backwards = head & NSB2_BACKWARDS != 0;
                let Some(last_ns) = end_of(first_ns, dur, ms, backwards) else {
                    return Err(r.err(at, "flow times beyond 2^64 ns".into()));
                };
                let one = |bit| Some(head & bit != 0);
                rest_of_flow(
                    &mut r,
                    Found::By(numbering),
                    (first_ns, last_ns),
                    [raw(head & NSB2_SRC6 != 0), raw(head & NSB2_DST6 != 0)],
                    [one(NSB2_SPORT8), one(NSB2_DPORT8)],
                    head & NSB2_INITIATOR != 0,
                )?
            }
            0x80 => dns(&mut r)?,
            0x81 => unknown(&mut r)?,
            t => {
                return Err(r.err(
                    at,
                    format!("item head {t:#04x} (below 0x80 a flow, 0x80 DNS, 0x81 unknown)"),
                ))
            }
        };
        items.push(it);
    }
    r.end()
}

/// A batch of the earlier format NSB1 (a flow's start after the batch's earliest, ports as
/// LEB128, a kind byte and a flags byte), written by collectors before NSB2: read carefully,
/// for the stream's retention after an upgrade.
fn read_batch_1(
    mut r: Reader<'_>,
    numbering: &Numbering,
    items: &mut Vec<Item>,
) -> Result<(), WireError> {
    r.magic(BATCH_MAGIC_1, "a flow batch")?;
    let base = r.u64()?;
    // The smallest item is an IPv4 flow with one-byte numbers: 1 + 1 + 2 + 8 + 2 + 1 + 2 bytes.
    let n = r.count(17, "items")?;
    items.reserve(n);
    for _ in 0..n {
        let at = r.at;
        let it = match r.u8()? {
            1 => {
                let fat = r.at;
                let flags = r.u8()?;
                if flags & !31 != 0 {
                    return Err(r.err(fat, format!("flow flags {flags:#04x}")));
                }
                let (start, dur) = (r.var()?, r.var()?);
                let ms = flags & 2 != 0;
                let scale = if ms { MS } else { 1 };
                let times = start
                    .checked_mul(scale)
                    .and_then(|s| base.checked_add(s))
                    .and_then(|first| Some((first, end_of(first, dur, ms, flags & 16 != 0)?)));
                let Some(times) = times else {
                    return Err(r.err(fat, "flow times beyond 2^64 ns".into()));
                };
                rest_of_flow(
                    &mut r,
                    Found::By(numbering),
                    times,
                    [raw(flags & 4 != 0), raw(flags & 8 != 0)],
                    [None, None],
                    flags & 1 != 0,
                )?
            }
            2 => dns(&mut r)?,
            3 => unknown(&mut r)?,
            t => return Err(r.err(at, format!("item kind {t} (1 flow, 2 DNS, 3 unknown)"))),
        };
        items.push(it);
    }
    r.end()
}

/// A DNS item after its kind.
fn dns(r: &mut Reader<'_>) -> Result<Item, WireError> {
    let ts_ns = r.u64()?;
    let client = r.addr()?;
    let addr = r.addr()?;
    let ttl = r.u32()?;
    let name = r.str()?;
    Ok(Item::Dns(DnsSeen {
        ts_ns,
        client,
        answer: Answer { name, addr, ttl },
    }))
}

/// An item of flows of no device after its kind.
fn unknown(r: &mut Reader<'_>) -> Result<Item, WireError> {
    Ok(Item::Unknown {
        second: r.u64()?,
        flows: r.u64()?,
        packets: r.u64()?,
        bytes: r.u64()?,
    })
}

/// A flow's end from its start and duration, in milliseconds (`ms`) or nanoseconds, after the
/// start or (`backwards`) before it; `None` beyond 64 bits of nanoseconds.
#[inline]
fn end_of(first_ns: u64, dur: u64, ms: bool, backwards: bool) -> Option<u64> {
    let d = if ms { dur.checked_mul(MS)? } else { dur };
    if backwards {
        first_ns.checked_sub(d)
    } else {
        first_ns.checked_add(d)
    }
}

/// The rest of a flow, read carefully, once its times are known: its addresses (in `forms`),
/// its ports (NSB2 and NSB3: one byte or not; `None`, NSB1: LEB128), protocol, packets and
/// bytes; the numbers of its devices' addresses as `found` says.
fn rest_of_flow(
    r: &mut Reader<'_>,
    found: Found<'_>,
    (first_ns, last_ns): (u64, u64),
    forms: [Form; 2],
    ports: [Option<bool>; 2],
    initiator_known: bool,
) -> Result<Item, WireError> {
    let mut side = |form| -> Result<(IpAddr, Option<u32>), WireError> {
        match (form, found) {
            (Form::Number, Found::Written(n) | Found::By(n)) => {
                let at = r.at;
                let v = r.var()?;
                match u32::try_from(v).ok().and_then(|k| Some((n.addr(k)?, k))) {
                    Some((a, k)) => Ok((a, Some(k))),
                    None => Err(r.err(
                        at,
                        format!(
                            "address number {v}: the inventory numbers {} addresses",
                            n.len()
                        ),
                    )),
                }
            }
            (form, _) => Ok((r.bare_addr(matches!(form, Form::V6))?, None)),
        }
    };
    let (src, src_ref) = side(forms[0])?;
    let (dst, dst_ref) = side(forms[1])?;
    let refs = match found {
        Found::Written(_) => [src_ref, dst_ref],
        Found::By(n) => n.refs(src, dst),
    };
    let mut port = |form| match form {
        Some(one) => r.port8_or_16(one),
        None => r.port(),
    };
    let (sport, dport) = (port(ports[0])?, port(ports[1])?);
    let flow = Flow {
        first_ns,
        last_ns,
        src,
        dst,
        sport,
        dport,
        proto: r.u8()?,
        packets: r.var()?,
        bytes: r.var()?,
        initiator_known,
    };
    Ok(Item::Flow(flow, refs))
}

/// A well-formed NSB3 flow of one of the common forms (not [`FORM_NEITHER`]) at the start of
/// `s` (its head first), its start a step from `prev`, with the numbers of its devices'
/// addresses, and its length; `None` for anything the careful reading of [`read_batch`] would
/// refuse (which it then does, saying why), and for items that are not such flows, so both
/// read the same flows from the same bytes.
#[inline]
fn quick_flow(s: &[u8], prev: u64, numbering: &Numbering) -> Option<(Flow, Refs, usize)> {
    let head = *s.first()?;
    let form = head >> 5;
    if form > FORM_BOTH {
        return None;
    }
    let mut i = 1;
    let start = quick_var(s, &mut i)?;
    let dur = quick_var(s, &mut i)?;
    let ms = head & FLOW_MS != 0;
    let first_ns = step_from(prev, start, ms)?;
    let last_ns = end_of(first_ns, dur, ms, head & FLOW_BACKWARDS != 0)?;
    let [sf, df] = forms(form, 0)?;
    let (src, src_ref) = quick_side(s, &mut i, sf, numbering)?;
    let (dst, dst_ref) = quick_side(s, &mut i, df, numbering)?;
    let sport = quick_port(s, &mut i, head & FLOW_SPORT8 != 0)?;
    let dport = quick_port(s, &mut i, head & FLOW_DPORT8 != 0)?;
    let proto = *s.get(i)?;
    i += 1;
    let packets = quick_var(s, &mut i)?;
    let bytes = quick_var(s, &mut i)?;
    Some((
        Flow {
            first_ns,
            last_ns,
            src,
            dst,
            sport,
            dport,
            proto,
            packets,
            bytes,
            initiator_known: head & FLOW_INITIATOR != 0,
        },
        [src_ref, dst_ref],
        i,
    ))
}

/// An address at `s[*i]` in `form`, and its number when it is written as one.
#[inline(always)]
fn quick_side(
    s: &[u8],
    i: &mut usize,
    form: Form,
    numbering: &Numbering,
) -> Option<(IpAddr, Option<u32>)> {
    match form {
        Form::Number => {
            let k = u32::try_from(quick_var(s, i)?).ok()?;
            Some((numbering.addr(k)?, Some(k)))
        }
        Form::V4 => Some((quick_addr(s, i, false)?, None)),
        Form::V6 => Some((quick_addr(s, i, true)?, None)),
    }
}

/// A port at `s[*i]`: one byte, or two (big-endian) for a port of 256 or more, as
/// `Reader::port8_or_16` reads it.
#[inline(always)]
fn quick_port(s: &[u8], i: &mut usize, one: bool) -> Option<u16> {
    if one {
        let p = *s.get(*i)?;
        *i += 1;
        Some(u16::from(p))
    } else {
        let p = u16::from_be_bytes([*s.get(*i)?, *s.get(*i + 1)?]);
        *i += 2;
        (p >= 256).then_some(p)
    }
}

/// A LEB128 number at `s[*i]` in its shortest form, as `Reader::var` reads it.
#[inline(always)]
fn quick_var(s: &[u8], i: &mut usize) -> Option<u64> {
    match s.get(*i) {
        Some(&b) if b < 0x80 => {
            *i += 1;
            Some(u64::from(b))
        }
        _ => quick_var_long(s, i),
    }
}

fn quick_var_long(s: &[u8], i: &mut usize) -> Option<u64> {
    let b = *s.get(*i)?;
    *i += 1;
    let mut v = u64::from(b & 0x7f);
    for n in 1..10 {
        let b = *s.get(*i)?;
        *i += 1;
        if n == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * n);
        if b & 0x80 == 0 {
            return (b != 0).then_some(v);
        }
    }
    None
}

#[inline]
fn quick_addr(s: &[u8], i: &mut usize, v6: bool) -> Option<IpAddr> {
    if v6 {
        let a: [u8; 16] = s.get(*i..*i + 16)?.try_into().ok()?;
        *i += 16;
        Some(IpAddr::from(a))
    } else {
        let a: [u8; 4] = s.get(*i..*i + 4)?.try_into().ok()?;
        *i += 4;
        Some(IpAddr::from(a))
    }
}

/// LEB128: seven bits a byte, low first.
fn put_var(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push(v as u8 | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

fn put_bare_addr(w: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => w.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => w.extend_from_slice(&a.octets()),
    }
}

/// A worker's part: what it counted over a stretch of its partition, the stream sequences
/// `after + 1 ..= last`, per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The SHA-256 of the inventory the devices are numbered by.
    pub inventory: [u8; 32],
    /// The partition.
    pub partition: u32,
    /// The flow stream's sequence the previous part of the chain ended at (0: the first).
    pub after: u64,
    /// The last flow stream sequence this part covers.
    pub last: u64,
    /// The latest flow start seen in the partition so far (ns since the Unix epoch).
    pub watermark_ns: u64,
    /// The window length, seconds.
    pub window_secs: u64,
    /// Messages of the stretch that were not flow batches (nothing of them counted).
    pub refused: u64,
    /// Per window start (Unix seconds), what was counted.
    pub windows: Vec<(u64, Delta)>,
}

/// Writes a part.
pub fn encode_part(p: &Part) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(PART_MAGIC);
    w.extend_from_slice(&p.inventory);
    w.extend_from_slice(&p.partition.to_be_bytes());
    for v in [p.after, p.last, p.watermark_ns, p.window_secs, p.refused] {
        put_u64(&mut w, v);
    }
    w.extend_from_slice(&(p.windows.len() as u32).to_be_bytes());
    for (start, d) in &p.windows {
        put_u64(&mut w, *start);
        for v in [
            d.flows,
            d.packets,
            d.bytes,
            d.unknown_device_flows,
            d.flows_in_dropped_rows,
        ] {
            put_u64(&mut w, v);
        }
        w.extend_from_slice(&(d.devices.len() as u32).to_be_bytes());
        for c in &d.devices {
            for v in [u64::from(c.device), c.flows, c.violations, c.unattributable] {
                put_var(&mut w, v);
            }
        }
        w.extend_from_slice(&(d.name_sets.len() as u32).to_be_bytes());
        for set in &d.name_sets {
            w.extend_from_slice(&(set.len() as u32).to_be_bytes());
            for n in set.iter() {
                put_str(&mut w, n);
            }
        }
        for rows in [&d.violations, &d.unattributable] {
            w.extend_from_slice(&(rows.len() as u32).to_be_bytes());
            let base = start.wrapping_mul(1_000_000_000);
            for r in rows.iter() {
                let (first, span) = (
                    r.first_ns.wrapping_sub(base),
                    r.last_ns.wrapping_sub(r.first_ns),
                );
                let ms = first % MS == 0 && span % MS == 0;
                put_var(&mut w, u64::from(r.device));
                w.push(r.to_device as u8 | (r.openers & 7) << 1 | if ms { ROW_MS } else { 0 });
                put_addr(&mut w, r.peer);
                w.push(r.proto);
                w.extend_from_slice(&r.port.to_be_bytes());
                let (first, span) = if ms {
                    (first / MS, span / MS)
                } else {
                    (first, span)
                };
                for v in [r.flows, r.packets, r.bytes, first, span, u64::from(r.names)] {
                    put_var(&mut w, v);
                }
            }
        }
        match &d.peer_names {
            None => w.push(0),
            Some(peers) => {
                // 1: every peer's set holds all its names; 2: some were left out, so each
                // peer's count follows its set.
                let counted = peers
                    .iter()
                    .any(|p| p.total != set_len(&d.name_sets, p.set));
                w.push(1 + counted as u8);
                w.extend_from_slice(&(peers.len() as u32).to_be_bytes());
                for p in peers {
                    put_addr(&mut w, p.peer);
                    put_var(&mut w, u64::from(p.set));
                    if counted {
                        put_var(&mut w, p.total);
                    }
                }
            }
        }
    }
    w
}

/// Reads a part's head, `r` at its start: the part without its windows, and its format's
/// version (2, 3 or 4: [`PART_MAGIC_2`], [`PART_MAGIC_3`], [`PART_MAGIC`]).
fn read_part_head(r: &mut Reader<'_>) -> Result<(Part, u8), WireError> {
    if r.b.starts_with(b"NSP1") {
        return Err(r.err(
            0,
            "a part of the earlier format NSP1, which this nospy no longer reads (the workers that wrote it were older: start the deployment afresh under a new --stream name)".into(),
        ));
    }
    let (magic, version) = if r.b.starts_with(PART_MAGIC_2) {
        (PART_MAGIC_2, 2)
    } else if r.b.starts_with(PART_MAGIC_3) {
        (PART_MAGIC_3, 3)
    } else {
        (PART_MAGIC, 4)
    };
    r.magic(magic, "a monitor part")?;
    let mut inventory = [0u8; 32];
    inventory.copy_from_slice(r.take(32)?);
    let partition = r.u32()?;
    let (after, last, watermark_ns, window_secs, refused) =
        (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    if last < after {
        return Err(r.err(
            12 + 32,
            format!("ends at {last}, before it begins ({after})"),
        ));
    }
    let part = Part {
        inventory,
        partition,
        after,
        last,
        watermark_ns,
        window_secs,
        refused,
        windows: Vec::new(),
    };
    Ok((part, version))
}

/// The last flow sequence a part counted and its watermark, from its head alone (its windows
/// are not read: where a chain ends, without reading the part's rows).
pub fn part_end(b: &[u8]) -> Result<(u64, u64), WireError> {
    let (head, _) = read_part_head(&mut Reader { b, at: 0 })?;
    Ok((head.last, head.watermark_ns))
}

/// Reads a part.
pub fn decode_part(b: &[u8]) -> Result<Part, WireError> {
    let mut r = Reader { b, at: 0 };
    let (mut part, version) = read_part_head(&mut r)?;
    let names_recorded = version >= 3;
    // The largest side a row may have: bit 4 (times in milliseconds) since NSP4.
    let most_side = if version >= 4 { 31 } else { 15 };
    let n = r.count(8 + 40 + 4 * 4, "windows")?;
    let mut windows = Vec::with_capacity(n);
    for _ in 0..n {
        let start = r.u64()?;
        let (flows, packets, bytes, unknown, dropped) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let nd = r.count(4, "devices")?;
        let mut devices = Vec::with_capacity(nd);
        for _ in 0..nd {
            devices.push(DeviceCounts {
                device: r.var_u32("device")?,
                flows: r.var()?,
                violations: r.var()?,
                unattributable: r.var()?,
            });
        }
        let ns = r.count(4, "sets of names")?;
        let mut name_sets = Vec::with_capacity(ns);
        for _ in 0..ns {
            let k = r.count(2, "names")?;
            let mut set = Vec::with_capacity(k);
            for _ in 0..k {
                set.push(r.str()?);
            }
            name_sets.push(std::sync::Arc::from(set));
        }
        let mut kinds = [Vec::new(), Vec::new()];
        for rows in kinds.iter_mut() {
            // The smallest row: a one-byte device, direction, an IPv4 peer, protocol, port
            // and six one-byte numbers.
            let nr = r.count(1 + 1 + 5 + 1 + 2 + 6, "rows")?;
            rows.reserve(nr);
            let base = start.wrapping_mul(1_000_000_000);
            for _ in 0..nr {
                let device = r.var_u32("device")?;
                let side_at = r.at;
                let side = r.u8()?;
                if side > most_side {
                    return Err(r.err(side_at, format!("side {side}")));
                }
                let (to_device, openers) = (side & 1 == 1, (side >> 1) & 7);
                let (peer, proto, port) = (r.addr()?, r.u8()?, r.u16()?);
                let (flows, packets, bytes) = (r.var()?, r.var()?, r.var()?);
                let times_at = r.at;
                let (mut first, mut span) = (r.var()?, r.var()?);
                // One encoding per row: in milliseconds exactly when both are whole ones.
                if side & ROW_MS != 0 {
                    match (first.checked_mul(MS), span.checked_mul(MS)) {
                        (Some(f), Some(s)) => (first, span) = (f, s),
                        _ => {
                            return Err(r.err(
                                times_at,
                                "times in milliseconds beyond 2^64 nanoseconds".into(),
                            ))
                        }
                    }
                } else if version >= 4 && first % MS == 0 && span % MS == 0 {
                    return Err(r.err(
                        side_at,
                        "whole milliseconds written in nanoseconds (one encoding per row)".into(),
                    ));
                }
                let first_ns = base.wrapping_add(first);
                let last_ns = first_ns.wrapping_add(span);
                rows.push(RowParts {
                    device,
                    to_device,
                    peer,
                    proto,
                    port,
                    flows,
                    packets,
                    bytes,
                    first_ns,
                    last_ns,
                    names: r.var_u32("name set")?,
                    openers,
                });
            }
        }
        let [violations, unattributable] = kinds;
        let peer_names = if names_recorded {
            match r.u8()? {
                0 => None,
                // 1: each peer's set holds all its names; 2: each is followed by how many
                // names the peer stood for, of which some were left out.
                k @ (1 | 2) => {
                    let flag_at = r.at - 1;
                    // The smallest entry: an IPv4 peer and a one-byte set (and count).
                    let np = r.count(5 + k as usize, "peers")?;
                    let mut peers = Vec::with_capacity(np);
                    let mut left_out = false;
                    for _ in 0..np {
                        let (peer, set) = (r.addr()?, r.var_u32("name set")?);
                        let len = set_len(&name_sets, set);
                        let total = match k {
                            2 => {
                                let at = r.at;
                                let total = r.var()?;
                                if total < len {
                                    return Err(r.err(
                                        at,
                                        format!("{total} names counted, fewer than the {len} of its set"),
                                    ));
                                }
                                total
                            }
                            _ => len,
                        };
                        left_out |= total > len;
                        peers.push(NamedPeer { peer, set, total });
                    }
                    if k == 2 && !left_out {
                        return Err(r.err(
                            flag_at,
                            "names flag 2 with no name left out (that is written as flag 1)".into(),
                        ));
                    }
                    Some(peers)
                }
                k => return Err(r.err(r.at - 1, format!("names flag {k} (0, 1 or 2)"))),
            }
        } else {
            None
        };
        windows.push((
            start,
            Delta {
                flows,
                packets,
                bytes,
                unknown_device_flows: unknown,
                flows_in_dropped_rows: dropped,
                devices,
                violations,
                unattributable,
                name_sets,
                peer_names,
            },
        ));
    }
    r.end()?;
    part.windows = windows;
    Ok(part)
}

/// A chunk of a part too large for one of the engine's messages: a part is appended as chunks,
/// one after the other, each only where the chain ends at the one before (so a chunk that is
/// not the last of its part is followed, in its chain, by the next one or by nothing of that
/// part: its worker died or lost the partition, and the part was never appended whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The partition.
    pub partition: u32,
    /// Where the chain ended (its rows sequence) before the part's first chunk.
    pub before: u64,
    /// Which chunk, from 0.
    pub index: u32,
    /// How many the part has.
    pub count: u32,
    /// The part's last flow sequence, as its bytes say.
    pub last: u64,
    /// The part's watermark, as its bytes say.
    pub watermark_ns: u64,
    /// This chunk's bytes of the part.
    pub bytes: &'a [u8],
}

/// Most chunks of one part: 1 GiB, far beyond what a worker holds (a reader of hostile bytes
/// keeps no more).
pub const MAX_CHUNKS: u32 = 1024;

/// The bytes of a chunk's head: magic, partition, before, index, count, last, watermark.
pub const CHUNK_HEAD: usize = 4 + 4 + 8 + 4 + 4 + 8 + 8;

/// A part's bytes (`part`, of partition `partition`, whose last flow sequence and watermark
/// are `last` and `watermark_ns`) cut into chunks of at most `most` bytes each, head included,
/// to be appended after the chain's end `before`. One message when it fits (the part as it
/// is).
pub fn chunk_part(
    part: Vec<u8>,
    partition: u32,
    before: u64,
    last: u64,
    watermark_ns: u64,
    most: usize,
) -> Vec<Vec<u8>> {
    if part.len() <= most {
        return vec![part];
    }
    let room = most.saturating_sub(CHUNK_HEAD).max(1);
    let count = part.len().div_ceil(room) as u32;
    part.chunks(room)
        .enumerate()
        .map(|(i, bytes)| {
            let mut w = Vec::with_capacity(CHUNK_HEAD + bytes.len());
            w.extend_from_slice(CHUNK_MAGIC);
            w.extend_from_slice(&partition.to_be_bytes());
            put_u64(&mut w, before);
            w.extend_from_slice(&(i as u32).to_be_bytes());
            w.extend_from_slice(&count.to_be_bytes());
            put_u64(&mut w, last);
            put_u64(&mut w, watermark_ns);
            w.extend_from_slice(bytes);
            w
        })
        .collect()
}

/// A message of a chain: a whole part, or a chunk of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainMessage<'a> {
    /// A part's bytes (read with [`decode_part`]).
    Part(&'a [u8]),
    /// A chunk of a part.
    Chunk(Chunk<'a>),
}

/// Reads a chain's message as a part or a chunk (a chunk's head checked; a part's bytes are
/// read by [`decode_part`]).
pub fn read_chain_message(b: &[u8]) -> Result<ChainMessage<'_>, WireError> {
    if !b.starts_with(CHUNK_MAGIC) {
        return Ok(ChainMessage::Part(b));
    }
    let mut r = Reader { b, at: 4 };
    let partition = r.u32()?;
    let before = r.u64()?;
    let at = r.at;
    let (index, count) = (r.u32()?, r.u32()?);
    if !(2..=MAX_CHUNKS).contains(&count) || index >= count {
        return Err(r.err(
            at,
            format!("chunk {index} of {count}: a part takes 2 to {MAX_CHUNKS} chunks"),
        ));
    }
    let (last, watermark_ns) = (r.u64()?, r.u64()?);
    let bytes = &b[r.at..];
    if bytes.is_empty() {
        return Err(r.err(r.at, "a chunk without bytes".into()));
    }
    Ok(ChainMessage::Chunk(Chunk {
        partition,
        before,
        index,
        count,
        last,
        watermark_ns,
        bytes,
    }))
}

/// Reads chains' messages, in the order appended (of one partition or several), into whole
/// parts' bytes: a part's as it is, a chunked part's once its last chunk came after all the
/// others, in order. The chunks of a part never appended whole (others' messages came in its
/// partition's chain before its last chunk) are dropped, as its worker's append never was.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Per partition, the chunked part begun: its first chunk's `before`, its count, its bytes
    /// so far and how many chunks they are.
    begun: std::collections::BTreeMap<u32, (u64, u32, Vec<u8>, u32)>,
}

impl Assembler {
    /// The part `message` completes, if it does: `Ok(None)` for a chunk that does not (or that
    /// belongs to no part begun: a part's middle whose beginning was not read). The part's
    /// partition is the one the chunks name for a chunked part: [`decode_part`] of its bytes
    /// says its own, and the caller compares them.
    pub fn add<'a>(
        &mut self,
        message: &'a [u8],
    ) -> Result<Option<std::borrow::Cow<'a, [u8]>>, WireError> {
        let c = match read_chain_message(message)? {
            ChainMessage::Part(b) => {
                // It follows, in its chain, whatever chunks were begun there.
                if let Ok(p) = part_partition(b) {
                    self.begun.remove(&p);
                }
                return Ok(Some(std::borrow::Cow::Borrowed(b)));
            }
            ChainMessage::Chunk(c) => c,
        };
        if c.index == 0 {
            let mut bytes = Vec::with_capacity(c.bytes.len() * c.count as usize);
            bytes.extend_from_slice(c.bytes);
            self.begun
                .insert(c.partition, (c.before, c.count, bytes, 1));
            return Ok(None);
        }
        let Some(begun) = self.begun.get_mut(&c.partition) else {
            return Ok(None);
        };
        if begun.0 != c.before || begun.1 != c.count || begun.3 != c.index {
            // Not the next chunk of the part begun: neither is appended whole.
            self.begun.remove(&c.partition);
            return Ok(None);
        }
        begun.2.extend_from_slice(c.bytes);
        begun.3 += 1;
        if begun.3 < begun.1 {
            return Ok(None);
        }
        Ok(self
            .begun
            .remove(&c.partition)
            .map(|b| std::borrow::Cow::Owned(b.2)))
    }
}

/// The partition a part's bytes name (after its magic and inventory), if they are long enough.
fn part_partition(b: &[u8]) -> Result<u32, WireError> {
    let mut r = Reader { b, at: 4 + 32 };
    r.u32()
}

/// How many names set `set` of `sets` holds (none when there is no such set): one count for
/// writing a part and for reading it, so that a part read is written as it was.
fn set_len(sets: &[std::sync::Arc<[String]>], set: u32) -> u64 {
    sets.get(set as usize).map_or(0, |s| s.len() as u64)
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_addr(w: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            w.push(4);
            w.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            w.push(6);
            w.extend_from_slice(&a.octets());
        }
    }
}

/// A string of at most 65,535 bytes (longer ones are cut at a character boundary: DNS names
/// are at most 253).
fn put_str(w: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.extend_from_slice(&(end as u16).to_be_bytes());
    w.extend_from_slice(&s.as_bytes()[..end]);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, offset: usize, problem: String) -> WireError {
        WireError { offset, problem }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        match self.b.get(self.at..self.at.saturating_add(n)) {
            Some(s) if s.len() == n => {
                self.at += n;
                Ok(s)
            }
            _ => Err(self.short(n)),
        }
    }

    #[cold]
    #[inline(never)]
    fn short(&self, n: usize) -> WireError {
        self.err(
            self.at,
            format!(
                "cut short: {n} bytes needed, {} left",
                self.b.len() - self.at.min(self.b.len())
            ),
        )
    }

    fn magic(&mut self, m: &[u8; 4], what: &str) -> Result<(), WireError> {
        let got = self
            .take(4)
            .map_err(|_| self.err(0, format!("not {what}: too short")))?;
        if got != m {
            return Err(self.err(
                0,
                format!(
                    "not {what}: begins {:02x?}, not {:?}",
                    got,
                    String::from_utf8_lossy(m)
                ),
            ));
        }
        Ok(())
    }

    /// A count of elements each at least `min` bytes long: refused when the bytes left cannot
    /// hold them (so a count never makes the reader allocate beyond the message's size).
    fn count(&mut self, min: usize, what: &str) -> Result<usize, WireError> {
        let at = self.at;
        let n = self.u32()? as usize;
        let left = self.b.len() - self.at;
        if n.saturating_mul(min) > left {
            return Err(self.err(
                at,
                format!("{n} {what} cannot fit in the {left} bytes left"),
            ));
        }
        Ok(n)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, WireError> {
        match self.b.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => Err(self.short(1)),
        }
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// A LEB128 number; most (times in ms, packets, ports below 128) take one byte.
    #[inline]
    fn var(&mut self) -> Result<u64, WireError> {
        match self.b.get(self.at) {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                Ok(u64::from(b))
            }
            _ => self.var_long(),
        }
    }

    fn var_long(&mut self) -> Result<u64, WireError> {
        let at = self.at;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.err(at, "a number beyond 2^64".into()));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // One form per number: a part or batch reads back to the very bytes written.
                if i > 0 && b == 0 {
                    return Err(self.err(at, "a number not in its shortest form".into()));
                }
                return Ok(v);
            }
        }
        Err(self.err(at, "a number beyond 2^64".into()))
    }

    fn var_u32(&mut self, what: &str) -> Result<u32, WireError> {
        let at = self.at;
        let v = self.var()?;
        u32::try_from(v).map_err(|_| self.err(at, format!("{what} {v}: beyond 2^32")))
    }

    fn port(&mut self) -> Result<u16, WireError> {
        let at = self.at;
        let v = self.var()?;
        u16::try_from(v).map_err(|_| self.err(at, format!("port {v}")))
    }

    /// A port of an NSB2 flow: one byte (`one`), or two for a port of 256 or more (one form
    /// per port, as for numbers).
    #[inline]
    fn port8_or_16(&mut self, one: bool) -> Result<u16, WireError> {
        if one {
            return self.u8().map(u16::from);
        }
        let at = self.at;
        let p = self.u16()?;
        if p < 256 {
            return Err(self.err(
                at,
                format!("port {p} in two bytes (below 256 it takes one)"),
            ));
        }
        Ok(p)
    }

    fn bare_addr(&mut self, v6: bool) -> Result<IpAddr, WireError> {
        if v6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(self.take(16)?);
            Ok(IpAddr::from(a))
        } else {
            let s = self.take(4)?;
            Ok(IpAddr::from([s[0], s[1], s[2], s[3]]))
        }
    }

    fn addr(&mut self) -> Result<IpAddr, WireError> {
        let at = self.at;
        match self.u8()? {
            4 => {
                let s = self.take(4)?;
                Ok(IpAddr::from([s[0], s[1], s[2], s[3]]))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(IpAddr::from(a))
            }
            f => Err(self.err(at, format!("address family {f} (4 or 6)"))),
        }
    }

    fn str(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        let at = self.at;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err(at, "a name that is not UTF-8".into()))
    }

    fn end(&self) -> Result<(), WireError> {
        if self.at != self.b.len() {
            return Err(self.err(
                self.at,
                format!("{} bytes after the end", self.b.len() - self.at),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nospy_inventory::Inventory;
    use nospy_testkit::fixtures::access_device;

    /// Devices' addresses: 10.0.0.1 (0); 10.0.0.2 (1) and 2001:db8::2 (2); 10.0.0.7 (3);
    /// 10.0.0.8 (4); 10.1.2.3 (5).
    fn numbering() -> Numbering {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        Numbering::new(&Inventory {
            devices: vec![
                access_device("a", vec![a("10.0.0.1")]),
                access_device("b", vec![a("10.0.0.2"), a("2001:db8::2")]),
                access_device("c", vec![a("10.0.0.7")]),
                access_device("d", vec![a("10.0.0.8")]),
                access_device("e", vec![a("10.1.2.3")]),
            ],
        })
    }

    /// `f` as a collector with [`numbering`] puts it in a batch.
    fn item(f: Flow) -> Item {
        let refs = numbering().refs(f.src, f.dst);
        Item::Flow(f, refs)
    }

    /// A DNS answer seen by `client`, for 300 s.
    fn dns_item(ts_ns: u64, client: [u8; 4], name: &str, addr: [u8; 4]) -> Item {
        Item::Dns(DnsSeen {
            ts_ns,
            client: IpAddr::from(client),
            answer: Answer {
                name: name.into(),
                addr: IpAddr::from(addr),
                ttl: 300,
            },
        })
    }

    /// From 10.0.0.`i` to 2001:db8::`i`: from device a to an address of no device (i = 1), from
    /// b to b (2), from no device to no device (0, 3 and up).
    fn flow(i: u64) -> Flow {
        Flow {
            first_ns: 1_700_000_000_000_000_000 + i,
            last_ns: 1_700_000_000_000_000_500 + i,
            src: IpAddr::from([10, 0, 0, i as u8]),
            dst: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16]),
            sport: 40_000,
            dport: 443,
            proto: 6,
            packets: 3 + i,
            bytes: 180 + i,
            initiator_known: i.is_multiple_of(2),
        }
    }

    /// A batch's bytes as hex.
    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_is_written_byte_for_byte_as_nsb3_says() {
        // Written by the encoder before flows were written as they came (a DNS answer before
        // the first flow, which sets the base; steps back and forth; milliseconds and
        // nanoseconds; an end before the start; each form of addresses; a count of flows of no
        // device): the format on the stream, pinned.
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let n = Numbering::new(&Inventory {
            devices: vec![
                access_device("a", vec![a("10.0.0.1")]),
                access_device("b", vec![a("10.0.0.2"), a("2001:db8::2")]),
            ],
        });
        let fl = |first_ns, last_ns, src, dst, sport, dport, initiator_known| Flow {
            first_ns,
            last_ns,
            src: a(src),
            dst: a(dst),
            sport,
            dport,
            proto: 17,
            packets: 300,
            bytes: 70_000,
            initiator_known,
        };
        let flows = [
            fl(
                1_700_000_000_000_000_000,
                1_700_000_002_000_000_000,
                "10.0.0.1",
                "192.0.2.9",
                40000,
                53,
                true,
            ),
            fl(
                1_700_000_000_000_000_123,
                1_700_000_000_000_000_100,
                "198.51.100.1",
                "2001:db8::2",
                53,
                40001,
                false,
            ),
            fl(
                1_699_999_999_000_000_000,
                1_699_999_999_500_000_000,
                "10.0.0.2",
                "10.0.0.1",
                1,
                2,
                false,
            ),
            fl(
                1_700_000_001_000_000_000,
                1_700_000_001_000_000_000,
                "2001:db8::9",
                "192.0.2.1",
                443,
                443,
                true,
            ),
        ];
        let seen = DnsSeen {
            ts_ns: 1_700_000_000_000_000_000,
            client: a("10.0.0.1"),
            answer: Answer {
                name: "svc.example".into(),
                addr: a("192.0.2.9"),
                ttl: 300,
            },
        };
        let mut items = vec![Item::Dns(seen.clone())];
        items.extend(
            flows
                .iter()
                .map(|f| Item::Flow(f.clone(), n.refs(f.src, f.dst))),
        );
        items.push(Item::Unknown {
            second: 1_700_000_000,
            flows: 2,
            packets: 5,
            bytes: 900,
        });
        let want = unhex(concat!(
            "4e534233",
            "52f18b7b77c68e83f1b03e8dfe291ccb742dd2325def1427a893da9c543d34a1",
            "17979cfe362a0000",
            "00000006",
            "e017979cfe362a0000040a00000104c00002090000012c000b7376632e6578616d706c65",
            "1300d00f00c00002099c403511ac02f0a204",
            "4cf60117c633640102359c4111ac02f0a204",
            "98f5a9d6b90780cab5ee010100010211ac02f0a204",
            "a301a01f0020010db8000000000000000000000009c000020101bb01bb11ac02f0a204",
            "e1000000006553f100000000000000000200000000000000050000000000000384",
        ));
        assert_eq!(encode_batch(&n, &items), want);
        // The same, an item at a time as a collector writes them.
        let mut w = BatchWriter::new(&n, 0);
        w.dns(&seen);
        for f in &flows {
            w.flow(&n, f, n.refs(f.src, f.dst));
        }
        w.unknown(1_700_000_000, 2, 5, 900);
        assert_eq!(w.items(), 6);
        assert_eq!(w.finish(), want);
        assert_eq!(decode_batch(&want, &n).unwrap(), items);
    }

    #[test]
    fn flows_read_in_one_go_are_read_as_carefully() {
        // Every flow form (each way of writing the two addresses: a device's number, 4 or 16
        // bytes; nanoseconds and milliseconds, an end before the start, long numbers), then
        // every cut and every single-byte change of the batch: the quick reading must give what
        // the careful one gives, the same flows or the same error at the same place.
        let n = numbering();
        let mut items: Vec<Item> = (0..6).map(|i| item(flow(i))).collect();
        items.push(item(Flow {
            first_ns: 1_700_000_000_000_000_000,
            last_ns: 1_699_999_999_000_000_000,
            packets: u64::MAX,
            bytes: 1 << 40,
            sport: 65_535,
            ..flow(9)
        }));
        items.push(item(Flow {
            first_ns: 1_700_000_005_000_000_000,
            last_ns: 1_700_000_006_000_000_000,
            src: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
            ..flow(3)
        }));
        // A device to IPv4, IPv4 to a device, IPv6 to a device.
        items.push(item(Flow {
            dst: IpAddr::from([192, 0, 2, 1]),
            ..flow(7)
        }));
        items.push(item(Flow {
            src: IpAddr::from([192, 0, 2, 1]),
            dst: IpAddr::from([10, 0, 0, 8]),
            ..flow(6)
        }));
        items.push(item(Flow {
            src: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 9]),
            dst: IpAddr::from([10, 0, 0, 1]),
            ..flow(6)
        }));
        // Steps to the ends of time and back (modulo 2^64), ports either side of one byte.
        items.push(item(Flow {
            first_ns: u64::MAX,
            last_ns: u64::MAX,
            sport: 255,
            dport: 256,
            ..flow(4)
        }));
        items.push(item(Flow {
            first_ns: 0,
            last_ns: 7_000_000,
            sport: 256,
            dport: 0,
            ..flow(5)
        }));
        items.push(dns_item(5, [10, 0, 0, 1], "a.example", [192, 0, 2, 7]));
        items.push(item(flow(1)));
        let forms: BTreeSet<Option<[bool; 2]>> = items
            .iter()
            .map(|it| match it {
                Item::Flow(_, refs) => Some(refs.map(|r| r.is_some())),
                _ => None,
            })
            .collect();
        assert_eq!(forms.len(), 5, "every form: {forms:?}");
        let b = encode_batch(&n, &items);
        let read = |b: &[u8]| {
            let (mut quick, mut careful) = (Vec::new(), Vec::new());
            let q = read_batch::<true>(b, &n, &mut quick).map(|()| quick);
            let c = read_batch::<false>(b, &n, &mut careful).map(|()| careful);
            (q, c)
        };
        let (q, c) = read(&b);
        assert_eq!(q.unwrap(), items);
        assert_eq!(c.unwrap(), items);
        let mut refused = 0;
        for cut in 0..b.len() {
            let (q, c) = read(&b[..cut]);
            assert_eq!(q, c, "cut at {cut}");
            for v in [0x00, 0x01, 0x05, 0x7f, 0x80, 0xa0, 0xc0, 0xe0, 0xff] {
                let mut m = b.clone();
                m[cut] = v;
                let (q, c) = read(&m);
                refused += usize::from(c.is_err());
                assert_eq!(q, c, "byte {cut} set to {v:#04x}");
            }
        }
        assert!(refused > b.len(), "changes must be refused ({refused})");
    }

    use std::collections::BTreeSet;

    #[test]
    fn a_batch_reads_back_as_written() {
        let n = numbering();
        let items = vec![
            item(flow(1)),
            dns_item(5, [10, 0, 0, 1], "updates.vendor.example", [192, 0, 2, 7]),
            Item::Unknown {
                second: 1_700_000_000,
                flows: 4,
                packets: 9,
                bytes: 1_000,
            },
            item(flow(2)),
            // Whole milliseconds (as exporters give them), and an end before the start.
            item(Flow {
                first_ns: 1_700_000_000_123_000_000,
                last_ns: 1_700_000_003_000_000_000,
                ..flow(3)
            }),
            item(Flow {
                first_ns: 1_700_000_000_000_000_900,
                last_ns: 1_700_000_000_000_000_100,
                ..flow(4)
            }),
        ];
        let b = encode_batch(&n, &items);
        assert_eq!(decode_batch(&b, &n).unwrap(), items);
        // Every cut is refused with its offset, never a panic.
        for cut in 0..b.len() {
            let e = decode_batch(&b[..cut], &n).unwrap_err();
            assert!(e.offset <= cut, "{e}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(
            decode_batch(&longer, &n).unwrap_err().to_string(),
            format!("byte {}: 1 bytes after the end", b.len())
        );
        // The first item's head is byte 48 (after the magic, the numbering's digest, the base
        // time and the count).
        let mut bad = b.clone();
        bad[48] = 0xc5;
        assert_eq!(
            decode_batch(&bad, &n).unwrap_err().to_string(),
            "byte 48: item head 0xc5 (below 0xc0 a flow, 0xe0 DNS, 0xe1 unknown)"
        );
        bad[48] = 0xa0;
        bad.insert(49, 0x04);
        assert_eq!(
            decode_batch(&bad, &n).unwrap_err().to_string(),
            "byte 49: address families 0x04"
        );
        // A flow's numbers are at most 64 bits.
        let mut long = b.clone();
        long[49..59].copy_from_slice(&[0xff; 10]);
        assert!(decode_batch(&long, &n)
            .unwrap_err()
            .to_string()
            .contains("beyond 2^64"));
        let mut huge = b.clone();
        huge[44..48].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_batch(&huge, &n)
            .unwrap_err()
            .to_string()
            .contains("cannot fit"));
        assert!(decode_batch(b"NSP1....", &n)
            .unwrap_err()
            .to_string()
            .starts_with("byte 0: not a flow batch"));
        // The first flow's source is device a's address, number 0 (after a head, a step of a
        // byte and a duration of two): a number beyond the inventory's is refused at its place.
        assert_eq!(b[52], 0);
        let mut beyond = b.clone();
        beyond[52] = 6;
        assert_eq!(
            decode_batch(&beyond, &n).unwrap_err().to_string(),
            "byte 52: address number 6: the inventory numbers 6 addresses"
        );
        // Under another inventory, device numbers mean nothing: the batch is refused whole.
        let other = Numbering::new(&Inventory {
            devices: vec![access_device("a", vec![IpAddr::from([10, 0, 0, 1])])],
        });
        let e = decode_batch(&b, &other).unwrap_err().to_string();
        assert!(
            e.starts_with("byte 4: written under another inventory (its devices and addresses: "),
            "{e}"
        );
        let hex = |d: &[u8; 32]| nospy_tlog::Sha256(*d).to_hex();
        assert!(e.contains(&hex(n.digest())), "{e}");
        assert!(e.contains(&hex(other.digest())), "{e}");
    }

    /// A flow as an exporter gives it: from device e (10.1.2.3), IPv4, whole milliseconds, an
    /// ephemeral port to a service's.
    fn exported(ms: u64) -> Flow {
        Flow {
            first_ns: 1_700_000_000_000_000_000 + ms * 1_000_000,
            last_ns: 1_700_000_000_000_000_000 + (ms + 2_500) * 1_000_000,
            src: IpAddr::from([10, 1, 2, 3]),
            dst: IpAddr::from([198, 51, 100, 20]),
            sport: 51_234,
            dport: 443,
            proto: 6,
            packets: 12,
            bytes: 4_800,
            initiator_known: false,
        }
    }

    #[test]
    fn an_exporter_s_flow_takes_seventeen_bytes() {
        // Head 1, a 20 ms step 1, 2.5 s 2, the device's address as its number 1 (2 beyond 127
        // addresses), its peer's 4, ports 2 + 2, protocol 1, packets 1, bytes 2 (NSB2 took 20,
        // writing the device's address; NSB1 25). The engine's work grows with these bytes.
        let n = numbering();
        let items: Vec<Item> = (0..100).map(|i| item(exported(20 * i))).collect();
        let b = encode_batch(&n, &items);
        assert_eq!(b.len(), 48 + 100 * 17);
        assert_eq!(decode_batch(&b, &n).unwrap(), items);
    }

    #[test]
    fn an_nsb3_flow_has_one_form() {
        let n = numbering();
        let f = Flow {
            sport: 80,
            ..exported(0)
        };
        let b = encode_batch(&n, &[item(f)]);
        // The first flow's head is byte 48; its step, duration, device number and peer take
        // 1 + 2 + 1 + 4 bytes, so its source port is byte 57. A port below 256 in two bytes is
        // refused at its place.
        assert_eq!(b[48] & FLOW_SPORT8, FLOW_SPORT8);
        assert_eq!(b[57], 80);
        let mut two = b[..57].to_vec();
        two[48] &= !FLOW_SPORT8;
        two.extend_from_slice(&[0, 80]);
        two.extend_from_slice(&b[58..]);
        assert_eq!(
            decode_batch(&two, &n).unwrap_err().to_string(),
            "byte 57: port 80 in two bytes (below 256 it takes one)"
        );
        // A step in milliseconds beyond 2^63 ns is refused at its place.
        let mut far = b[..49].to_vec();
        far.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        far.extend_from_slice(&b[50..]);
        assert_eq!(
            decode_batch(&far, &n).unwrap_err().to_string(),
            "byte 49: a flow's start beyond 2^63 ns from the one before"
        );
        // A device's number in more bytes than it needs is refused like any such number.
        let mut padded = b[..52].to_vec();
        padded.extend_from_slice(&[0x85, 0x00]);
        padded.extend_from_slice(&b[53..]);
        assert_eq!(
            decode_batch(&padded, &n).unwrap_err().to_string(),
            "byte 52: a number not in its shortest form"
        );
    }

    #[test]
    fn batches_of_the_earlier_formats_are_still_read() {
        // The same items as collectors before NSB3 wrote them, NSB1 then NSB2: a flow in
        // milliseconds from device c, a DNS answer, a flow from IPv6 to device d whose end is
        // before its start, flows of no device. Their devices are found by address.
        let nsb1 = unhex(
            "4e53423117979cfe362a0384000000040101bca2d33ac092eedb0a0a000007c0000209c0b8\
             02bb03060cc81a0217979cfe362a0005040a00000704c00002090000012c00167570646174\
             65732e76656e646f722e6578616d706c65011400a00620010db800000000000000000000\
             00010a00000835e92911015a03000000006553f100000000000000000400000000000000\
             0900000000000003e8",
        );
        let nsb2 = unhex(
            "4e53423217979cfe3d7ed4c0000000040300bd160a000007c00002099c4001bb060cc81a80\
             17979cfe362a0005040a00000704c00002090000012c0016757064617465732e76656e646f\
             722e6578616d706c6534f7c4a675a00620010db80000000000000000000000010a00000835\
             14e911015a81000000006553f1000000000000000004000000000000000900000000000003\
             e8",
        );
        let n = numbering();
        let items = vec![
            item(Flow {
                first_ns: 1_700_000_000_123_000_000,
                last_ns: 1_700_000_003_000_000_000,
                src: IpAddr::from([10, 0, 0, 7]),
                dst: IpAddr::from([192, 0, 2, 9]),
                sport: 40_000,
                dport: 443,
                proto: 6,
                packets: 12,
                bytes: 3_400,
                initiator_known: true,
            }),
            dns_item(
                1_700_000_000_000_000_005,
                [10, 0, 0, 7],
                "updates.vendor.example",
                [192, 0, 2, 9],
            ),
            item(Flow {
                first_ns: 1_700_000_000_000_000_900,
                last_ns: 1_700_000_000_000_000_100,
                src: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
                dst: IpAddr::from([10, 0, 0, 8]),
                sport: 53,
                dport: 5353,
                proto: 17,
                packets: 1,
                bytes: 90,
                initiator_known: false,
            }),
            Item::Unknown {
                second: 1_700_000_000,
                flows: 4,
                packets: 9,
                bytes: 1_000,
            },
        ];
        assert!(matches!(items[0], Item::Flow(_, [Some(3), None])));
        assert!(matches!(items[2], Item::Flow(_, [None, Some(4)])));
        for old in [&nsb1, &nsb2] {
            assert_eq!(decode_batch(old, &n).unwrap(), items);
            // Under any inventory: their addresses are written out.
            let other = Numbering::new(&Inventory { devices: vec![] });
            let read = decode_batch(old, &other).unwrap();
            assert!(read
                .iter()
                .all(|it| !matches!(it, Item::Flow(_, r) if r.iter().any(Option::is_some))));
        }
        // Written again, as NSB3, they read back the same, in fewer bytes.
        let again = encode_batch(&n, &items);
        assert_eq!(&again[..4], b"NSB3");
        assert_eq!(decode_batch(&again, &n).unwrap(), items);
        assert!(
            again.len() - 32 < nsb2.len() && nsb2.len() < nsb1.len(),
            "{} (less the digest), {}, {}",
            again.len(),
            nsb2.len(),
            nsb1.len()
        );
        // Their faults are still named: every cut refused with its place, a kind or head
        // they do not have, a flags byte NSB1 does not know.
        for old in [&nsb1, &nsb2] {
            for cut in 4..old.len() {
                let e = decode_batch(&old[..cut], &n).unwrap_err();
                assert!(e.offset <= cut, "{e}");
            }
        }
        let mut bad = nsb1.clone();
        bad[16] = 9;
        assert_eq!(
            decode_batch(&bad, &n).unwrap_err().to_string(),
            "byte 16: item kind 9 (1 flow, 2 DNS, 3 unknown)"
        );
        bad[16] = 1;
        bad[17] = 0x20;
        assert_eq!(
            decode_batch(&bad, &n).unwrap_err().to_string(),
            "byte 17: flow flags 0x20"
        );
        let mut bad = nsb2.clone();
        bad[16] = 0x90;
        assert_eq!(
            decode_batch(&bad, &n).unwrap_err().to_string(),
            "byte 16: item head 0x90 (below 0x80 a flow, 0x80 DNS, 0x81 unknown)"
        );
    }

    #[test]
    fn a_part_reads_back_as_written() {
        let d = Delta {
            flows: 7,
            packets: 70,
            bytes: 7_000,
            unknown_device_flows: 1,
            flows_in_dropped_rows: 0,
            devices: vec![DeviceCounts {
                device: 3,
                flows: 6,
                violations: 2,
                unattributable: 1,
            }],
            violations: vec![RowParts {
                device: 3,
                to_device: false,
                peer: IpAddr::from([203, 0, 113, 9]),
                proto: 17,
                port: 53,
                flows: 2,
                packets: 4,
                bytes: 400,
                first_ns: 1,
                last_ns: 9,
                names: 0,
                openers: nospy_monitor::OPENED_BY_DEVICE | nospy_monitor::OPENER_UNKNOWN,
            }],
            unattributable: vec![RowParts {
                device: 3,
                to_device: true,
                peer: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
                proto: 6,
                port: 22,
                flows: 1,
                packets: 1,
                bytes: 60,
                first_ns: 2,
                last_ns: 3,
                names: 1,
                openers: 0,
            }],
            name_sets: vec![
                Vec::new().into(),
                vec!["a.example".into(), "b.example".into()].into(),
            ],
            peer_names: Some(vec![NamedPeer {
                peer: IpAddr::from([203, 0, 113, 9]),
                set: 1,
                total: 2,
            }]),
        };
        let p = Part {
            inventory: [7; 32],
            partition: 5,
            after: 10,
            last: 99,
            watermark_ns: 1234,
            window_secs: 300,
            refused: 1,
            windows: vec![
                (1_700_000_100, d.clone()),
                (1_700_000_400, Delta::default()),
            ],
        };
        let b = encode_part(&p);
        assert_eq!(decode_part(&b).unwrap(), p);
        for n in 0..b.len() {
            assert!(decode_part(&b[..n]).is_err());
        }
        // Its end read from its head alone; a head cut short, or of something else, refused.
        assert_eq!(part_end(&b).unwrap(), (99, 1234));
        let head = 4 + 32 + 4 + 5 * 8;
        assert_eq!(part_end(&b[..head]).unwrap(), (99, 1234));
        for n in 0..head {
            assert!(part_end(&b[..n]).is_err(), "{n} bytes");
        }
        let mut nsp1 = b.clone();
        nsp1[..4].copy_from_slice(b"NSP1");
        assert!(part_end(&nsp1).unwrap_err().to_string().contains("NSP1"));
        let mut backwards = b.clone();
        backwards[4 + 32 + 4 + 8..4 + 32 + 4 + 16].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(
            part_end(&backwards).unwrap_err().to_string(),
            "byte 44: ends at 9, before it begins (10)"
        );
        // Times far from the window, and the largest numbers, read back as written.
        let mut far = p.clone();
        let row = far.windows[0].1.violations[0];
        far.windows[0].1.violations.push(RowParts {
            device: u32::MAX,
            first_ns: u64::MAX,
            last_ns: 0,
            flows: u64::MAX,
            names: u32::MAX,
            ..row
        });
        far.windows[1].0 = u64::MAX;
        assert_eq!(decode_part(&encode_part(&far)).unwrap(), far);
        // A number in a longer form than its shortest is refused (one encoding per part).
        let mut one = p.clone();
        one.windows.truncate(1);
        let b1 = encode_part(&one);
        let at = 4 + 32 + 4 + 5 * 8 + 4 + 8 + 5 * 8 + 4;
        let mut long = b1[..at].to_vec();
        long.extend_from_slice(&[0x83, 0x00]);
        long.extend_from_slice(&b1[at + 1..]);
        assert_eq!(
            decode_part(&long).unwrap_err().to_string(),
            format!("byte {at}: a number not in its shortest form")
        );
        // Times in whole milliseconds are written in milliseconds (side bit 4), and read back
        // as written; whole milliseconds in nanoseconds, or milliseconds beyond 2^64
        // nanoseconds, are refused (one encoding per row); a part of the format before
        // (NSP3) is read as it was written then, bit 4 refused there.
        let mut in_ms = one.clone();
        let start = in_ms.windows[0].0;
        let ms_row = RowParts {
            first_ns: start * 1_000_000_000 + 1_500 * MS,
            last_ns: start * 1_000_000_000 + 1_750 * MS,
            ..in_ms.windows[0].1.violations[0]
        };
        in_ms.windows[0].1.violations = vec![ms_row];
        let bm = encode_part(&in_ms);
        assert_eq!(decode_part(&bm).unwrap(), in_ms);
        let mut in_ns = in_ms.clone();
        in_ns.windows[0].1.violations[0].last_ns += 1;
        let bn = encode_part(&in_ns);
        assert_eq!(decode_part(&bn).unwrap(), in_ns);
        // The two differ first at the row's side.
        let side_at = bm.iter().zip(&bn).position(|(m, n)| m != n).unwrap();
        assert_eq!(bm[side_at], bn[side_at] | ROW_MS);
        assert_eq!(bn[side_at] & ROW_MS, 0);
        // Then peer (IPv4: 5), proto, port, flows, packets and bytes (1, 1 and 2 bytes), and
        // the times: 1,500 and 250 ms, two bytes each, where the ns row's take five and four.
        let times_at = side_at + 1 + 5 + 1 + 2 + 4;
        assert_eq!(bn.len() - bm.len(), 5 + 4 - 2 - 2);
        let mut as_ns = bm.clone();
        as_ns[side_at] &= !ROW_MS;
        let mut ns = Vec::new();
        put_var(&mut ns, 1_500 * MS);
        put_var(&mut ns, 250 * MS);
        as_ns.splice(times_at..times_at + 4, ns);
        assert_eq!(
            decode_part(&as_ns).unwrap_err().to_string(),
            format!(
                "byte {side_at}: whole milliseconds written in nanoseconds (one encoding per row)"
            )
        );
        let mut beyond = in_ms.clone();
        beyond.windows[0].1.violations[0].first_ns = 0;
        beyond.windows[0].0 = 0;
        let mut bb = encode_part(&beyond);
        // first 0 ms (one byte) made u64::MAX / 1,000 (a ten-byte LEB128, shortest form).
        let mut big = Vec::new();
        put_var(&mut big, u64::MAX / 1_000);
        bb.splice(times_at..times_at + 1, big);
        assert_eq!(
            decode_part(&bb).unwrap_err().to_string(),
            format!("byte {times_at}: times in milliseconds beyond 2^64 nanoseconds")
        );
        let mut nsp3 = bn.clone();
        nsp3[..4].copy_from_slice(b"NSP3");
        assert_eq!(decode_part(&nsp3).unwrap(), in_ns);
        let mut ms3 = bm.clone();
        ms3[..4].copy_from_slice(b"NSP3");
        assert_eq!(
            decode_part(&ms3).unwrap_err().to_string(),
            format!("byte {side_at}: side {}", bm[side_at])
        );
        // A part written before peers' names were recorded (NSP2: no names flag) reads as
        // one that does not record them; a flag other than 0 or 1 is refused at its place.
        let mut unnamed = p.clone();
        unnamed.windows.truncate(1);
        unnamed.windows[0].1.peer_names = None;
        let b3 = encode_part(&unnamed);
        assert_eq!(b3.last(), Some(&0));
        let mut b2 = b3[..b3.len() - 1].to_vec();
        b2[..4].copy_from_slice(b"NSP2");
        assert_eq!(decode_part(&b2).unwrap(), unnamed);
        let mut flag = b3.clone();
        let at = flag.len() - 1;
        flag[at] = 3;
        assert_eq!(
            decode_part(&flag).unwrap_err().to_string(),
            format!("byte {at}: names flag 3 (0, 1 or 2)")
        );
        // A peer some of whose names were left out: written with every peer's count (flag 2),
        // read back as written; a count below the set's names, or flag 2 when none was left
        // out (one encoding per part: that is flag 1), refused at its place.
        let mut counted = p.clone();
        counted.windows.truncate(1);
        counted.windows[0].1.peer_names.as_mut().unwrap()[0].total = 7;
        let b5 = encode_part(&counted);
        assert_eq!(decode_part(&b5).unwrap(), counted);
        // The window ends with the flag, one peer (4 bytes), the IPv4 peer (5), its set and
        // its count (a byte each).
        let flag_at = b5.len() - 12;
        assert_eq!((b5[flag_at], b5[b5.len() - 1]), (2, 7));
        let mut fewer = b5.clone();
        *fewer.last_mut().unwrap() = 1;
        assert_eq!(
            decode_part(&fewer).unwrap_err().to_string(),
            format!(
                "byte {}: 1 names counted, fewer than the 2 of its set",
                b5.len() - 1
            )
        );
        let mut all = b5.clone();
        *all.last_mut().unwrap() = 2;
        assert_eq!(
            decode_part(&all).unwrap_err().to_string(),
            format!(
                "byte {flag_at}: names flag 2 with no name left out (that is written as flag 1)"
            )
        );
        // A part of the fixed-width format before this one is refused by name.
        let mut old = b.clone();
        old[..4].copy_from_slice(b"NSP1");
        assert!(decode_part(&old)
            .unwrap_err()
            .to_string()
            .starts_with("byte 0: a part of the earlier format NSP1"));
        // A device number beyond 32 bits is refused at its place.
        let mut one = p.clone();
        one.windows.truncate(1);
        let b = encode_part(&one);
        // The first device's number is the first byte after the window header and the
        // device count.
        let at = 4 + 32 + 4 + 5 * 8 + 4 + 8 + 5 * 8 + 4;
        let mut big = b[..at].to_vec();
        big.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        big.extend_from_slice(&b[at + 1..]);
        assert_eq!(
            decode_part(&big).unwrap_err().to_string(),
            format!("byte {at}: device 34359738367: beyond 2^32")
        );
    }

    /// A part of `partition` of `size` bytes or so (its window's names fill it).
    fn sized_part(partition: u32, size: usize, last: u64) -> Vec<u8> {
        let d = Delta {
            name_sets: vec![Vec::new().into(), vec!["n".repeat(200); size / 202].into()],
            ..Delta::default()
        };
        encode_part(&Part {
            inventory: [7; 32],
            partition,
            after: 0,
            last,
            watermark_ns: 5,
            window_secs: 300,
            refused: 0,
            windows: vec![(1_700_000_100, d)],
        })
    }

    /// A chain's chunks are read as their part once the last came after all the others; the
    /// chunks of a part never appended whole are passed over (a whole part, or another part's
    /// first chunk, came in their partition's chain first), whatever came in other partitions'
    /// chains between; a chunk's head that cannot be right is refused, naming its byte.
    #[test]
    fn chunks_are_read_as_their_part_only_when_appended_whole() {
        let whole = |a: &mut Assembler, m: &[u8]| a.add(m).unwrap().map(|c| c.into_owned());
        let (a1, a2) = (sized_part(1, 5_000, 10), sized_part(2, 5_000, 20));
        let c1 = chunk_part(a1.clone(), 1, 3, 10, 5, 2_000);
        let c2 = chunk_part(a2.clone(), 2, 4, 20, 5, 2_000);
        assert_eq!((c1.len(), c2.len()), (3, 3));
        // Two partitions' chunks interleaved: each part whole at its last chunk.
        let mut a = Assembler::default();
        let mut got = Vec::new();
        for m in [&c1[0], &c2[0], &c1[1], &c2[1], &c1[2], &c2[2]] {
            got.extend(whole(&mut a, m));
        }
        assert_eq!(got, [a1.clone(), a2.clone()]);
        // A part's first chunk, then a whole part in its chain: that part alone; the rest of
        // the first is passed over, as is a chunk whose beginning was never read.
        let small = sized_part(1, 100, 11);
        let mut a = Assembler::default();
        let mut got = Vec::new();
        for m in [&c1[0], &small, &c1[1], &c1[2], &c2[1], &c2[2]] {
            got.extend(whole(&mut a, m));
        }
        assert_eq!(got, [small]);
        // Another part begun in the same chain before the first's last chunk: only the
        // second, if it ends.
        let b1 = chunk_part(sized_part(1, 3_000, 12), 1, 9, 12, 5, 2_000);
        let mut a = Assembler::default();
        let mut got = Vec::new();
        for m in [&c1[0], &c1[1], &b1[0], &c1[2], &b1[1]] {
            got.extend(whole(&mut a, m));
        }
        assert!(got.is_empty(), "a chunk out of its place ends both parts");
        let mut a = Assembler::default();
        for m in [&c1[0], &c1[1], &b1[0]] {
            assert_eq!(whole(&mut a, m), None);
        }
        assert_eq!(whole(&mut a, &b1[1]), Some(sized_part(1, 3_000, 12)));
        // Heads that cannot be right.
        let head = |index: u32, count: u32| {
            let mut m = c1[0].clone();
            m[16..20].copy_from_slice(&index.to_be_bytes());
            m[20..24].copy_from_slice(&count.to_be_bytes());
            m
        };
        for (index, count) in [(0, 1), (2, 2), (0, MAX_CHUNKS + 1), (u32::MAX, 3)] {
            assert_eq!(
                Assembler::default().add(&head(index, count)).unwrap_err(),
                WireError {
                    offset: 16,
                    problem: format!(
                        "chunk {index} of {count}: a part takes 2 to {MAX_CHUNKS} chunks"
                    )
                }
            );
        }
        assert_eq!(
            Assembler::default()
                .add(&c1[0][..CHUNK_HEAD])
                .unwrap_err()
                .to_string(),
            format!("byte {CHUNK_HEAD}: a chunk without bytes")
        );
        assert!(Assembler::default()
            .add(&c1[0][..CHUNK_HEAD - 1])
            .unwrap_err()
            .to_string()
            .contains("cut short"));
    }
}
