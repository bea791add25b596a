//! Small helpers shared by the commands: reading inputs, writing outputs, exit codes, progress.

use anyhow::{Context as _, Result};
use nospy_tlog::note::{SignerKey, VerifierKey};
use nospy_tlog::Sha256;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// A negative answer: the command worked, and the answer is "no" (exit status 1).
#[derive(Debug)]
pub struct Negative(pub String);

impl std::fmt::Display for Negative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Negative {}

/// 1 for a [`Negative`] answer, 2 for everything else.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<Negative>().is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("reading standard input")?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Reads a text file people write (inventory, agreement, policy, ...) and parses it; errors
/// name the file.
pub fn read_parsed<T, E: std::fmt::Display>(
    path: &Path,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a document to `out` (as [`write_file`]), or to standard output.
pub fn write_output(out: Option<&Path>, data: &[u8]) -> Result<()> {
    match out {
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(data)
                .and_then(|_| o.flush())
                .context("writing standard output")
        }
        Some(p) => write_file(p, data),
    }
}

/// Replaces file `p` with `data` whole or not at all, durably: a temporary file beside it,
/// fsynced, renamed over it, and the directory fsynced so that the rename survives a crash. On
/// any error the temporary file is removed.
pub fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    nospy_log::durable::replace(p, data).with_context(|| format!("writing {}", p.display()))
}

/// SHA-256 of a file, with progress on a terminal for large files.
pub fn hash_file(path: &Path) -> Result<Sha256> {
    let big = std::fs::metadata(path).is_ok_and(|m| m.len() > 256 << 20);
    let mut progress = Progress::new("hashed bytes");
    nospy_client::artifact::hash_file(path, &mut |done, total| {
        if big {
            progress.update(done, total)
        }
    })
    .with_context(|| format!("reading {}", path.display()))
}

/// Parses `sha256:<hex>` or `<hex>`.
pub fn parse_digest(s: &str) -> Result<Sha256> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    Sha256::from_hex(hex).with_context(|| {
        format!("{s:?} is not a SHA-256 digest (64 hex digits, optionally after sha256:)")
    })
}

/// A verifier key given on the command line, or the path of a file holding one.
pub fn verifier_key(arg: &str) -> Result<VerifierKey> {
    match VerifierKey::parse(arg) {
        Ok(k) => Ok(k),
        Err(direct) => {
            let p = Path::new(arg);
            if !p.exists() {
                return Err(anyhow::anyhow!(
                    "{arg:?} is neither a verifier key ({direct}) nor a file"
                ));
            }
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            VerifierKey::parse(line)
                .with_context(|| format!("{}: no verifier key on its first line", p.display()))
        }
    }
}

/// Reads a private key file (Go's `PRIVATE+KEY+...` form).
pub fn signer_key(path: &Path) -> Result<SignerKey> {
    Ok(nospy_log::keyfile::read_signer(path)?)
}

/// Prints a JSON value on standard output.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut o, v)?;
    writeln!(o)?;
    Ok(())
}

/// Progress on standard error, only when it is a terminal.
pub struct Progress {
    what: &'static str,
    on: bool,
    last: std::time::Instant,
}

impl Progress {
    /// Starts reporting progress of `what`.
    pub fn new(what: &'static str) -> Self {
        Progress {
            what,
            on: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    /// A [`nospy_client::Progress`] callback reporting `what`.
    pub fn callback(what: &'static str) -> impl FnMut(u64, u64) {
        let mut p = Progress::new(what);
        move |done, total| p.update(done, total)
    }

    /// Reports `done` of `total`, at most ten times a second.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.on || (self.last.elapsed().as_millis() < 100 && done < total) {
            return;
        }
        self.last = std::time::Instant::now();
        let pct = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        eprint!("\r{} {done}/{total} ({pct:.0}%)   ", self.what);
        if done >= total {
            eprintln!();
        }
    }
}

/// A duration argument (`500ms`, `90s`, `15m`, `1h`), with the option's name in the error.
pub fn duration(what: &str, s: &str) -> Result<std::time::Duration> {
    if let Some(ms) = s.strip_suffix("ms").and_then(|m| m.parse::<u64>().ok()) {
        return Ok(std::time::Duration::from_millis(ms));
    }
    Ok(std::time::Duration::from_secs(
        nospy_statement::time::parse_duration(s).with_context(|| {
            format!("{what} {s:?}: expected a duration such as 500ms, 90s, 15m or 1h")
        })?,
    ))
}

/// A `--listen` address: `udp:ADDRESS:PORT`.
pub fn udp_addr(l: &str) -> Result<std::net::SocketAddr> {
    l.strip_prefix("udp:")
        .and_then(|a| a.parse().ok())
        .with_context(|| {
            format!("--listen {l:?}: expected udp:ADDRESS:PORT, such as udp:0.0.0.0:4739")
        })
}

/// Appends signed evidence statements to the log, all in one batch; nothing for none.
pub fn append_statements(
    log: &nospy_client::LogSource,
    statements: &[nospy_monitor::evidence::Statement],
) -> Result<Vec<nospy_client::Appended>> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<Vec<u8>> = statements.iter().map(|s| s.envelope.clone()).collect();
    log.append(&entries)
        .with_context(|| format!("appending evidence to {}", log.name()))
}
