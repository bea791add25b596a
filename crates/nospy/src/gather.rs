//! Reading what a log says about an artifact: hashing artifacts, and finding the entries whose
//! statements name a digest.

use crate::util::Progress;
use anyhow::{Context as _, Result};
use nospy_log::Log;
use nospy_statement::dsse::Envelope;
use nospy_statement::Statement;
use nospy_tlog::Hash;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// SHA-256 of a file, streamed, with progress on a terminal for large files. A second thread
/// reads ahead while this one hashes, so that the copy out of the page cache overlaps the
/// hashing.
pub fn hash_file(path: &Path) -> Result<Hash> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut progress = (total > 256 << 20).then(|| Progress::new("hashed bytes"));
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        // invariant: the channel has room for the three buffers.
        let _ = empty_tx.send(vec![0u8; 1 << 20]);
    }
    std::thread::scope(|s| -> Result<Hash> {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                let r = f.read(&mut buf).map(|n| (buf, n));
                let stop = !matches!(r, Ok((_, n)) if n > 0);
                if full_tx.send(r).is_err() || stop {
                    break;
                }
            }
        });
        let mut h = Sha256::new();
        let mut done = 0u64;
        loop {
            let (buf, n) = full_rx
                .recv()
                .context("reader thread stopped")?
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            done += n as u64;
            if let Some(p) = progress.as_mut() {
                p.update(done, total);
            }
            if empty_tx.send(buf).is_err() {
                break;
            }
        }
        drop(empty_tx);
        Ok(Hash(h.finalize().into()))
    })
}

/// Parses `sha256:<hex>` or `<hex>`.
pub fn parse_digest(s: &str) -> Result<Hash> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    Hash::from_hex(hex)
        .filter(|_| hex.len() == 64)
        .with_context(|| {
            format!("{s:?} is not a SHA-256 digest (64 hex digits, optionally after sha256:)")
        })
}

/// Calls `f` with the index, bytes and statement of every entry of `log` below `size` that is a
/// statement (others are skipped), with progress on a terminal: the one reading of a whole log.
fn each_statement(
    log: &Log,
    size: u64,
    mut f: impl FnMut(u64, &[u8], &Statement) -> Result<()>,
) -> Result<()> {
    let reader = log.reader();
    let mut progress = Progress::new("scanned entries");
    for b in 0..size.div_ceil(256) {
        for (k, e) in reader.bundle(b)?.into_iter().enumerate() {
            let index = b * 256 + k as u64;
            if index >= size {
                break;
            }
            let Ok(env) = Envelope::parse(&e) else {
                continue;
            };
            let Ok(st) = Statement::parse(&env.payload) else {
                continue;
            };
            f(index, &e, &st)?;
        }
        progress.update(((b + 1) * 256).min(size), size);
    }
    Ok(())
}

/// Whether a log entry is a statement with `digest` among its subjects (signatures unchecked:
/// this only finds candidates, which the verdict then checks).
pub fn is_about(entry: &[u8], digest: &Hash) -> bool {
    let Ok(env) = Envelope::parse(entry) else {
        return false;
    };
    // Cheap filter first: the digest's hex must appear in the payload.
    let hex = digest.to_hex();
    env.payload
        .windows(hex.len())
        .any(|w| w.eq_ignore_ascii_case(hex.as_bytes()))
        && Statement::parse(&env.payload).is_ok_and(|s| s.is_about(digest))
}

/// A log to read statements from and append them to: a local directory or a server.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A log directory on this machine (its private key, for appending, from its configuration).
    Dir(std::path::PathBuf),
    /// A `nospy serve` server's base URL.
    Server(String),
}

/// The evidence about each digest.
pub type EvidenceMap = std::collections::HashMap<Hash, nospy_policy::Evidence>;

/// A release statement found in a log: its index, the release, its subjects' SHA-256.
pub type LoggedRelease = (u64, nospy_statement::predicate::Release, Vec<Hash>);

/// One appended entry, as the log answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry's index.
    pub index: u64,
    /// Its leaf hash.
    pub hash: Hash,
    /// Whether it was in the log already.
    pub duplicate: bool,
}

