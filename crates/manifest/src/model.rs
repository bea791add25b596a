use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Largest manifest nospy reads (a release statement is at most 64 KiB anyway).
pub const MAX_MANIFEST_LEN: usize = 1 << 20;

/// A manifest that does not parse or does not hold together; `place` says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Where: a line and column of the TOML, or a rule and field.
    pub place: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

impl std::error::Error for ManifestError {}

/// What a device may do on the network, as its vendor declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The device the manifest is for.
    pub device: Device,
    /// Declared capabilities.
    pub capabilities: Capabilities,
    /// Allowed traffic; everything else is undeclared.
    #[serde(default)]
    pub allow: Vec<Rule>,
}

/// The device a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Vendor name, as in the operator's inventory.
    pub vendor: String,
    /// Model name, as in the operator's inventory.
    pub model: String,
}

/// Declared capabilities of the firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Whether, and how, the vendor can reach into the device.
    pub vendor_remote_access: RemoteAccess,
}

/// Vendor remote access, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteAccess {
    /// The vendor has no path into the device.
    None,
    /// The vendor gets in only when the operator opens the session.
    OperatorInitiated,
    /// The vendor can open sessions into the device itself.
    VendorInitiated,
}

impl RemoteAccess {
    /// The manifest spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoteAccess::None => "none",
            RemoteAccess::OperatorInitiated => "operator-initiated",
            RemoteAccess::VendorInitiated => "vendor-initiated",
        }
    }
}

/// Which way a rule's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The device sends.
    FromDevice,
    /// The device receives.
    ToDevice,
}

/// Which side opens a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initiator {
    /// The device connects out.
    Device,
    /// The peer connects in.
    Peer,
    /// Either side.
    Either,
}

/// One allowed kind of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which way the traffic goes.
    pub direction: Direction,
    /// Whom the device talks to.
    pub peer: Peer,
    /// IP protocol.
    pub protocol: Protocol,
    /// The peer's port (or ports): for from-device traffic the destination port, for to-device
    /// traffic the source port. Default: any.
    #[serde(default, skip_serializing_if = "Ports::is_any")]
    pub ports: Ports,
    /// The device's own port (or ports). Default: any.
    #[serde(default, skip_serializing_if = "Ports::is_any")]
    pub device_ports: Ports,
    /// TCP only: which side opens the connection. Default: either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<Initiator>,
}

impl Manifest {
    /// Parses a manifest written in TOML (`manifest.toml`).
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError {
                place: String::new(),
                message: "manifest is over 1 MiB".into(),
            });
        }
        let m: Manifest = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(span) => {
                    let line = nospy_tlog::text::line_at(text, span.start);
                    format!("line {line}")
                }
                None => String::new(),
            };
            ManifestError {
                place,
                message: e.message().to_string(),
            }
        })?;
        m.check()?;
        Ok(m)
    }

    /// Parses a manifest file in either form: JSON when its first non-blank character is `{`
    /// (an error names the line and column), TOML otherwise (an error names the line).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if !text.trim_start().starts_with('{') {
            return Manifest::from_toml(text);
        }
        if text.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError {
                place: String::new(),
                message: "manifest is over 1 MiB".into(),
            });
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let m = Manifest::deserialize(&mut de)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| {
                let full = e.to_string();
                let message = full.rsplit_once(" at line ").map_or(&*full, |(m, _)| m);
                ManifestError {
                    place: format!("line {} column {}", e.line(), e.column()),
                    message: message.to_string(),
                }
            })?;
        m.check()?;
        Ok(m)
    }

    /// Parses the JSON form carried inside release statements.
    pub fn from_json(value: &serde_json::Value) -> Result<Manifest, ManifestError> {
        Manifest::from_deserializer(value)
    }

    /// Deserialises a manifest from any serde source and checks it as [`Manifest::from_json`]
    /// does: for the manifest inside a release predicate, read in place with no copy of its
    /// JSON tree.
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Manifest, ManifestError> {
        let m = Manifest::deserialize(d).map_err(|e| ManifestError {
            place: "manifest".into(),
            message: e.to_string(),
        })?;
        m.check()?;
        Ok(m)
    }

    /// The TOML form.
    pub fn to_toml(&self) -> String {
        // invariant: every field serialises to TOML (no maps with non-string keys, no nulls).
        toml::to_string(self).unwrap_or_default()
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Checks what the types alone cannot: fields that only apply to some protocols.
    fn check(&self) -> Result<(), ManifestError> {
        if self.device.vendor.trim().is_empty() || self.device.model.trim().is_empty() {
            return Err(ManifestError {
                place: "device".into(),
                message: "vendor and model must not be empty".into(),
            });
        }
        for (i, r) in self.allow.iter().enumerate() {
            let place = format!("allow rule {} (peer {})", i + 1, r.peer);
            let ported = matches!(r.protocol, Protocol::Tcp | Protocol::Udp);
            if !ported && (!r.ports.is_any() || !r.device_ports.is_any()) {
                return Err(ManifestError {
                    place,
                    message: format!("ports apply to tcp and udp only, not {}", r.protocol),
                });
            }
            if r.initiated_by.is_some() && r.protocol != Protocol::Tcp {
                return Err(ManifestError {
                    place,
                    message: format!("initiated_by applies to tcp only, not {}", r.protocol),
                });
            }
        }
        Ok(())
    }
}

