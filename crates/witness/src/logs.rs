//! The file naming the logs a witness witnesses (`--logs`):
//!
//! ```toml
//! [[log]]
//! origin = "log.example.org/nospy"
//! key = "log.example.org/nospy+8d2c34e1+AQ..."
//! ```

use nospy_tlog::note::VerifierKey;
use serde::Deserialize;

/// Why a logs file was refused: the line (for TOML errors) or the log (from 1), and the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsError {
    /// The line of the file, when the TOML itself is at fault.
    pub line: Option<usize>,
    /// Which `[[log]]` (from 1), when one of them is at fault.
    pub log: Option<usize>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for LogsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(l) = self.log {
            write!(f, "log {l}: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for LogsError {}

/// Parses the logs file: each log's origin and verifier key, whose name must be the origin.
pub fn parse_logs(text: &str) -> Result<Vec<(String, VerifierKey)>, LogsError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        log: Vec<RawLog>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawLog {
        origin: String,
        key: String,
    }
    let raw: Raw = toml::from_str(text).map_err(|e| LogsError {
        line: e.span().map(|s| nospy_tlog::text::line_at(text, s.start)),
        log: None,
        problem: e.message().to_string(),
    })?;
    raw.log
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let bad = |problem: String| LogsError {
                line: None,
                log: Some(i + 1),
                problem,
            };
            let k = VerifierKey::parse(&l.key).map_err(|e| bad(e.to_string()))?;
            if k.name() != l.origin {
                return Err(bad(format!(
                    "the key is named {:?}, the origin is {:?}",
                    k.name(),
                    l.origin
                )));
            }
            Ok((l.origin, k))
        })
        .collect()
}
