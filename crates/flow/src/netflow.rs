//! NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export packets into [`Flow`]s.
//!
//! A [`Collector`] keeps the templates each exporter announced (per exporter address, observation
//! domain or source id, and template id), so data sets are read with the template that was in
//! force; data for a template not (yet) seen is counted and skipped. Templates are compiled once
//! into the list of fields nospy reads and their offsets, so reading a record costs the same
//! whatever else the template carries. Enterprise-specific and unknown elements are skipped by
//! length; variable-length elements are read with their length prefix. Everything malformed in a
//! message is an error for that message (the rest of the stream is still read), and counts are
//! kept. Options templates are read, and their data used only for the exporter's
//! `systemInitTimeMilliseconds` (which IPFIX relative timestamps need).

use crate::fasthash::FastMap;
use crate::record::Flow;
use std::fmt;
use std::net::IpAddr;

/// Why a message was not read (the message is skipped; the collector stays usable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    /// Byte offset in the message.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at byte {} of the export packet: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for ExportError {}

fn bad<T>(offset: usize, message: impl Into<String>) -> Result<T, ExportError> {
    Err(ExportError {
        offset,
        message: message.into(),
    })
}

/// What the collector counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages read.
    pub messages: u64,
    /// Messages refused as malformed.
    pub malformed: u64,
    /// Flow records produced.
    pub records: u64,
    /// Data records skipped because their template had not been seen.
    pub no_template: u64,
    /// Data records skipped because they carry no addresses.
    pub no_addresses: u64,
    /// Templates learnt (including replacements).
    pub templates: u64,
}

/// What nospy reads of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Bytes,
    Packets,
    Proto,
    Sport,
    Dport,
    Src4,
    Dst4,
    Src6,
    Dst6,
    StartUptime,
    EndUptime,
    StartSecs,
    EndSecs,
    StartMs,
    EndMs,
    StartUs,
    EndUs,
    StartNs,
    EndNs,
    IcmpTypeCode,
    SysInitMs,
}

fn field_of(id: u16) -> Option<Field> {
    Some(match id {
        1 | 85 => Field::Bytes,
        2 | 86 => Field::Packets,
        4 => Field::Proto,
        7 => Field::Sport,
        11 => Field::Dport,
        8 => Field::Src4,
        12 => Field::Dst4,
        27 => Field::Src6,
        28 => Field::Dst6,
        22 => Field::StartUptime,
        21 => Field::EndUptime,
        150 => Field::StartSecs,
        151 => Field::EndSecs,
        152 => Field::StartMs,
        153 => Field::EndMs,
        154 => Field::StartUs,
        155 => Field::EndUs,
        156 => Field::StartNs,
        157 => Field::EndNs,
        32 | 139 => Field::IcmpTypeCode,
        160 => Field::SysInitMs,
        _ => return None,
    })
}

/// A fixed-length template's record length, and the fields nospy reads: offset, length, what.
type FixedLayout = (usize, Vec<(usize, u16, Field)>);

/// A template compiled for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Each field's length (65535: variable) and what nospy reads of it, in order.
    fields: Vec<(u16, Option<Field>)>,
    /// When every field has a fixed length: the record length and the fields read, with offsets.
    fixed: Option<FixedLayout>,
    /// An options template (its data only feeds exporter state).
    options: bool,
}

impl Template {
    fn new(fields: Vec<(u16, Option<Field>)>, options: bool) -> Template {
        let fixed = if fields.iter().all(|(l, _)| *l != 0xffff) {
            let mut at = 0;
            let mut read = Vec::new();
            for (len, f) in &fields {
                if let Some(f) = f {
                    read.push((at, *len, *f));
                }
                at += *len as usize;
            }
            Some((at, read))
        } else {
            None
        };
        Template {
            fields,
            fixed,
            options,
        }
    }
}

/// Whose templates: exporter (by its number in the collector), observation domain (IPFIX) or source id (v9), template id.
type TemplateKey = (u32, u32, u16);

/// Why a collector's saved state was refused: the line, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError {
    /// The line (from 1).
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for RestoreError {}

