//! The server's configuration file (`serve.toml`, DESIGN.md §12): who may submit, and which
//! witnesses to ask for cosignatures.

use nospy_statement::time::parse_duration;
use nospy_tlog::note::{VerifierKey, ALG_COSIGNATURE_V1, ALG_ED25519};
use serde::Deserialize;
use std::time::Duration;

/// Who may submit what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Releases and revocations.
    Vendor,
    /// Attestations and revocations.
    Evaluator,
    /// Evidence.
    Monitor,
}

/// An admitted submitter.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// What it may submit.
    pub role: Role,
    /// Its key.
    pub key: VerifierKey,
    /// The key as written (`name+id+base64`), which is what nospy's envelopes carry as keyid.
    pub key_text: String,
}

/// A witness to ask for cosignatures.
#[derive(Debug, Clone)]
pub struct Witness {
    /// Its submission URL prefix (`http://host:port`); `/add-checkpoint` is appended.
    pub url: String,
    /// Its cosignature key (type 0x04).
    pub key: VerifierKey,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Admitted submitters.
    pub submitters: std::sync::Arc<[Submitter]>,
    /// Witnesses.
    pub witnesses: Vec<Witness>,
    /// How many must cosign for the quorum (reported when missed).
    pub witness_quorum: usize,
    /// How long to wait for each witness.
    pub witness_timeout: Duration,
    /// The agreements the dashboard gives release verdicts under (`[dashboard] agreements`),
    /// as written: paths relative to the configuration file.
    pub agreement_files: Vec<std::path::PathBuf>,
    /// Those agreements, read ([`crate::load_config`] reads them; parsing the TOML alone
    /// leaves this empty).
    pub agreements: Vec<std::sync::Arc<nospy_policy::Agreement>>,
    /// The operator's files for the dashboard's operator pages (`[dashboard] inventory`,
    /// `exposure`, `token_file`), as written: paths relative to the configuration file.
    pub operator_files: OperatorFiles,
    /// Those files, read ([`crate::load_config`] reads them): present when an inventory is
    /// configured.
    pub operator: Option<std::sync::Arc<Operator>>,
}

/// The operator's files named in `[dashboard]`.
#[derive(Debug, Clone, Default)]
pub struct OperatorFiles {
    /// The inventory (CSV or JSON, DESIGN.md §12): the fleet and violations pages.
    pub inventory: Option<std::path::PathBuf>,
    /// The exposure policy: the exposure page.
    pub exposure: Option<std::path::PathBuf>,
    /// A file holding the bearer token the operator pages require (required when the server
    /// listens on anything but loopback).
    pub token_file: Option<std::path::PathBuf>,
}

/// The operator's data, read: what the operator pages show. These are the operator's own
/// records, so beyond loopback they need the bearer token.
#[derive(Debug)]
pub struct Operator {
    /// The inventory.
    pub inventory: nospy_inventory::Inventory,
    /// The exposure policy, if one is configured.
    pub exposure: Option<nospy_exposure::Policy>,
    /// SHA-256 of the bearer token, if one is configured (compared digest to digest, so the
    /// comparison's time says nothing about the token).
    pub token: Option<nospy_tlog::Sha256>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    submitter: Vec<RawSubmitter>,
    #[serde(default)]
    witnesses: Option<RawWitnesses>,
    #[serde(default)]
    dashboard: Option<RawDashboard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    #[serde(default)]
    agreements: Vec<String>,
    #[serde(default)]
    inventory: Option<String>,
    #[serde(default)]
    exposure: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubmitter {
    role: Role,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitnesses {
    quorum: usize,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    member: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    url: String,
    key: String,
}

impl Role {
    /// The word serve.toml uses (`vendor`, `evaluator`, `monitor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vendor => "vendor",
            Role::Evaluator => "evaluator",
            Role::Monitor => "monitor",
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            submitters: Vec::new().into(),
            witnesses: Vec::new(),
            witness_quorum: 0,
            witness_timeout: Duration::from_secs(1),
            agreement_files: Vec::new(),
            agreements: Vec::new(),
            operator_files: OperatorFiles::default(),
            operator: None,
        }
    }
}