/// Whom a rule lets the device talk to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Addresses within a prefix.
    Prefix(Prefix),
    /// Addresses a DNS name resolves to (lower case, no final dot).
    Name(String),
    /// The operator's own networks (`operator-networks`).
    OperatorNetworks,
    /// The operator's controllers for this device (`my-controller`).
    MyController,
    /// Other devices of the same vendor (`same-vendor`).
    SameVendor,
    /// The device's local networks (`local-networks`).
    LocalNetworks,
    /// A class of controller named by URI, resolved by the operator (`controller:<uri>`, as MUD's
    /// `controller`, e.g. `controller:urn:ietf:params:mud:dns`).
    Controller(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Prefix(p) => write!(f, "{p}"),
            Peer::Name(n) => f.write_str(n),
            Peer::OperatorNetworks => f.write_str("operator-networks"),
            Peer::MyController => f.write_str("my-controller"),
            Peer::SameVendor => f.write_str("same-vendor"),
            Peer::LocalNetworks => f.write_str("local-networks"),
            Peer::Controller(u) => write!(f, "controller:{u}"),
        }
    }
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Peer, String> {
        match s {
            "operator-networks" => return Ok(Peer::OperatorNetworks),
            "my-controller" => return Ok(Peer::MyController),
            "same-vendor" => return Ok(Peer::SameVendor),
            "local-networks" => return Ok(Peer::LocalNetworks),
            _ => {}
        }
        if let Some(uri) = s.strip_prefix("controller:") {
            if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("controller URI {uri:?} is empty or has spaces"));
            }
            return Ok(Peer::Controller(uri.to_string()));
        }
        if s.contains(':') || s.contains('/') || s.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        {
            return s.parse::<Prefix>().map(Peer::Prefix);
        }
        let name = dns_name_text(s)?;
        // Names are case-insensitive and may end in a dot: "Operator-Networks" or
        // "same-vendor." would otherwise be a name that reads back as the abstraction.
        if [
            "operator-networks",
            "my-controller",
            "same-vendor",
            "local-networks",
        ]
        .contains(&name.as_str())
        {
            return Err(format!(
                "{s:?} is spelled like the abstraction {name}: write {name} for the abstraction, or a host's full domain name"
            ));
        }
        Ok(Peer::Name(name))
    }
}

/// Checks and normalises a DNS name: lower case, no final dot, labels of 1 to 63 letters, digits,
/// hyphens or underscores, at most 253 characters.
pub fn dns_name(s: &str) -> Result<String, ManifestError> {
    dns_name_text(s).map_err(|message| ManifestError {
        place: "name".into(),
        message,
    })
}

pub(crate) fn dns_name_text(s: &str) -> Result<String, String> {
    let n = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return Err(format!(
            "{s:?} is not a DNS name (empty or over 253 characters)"
        ));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a DNS name (label {label:?})"));
        }
    }
    Ok(n)
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Peer, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IP prefix: an address and how many leading bits are fixed. Host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// A prefix; `None` if `len` is too long for the address family or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max || mask(addr, len) != addr {
            return None;
        }
        Some(Prefix { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the prefixes that hold everything of their family (`0.0.0.0/0`, `::/0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32) as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128) as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max && n.to_string() == l)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Prefix::new(addr, len).ok_or_else(|| {
            format!(
                "{s:?} has host bits set; the network is {}/{len}",
                mask(addr, len)
            )
        })
    }
}

/// A port or range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ports {
    /// Any port.
    #[default]
    Any,
    /// `lo..=hi`.
    Range(u16, u16),
}

impl Ports {
    /// Whether this is "any".
    pub fn is_any(&self) -> bool {
        matches!(self, Ports::Any) || *self == Ports::Range(0, 65535)
    }

    /// Whether `port` is allowed.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Range(lo, hi) => (*lo..=*hi).contains(&port),
        }
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ports::Any => f.write_str("any"),
            Ports::Range(a, b) if a == b => write!(f, "{a}"),
            Ports::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

impl FromStr for Ports {
    type Err = String;
    fn from_str(s: &str) -> Result<Ports, String> {
        if s == "any" {
            return Ok(Ports::Any);
        }
        let num = |t: &str| -> Result<u16, String> {
            if t.is_empty() || t.len() > 5 || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "ports {s:?}: {t:?} is not a port number (0 to 65535)"
                ));
            }
            t.parse()
                .map_err(|_| format!("ports {s:?}: {t:?} is over 65535"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(s)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("ports {s:?}: the range is reversed"));
        }
        Ok(Ports::Range(lo, hi))
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Ports {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ports, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::N(n) => u16::try_from(n)
                .map(|p| Ports::Range(p, p))
                .map_err(|_| serde::de::Error::custom(format!("port {n} is over 65535"))),
        }
    }
}

/// An IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP and ICMPv6 (1 and 58).
    Icmp,
    /// Any protocol.
    Any,
    /// Another protocol, by number.
    Number(u8),
}

impl Protocol {
    /// The protocol for an IP protocol number.
    #[inline]
    pub fn from_number(n: u8) -> Protocol {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 | 58 => Protocol::Icmp,
            n => Protocol::Number(n),
        }
    }

    /// Whether packets of IP protocol `n` match.
    #[inline]
    pub fn matches(&self, n: u8) -> bool {
        match self {
            Protocol::Any => true,
            Protocol::Icmp => n == 1 || n == 58,
            p => *p == Protocol::from_number(n),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Any => f.write_str("any"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            "any" => Ok(Protocol::Any),
            n => n.parse::<u8>().map(Protocol::from_number).map_err(|_| {
                format!("protocol {s:?} is not tcp, udp, icmp, any or a number 0 to 255")
            }),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
