//! Import of RFC 8520 MUD files into a [`Manifest`].
//!
//! Reads the RFC's `ietf-access-control-list:acls` and the older draft key
//! `ietf-access-control-list:access-lists` that MUDgee and osMUD still write (with its draft
//! names: `acl-name`, `access-list-entries`, `rule-name`, `ipv4-acl`, `ipv6-acl`,
//! `*-port-range-or-operator`). Each ACL named by the `from-device-policy` or `to-device-policy`
//! becomes allow rules in that direction.
//!
//! Nothing is dropped silently. An element the manifest model cannot express exactly is
//! reported: either the whole ACE is left out ([`Note::Skipped`]; the manifest is then stricter
//! than the MUD file, never looser), or the rule keeps a representation that differs in a way
//! named in [`Note::Approximated`].

use crate::model::{
    Capabilities, Device, Direction, Initiator, Manifest, Peer, Ports, Prefix, Protocol,
    RemoteAccess, Rule,
};
use serde_json::{Map, Value};
use std::fmt;

/// Largest MUD file read.
pub const MAX_MUD_LEN: usize = 4 << 20;

/// Why a MUD file cannot be imported at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MudError {
    /// The file is larger than [`MAX_MUD_LEN`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The bytes are not JSON.
    NotJson {
        /// The line of the problem (from 1).
        line: usize,
        /// Its column (from 1).
        column: usize,
        /// What the JSON reader said (with the line and column).
        problem: String,
    },
    /// The JSON is not an object.
    NotAnObject,
    /// There is no `ietf-mud:mud` container: not a MUD file.
    NoMudContainer,
    /// There is no access-control-list container: the file declares no traffic.
    NoAcls,
    /// The access-control-list container (its key) has no `acl` list.
    NoAclList(&'static str),
    /// Neither `from-device-policy` nor `to-device-policy` names an ACL.
    NoPolicy,
    /// Neither `mfg-name` nor the MUD URL names the manufacturer.
    NoManufacturer,
    /// Neither `model-name`, `systeminfo` nor the MUD URL names the model.
    NoModel,
}

impl fmt::Display for MudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MudError::TooLarge { len } => {
                write!(f, "MUD file is {len} bytes, over the 4 MiB limit")
            }
            // The JSON reader's words name the line and column.
            MudError::NotJson { problem, .. } => write!(f, "not JSON: {problem}"),
            MudError::NotAnObject => f.write_str("a MUD file is a JSON object"),
            MudError::NoMudContainer => {
                f.write_str("no \"ietf-mud:mud\" container: not a MUD file")
            }
            MudError::NoAcls => f.write_str(
                "no \"ietf-access-control-list:acls\" (or draft \"access-lists\"): the file declares no traffic",
            ),
            MudError::NoAclList(key) => write!(f, "\"{key}\" has no \"acl\" list"),
            MudError::NoPolicy => {
                f.write_str("neither from-device-policy nor to-device-policy names an ACL")
            }
            MudError::NoManufacturer => {
                f.write_str("neither mfg-name nor a mud-url names the manufacturer")
            }
            MudError::NoModel => {
                f.write_str("no model-name, systeminfo or mud-url names the model")
            }
        }
    }
}

impl std::error::Error for MudError {}

/// Something the import could not carry over exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// An ACE (or ACL) was left out: the manifest allows less than the MUD file.
    Skipped {
        /// Where in the MUD file: ACL and ACE names.
        at: String,
        /// The element that cannot be represented.
        element: String,
        /// Why.
        reason: String,
    },
    /// A rule was kept in a form that differs from the MUD file as described.
    Approximated {
        /// Where in the MUD file.
        at: String,
        /// What differs.
        reason: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Skipped {
                at,
                element,
                reason,
            } => write!(f, "{at}: left out ({element}): {reason}"),
            Note::Approximated { at, reason } => write!(f, "{at}: approximated: {reason}"),
        }
    }
}

/// The result of an import: the manifest and everything that did not carry over exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MudImport {
    /// The manifest.
    pub manifest: Manifest,
    /// What was left out or approximated, in file order.
    pub notes: Vec<Note>,
    /// How many ACEs became rules.
    pub imported: usize,
}

