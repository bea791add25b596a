//! The fleet: every device the operator runs, where, on which firmware.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// An inventory that could not be read: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    /// Where: `line 12, column weight`, `device ran-000001`, ...
    pub place: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

impl std::error::Error for InventoryError {}

/// The part of the network a device serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// The core network.
    Core,
    /// The access (radio) network.
    Access,
    /// Transport (backhaul).
    Transport,
    /// Management.
    Management,
    /// Anything else.
    Other,
}

impl Function {
    /// The inventory spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Function::Core => "core",
            Function::Access => "access",
            Function::Transport => "transport",
            Function::Management => "management",
            Function::Other => "other",
        }
    }

    /// Parses the inventory spelling (`core`, `access`, `transport`, `management`, `other`).
    pub fn parse(s: &str) -> Result<Function, InventoryError> {
        Self::parse_text(s).map_err(|message| InventoryError {
            place: "function".into(),
            message,
        })
    }

    pub(crate) fn parse_text(s: &str) -> Result<Function, String> {
        Ok(match s {
            "core" => Function::Core,
            "access" => Function::Access,
            "transport" => Function::Transport,
            "management" => Function::Management,
            "other" => Function::Other,
            _ => {
                return Err(format!(
                    "{s:?} is not a function (core, access, transport, management or other)"
                ))
            }
        })
    }
}

/// One device of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The operator's id for it (unique in the inventory).
    pub device: String,
    /// Its vendor, as manifests name it.
    pub vendor: String,
    /// Its model, as manifests name it.
    pub model: String,
    /// The part of the network it serves.
    pub function: Function,
    /// Free text: 5g, 4g, fibre, ...
    #[serde(default)]
    pub technology: String,
    /// Where it stands.
    #[serde(default)]
    pub site: String,
    /// Whether the site is sensitive.
    pub sensitive: bool,
    /// Its addresses (each belongs to this device only).
    pub addresses: Vec<IpAddr>,
    /// SHA-256 of the firmware it runs (lower-case hex), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_sha256: Option<String>,
    /// Its weight in exposure shares (traffic, subscribers, ...).
    pub weight: f64,
    /// What replacing it would cost.
    pub replacement_cost: f64,
}

/// The fleet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inventory {
    /// The devices, in the order given.
    pub devices: Vec<Device>,
}

/// The CSV columns, in the order DESIGN.md §12 writes them (any order is read).
pub const COLUMNS: [&str; 11] = [
    "device",
    "vendor",
    "model",
    "function",
    "technology",
    "site",
    "sensitive",
    "addresses",
    "firmware_sha256",
    "weight",
    "replacement_cost",
];

fn at(place: impl Into<String>, message: impl Into<String>) -> InventoryError {
    InventoryError {
        place: place.into(),
        message: message.into(),
    }
}

fn number(s: &str, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{what} must be a non-negative number, not {s:?}")),
    }
}

fn digest(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.is_empty() {
        return Ok(None);
    }
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not a SHA-256 digest (64 hex digits)"));
    }
    Ok(Some(hex.to_ascii_lowercase()))
}

impl Inventory {
    /// Reads an inventory: JSON if it starts with `[` or `{` (a list of devices, or an object
    /// with a `devices` list), CSV otherwise.
    pub fn parse(text: &str) -> Result<Inventory, InventoryError> {
        match text.trim_start().as_bytes().first() {
            Some(b'[' | b'{') => Inventory::from_json(text),
            _ => Inventory::from_csv(text),
        }
    }

