//! Evidence: each device's violations as signed statements for the log (DESIGN.md §2, the
//! evidence predicate), and the words reports and statements use for a row's fields.

use crate::{Report, Row, SeenNames};
use nospy_inventory::{Inventory, OperatorConfig};
pub use nospy_manifest::judge::protocol_name;
use nospy_manifest::judge::{self, Judgement, Observed, Resolutions};
use nospy_manifest::{Direction, Manifest};
use nospy_statement::intoto::{DigestSet, ResourceDescriptor};
use nospy_statement::predicate::{self, EntryRef, FlowViolation, Predicate, Window};
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// One signed evidence statement, ready to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The device it is about (the inventory's id).
    pub device: String,
    /// How many of the device's violation groups (rows) it carries.
    pub groups: usize,
    /// The DSSE envelope.
    pub envelope: Vec<u8>,
}

/// What [`sign`] made of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The statements, device by device in the report's order.
    pub statements: Vec<Statement>,
    /// Devices with violations but no statement, and why.
    pub skipped: Vec<(String, String)>,
    /// Rows not signed, with their device and why: the reference judgement
    /// ([`nospy_manifest::judge`]) does not reproduce them from what a row records, so that a
    /// verifier would not either.
    pub unsigned_rows: Vec<(String, String)>,
}

/// What a device's flows were judged against, as its evidence names it.
#[derive(Debug, Clone)]
pub struct Basis {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// For people: the manifest file or the release entry.
    pub name: String,
    /// The release entry the manifest came from, when it came from the log.
    pub release: Option<EntryRef>,
}

/// Signs the violations of every device of `report` with `key`: one statement per device, or
/// as many as it takes for each to fit a log entry. A statement's subject is the device's
/// firmware (from `inventory`, whose devices the report's are); `bases[i]` is what device `i`'s
/// flows were judged against, `operator` resolves its manifest's abstractions (recorded in the
/// statement), and `input` is the SHA-256 of the capture or flow file read.
///
/// Each row is judged again by the reference judgement before it is signed, and carries its
/// reason; a row that judgement does not reproduce is left unsigned (see
/// [`Evidence::unsigned_rows`]).
pub fn sign(
    report: &Report,
    inventory: &Inventory,
    bases: &[Option<Basis>],
    operator: &OperatorConfig,
    input: &Sha256,
    key: &SignerKey,
) -> Evidence {
    let window = report.window.unwrap_or((0, 0));
    let window = Window {
        start: format_time(window.0),
        end: format_time(window.1),
    };
    let judging = Judging::new(report, inventory);
    let mut out = Evidence::default();
    let mut rows = report.violations.iter().peekable();
    while let Some(first) = rows.next() {
        let mut mine = vec![first];
        while let Some(r) = rows.next_if(|r| r.device() == first.device()) {
            mine.push(r);
        }
        let i = first.device();
        let Some(dev) = inventory.devices.get(i) else {
            continue;
        };
        let Some(firmware) = dev.firmware_sha256.as_deref().and_then(Sha256::from_hex) else {
            out.skipped.push((
                dev.device.clone(),
                "no firmware digest in the inventory, so no release to name as the subject".into(),
            ));
            continue;
        };
        let Some(basis) = bases.get(i).and_then(Option::as_ref) else {
            out.skipped.push((
                dev.device.clone(),
                "no manifest to state what its flows were judged against".into(),
            ));
            continue;
        };
        let res = operator.resolutions(&basis.manifest);
        let (flows, unsigned) = judging.rows(i, &mine, &basis.manifest, &res);
        out.unsigned_rows
            .extend(unsigned.into_iter().map(|u| (dev.device.clone(), u)));
        if flows.is_empty() {
            continue;
        }
        let about = About {
            addresses: &dev.addresses,
            device: &dev.device,
            firmware: &firmware,
            window: &window,
            basis,
            resolutions: &res,
            input,
        };
        for signed in sign_split(&about, &flows, key) {
            match signed {
                Ok((envelope, groups)) => out.statements.push(Statement {
                    device: dev.device.clone(),
                    groups,
                    envelope,
                }),
                Err(why) => out.unsigned_rows.push((dev.device.clone(), why)),
            }
        }
    }
    out
}

/// Of the names a row's peer stood for that no rule of its manifest names, how many bytes a row
/// states (the first in order that fit; the rest are counted, `names_left_out`). Every name a
/// rule names is stated whatever its length: only those can change the row's judgement. DNS
/// answers, which anything on the wire can send, can tie any number of names to an address,
/// and a statement holding a row must fit a log entry.
pub const OTHER_NAMES_BYTES: usize = 1024;