/// A collector's memory: templates and exporter state, across messages.
#[derive(Default)]
pub struct Collector {
    templates: FastMap<TemplateKey, Template>,
    /// Exporters by name, numbered (so that template lookups on the hot path allocate nothing).
    exporters: FastMap<String, u32>,
    /// systemInitTimeMilliseconds per exporter and domain (IPFIX relative times).
    init_ms: FastMap<(u32, u32), u64>,
    /// What was counted.
    pub counters: Counters,
    /// Whether templates or exporter state changed since [`Collector::take_changed`] last said.
    changed: bool,
}

/// At most this many exporters are told apart (messages from more are refused and counted).
pub const MAX_EXPORTERS: usize = 65_536;

/// At most this many templates are kept (an exporter announcing more is refused), so memory is
/// bounded whatever arrives.
pub const MAX_TEMPLATES: usize = 65_536;

/// A big-endian unsigned value of up to 8 bytes (beyond, the last 8 count).
#[inline]
fn be(d: &[u8]) -> u64 {
    match *d {
        [a] => a as u64,
        [a, b] => u16::from_be_bytes([a, b]) as u64,
        [a, b, c, d] => u32::from_be_bytes([a, b, c, d]) as u64,
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => d.iter().fold(0u64, |a, b| (a << 8) | *b as u64),
    }
}

fn get(d: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    d.get(at..at.checked_add(n)?)
}

/// The values of one record, before they become a flow.
#[derive(Default)]
struct Values {
    bytes: u64,
    packets: u64,
    proto: u8,
    sport: u16,
    dport: u16,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    start_up: Option<u64>,
    end_up: Option<u64>,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    icmp: Option<u16>,
    sys_init_ms: Option<u64>,
}

impl Values {
    #[inline(always)]
    fn set(&mut self, f: Field, v: &[u8]) {
        match f {
            Field::Bytes => self.bytes = be(v),
            Field::Packets => self.packets = be(v),
            Field::Proto => self.proto = be(v) as u8,
            Field::Sport => self.sport = be(v) as u16,
            Field::Dport => self.dport = be(v) as u16,
            Field::Src4 if v.len() == 4 => self.src = Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
            Field::Dst4 if v.len() == 4 => self.dst = Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
            Field::Src6 if v.len() == 16 => self.src = Some(ip6(v)),
            Field::Dst6 if v.len() == 16 => self.dst = Some(ip6(v)),
            Field::StartUptime => self.start_up = Some(be(v)),
            Field::EndUptime => self.end_up = Some(be(v)),
            Field::StartSecs => self.start_ns = Some(be(v).saturating_mul(1_000_000_000)),
            Field::EndSecs => self.end_ns = Some(be(v).saturating_mul(1_000_000_000)),
            Field::StartMs => self.start_ns = Some(be(v).saturating_mul(1_000_000)),
            Field::EndMs => self.end_ns = Some(be(v).saturating_mul(1_000_000)),
            Field::StartUs if v.len() == 8 => self.start_ns = Some(ntp(v)),
            Field::EndUs if v.len() == 8 => self.end_ns = Some(ntp(v)),
            Field::StartNs if v.len() == 8 => self.start_ns = Some(ntp(v)),
            Field::EndNs if v.len() == 8 => self.end_ns = Some(ntp(v)),
            Field::IcmpTypeCode => self.icmp = Some(be(v) as u16),
            Field::SysInitMs => self.sys_init_ms = Some(be(v)),
            _ => {}
        }
    }
}

fn ip6(v: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(v);
    IpAddr::from(a)
}