/// Imports a MUD file.
pub fn import(bytes: &[u8]) -> Result<MudImport, MudError> {
    if bytes.len() > MAX_MUD_LEN {
        return Err(MudError::TooLarge { len: bytes.len() });
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| MudError::NotJson {
        line: e.line(),
        column: e.column(),
        problem: e.to_string(),
    })?;
    let root = v.as_object().ok_or(MudError::NotAnObject)?;
    let mud = root
        .get("ietf-mud:mud")
        .and_then(Value::as_object)
        .ok_or(MudError::NoMudContainer)?;
    let (acl_key, acls) = [
        "ietf-access-control-list:acls",
        "ietf-access-control-list:access-lists",
    ]
    .iter()
    .find_map(|k| root.get(*k).map(|a| (*k, a)))
    .ok_or(MudError::NoAcls)?;
    let acl_list = acls
        .get("acl")
        .and_then(Value::as_array)
        .ok_or(MudError::NoAclList(acl_key))?;

    let mut notes = Vec::new();
    let device = device(mud, &mut notes)?;
    let from = policy_names(mud, "from-device-policy");
    let to = policy_names(mud, "to-device-policy");
    if from.is_empty() && to.is_empty() {
        return Err(MudError::NoPolicy);
    }
    let mut allow = Vec::new();
    let mut imported = 0;
    for acl in acl_list {
        let name = str_of(acl, &["name", "acl-name"])
            .unwrap_or("(unnamed)")
            .to_string();
        let at = format!("acl {name:?}");
        let direction = if from.contains(&name) {
            Direction::FromDevice
        } else if to.contains(&name) {
            Direction::ToDevice
        } else {
            notes.push(Note::Skipped {
                at,
                element: "ACL".into(),
                reason: "no device policy names this ACL".into(),
            });
            continue;
        };
        let Some(aces) = acl
            .get("aces")
            .or_else(|| acl.get("access-list-entries"))
            .and_then(|a| a.get("ace"))
            .and_then(Value::as_array)
        else {
            notes.push(Note::Skipped {
                at,
                element: "ACL".into(),
                reason: "has no ACE list".into(),
            });
            continue;
        };
        for (i, ace) in aces.iter().enumerate() {
            let ace_name = str_of(ace, &["name", "rule-name"])
                .map(str::to_string)
                .unwrap_or_else(|| format!("#{}", i + 1));
            let at = format!("acl {name:?} ace {ace_name:?}");
            match ace_rule(ace, direction, &at, &mut notes) {
                Ok(rule) => {
                    imported += 1;
                    if !allow.contains(&rule) {
                        allow.push(rule);
                    }
                }
                Err((element, reason)) => notes.push(Note::Skipped {
                    at,
                    element,
                    reason,
                }),
            }
        }
    }
    for n in from.iter().chain(&to) {
        if !acl_list
            .iter()
            .any(|a| str_of(a, &["name", "acl-name"]) == Some(n.as_str()))
        {
            notes.push(Note::Skipped {
                at: format!("policy ACL {n:?}"),
                element: "ACL reference".into(),
                reason: "the policy names an ACL the file does not define".into(),
            });
        }
    }
    notes.push(Note::Approximated {
        at: "ietf-mud:mud".into(),
        reason: "MUD declares no vendor remote access; recorded as \"none\", which the vendor must confirm".into(),
    });
    let manifest = Manifest {
        device,
        capabilities: Capabilities {
            vendor_remote_access: RemoteAccess::None,
        },
        allow,
    };
    Ok(MudImport {
        manifest,
        notes,
        imported,
    })
}

fn str_of<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str))
}

fn device(mud: &Map<String, Value>, notes: &mut Vec<Note>) -> Result<Device, MudError> {
    let url = mud.get("mud-url").and_then(Value::as_str).unwrap_or("");
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
        .to_string();
    let vendor = match mud.get("mfg-name").and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => v.to_string(),
        _ if !host.is_empty() => {
            notes.push(Note::Approximated {
                at: "ietf-mud:mud".into(),
                reason: format!("no mfg-name; vendor taken from the MUD URL's host {host:?}"),
            });
            host.clone()
        }
        _ => return Err(MudError::NoManufacturer),
    };
    let model = match (
        mud.get("model-name").and_then(Value::as_str),
        mud.get("systeminfo").and_then(Value::as_str),
    ) {
        (Some(m), _) if !m.trim().is_empty() => m.to_string(),
        (_, Some(s)) if !s.trim().is_empty() => {
            notes.push(Note::Approximated {
                at: "ietf-mud:mud".into(),
                reason: format!("no model-name; model taken from systeminfo {s:?}"),
            });
            s.to_string()
        }
        _ => {
            let last = url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .ok_or(MudError::NoModel)?;
            notes.push(Note::Approximated {
                at: "ietf-mud:mud".into(),
                reason: format!("no model-name; model taken from the MUD URL {last:?}"),
            });
            last.to_string()
        }
    };
    Ok(Device { vendor, model })
}

