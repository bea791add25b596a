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

/// Why `exposure.toml` could not be read: each kind with the line it is on (from 1).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not TOML, or not a policy's form (an unknown or missing key, a value of the wrong type):
    /// the TOML reader's words, and its line when it gives one.
    Toml {
        /// The line.
        line: Option<usize>,
        /// What is wrong.
        problem: String,
    },
    /// A rule's name is empty.
    EmptyName {
        /// The line.
        line: usize,
    },
    /// A rule's vendor is empty.
    EmptyVendor {
        /// The line.
        line: usize,
        /// The rule.
        rule: String,
    },
    /// A rule's `max_share` is not a share from 0 to 1.
    Share {
        /// The line.
        line: usize,
        /// The rule.
        rule: String,
        /// The value given.
        share: f64,
    },
    /// A rule's `measure` is neither `weight` nor `devices`.
    Measure {
        /// The line.
        line: usize,
        /// The rule.
        rule: String,
        /// The value given.
        measure: String,
    },
    /// A rule's `effective` is not a date.
    Date {
        /// The line.
        line: usize,
        /// The rule.
        rule: String,
        /// Why.
        problem: DateError,
    },
    /// A rule's scope names a function the inventory does not know.
    Function {
        /// The line.
        line: usize,
        /// The rule.
        rule: String,
        /// Why.
        problem: String,
    },
    /// A second rule with a name already used.
    DuplicateRule {
        /// The second rule's line.
        line: usize,
        /// The name.
        rule: String,
    },
    /// The policy has no `[[rule]]`.
    NoRule,
}

impl PolicyError {
    /// The line the problem is on, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Toml { line, .. } => *line,
            PolicyError::EmptyName { line }
            | PolicyError::EmptyVendor { line, .. }
            | PolicyError::Share { line, .. }
            | PolicyError::Measure { line, .. }
            | PolicyError::Date { line, .. }
            | PolicyError::Function { line, .. }
            | PolicyError::DuplicateRule { line, .. } => Some(*line),
            PolicyError::NoRule => None,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line() {
            write!(f, "line {line}: ")?;
        }
        match self {
            PolicyError::Toml { problem, .. } => f.write_str(problem),
            PolicyError::EmptyName { .. } => f.write_str("the rule's name is empty"),
            PolicyError::EmptyVendor { rule, .. } => {
                write!(f, "rule {rule:?}: the vendor is empty")
            }
            PolicyError::Share { rule, share, .. } => write!(
                f,
                "rule {rule:?}: max_share {share} is not a share from 0 to 1 (35% is 0.35)"
            ),
            PolicyError::Measure { rule, measure, .. } => write!(
                f,
                "rule {rule:?}: measure {measure:?} is neither weight nor devices"
            ),
            PolicyError::Date { rule, problem, .. } => {
                write!(f, "rule {rule:?}: effective: {problem}")
            }
            PolicyError::Function { rule, problem, .. } => write!(f, "rule {rule:?}: {problem}"),
            PolicyError::DuplicateRule { rule, .. } => write!(f, "a second rule named {rule:?}"),
            PolicyError::NoRule => f.write_str("the policy has no [[rule]]"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Why a text is not a date.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DateError {
    /// Not of the form `YYYY-MM-DD` (the text).
    Form(String),
    /// Of the form, but no such day (the text): `2023-02-30`.
    NoSuchDay(String),
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateError::Form(s) => write!(f, "{s:?} is not a date of the form YYYY-MM-DD"),
            DateError::NoSuchDay(s) => write!(f, "{s:?} is not a day of that month"),
        }
    }
}

impl std::error::Error for DateError {}

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
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Toml {
            line: e.span().map(|s| line(s.start)),
            problem: e.message().to_string(),
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for r in raw.rule {
            let rule_line = line(r.span().start);
            let r = r.into_inner();
            let at = |s: std::ops::Range<usize>| line(s.start);
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(PolicyError::EmptyName {
                    line: at(r.name.span()),
                });
            }
            let vendor = r.vendor.get_ref().trim().to_string();
            if vendor.is_empty() {
                return Err(PolicyError::EmptyVendor {
                    line: at(r.vendor.span()),
                    rule: name,
                });
            }
            let max_share = *r.max_share.get_ref();
            if !(0.0..=1.0).contains(&max_share) {
                return Err(PolicyError::Share {
                    line: at(r.max_share.span()),
                    rule: name,
                    share: max_share,
                });
            }
            let measure = match r.measure.get_ref().as_str() {
                "weight" => Measure::Weight,
                "devices" => Measure::Devices,
                m => {
                    return Err(PolicyError::Measure {
                        line: at(r.measure.span()),
                        rule: name,
                        measure: m.to_string(),
                    })
                }
            };
            let effective =
                Date::parse(r.effective.get_ref()).map_err(|problem| PolicyError::Date {
                    line: at(r.effective.span()),
                    rule: name.clone(),
                    problem,
                })?;
            let scope = match r.scope {
                None => Scope::default(),
                Some(s) => {
                    let s = s.into_inner();
                    let mut functions = Vec::new();
                    for f in s.functions {
                        let func =
                            Function::parse(f.get_ref()).map_err(|m| PolicyError::Function {
                                line: at(f.span()),
                                rule: name.clone(),
                                problem: m.to_string(),
                            })?;
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
                return Err(PolicyError::DuplicateRule {
                    line: rule_line,
                    rule: name,
                });
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
            return Err(PolicyError::NoRule);
        }
        Ok(Policy { rules })
    }
}