/// Why `serve.toml` was refused; its message names the line or the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not TOML of serve.toml's shape: a syntax error, an unknown key, a value of
    /// the wrong type (`line` where the parser points, when it does).
    Toml {
        /// The line (1-based).
        line: Option<usize>,
        /// The parser's words.
        message: String,
    },
    /// A `[[submitter]]` (its position, from 1) whose key does not parse or is not an Ed25519
    /// signing key.
    Submitter {
        /// Its position in the file, from 1.
        position: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A `[[witnesses.member]]` (its position, from 1) whose key is not an Ed25519
    /// cosignature key or whose url is not http(s).
    Witness {
        /// Its position in the file, from 1.
        position: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// `[witnesses] quorum` asks for more witnesses than are listed.
    Quorum {
        /// The quorum asked for.
        quorum: usize,
        /// The witnesses listed.
        members: usize,
    },
    /// `[witnesses] timeout` is not a duration.
    Timeout(String),
    /// `[dashboard]` names operator files (`exposure`, `token_file`) without an `inventory`.
    OperatorWithoutInventory,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Toml { line: Some(l), message } => write!(f, "line {l}: {message}"),
            ConfigError::Toml { line: None, message } => f.write_str(message),
            ConfigError::Submitter { position, problem } => {
                write!(f, "submitter {position}: {problem}")
            }
            ConfigError::Witness { position, problem } => {
                write!(f, "witness {position}: {problem}")
            }
            ConfigError::Quorum { quorum, members } => write!(
                f,
                "[witnesses] quorum {quorum} is more than the {members} witnesses listed"
            ),
            ConfigError::Timeout(t) => write!(
                f,
                "[witnesses] timeout {t:?} is not a duration such as \"1s\""
            ),
            ConfigError::OperatorWithoutInventory => f.write_str(
                "[dashboard] exposure and token_file belong to the operator pages, which need an inventory: add inventory = \"...\"",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ServeConfig {
    /// Parses `serve.toml`; errors name the line or the entry.
    pub fn from_toml(text: &str) -> Result<ServeConfig, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Toml {
            line: e.span().map(|s| nospy_tlog::text::line_at(text, s.start)),
            message: e.message().to_string(),
        })?;
        let submitters = raw
            .submitter
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let bad = |problem: String| ConfigError::Submitter {
                    position: i + 1,
                    problem,
                };
                let key = VerifierKey::parse(&s.key).map_err(|e| bad(e.to_string()))?;
                if key.alg() != ALG_ED25519 {
                    return Err(bad("not an Ed25519 signing key (type 0x01)".into()));
                }
                let key_text = key.to_string();
                Ok(Submitter {
                    role: s.role,
                    key,
                    key_text,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mut cfg = ServeConfig {
            submitters: submitters.into(),
            witness_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        if let Some(d) = raw.dashboard {
            cfg.agreement_files = d.agreements.iter().map(std::path::PathBuf::from).collect();
            if d.inventory.is_none() && (d.exposure.is_some() || d.token_file.is_some()) {
                return Err(ConfigError::OperatorWithoutInventory);
            }
            cfg.operator_files = OperatorFiles {
                inventory: d.inventory.map(Into::into),
                exposure: d.exposure.map(Into::into),
                token_file: d.token_file.map(Into::into),
            };
        }
        if let Some(w) = raw.witnesses {
            cfg.witnesses = w
                .member
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let bad = |problem: String| ConfigError::Witness {
                        position: i + 1,
                        problem,
                    };
                    let mut key = VerifierKey::parse(&m.key).map_err(|e| bad(e.to_string()))?;
                    if key.alg() == ALG_ED25519 {
                        key = key
                            .with_alg(ALG_COSIGNATURE_V1)
                            .map_err(|e| bad(e.to_string()))?;
                    }
                    if key.alg() != ALG_COSIGNATURE_V1 {
                        return Err(bad("not an Ed25519 cosignature key".into()));
                    }
                    if !(m.url.starts_with("http://") || m.url.starts_with("https://")) {
                        return Err(bad(format!("url {:?} is not http(s)", m.url)));
                    }
                    Ok(Witness {
                        url: m.url.trim_end_matches('/').to_string(),
                        key,
                    })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            if w.quorum > cfg.witnesses.len() {
                return Err(ConfigError::Quorum {
                    quorum: w.quorum,
                    members: cfg.witnesses.len(),
                });
            }
            cfg.witness_quorum = w.quorum;
            if let Some(t) = w.timeout {
                let secs = parse_duration(&t).ok_or_else(|| ConfigError::Timeout(t.clone()))?;
                cfg.witness_timeout = Duration::from_secs(secs.max(1));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor() -> String {
        nospy_tlog::note::SignerKey::from_seed("vendor.example", [2; 32])
            .expect("a key")
            .verifier()
            .to_string()
    }

    fn err(text: &str) -> ConfigError {
        ServeConfig::from_toml(text).expect_err(text)
    }

    #[test]
    fn each_refusal_names_its_kind_and_place() {
        assert!(matches!(
            err("[[submitter]]\nrole = \"vendor\"\nkey = 3\n"),
            ConfigError::Toml { line: Some(3), .. }
        ));
        assert!(matches!(
            err("[[submitter]]\nrole = \"king\"\nkey = \"x\"\n"),
            ConfigError::Toml { line: Some(2), .. }
        ));
        assert!(matches!(err("surprise = 1\n"), ConfigError::Toml { .. }));
        assert!(matches!(
            err(&format!("[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n[[submitter]]\nrole = \"vendor\"\nkey = \"not a key\"\n", vendor())),
            ConfigError::Submitter { position: 2, .. }
        ));
        assert!(matches!(
            err(&format!("[witnesses]\nquorum = 1\n[[witnesses.member]]\nurl = \"ftp://w.example\"\nkey = \"{}\"\n", vendor())),
            ConfigError::Witness { position: 1, .. }
        ));
        assert_eq!(
            err("[witnesses]\nquorum = 2\n"),
            ConfigError::Quorum {
                quorum: 2,
                members: 0
            }
        );
        assert_eq!(
            err("[witnesses]\nquorum = 0\ntimeout = \"soon\"\n"),
            ConfigError::Timeout("soon".into())
        );
        assert_eq!(
            err("[dashboard]\nexposure = \"e.toml\"\n"),
            ConfigError::OperatorWithoutInventory
        );
        // The messages name the place.
        assert_eq!(
            err("[witnesses]\nquorum = 2\n").to_string(),
            "[witnesses] quorum 2 is more than the 0 witnesses listed"
        );
        assert!(err("[[submitter]]\nrole = \"vendor\"\nkey = 3\n")
            .to_string()
            .starts_with("line 3: "));
    }

    #[test]
    fn hostile_text_is_refused_without_a_panic() {
        let long = "k".repeat(100_000);
        for text in [
            "\u{0}",
            "[[submitter]]\nrole = \"vendor\"\nkey = \"\"\n",
            "[[submitter]]\nrole = \"vendor\"\nkey = \"a+b+c\"\n",
            &format!("[[submitter]]\nrole = \"vendor\"\nkey = \"{long}\"\n"),
            "[witnesses]\nquorum = -1\n",
            "[witnesses]\nquorum = 18446744073709551616\n",
            "[dashboard]\nagreements = \"one\"\n",
            "[[witnesses.member]]\n",
        ] {
            let _ = err(text);
        }
    }
}