fn policy_names(mud: &Map<String, Value>, policy: &str) -> Vec<String> {
    mud.get(policy)
        .and_then(|p| p.get("access-lists"))
        .and_then(|a| a.get("access-list"))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

type Skip = (String, String);

fn skip(element: impl Into<String>, reason: impl Into<String>) -> Skip {
    (element.into(), reason.into())
}

/// One ACE to one rule, or the element that prevents it.
fn ace_rule(
    ace: &Value,
    direction: Direction,
    at: &str,
    notes: &mut Vec<Note>,
) -> Result<Rule, Skip> {
    let actions = ace
        .get("actions")
        .ok_or_else(|| skip("actions", "the ACE has no actions"))?;
    let accept = match actions.get("forwarding").and_then(Value::as_str) {
        Some(f) => f == "accept" || f.ends_with(":accept"),
        None => actions.get("permit").is_some(),
    };
    if !accept {
        return Err(skip(
            "actions",
            "only accepting ACEs can be represented; a manifest lists what is allowed",
        ));
    }
    let matches = ace
        .get("matches")
        .and_then(Value::as_object)
        .ok_or_else(|| skip("matches", "the ACE has no matches"))?;
    let (peer_side, device_side) = match direction {
        Direction::FromDevice => ("dst", "src"),
        Direction::ToDevice => ("src", "dst"),
    };
    let (peer_word, device_word) = match direction {
        Direction::FromDevice => ("destination", "source"),
        Direction::ToDevice => ("source", "destination"),
    };
    let mut peer: Option<Peer> = None;
    let mut protocol = Protocol::Any;
    let mut ports = Ports::Any;
    let mut device_ports = Ports::Any;
    let mut initiated_by = None;
    let mut mud_abstraction: Option<Peer> = None;
    for (key, m) in matches {
        match key.as_str() {
            "ipv4" | "ipv6" | "ipv4-acl" | "ipv6-acl" => {
                let m = m
                    .as_object()
                    .ok_or_else(|| skip(key.clone(), "is not an object"))?;
                for (k, v) in m {
                    let k = k.as_str();
                    if k == "protocol" {
                        let n = v
                            .as_u64()
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or_else(|| skip("protocol", "is not a protocol number"))?;
                        protocol = Protocol::from_number(n);
                    } else if k == format!("ietf-acldns:{peer_side}-dnsname") {
                        let name = v.as_str().ok_or_else(|| skip(k, "is not a string"))?;
                        let name = crate::model::dns_name_text(name).map_err(|e| skip(k, e))?;
                        set_peer(&mut peer, Peer::Name(name))?;
                    } else if k == format!("{peer_word}-ipv4-network")
                        || k == format!("{peer_word}-ipv6-network")
                    {
                        let p: Prefix = v
                            .as_str()
                            .ok_or_else(|| skip(k, "is not a string"))?
                            .parse()
                            .map_err(|e: String| skip(k, e))?;
                        set_peer(&mut peer, Peer::Prefix(p))?;
                    } else if k == format!("{peer_word}-port-range-or-operator") {
                        ports = port_match(v).map_err(|r| skip(k, r))?;
                    } else if k == format!("{device_word}-port-range-or-operator") {
                        device_ports = port_match(v).map_err(|r| skip(k, r))?;
                    } else if k.ends_with("-dnsname") || k.ends_with("-network") {
                        return Err(skip(k, format!("names the device's own side ({device_side}), which a manifest does not constrain")));
                    } else {
                        return Err(skip(
                            k,
                            "this IP match field has no equivalent in a manifest",
                        ));
                    }
                }
            }
            "tcp" | "udp" => {
                let m = m
                    .as_object()
                    .ok_or_else(|| skip(key.clone(), "is not an object"))?;
                for (k, v) in m {
                    let k = k.as_str();
                    if k == format!("{peer_word}-port") {
                        ports = port_match(v).map_err(|r| skip(k, r))?;
                    } else if k == format!("{device_word}-port") {
                        device_ports = port_match(v).map_err(|r| skip(k, r))?;
                    } else if k == "ietf-mud:direction-initiated" && key == "tcp" {
                        initiated_by = Some(match v.as_str() {
                            Some("from-device") => Initiator::Device,
                            Some("to-device") => Initiator::Peer,
                            _ => return Err(skip(k, "is neither from-device nor to-device")),
                        });
                    } else {
                        return Err(skip(
                            format!("{key}/{k}"),
                            "this transport match has no equivalent in a manifest",
                        ));
                    }
                }
                let p = if key == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                if protocol != Protocol::Any && protocol != p {
                    return Err(skip(
                        key.clone(),
                        format!("contradicts protocol {protocol}"),
                    ));
                }
                protocol = p;
            }
            "ietf-mud:mud" => {
                let m = m
                    .as_object()
                    .ok_or_else(|| skip(key.clone(), "is not an object"))?;
                for (k, v) in m {
                    let a = match k.as_str() {
                        "my-controller" => Peer::MyController,
                        "local-networks" => Peer::LocalNetworks,
                        "same-manufacturer" => Peer::SameVendor,
                        "controller" => {
                            let uri = v.as_str().ok_or_else(|| skip("controller", "is not a URI string"))?;
                            format!("controller:{uri}").parse().map_err(|e: String| skip("controller", e))?
                        }
                        "manufacturer" => {
                            return Err(skip(
                                format!("manufacturer {}", v),
                                "devices of another manufacturer have no equivalent among a manifest's peers",
                            ))
                        }
                        "model" => {
                            return Err(skip(format!("model {}", v), "devices of a given model have no equivalent among a manifest's peers"))
                        }
                        other => return Err(skip(other, "unknown MUD abstraction")),
                    };
                    if mud_abstraction.replace(a).is_some() {
                        return Err(skip("ietf-mud:mud", "names more than one abstraction"));
                    }
                }
            }
            "icmp" => {
                if m.as_object().is_some_and(|o| !o.is_empty()) {
                    return Err(skip(
                        "icmp type/code",
                        "a manifest allows ICMP as a whole, not by type or code",
                    ));
                }
                protocol = Protocol::Icmp;
            }
            "eth" | "l2" => {
                return Err(skip(
                    key.clone(),
                    "link-layer (Ethernet) matches have no equivalent in a manifest",
                ))
            }
            other => return Err(skip(other, "unknown match container")),
        }
    }
    let peer = match (peer, mud_abstraction) {
        (Some(p), None) => p,
        (None, Some(a)) => a,
        (Some(Peer::Prefix(p)), Some(a)) => {
            notes.push(Note::Approximated {
                at: at.to_string(),
                reason: format!("{a} restricted to {p}: represented as {p} alone"),
            });
            Peer::Prefix(p)
        }
        (Some(p), Some(a)) => {
            return Err(skip(
                format!("{a} with {p}"),
                "a peer that must be both cannot be represented",
            ))
        }
        (None, None) => {
            notes.push(Note::Approximated {
                at: at.to_string(),
                reason: "no peer named: any address".into(),
            });
            let v6 = matches.contains_key("ipv6") || matches.contains_key("ipv6-acl");
            let any = if v6 { "::/0" } else { "0.0.0.0/0" };
            Peer::Prefix(any.parse().map_err(|e: String| skip("peer", e))?)
        }
    };
    if !matches!(protocol, Protocol::Tcp | Protocol::Udp)
        && (!ports.is_any() || !device_ports.is_any())
    {
        return Err(skip("ports", format!("ports with protocol {protocol}")));
    }
    Ok(Rule {
        direction,
        peer,
        protocol,
        ports,
        device_ports,
        initiated_by,
    })
}

fn set_peer(peer: &mut Option<Peer>, p: Peer) -> Result<(), Skip> {
    if let Some(old) = peer {
        return Err(skip(
            format!("{old} and {p}"),
            "a name and a network together cannot be represented",
        ));
    }
    *peer = Some(p);
    Ok(())
}

/// `{"operator": "eq", "port": 443}`, `{"lower-port": 1, "upper-port": 9}`, lt/gt/lte/gte.
fn port_match(v: &Value) -> Result<Ports, String> {
    let port = |k: &str| -> Result<u16, String> {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("{k} is not a port number"))
    };
    if v.get("lower-port").is_some() || v.get("upper-port").is_some() {
        let (lo, hi) = (port("lower-port")?, port("upper-port")?);
        if lo > hi {
            return Err("the range is reversed".into());
        }
        return Ok(Ports::Range(lo, hi));
    }
    let op = v.get("operator").and_then(Value::as_str).unwrap_or("eq");
    let p = port("port")?;
    match op {
        "eq" => Ok(Ports::Range(p, p)),
        "lt" if p > 0 => Ok(Ports::Range(0, p - 1)),
        "lte" => Ok(Ports::Range(0, p)),
        "gt" if p < 65535 => Ok(Ports::Range(p + 1, 65535)),
        "gte" => Ok(Ports::Range(p, 65535)),
        "neq" => Err("\"neq\" (every port but one) cannot be represented".into()),
        other => Err(format!(
            "operator {other:?} with port {p} cannot be represented"
        )),
    }
}