impl LogSource {
    /// From `--log DIR` and `--server URL` (at most one is given; clap enforces it).
    pub fn from_args(log: Option<&Path>, server: Option<&str>) -> Option<LogSource> {
        match (log, server) {
            (Some(d), _) => Some(LogSource::Dir(d.to_path_buf())),
            (None, Some(u)) => Some(LogSource::Server(u.trim_end_matches('/').to_string())),
            (None, None) => None,
        }
    }

    /// What names the log in messages.
    pub fn name(&self) -> String {
        match self {
            LogSource::Dir(d) => d.display().to_string(),
            LogSource::Server(u) => u.clone(),
        }
    }

    /// The evidence about each of `digests`: the log's checkpoint (or, for a local log, the
    /// signed checkpoint in the file `checkpoint`, a cosigned one say) and every entry about the
    /// digest with its inclusion proof. A local log is read once, whole, for all of them; a
    /// server is asked through its index, once per digest.
    pub fn evidence_under(
        &self,
        digests: &[Hash],
        checkpoint: Option<&Path>,
    ) -> Result<std::collections::HashMap<Hash, nospy_policy::Evidence>> {
        Ok(self.read(digests, checkpoint, false)?.0)
    }

    /// [`LogSource::evidence_under`], and with `releases`, in the same reading of a local log,
    /// every release statement below the checkpoint (index, the release, its subjects' SHA-256;
    /// `None` for a server, whose index answers by digest only).
    pub fn read(
        &self,
        digests: &[Hash],
        checkpoint: Option<&Path>,
        releases: bool,
    ) -> Result<(EvidenceMap, Option<Vec<LoggedRelease>>)> {
        use nospy_policy::{Evidence, LoggedEntry};
        let mut out = std::collections::HashMap::new();
        let mut releases = (releases && matches!(self, LogSource::Dir(_))).then(Vec::new);
        match self {
            LogSource::Server(url) => {
                if checkpoint.is_some() {
                    anyhow::bail!("--checkpoint needs --log (a local log or a mirror)");
                }
                for d in digests {
                    if out.contains_key(d) {
                        continue;
                    }
                    let (checkpoint, entries) = crate::admit::remote_evidence(url, d)?;
                    out.insert(
                        *d,
                        Evidence {
                            checkpoint,
                            entries,
                            complete: Some(format!("the index of {url}")),
                            consistency: None,
                        },
                    );
                }
            }
            LogSource::Dir(dir) => {
                let log = Log::open(dir)?;
                let sc = crate::admit::checkpoint_of(&log, checkpoint)?;
                let size = sc.checkpoint.size;
                let text = sc.to_text();
                let wanted: std::collections::HashSet<Hash> = digests.iter().copied().collect();
                let mut found: std::collections::HashMap<Hash, Vec<LoggedEntry>> =
                    wanted.iter().map(|d| (*d, Vec::new())).collect();
                each_statement(&log, size, |index, e, st| {
                    if let Some(r) = releases
                        .as_mut()
                        .filter(|_| st.predicate_type == nospy_statement::predicate::RELEASE_V1)
                    {
                        if let Ok(nospy_statement::predicate::Predicate::Release(rel)) =
                            nospy_statement::predicate::Predicate::parse(
                                &st.predicate_type,
                                &st.predicate,
                            )
                        {
                            r.push((index, *rel, st.subject_sha256()));
                        }
                    }
                    let about: Vec<Hash> = st
                        .subject_sha256()
                        .into_iter()
                        .filter(|h| wanted.contains(h))
                        .collect();
                    if about.is_empty() {
                        return Ok(());
                    }
                    let proof = log.inclusion_proof(index, size)?;
                    for h in about {
                        if let Some(list) = found.get_mut(&h) {
                            list.push(LoggedEntry {
                                index,
                                bytes: e.to_vec(),
                                proof: proof.clone(),
                                proof_checkpoint: None,
                            });
                        }
                    }
                    Ok(())
                })?;
                for (d, entries) in found {
                    out.insert(
                        d,
                        Evidence {
                            checkpoint: text.clone(),
                            entries,
                            complete: Some("the log".to_string()),
                            consistency: None,
                        },
                    );
                }
            }
        }
        Ok((out, releases))
    }