/// A report's rows judged again, device by device, with the reference judgement.
pub struct Judging<'a> {
    report: &'a Report,
    inventory: &'a Inventory,
    /// Each device address's vendor (what `same-vendor` admits).
    vendor_of: HashMap<IpAddr, &'a str>,
    /// Rows state every name their peer stood for, as evidence signed before
    /// [`OTHER_NAMES_BYTES`] did (what a capture check accepts too).
    every_name: bool,
}

impl<'a> Judging<'a> {
    /// For `report`, whose devices are `inventory`'s.
    pub fn new(report: &'a Report, inventory: &'a Inventory) -> Self {
        let vendor_of = inventory
            .devices
            .iter()
            .flat_map(|d| d.addresses.iter().map(move |a| (*a, d.vendor.as_str())))
            .collect();
        Judging {
            report,
            inventory,
            vendor_of,
            every_name: false,
        }
    }

    /// Rows stating every name their peer stood for, as evidence signed before rows bounded
    /// them ([`OTHER_NAMES_BYTES`]): what a capture check compares such evidence with.
    pub fn stating_every_name(self) -> Self {
        Judging {
            every_name: true,
            ..self
        }
    }

    /// Device `i`'s violation rows `rows` as evidence states them, each judged again against
    /// manifest `m` with resolutions `res`: those the reference judgement reproduces (with
    /// their reason, names and same-vendor mark), and, for people, those it does not.
    pub fn rows(
        &self,
        i: usize,
        rows: &[&Row],
        m: &Manifest,
        res: &Resolutions,
    ) -> (Vec<FlowViolation>, Vec<String>) {
        let Some(dev) = self.inventory.devices.get(i) else {
            return (Vec::new(), Vec::new());
        };
        let named = judge::names_named(m);
        let (mut flows, mut unsigned) = (Vec::new(), Vec::new());
        for r in rows {
            let mut v = violation(r);
            let (names, left_out) = match &self.report.peer_names {
                Some(n) if !named.is_empty() => {
                    let none = SeenNames::default();
                    let seen = n.get(&r.peer()).unwrap_or(&none);
                    if self.every_name {
                        (Some(seen.names.clone()), 0)
                    } else {
                        let (stated, left_out) = stated_names(seen, &named);
                        (Some(stated), left_out)
                    }
                }
                _ => (None, 0),
            };
            let observed = Observed {
                direction: r.direction(),
                peer: r.peer(),
                protocol: r.protocol(),
                port: r.port(),
                names,
                same_vendor: self.vendor_of.get(&r.peer()) == Some(&dev.vendor.as_str()),
                openers: judge::Openers::from_bits(r.openers()),
            };
            match judge::judge(m, res, &observed) {
                Judgement::NotAllowed(why) => {
                    v.why = Some(why);
                    v.names = observed.names;
                    v.names_left_out = left_out;
                    v.same_vendor = observed.same_vendor;
                    v.opened_by = observed.openers;
                    flows.push(v);
                }
                j => unsigned.push(format!(
                    "{} {} {} port {}: {}",
                    v.direction,
                    v.peer,
                    v.protocol,
                    v.port,
                    unreproduced(&j)
                )),
            }
        }
        (flows, unsigned)
    }
}

/// Of `names` (a peer's, in order), every one `named` says, and of the others those before the
/// first that does not fit [`OTHER_NAMES_BYTES`] (with `and_the_first_beyond`, that one too).
fn walk(
    names: &[String],
    named: impl Fn(&str) -> bool,
    and_the_first_beyond: bool,
) -> Vec<&String> {
    let (mut out, mut room) = (Vec::new(), Some(OTHER_NAMES_BYTES));
    for n in names {
        if named(n) {
            out.push(n);
        } else if let Some(r) = room {
            // Once one does not fit, no other after it is taken: the bound keeps a prefix.
            room = r.checked_sub(n.len());
            if room.is_some() || and_the_first_beyond {
                out.push(n);
            }
        }
    }
    out
}

/// Of `seen` (a peer's names), those a row states: every one `named` (its manifest's rules
/// name), and of the others the first that fit [`OTHER_NAMES_BYTES`]; and how many are left out.
fn stated_names(seen: &SeenNames, named: &BTreeSet<&str>) -> (Vec<String>, u64) {
    let stated: Vec<String> = walk(&seen.names, |n| named.contains(n), false)
        .into_iter()
        .cloned()
        .collect();
    let left_out = seen.total.saturating_sub(stated.len() as u64);
    (stated, left_out)
}

