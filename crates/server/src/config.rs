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

/// Why `serve.toml` was refused (the message names the line or the entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ServeConfig {
    /// Parses `serve.toml`; errors name the line or the entry.
    pub fn from_toml(text: &str) -> Result<ServeConfig, ConfigError> {
        Self::from_toml_text(text).map_err(ConfigError)
    }

    fn from_toml_text(text: &str) -> Result<ServeConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| nospy_tlog::text::line_at(text, s.start));
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            }
        })?;
        let submitters = raw
            .submitter
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let key =
                    VerifierKey::parse(&s.key).map_err(|e| format!("submitter {}: {e}", i + 1))?;
                if key.alg() != ALG_ED25519 {
                    return Err(format!(
                        "submitter {}: not an Ed25519 signing key (type 0x01)",
                        i + 1
                    ));
                }
                let key_text = key.to_string();
                Ok(Submitter {
                    role: s.role,
                    key,
                    key_text,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut cfg = ServeConfig {
            submitters: submitters.into(),
            witness_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        if let Some(d) = raw.dashboard {
            cfg.agreement_files = d.agreements.iter().map(std::path::PathBuf::from).collect();
            if d.inventory.is_none() && (d.exposure.is_some() || d.token_file.is_some()) {
                return Err(
                    "[dashboard] exposure and token_file belong to the operator pages, which need an inventory: add inventory = \"...\"".into(),
                );
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
                    let mut key = VerifierKey::parse(&m.key)
                        .map_err(|e| format!("witness {}: {e}", i + 1))?;
                    if key.alg() == ALG_ED25519 {
                        key = key
                            .with_alg(ALG_COSIGNATURE_V1)
                            .map_err(|e| format!("witness {}: {e}", i + 1))?;
                    }
                    if key.alg() != ALG_COSIGNATURE_V1 {
                        return Err(format!("witness {}: not an Ed25519 cosignature key", i + 1));
                    }
                    if !(m.url.starts_with("http://") || m.url.starts_with("https://")) {
                        return Err(format!("witness {}: url {:?} is not http(s)", i + 1, m.url));
                    }
                    Ok(Witness {
                        url: m.url.trim_end_matches('/').to_string(),
                        key,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            if w.quorum > cfg.witnesses.len() {
                return Err(format!(
                    "[witnesses] quorum {} is more than the {} witnesses listed",
                    w.quorum,
                    cfg.witnesses.len()
                ));
            }
            cfg.witness_quorum = w.quorum;
            if let Some(t) = w.timeout {
                let secs = parse_duration(&t).ok_or_else(|| {
                    format!("[witnesses] timeout {t:?} is not a duration such as \"1s\"")
                })?;
                cfg.witness_timeout = Duration::from_secs(secs.max(1));
            }
        }
        Ok(cfg)
    }
}