/// An NTP timestamp (seconds since 1900, fraction) to nanoseconds since the Unix epoch.
fn ntp(v: &[u8]) -> u64 {
    let secs = be(&v[..4]).saturating_sub(2_208_988_800);
    let frac = be(&v[4..]);
    secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

/// The element id nospy writes for a field it reads, when saving templates (any id that
/// [`field_of`] maps back to the same field).
fn id_of(f: Field) -> u16 {
    match f {
        Field::Bytes => 1,
        Field::Packets => 2,
        Field::Proto => 4,
        Field::Sport => 7,
        Field::Dport => 11,
        Field::Src4 => 8,
        Field::Dst4 => 12,
        Field::Src6 => 27,
        Field::Dst6 => 28,
        Field::StartUptime => 22,
        Field::EndUptime => 21,
        Field::StartSecs => 150,
        Field::EndSecs => 151,
        Field::StartMs => 152,
        Field::EndMs => 153,
        Field::StartUs => 154,
        Field::EndUs => 155,
        Field::StartNs => 156,
        Field::EndNs => 157,
        Field::IcmpTypeCode => 32,
        Field::SysInitMs => 160,
    }
}

/// First line of a saved collector state.
const STATE_HEADER: &str = "nospy-collector-state 1";

impl Collector {
    /// A collector that knows no template yet.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Whether templates or exporter state changed since the last call (so a live collector
    /// saves its state only when there is something new to save).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The collector's templates and exporter state as text, for [`Collector::restore`]: a
    /// collector restarted with it reads data sets at once instead of waiting for each exporter
    /// to send its templates again (IPFIX over UDP resends them only every few minutes).
    ///
    /// One line per item, sorted: `template EXPORTER DOMAIN ID data|options LEN:ELEMENT,...`
    /// (element `-` for one nospy does not read; length 65535 for variable-length) and
    /// `init EXPORTER DOMAIN MILLISECONDS` (the exporter's systemInitTimeMilliseconds).
    pub fn save(&self) -> String {
        let mut names: Vec<&str> = vec![""; self.exporters.len()];
        for (n, &i) in &self.exporters {
            names[i as usize] = n;
        }
        let mut lines = Vec::new();
        for (&(ex, domain, id), t) in &self.templates {
            let fields: Vec<String> = t
                .fields
                .iter()
                .map(|(len, f)| match f {
                    Some(f) => format!("{len}:{}", id_of(*f)),
                    None => format!("{len}:-"),
                })
                .collect();
            lines.push(format!(
                "template {} {domain} {id} {} {}",
                names[ex as usize],
                if t.options { "options" } else { "data" },
                fields.join(",")
            ));
        }
        for (&(ex, domain), ms) in &self.init_ms {
            lines.push(format!("init {} {domain} {ms}", names[ex as usize]));
        }
        lines.sort();
        let mut out = String::from(STATE_HEADER);
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// A collector with the state [`Collector::save`] wrote. Refuses, naming the line, anything
    /// else (and more templates or exporters than a collector keeps).
    pub fn restore(text: &str) -> Result<Collector, RestoreError> {
        Self::restore_text(text)
    }

    fn restore_text(text: &str) -> Result<Collector, RestoreError> {
        let mut c = Collector::new();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l.trim_end() == STATE_HEADER => {}
            _ => {
                return Err(RestoreError {
                    line: 1,
                    problem: format!("expected {STATE_HEADER:?}"),
                })
            }
        }
        for (i, line) in lines {
            let n = i + 1;
            let at = |problem: String| RestoreError { line: n, problem };
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.is_empty() {
                continue;
            }
            let num = |s: &str, what: &str| -> Result<u64, RestoreError> {
                s.parse::<u64>()
                    .map_err(|_| at(format!("{what} {s:?} is not a number")))
            };
            let mut exporter = |name: &str| -> Result<u32, RestoreError> {
                if let Some(&e) = c.exporters.get(name) {
                    return Ok(e);
                }
                if c.exporters.len() >= MAX_EXPORTERS {
                    return Err(at(format!("more than {MAX_EXPORTERS} exporters")));
                }
                let e = c.exporters.len() as u32;
                c.exporters.insert(name.to_string(), e);
                Ok(e)
            };
            match w.as_slice() {
                ["template", ex, domain, id, kind, fields] => {
                    let ex = exporter(ex)?;
                    let domain = u32::try_from(num(domain, "domain")?)
                        .map_err(|_| at("domain is over 32 bits".into()))?;
                    let id = u16::try_from(num(id, "template id")?)
                        .ok()
                        .filter(|&id| id >= 256)
                        .ok_or_else(|| at("template id must be 256 to 65535".into()))?;
                    let options = match *kind {
                        "data" => false,
                        "options" => true,
                        k => return Err(at(format!("{k:?} is neither data nor options"))),
                    };
                    let mut list = Vec::new();
                    for f in fields.split(',') {
                        let (len, el) = f
                            .split_once(':')
                            .ok_or_else(|| at(format!("field {f:?} is not LEN:ELEMENT")))?;
                        // Zero is a length exporters may declare (the field takes no room).
                        let len = u16::try_from(num(len, "field length")?)
                            .map_err(|_| at(format!("field length {len} is over 65535")))?;
                        let field = match el {
                            "-" => None,
                            e => Some(
                                u16::try_from(num(e, "element")?)
                                    .ok()
                                    .and_then(field_of)
                                    .ok_or_else(|| {
                                        at(format!("element {e} is not one nospy reads"))
                                    })?,
                            ),
                        };
                        list.push((len, field));
                    }
                    if list.is_empty() {
                        return Err(at("a template needs fields".into()));
                    }
                    if c.templates.len() >= MAX_TEMPLATES {
                        return Err(at(format!("more than {MAX_TEMPLATES} templates")));
                    }
                    c.templates
                        .insert((ex, domain, id), Template::new(list, options));
                }
                ["init", ex, domain, ms] => {
                    let ex = exporter(ex)?;
                    let domain = u32::try_from(num(domain, "domain")?)
                        .map_err(|_| at("domain is over 32 bits".into()))?;
                    let ms = num(ms, "milliseconds")?;
                    c.init_ms.insert((ex, domain), ms);
                }
                _ => {
                    return Err(at(format!(
                        "expected `template EXPORTER DOMAIN ID data|options FIELDS` or `init EXPORTER DOMAIN MS`, found {line:?}"
                    )))
                }
            }
        }
        Ok(c)
    }

    /// Reads one export packet from `exporter` (any name that tells exporters apart: the UDP
    /// source address, or the capture's), appending its flows to `out`. Every export format carries
    /// its own time, so when the message arrived does not matter.
    pub fn read(
        &mut self,
        exporter: &str,
        msg: &[u8],
        out: &mut Vec<Flow>,
    ) -> Result<(), ExportError> {
        self.counters.messages += 1;
        let ex = match self.exporters.get(exporter) {
            Some(e) => *e,
            None if self.exporters.len() >= MAX_EXPORTERS => {
                self.counters.malformed += 1;
                return bad(0, format!("more than {MAX_EXPORTERS} exporters"));
            }
            None => {
                let e = self.exporters.len() as u32;
                self.exporters.insert(exporter.to_string(), e);
                e
            }
        };
        let before = out.len();
        let r = match msg.get(0..2).map(be) {
            Some(5) => self.v5(msg, out),
            Some(9) => self.v9(ex, msg, out),
            Some(10) => self.ipfix(ex, msg, out),
            Some(v) => bad(0, format!("export version {v} (nospy reads 5, 9 and 10)")),
            None => bad(0, "shorter than an export header"),
        };
        if r.is_err() {
            self.counters.malformed += 1;
            out.truncate(before);
        } else {
            self.counters.records += (out.len() - before) as u64;
        }
        r
    }

    fn v5(&mut self, msg: &[u8], out: &mut Vec<Flow>) -> Result<(), ExportError> {
        if msg.len() < 24 {
            return bad(msg.len(), "the NetFlow v5 header is cut short");
        }
        let count = be(&msg[2..4]) as usize;
        if msg.len() != 24 + 48 * count {
            return bad(
                2,
                format!(
                    "NetFlow v5 header counts {count} records ({} bytes) but the packet has {}",
                    24 + 48 * count,
                    msg.len()
                ),
            );
        }
        let uptime = be(&msg[4..8]);
        let boot_ns =
            (be(&msg[8..12]) * 1_000_000_000 + be(&msg[12..16])).saturating_sub(uptime * 1_000_000);
        for r in msg[24..].chunks_exact(48) {
            let (sport, dport) = icmp_ports(r[38], be(&r[32..34]) as u16, be(&r[34..36]) as u16);
            out.push(Flow {
                first_ns: boot_ns + be(&r[24..28]) * 1_000_000,
                last_ns: boot_ns + be(&r[28..32]) * 1_000_000,
                src: IpAddr::from([r[0], r[1], r[2], r[3]]),
                dst: IpAddr::from([r[4], r[5], r[6], r[7]]),
                sport,
                dport,
                proto: r[38],
                packets: be(&r[16..20]),
                bytes: be(&r[20..24]),
                initiator_known: false,
            });
        }
        Ok(())
    }

    fn v9(&mut self, ex: u32, msg: &[u8], out: &mut Vec<Flow>) -> Result<(), ExportError> {
        if msg.len() < 20 {
            return bad(msg.len(), "the NetFlow v9 header is cut short");
        }
        let uptime = be(&msg[4..8]);
        let boot_ns = (be(&msg[8..12]) * 1_000_000_000).saturating_sub(uptime * 1_000_000);
        let source = be(&msg[16..20]) as u32;
        let mut at = 20;
        while at < msg.len() {
            let Some(h) = get(msg, at, 4) else {
                // Trailing bytes shorter than a set header are padding.
                break;
            };
            let id = be(&h[..2]) as u16;
            let len = be(&h[2..]) as usize;
            if len < 4 || at + len > msg.len() {
                return bad(at + 2, format!("flowset length {len} overruns the packet"));
            }
            let body = &msg[at + 4..at + len];
            match id {
                0 | 1 => self.v9_templates(ex, source, body, at + 4, id == 1)?,
                2..=255 => {}
                t => self.data(ex, source, t, body, at + 4, Time::Uptime(boot_ns), out)?,
            }
            at += len;
        }
        Ok(())
    }

    fn learn(&mut self, key: TemplateKey, t: Template, at: usize) -> Result<(), ExportError> {
        if t.fields.is_empty() {
            return bad(at, format!("template {} has no fields", key.2));
        }
        if !self.templates.contains_key(&key) && self.templates.len() >= MAX_TEMPLATES {
            return bad(at, format!("more than {MAX_TEMPLATES} templates"));
        }
        self.counters.templates += 1;
        if self.templates.get(&key) != Some(&t) {
            self.changed = true;
        }
        self.templates.insert(key, t);
        Ok(())
    }

    /// A v9 template flowset (`options` false: id, field count, fields) or options template
    /// flowset (id, scope and option lengths in bytes, fields; each padded to 4 bytes).
    fn v9_templates(
        &mut self,
        ex: u32,
        source: u32,
        body: &[u8],
        base: usize,
        options: bool,
    ) -> Result<(), ExportError> {
        let head = if options { 6 } else { 4 };
        let mut at = 0;
        while at + head <= body.len() {
            let id = be(&body[at..at + 2]) as u16;
            if id < 256 {
                return bad(
                    base + at,
                    format!("template id {id} (data templates start at 256)"),
                );
            }
            // Fields in all, and how many of them are scope fields.
            let (n, scope) = if options {
                let scope_len = be(&body[at + 2..at + 4]) as usize;
                let opt_len = be(&body[at + 4..at + 6]) as usize;
                if !scope_len.is_multiple_of(4) || !opt_len.is_multiple_of(4) {
                    return bad(
                        base + at + 2,
                        "options template lengths are not multiples of 4",
                    );
                }
                ((scope_len + opt_len) / 4, scope_len / 4)
            } else {
                (be(&body[at + 2..at + 4]) as usize, 0)
            };
            let Some(spec) = get(body, at + head, n * 4) else {
                return bad(
                    base + at + 2,
                    format!("template {id} lists {n} fields past its flowset"),
                );
            };
            let fields = spec
                .chunks_exact(4)
                .enumerate()
                .map(|(i, f)| {
                    let (t, l) = (be(&f[..2]) as u16, be(&f[2..]) as u16);
                    // Scope fields have their own type space: never read them.
                    (l, if i < scope { None } else { field_of(t) })
                })
                .collect();
            self.learn((ex, source, id), Template::new(fields, options), base + at)?;
            at += if options {
                // Options templates are padded to 4 bytes within their flowset.
                (head + n * 4).div_ceil(4) * 4
            } else {
                head + n * 4
            };
        }
        Ok(())
    }

    fn ipfix(&mut self, ex: u32, msg: &[u8], out: &mut Vec<Flow>) -> Result<(), ExportError> {
        if msg.len() < 16 {
            return bad(msg.len(), "the IPFIX header is cut short");
        }
        let len = be(&msg[2..4]) as usize;
        if len != msg.len() {
            return bad(
                2,
                format!(
                    "the IPFIX header says {len} bytes but the message has {}",
                    msg.len()
                ),
            );
        }
        let export_ns = be(&msg[4..8]) * 1_000_000_000;
        let domain = be(&msg[12..16]) as u32;
        let mut at = 16;
        while at < msg.len() {
            let Some(h) = get(msg, at, 4) else {
                return bad(at, "a set header is cut short");
            };
            let id = be(&h[..2]) as u16;
            let slen = be(&h[2..]) as usize;
            if slen < 4 || at + slen > msg.len() {
                return bad(at + 2, format!("set length {slen} overruns the message"));
            }
            let body = &msg[at + 4..at + slen];
            match id {
                2 | 3 => self.ipfix_templates(ex, domain, body, at + 4, id == 3)?,
                4..=255 => {}
                0 | 1 => return bad(at, format!("set id {id} is NetFlow v9's, not IPFIX's")),
                t => {
                    let init = self.init_ms.get(&(ex, domain)).copied();
                    self.data(
                        ex,
                        domain,
                        t,
                        body,
                        at + 4,
                        Time::Ipfix {
                            export_ns,
                            init_ms: init,
                        },
                        out,
                    )?
                }
            }
            at += slen;
        }
        Ok(())
    }

    fn ipfix_templates(
        &mut self,
        ex: u32,
        domain: u32,
        body: &[u8],
        base: usize,
        options: bool,
    ) -> Result<(), ExportError> {
        let mut at = 0;
        let head = if options { 6 } else { 4 };
        while at + head <= body.len() {
            let id = be(&body[at..at + 2]) as u16;
            let n = be(&body[at + 2..at + 4]) as usize;
            let scope = if options {
                be(&body[at + 4..at + 6]) as usize
            } else {
                0
            };
            if id < 256 {
                return bad(
                    base + at,
                    format!("template id {id} (data templates start at 256)"),
                );
            }
            if n == 0 {
                // A withdrawal.
                self.changed |= self.templates.remove(&(ex, domain, id)).is_some();
                at += head;
                continue;
            }
            if options && (scope == 0 || scope > n) {
                return bad(
                    base + at + 4,
                    format!("options template with {scope} scope fields of {n}"),
                );
            }
            let mut p = at + head;
            let mut fields = Vec::with_capacity(n);
            for i in 0..n {
                let Some(f) = get(body, p, 4) else {
                    return bad(base + p, format!("template {id} field {i} is cut short"));
                };
                let ie = be(&f[..2]) as u16;
                let l = be(&f[2..]) as u16;
                p += 4;
                let known = if ie & 0x8000 != 0 {
                    // Enterprise-specific: a private enterprise number follows; nospy reads none.
                    if get(body, p, 4).is_none() {
                        return bad(
                            base + p,
                            format!("template {id} field {i}: enterprise number cut short"),
                        );
                    }
                    p += 4;
                    None
                } else if options && i < scope {
                    None
                } else {
                    field_of(ie)
                };
                fields.push((l, known));
            }
            self.learn((ex, domain, id), Template::new(fields, options), base + at)?;
            at = p;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        ex: u32,
        domain: u32,
        id: u16,
        body: &[u8],
        base: usize,
        time: Time,
        out: &mut Vec<Flow>,
    ) -> Result<(), ExportError> {
        let Some(t) = self.templates.get(&(ex, domain, id)) else {
            // Without the template the records cannot even be counted exactly: count the set.
            self.counters.no_template += 1;
            return Ok(());
        };
        let mut at = 0;
        let (options, before) = (t.options, out.len());
        let mut state = State {
            init_ms: &mut self.init_ms,
            counters: &mut self.counters,
            changed: &mut self.changed,
        };
        match &t.fixed {
            Some((rlen, read)) if *rlen > 0 => {
                // Padding at the end is shorter than a record.
                while at + rlen <= body.len() {
                    let r = &body[at..at + rlen];
                    let mut v = Values::default();
                    for (off, len, f) in read {
                        v.set(*f, &r[*off..*off + *len as usize]);
                    }
                    record(v, (ex, domain), options, time, &mut state, out);
                    at += rlen;
                }
            }
            Some(_) => return bad(base, format!("template {id} has records of length 0")),
            None => {
                // Variable-length fields: walk each record. A set that turns out malformed
                // gives no flows (those of its records before the fault are taken back).
                let min: usize = t
                    .fields
                    .iter()
                    .map(|(l, _)| if *l == 0xffff { 1 } else { *l as usize })
                    .sum();
                while body.len() - at >= min.max(1) {
                    let mut v = Values::default();
                    for (len, f) in &t.fields {
                        let n = if *len == 0xffff {
                            let Some(&b) = body.get(at) else {
                                out.truncate(before);
                                return bad(
                                    base + at,
                                    "a variable-length field's length is cut short",
                                );
                            };
                            at += 1;
                            if b == 255 {
                                let Some(l) = get(body, at, 2) else {
                                    out.truncate(before);
                                    return bad(
                                        base + at,
                                        "a variable-length field's length is cut short",
                                    );
                                };
                                at += 2;
                                be(l) as usize
                            } else {
                                b as usize
                            }
                        } else {
                            *len as usize
                        };
                        let Some(val) = get(body, at, n) else {
                            out.truncate(before);
                            return bad(
                                base + at,
                                format!("a field of {n} bytes overruns its set"),
                            );
                        };
                        if let Some(f) = f {
                            v.set(*f, val);
                        }
                        at += n;
                    }
                    record(v, (ex, domain), options, time, &mut state, out);
                }
            }
        }
        Ok(())
    }
}

/// What a record can change of a collector besides its templates.
struct State<'a> {
    init_ms: &'a mut FastMap<(u32, u32), u64>,
    counters: &'a mut Counters,
    changed: &'a mut bool,
}

/// One record's values: a flow, or (from an options template) exporter state of `whose`
/// exporter and domain.
#[inline]
fn record(
    v: Values,
    whose: (u32, u32),
    options: bool,
    time: Time,
    state: &mut State,
    out: &mut Vec<Flow>,
) {
    if options {
        if let Some(ms) = v.sys_init_ms {
            *state.changed |= state.init_ms.insert(whose, ms) != Some(ms);
        }
        return;
    }
    let (Some(src), Some(dst)) = (v.src, v.dst) else {
        state.counters.no_addresses += 1;
        return;
    };
    let (first_ns, last_ns) = match time {
        Time::Uptime(boot_ns) => (
            v.start_ns.unwrap_or(
                boot_ns.saturating_add(v.start_up.unwrap_or(0).saturating_mul(1_000_000)),
            ),
            v.end_ns
                .unwrap_or(boot_ns.saturating_add(v.end_up.unwrap_or(0).saturating_mul(1_000_000))),
        ),
        Time::Ipfix { export_ns, init_ms } => {
            let rel = |up: Option<u64>| match (up, init_ms) {
                (Some(u), Some(i)) => Some(i.saturating_add(u).saturating_mul(1_000_000)),
                _ => None,
            };
            let first = v.start_ns.or(rel(v.start_up)).unwrap_or(export_ns);
            (first, v.end_ns.or(rel(v.end_up)).unwrap_or(first))
        }
    };
    let (sport, dport) = match (v.proto, v.icmp) {
        (1 | 58, Some(tc)) => (tc >> 8, tc & 0xff),
        _ => icmp_ports(v.proto, v.sport, v.dport),
    };
    out.push(Flow {
        first_ns,
        last_ns: last_ns.max(first_ns),
        src,
        dst,
        sport,
        dport,
        proto: v.proto,
        packets: v.packets,
        bytes: v.bytes,
        initiator_known: false,
    });
}

/// ICMP type and code as a flow's ports: exporters without an ICMP element put type * 256 + code
/// in the destination port (Cisco's convention, which softflowd follows).
fn icmp_ports(proto: u8, sport: u16, dport: u16) -> (u16, u16) {
    match proto {
        1 | 58 => (dport >> 8, dport & 0xff),
        _ => (sport, dport),
    }
}

#[derive(Clone, Copy)]
enum Time {
    /// NetFlow v9: relative times from the exporter's boot, known from the header.
    Uptime(u64),
    /// IPFIX: absolute times, or relative to systemInitTimeMilliseconds when the exporter sent it.
    Ipfix {
        export_ns: u64,
        init_ms: Option<u64>,
    },
}