/// Of `all` (a peer's names, sorted), those a part keeps so that evidence states of a row
/// exactly what it would from all of them, whatever the manifest, when `named` holds every name
/// a manifest names: those, the others that fit [`OTHER_NAMES_BYTES`], and the first other that
/// does not (so that a manifest's walk stops where it would). Parts merged keep the union of
/// theirs, which is again enough.
pub(crate) fn kept_names(all: &[String], named: &BTreeSet<String>) -> Vec<String> {
    walk(all, |n| named.contains(n), true)
        .into_iter()
        .cloned()
        .collect()
}

/// Why the reference judgement does not reproduce a row, for people.
pub fn unreproduced(j: &Judgement) -> String {
    match j {
        Judgement::NotAllowed(w) => format!("not allowed: {}", w.explain()),
        Judgement::Allowed { rule } => format!("allow rule {} allows it", rule + 1),
        Judgement::Undecided {
            rule, unrecorded, ..
        } => format!(
            "allow rule {} would allow it, depending on {}, which evidence does not record",
            rule + 1,
            unrecorded.explain()
        ),
    }
}

/// A row as the evidence predicate states it.
fn violation(r: &Row) -> FlowViolation {
    FlowViolation {
        direction: direction_name(r.direction()).into(),
        peer: r.peer().to_string(),
        protocol: protocol_name(r.protocol()),
        port: r.port(),
        flows: r.flows(),
        packets: r.packets(),
        bytes: r.bytes(),
        first_seen: format_time(r.first_ns()),
        last_seen: format_time(r.last_ns()),
        why: None,
        names: None,
        names_left_out: 0,
        same_vendor: false,
        opened_by: None,
    }
}

/// What every statement of one device's evidence says besides its rows.
struct About<'a> {
    addresses: &'a [IpAddr],
    device: &'a str,
    firmware: &'a Sha256,
    window: &'a Window,
    basis: &'a Basis,
    resolutions: &'a Resolutions,
    input: &'a Sha256,
}

/// Signed evidence statements for one device's flows: one, or as many as it takes for each to
/// fit a log entry (the flows split in halves until they do). Returns each envelope with the
/// number of flow groups it carries, or, for a row whose statement alone would not fit (its
/// manifest names more names its peer stood for than an entry holds), why it is not signed:
/// the other rows are signed all the same.
fn sign_split(
    about: &About<'_>,
    flows: &[FlowViolation],
    key: &SignerKey,
) -> Vec<Result<(Vec<u8>, usize), String>> {
    let p = Predicate::Evidence(predicate::Evidence {
        device: about.device.to_string(),
        window: about.window.clone(),
        flows: flows.to_vec(),
        manifest: Some(about.basis.name.clone()),
        source: DigestSet::sha256(about.input),
        release: about.basis.release.clone(),
        resolutions: Some(about.resolutions.clone()),
        device_addresses: about.addresses.to_vec(),
    });
    let subject = vec![ResourceDescriptor {
        digest: Some(DigestSet::sha256(about.firmware)),
        ..Default::default()
    }];
    let env = nospy_statement::sign(subject, &p, &[key]).to_json();
    if env.len() <= nospy_tlog::tile::MAX_ENTRY_LEN {
        return vec![Ok((env, flows.len()))];
    }
    if let [v] = flows {
        return vec![Err(format!(
            "{} {} {} port {}: its statement alone is {} bytes, over a log entry's {} \
             (it states {} names of its peer: every one the manifest's rules name, and others \
             up to {} bytes)",
            v.direction,
            v.peer,
            v.protocol,
            v.port,
            env.len(),
            nospy_tlog::tile::MAX_ENTRY_LEN,
            v.names.as_ref().map_or(0, Vec::len),
            OTHER_NAMES_BYTES
        ))];
    }
    let (a, b) = flows.split_at(flows.len() / 2);
    let mut out = sign_split(about, a, key);
    out.extend(sign_split(about, b, key));
    out
}

/// A time in nanoseconds since the epoch as RFC 3339 with milliseconds.
pub fn format_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let s = nospy_statement::time::format_rfc3339(secs);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ns / 1_000_000 % 1000)
}

/// `from-device` or `to-device`, as manifests write it.
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::FromDevice => "from-device",
        Direction::ToDevice => "to-device",
    }
}
