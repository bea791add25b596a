//! The designated-vendor policy (`exposure.toml`, DESIGN.md §12): rules of vendor, scope, cap,
//! measure and the date each takes effect. Parsed strictly; every error names its line.

use crate::date::Date;
use nospy_inventory::{Device, Function};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// How a share is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Each device counts its weight.
    Weight,
    /// Each device counts one.
    Devices,
}

impl Measure {
    /// The policy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Weight => "weight",
            Measure::Devices => "devices",
        }
    }

    /// What `d` counts for.
    pub fn of(self, d: &Device) -> f64 {
        match self {
            Measure::Weight => d.weight,
            Measure::Devices => 1.0,
        }
    }
}

/// Which devices a rule is about: every criterion given must hold (none given: the whole
/// network).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Network functions (any of them).
    pub functions: Vec<Function>,
    /// Technologies, compared without regard to case (any of them).
    pub technology: Vec<String>,
    /// Sensitive sites only (`Some(true)`), or never (`Some(false)`).
    pub sensitive: Option<bool>,
}

impl Scope {
    /// Whether device `d` is in the scope.
    pub fn contains(&self, d: &Device) -> bool {
        (self.functions.is_empty() || self.functions.contains(&d.function))
            && (self.technology.is_empty()
                || self
                    .technology
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&d.technology)))
            && self.sensitive.is_none_or(|s| s == d.sensitive)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.functions.is_empty() {
            let fs: Vec<&str> = self.functions.iter().map(|f| f.as_str()).collect();
            parts.push(format!("{} network", fs.join(" and ")));
        }
        if !self.technology.is_empty() {
            parts.push(self.technology.join(" and "));
        }
        match self.sensitive {
            Some(true) => parts.push("sensitive sites".into()),
            Some(false) => parts.push("sites not sensitive".into()),
            None => {}
        }
        if parts.is_empty() {
            f.write_str("the whole network")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One rule of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name, for people.
    pub name: String,
    /// The designated vendor, as the inventory names it.
    pub vendor: String,
    /// The devices it is about.
    pub scope: Scope,
    /// The largest share allowed, 0 to 1.
    pub max_share: f64,
    /// How the share is counted.
    pub measure: Measure,
    /// The day the cap takes effect.
    pub effective: Date,
    /// Where the rule comes from, say.
    pub note: Option<String>,
}

/// A policy: its rules, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A policy that could not be read: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    vendor: Spanned<String>,
    #[serde(default)]
    scope: Option<Spanned<RawScope>>,
    max_share: Spanned<f64>,
    measure: Spanned<String>,
    effective: Spanned<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    functions: Vec<Spanned<String>>,
    #[serde(default)]
    technology: Vec<String>,
    #[serde(default)]
    sensitive: Option<bool>,
}

impl Policy {
    /// Reads `exposure.toml`.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let line = |at: usize| nospy_tlog::text::line_at(text, at);
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let place = e
                .span()
                .map(|s| format!("line {}: ", line(s.start)))
                .unwrap_or_default();
            PolicyError(format!("{place}{}", e.message()))
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for r in raw.rule {
            let rule_line = line(r.span().start);
            let r = r.into_inner();
            let at = |s: std::ops::Range<usize>, m: String| {
                PolicyError(format!("line {}: {m}", line(s.start)))
            };
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(at(r.name.span(), "the rule's name is empty".into()));
            }
            let vendor = r.vendor.get_ref().trim().to_string();
            if vendor.is_empty() {
                return Err(at(
                    r.vendor.span(),
                    format!("rule {name:?}: the vendor is empty"),
                ));
            }
            let max_share = *r.max_share.get_ref();
            if !(0.0..=1.0).contains(&max_share) {
                return Err(at(
                    r.max_share.span(),
                    format!("rule {name:?}: max_share {max_share} is not a share from 0 to 1 (35% is 0.35)"),
                ));
            }
            let measure = match r.measure.get_ref().as_str() {
                "weight" => Measure::Weight,
                "devices" => Measure::Devices,
                m => {
                    return Err(at(
                        r.measure.span(),
                        format!("rule {name:?}: measure {m:?} is neither weight nor devices"),
                    ))
                }
            };
            let effective = Date::parse(r.effective.get_ref())
                .map_err(|m| at(r.effective.span(), format!("rule {name:?}: effective: {m}")))?;
            let scope = match r.scope {
                None => Scope::default(),
                Some(s) => {
                    let s = s.into_inner();
                    let mut functions = Vec::new();
                    for f in s.functions {
                        let func = Function::parse(f.get_ref())
                            .map_err(|m| at(f.span(), format!("rule {name:?}: {m}")))?;
                        if !functions.contains(&func) {
                            functions.push(func);
                        }
                    }
                    Scope {
                        functions,
                        technology: s.technology,
                        sensitive: s.sensitive,
                    }
                }
            };
            if rules.iter().any(|x: &Rule| x.name == name) {
                return Err(PolicyError(format!(
                    "line {rule_line}: a second rule named {name:?}"
                )));
            }
            rules.push(Rule {
                name,
                vendor,
                scope,
                max_share,
                measure,
                effective,
                note: r.note,
            });
        }
        if rules.is_empty() {
            return Err(PolicyError("the policy has no [[rule]]".into()));
        }
        Ok(Policy { rules })
    }
}