    /// Appends signed statements, all or (for a local log) nothing; a server is sent them one by
    /// one and the first refusal stops there, naming how many it had taken.
    pub fn append(&self, entries: &[Vec<u8>]) -> Result<Vec<Appended>> {
        match self {
            LogSource::Dir(dir) => {
                let key_path = nospy_log::LogConfig::load(dir)?
                    .private_key_file
                    .context("this log remembers no private key file, so nothing can be appended to it here; append through its server (--server) instead")?;
                let key = crate::util::signer_key(&key_path)?;
                let mut seq = nospy_log::Sequencer::open(dir, key)?;
                let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
                Ok(seq
                    .append(&refs)?
                    .into_iter()
                    .map(|a| Appended {
                        index: a.index,
                        hash: a.hash,
                        duplicate: a.duplicate,
                    })
                    .collect())
            }
            LogSource::Server(url) => {
                let http = nospy_server::client::Blocking::new(std::time::Duration::from_secs(60))
                    .map_err(|e| anyhow::anyhow!(e))?;
                let endpoint = format!("{url}/add");
                let mut out = Vec::new();
                for (i, data) in entries.iter().enumerate() {
                    let (status, body) = http
                        .post(&endpoint, data.clone())
                        .map_err(|e| anyhow::anyhow!(e))?;
                    let text = String::from_utf8_lossy(&body).trim().to_string();
                    if status != 200 {
                        anyhow::bail!(
                            "{url} answered HTTP {status} to statement {} of {} ({i} appended before it): {text}",
                            i + 1,
                            entries.len()
                        );
                    }
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("{url}: the answer to /add is not JSON"))?;
                    out.push(Appended {
                        index: v["index"].as_u64().context("the answer has no index")?,
                        hash: v["hash"]
                            .as_str()
                            .and_then(Hash::from_hex)
                            .context("the answer has no hash")?,
                        duplicate: v["duplicate"] == true,
                    });
                }
                Ok(out)
            }
        }
    }
}

/// What [`fleet_verdicts`] found.
pub struct FleetVerdicts {
    /// Each device's firmware digest, in inventory order.
    pub digests: Vec<Option<Hash>>,
    /// The verdict for each distinct digest the log knows anything about.
    pub verdicts: std::collections::HashMap<Hash, nospy_policy::Verdict>,
    /// Every release of a local log, when asked for (see [`LogSource::read`]).
    pub releases: Option<Vec<LoggedRelease>>,
}

/// Each device's firmware digest (from the inventory), and the verdict under `verifier` for each
/// distinct one the log knows anything about, at time `now`: one reading of the log for the
/// whole fleet (which also lists the log's releases, with `releases`), one batch of signature
/// checks.
pub fn fleet_verdicts(
    src: &LogSource,
    inventory: &nospy_inventory::Inventory,
    verifier: &nospy_policy::Verifier<'_>,
    checkpoint: Option<&Path>,
    now: u64,
    releases: bool,
) -> Result<FleetVerdicts> {
    let digests: Vec<Option<Hash>> = inventory
        .devices
        .iter()
        .map(|d| d.firmware_sha256.as_deref().and_then(Hash::from_hex))
        .collect();
    let mut wanted: Vec<Hash> = digests.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let (evidence, releases) = src
        .read(&wanted, checkpoint, releases)
        .with_context(|| format!("reading {}", src.name()))?;
    Ok(FleetVerdicts {
        digests,
        verdicts: verify_all(verifier, &wanted, &evidence, now),
        releases,
    })
}

/// The verdict for each of `digests` that `evidence` holds, in one batch of signature checks.
pub fn verify_all(
    verifier: &nospy_policy::Verifier<'_>,
    digests: &[Hash],
    evidence: &std::collections::HashMap<Hash, nospy_policy::Evidence>,
    now: u64,
) -> std::collections::HashMap<Hash, nospy_policy::Verdict> {
    let items: Vec<(&Hash, &nospy_policy::Evidence)> = digests
        .iter()
        .filter_map(|d| evidence.get(d).map(|e| (d, e)))
        .collect();
    items
        .iter()
        .map(|(d, _)| **d)
        .zip(verifier.verify_many(&items, now))
        .collect()
}