    /// Reads the CSV form: a header naming every column of [`COLUMNS`] once, then one device
    /// per line.
    pub fn from_csv(text: &str) -> Result<Inventory, InventoryError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let recs = crate::csv::records(text).map_err(|(l, m)| at(format!("line {l}"), m))?;
        let Some((head, rows)) = recs.split_first() else {
            return Err(at("line 1", "the inventory is empty (no header)"));
        };
        let mut col = HashMap::new();
        for (i, name) in head.fields.iter().enumerate() {
            let name = name.trim();
            if !COLUMNS.contains(&name) {
                return Err(at(
                    format!("line {}", head.line),
                    format!(
                        "unknown column {name:?} (the columns are {})",
                        COLUMNS.join(", ")
                    ),
                ));
            }
            if col.insert(name, i).is_some() {
                return Err(at(
                    format!("line {}", head.line),
                    format!("column {name:?} twice"),
                ));
            }
        }
        if let Some(missing) = COLUMNS.iter().find(|c| !col.contains_key(*c)) {
            return Err(at(
                format!("line {}", head.line),
                format!(
                    "no column {missing:?} (the columns are {})",
                    COLUMNS.join(", ")
                ),
            ));
        }
        // Each column's position, resolved once rather than looked up for every field.
        let pos: [usize; COLUMNS.len()] = std::array::from_fn(|k| col[COLUMNS[k]]);
        let mut devices = Vec::with_capacity(rows.len());
        for r in rows {
            if r.fields.len() != head.fields.len() {
                return Err(at(
                    format!("line {}", r.line),
                    format!(
                        "{} fields, but the header has {}",
                        r.fields.len(),
                        head.fields.len()
                    ),
                ));
            }
            let get = |c: &str| {
                let k = COLUMNS.iter().position(|x| *x == c).unwrap_or(0);
                r.fields[pos[k]].trim()
            };
            let place = |c: &str| format!("line {}, column {c}", r.line);
            let addresses = get("addresses")
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| at(place("addresses"), format!("{a:?} is not an IP address")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            devices.push(Device {
                device: get("device").to_string(),
                vendor: get("vendor").to_string(),
                model: get("model").to_string(),
                function: Function::parse_text(get("function"))
                    .map_err(|m| at(place("function"), m))?,
                technology: get("technology").to_string(),
                site: get("site").to_string(),
                sensitive: match get("sensitive") {
                    "true" => true,
                    "false" => false,
                    s => {
                        return Err(at(
                            place("sensitive"),
                            format!("{s:?} is not true or false"),
                        ))
                    }
                },
                addresses,
                firmware_sha256: digest(get("firmware_sha256"))
                    .map_err(|m| at(place("firmware_sha256"), m))?,
                weight: number(get("weight"), "weight").map_err(|m| at(place("weight"), m))?,
                replacement_cost: number(get("replacement_cost"), "replacement_cost")
                    .map_err(|m| at(place("replacement_cost"), m))?,
            });
            check_device(devices.last().expect("just pushed"), || {
                format!("line {}", r.line)
            })?;
        }
        let inv = Inventory { devices };
        inv.check_unique(|i| format!("line {}", rows[i].line))?;
        Ok(inv)
    }

    /// Reads the JSON form: a list of devices with the CSV's fields (`addresses` a list), or an
    /// object whose `devices` is that list.
    pub fn from_json(text: &str) -> Result<Inventory, InventoryError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            at(
                format!("line {}, column {}", e.line(), e.column()),
                format!("not an inventory: {e}"),
            )
        })?;
        let list = match value {
            serde_json::Value::Array(l) => l,
            serde_json::Value::Object(mut o) => match (o.remove("devices"), o.keys().next()) {
                (_, Some(k)) => {
                    return Err(at(
                        "the inventory",
                        format!("unknown field {k:?} (only devices)"),
                    ))
                }
                (Some(serde_json::Value::Array(l)), None) => l,
                _ => return Err(at("the inventory", "devices is missing or not a list")),
            },
            _ => {
                return Err(at(
                    "the inventory",
                    "neither a list of devices nor an object",
                ))
            }
        };
        let mut devices = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            let name = v.get("device").and_then(|d| d.as_str()).map(str::to_string);
            let place = || match &name {
                Some(n) => format!("device {n:?} (entry {})", i + 1),
                None => format!("entry {}", i + 1),
            };
            let mut d: Device =
                serde_json::from_value(v).map_err(|e| at(place(), e.to_string()))?;
            d.firmware_sha256 = match d.firmware_sha256.as_deref() {
                Some(s) => digest(s).map_err(|m| at(format!("{}, firmware_sha256", place()), m))?,
                None => None,
            };
            for (what, v) in [
                ("weight", d.weight),
                ("replacement_cost", d.replacement_cost),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(at(
                        format!("{}, {what}", place()),
                        format!("{what} must be a non-negative number"),
                    ));
                }
            }
            check_device(&d, place)?;
            devices.push(d);
        }
        let inv = Inventory { devices };
        inv.check_unique(|i| format!("entry {}", i + 1))?;
        Ok(inv)
    }

    /// Device ids and addresses are each used once.
    fn check_unique(&self, place: impl Fn(usize) -> String) -> Result<(), InventoryError> {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut addrs: HashMap<IpAddr, usize> = HashMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(j) = ids.insert(&d.device, i) {
                return Err(at(
                    place(i),
                    format!("device id {:?} is also used at {}", d.device, place(j)),
                ));
            }
            for a in &d.addresses {
                if let Some(j) = addrs.insert(*a, i) {
                    return Err(at(
                        place(i),
                        format!("address {a} is also device {:?}'s", self.devices[j].device),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The device with this id.
    pub fn get(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.device == id)
    }
}

fn check_device(d: &Device, place: impl Fn() -> String) -> Result<(), InventoryError> {
    for (what, v) in [
        ("device", &d.device),
        ("vendor", &d.vendor),
        ("model", &d.model),
    ] {
        if v.trim().is_empty() {
            return Err(at(place(), format!("{what} is empty")));
        }
        if v.chars().any(char::is_control) {
            return Err(at(place(), format!("{what} has control characters")));
        }
    }
    Ok(())
}
