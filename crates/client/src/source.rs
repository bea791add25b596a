//! [`LogSource`]: where statements come from and go to, a log directory on this machine or a
//! `nospy serve` server, read the same way by `verify`, `bundle`, `fleet` and `monitor`.

use crate::api::{AddResponse, InclusionResponse, LookupResponse};
use crate::http::Blocking;
use crate::Error;
use nospy_log::Log;
use nospy_policy::breach::{release_index, Case};
use nospy_policy::{Evidence, LoggedEntry};
use nospy_statement::bundle::{Bundle, BundleEntry};
use nospy_statement::dsse::Envelope;
use nospy_statement::predicate::{Predicate, RELEASE_V1};
use nospy_statement::Statement;
use nospy_tlog::checkpoint::{SignedCheckpoint, TlogProof};
use nospy_tlog::tile::{self, TileId};
use nospy_tlog::{Hash, LogIndex, Sha256, TreeSize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one request to a server may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A log to read statements from and append them to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// A log directory on this machine (its private key, for appending, from its configuration).
    Dir(PathBuf),
    /// A `nospy serve` server's base URL, without a trailing `/`.
    Server(String),
}

/// The evidence about each digest.
pub type EvidenceMap = HashMap<Sha256, Evidence>;

pub use nospy_policy::fleet::ListedRelease;

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

/// Called with (entries read, entries in all) while a whole log is read.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

impl LogSource {
    /// From `--log DIR` and `--server URL` (the directory when both are given).
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
        digests: &[Sha256],
        checkpoint: Option<&Path>,
        progress: Progress<'_>,
    ) -> Result<EvidenceMap, Error> {
        Ok(self.read(digests, checkpoint, false, progress)?.0)
    }

    /// [`LogSource::evidence_under`], and with `releases`, in the same reading of a local log,
    /// every release statement below the checkpoint (`None` for a server, whose index answers
    /// by digest only).
    pub fn read(
        &self,
        digests: &[Sha256],
        checkpoint: Option<&Path>,
        releases: bool,
        progress: Progress<'_>,
    ) -> Result<(EvidenceMap, Option<Vec<ListedRelease>>), Error> {
        let mut out = HashMap::new();
        match self {
            LogSource::Server(url) => {
                if checkpoint.is_some() {
                    return Err(Error::NeedsLocalLog("--checkpoint"));
                }
                for d in digests {
                    if out.contains_key(d) {
                        continue;
                    }
                    let (checkpoint, entries) = remote_evidence(url, d)?;
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
                Ok((out, None))
            }
            LogSource::Dir(dir) => {
                let log = Log::open(dir)?;
                let sc = match checkpoint {
                    None => log.checkpoint().clone(),
                    Some(p) => log.checkpoint_from_file(p)?,
                };
                let size = sc.checkpoint.size;
                let text = sc.to_text();
                let wanted: HashSet<Sha256> = digests.iter().copied().collect();
                let mut found: HashMap<Sha256, Vec<LoggedEntry>> =
                    wanted.iter().map(|d| (*d, Vec::new())).collect();
                let mut listed = releases.then(Vec::new);
                each_statement(&log, size, progress, |index, e, st| {
                    if let Some(r) = listed.as_mut().filter(|_| st.predicate_type == RELEASE_V1) {
                        if let Ok(Predicate::Release(rel)) =
                            Predicate::parse(&st.predicate_type, &st.predicate)
                        {
                            r.push((index, *rel, st.subject_sha256()));
                        }
                    }
                    let about: Vec<Sha256> = st
                        .subject_sha256()
                        .into_iter()
                        .filter(|h| wanted.contains(h))
                        .collect();
                    if about.is_empty() {
                        return Ok(());
                    }
                    let proof = log.inclusion_proof(LogIndex(index), TreeSize(size))?;
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
                Ok((out, listed))
            }
        }
    }

    /// Entries `indexes` with their inclusion proofs under one checkpoint: the log's (or, for a
    /// local log, the signed checkpoint in the file `checkpoint`), returned verbatim. An index
    /// at or beyond the checkpoint's size is an error naming it.
    pub fn entries_at(
        &self,
        indexes: &[u64],
        checkpoint: Option<&Path>,
    ) -> Result<(String, Vec<LoggedEntry>), Error> {
        let mut under = Under::open(self, checkpoint)?;
        let entries = indexes
            .iter()
            .map(|&i| under.logged(i))
            .collect::<Result<_, _>>()?;
        Ok((under.checkpoint().to_string(), entries))
    }

    /// Every entry about `digest` with its inclusion proof under one checkpoint (for a local
    /// log, the signed checkpoint in the file `checkpoint`, or the log's latest), and from a
    /// local log a consistency proof from the earlier size `since` when given: a bundle, which is
    /// also an evidence case file. No entry about the digest is [`Error::NothingAbout`].
    pub fn gather(
        &self,
        digest: &Sha256,
        checkpoint: Option<&Path>,
        since: Option<u64>,
        progress: Progress<'_>,
    ) -> Result<Bundle, Error> {
        if matches!(self, LogSource::Server(_)) && since.is_some() {
            return Err(Error::NeedsLocalLog("--since-size"));
        }
        let Some(ev) = self
            .evidence_under(&[*digest], checkpoint, progress)?
            .remove(digest)
        else {
            return Err(Error::BadAnswer {
                url: self.name(),
                problem: "nothing read about the digest".into(),
            });
        };
        let size = SignedCheckpoint::parse(ev.checkpoint.as_bytes())
            .map_err(|e| Error::BadAnswer {
                url: self.name(),
                problem: format!("its checkpoint: {e}"),
            })?
            .checkpoint
            .size;
        if ev.entries.is_empty() {
            return Err(Error::NothingAbout {
                log: self.name(),
                digest: *digest,
                size,
            });
        }
        let consistency = match (self, since) {
            (LogSource::Dir(dir), Some(n)) => Some((
                n,
                Log::open(dir)?.consistency_proof(TreeSize(n), TreeSize(size))?,
            )),
            _ => None,
        };
        let entries = ev
            .entries
            .into_iter()
            .map(|e| BundleEntry {
                entry: e.bytes,
                proof: TlogProof {
                    extra: None,
                    index: e.index,
                    proof: e.proof,
                    checkpoint: ev.checkpoint.clone(),
                },
            })
            .collect();
        Ok(Bundle {
            artifact: *digest,
            checkpoint: ev.checkpoint,
            entries,
            consistency,
        })
    }

    /// Evidence entry `index` and the release entry it names, under one checkpoint (as
    /// [`LogSource::entries_at`]): what [`nospy_policy::breach::verify_evidence`] verifies. A
    /// named release beyond the checkpoint is left out (the verification says so).
    pub fn case_at(&self, index: u64, checkpoint: Option<&Path>) -> Result<Case, Error> {
        let mut under = Under::open(self, checkpoint)?;
        let evidence = under.logged(index)?;
        let release = release_index(&evidence.bytes)
            .filter(|&i| i < under.size())
            .map(|i| under.logged(i))
            .transpose()?;
        Ok(Case {
            checkpoint: under.checkpoint().to_string(),
            evidence,
            release,
        })
    }

    /// Appends signed statements, all or (for a local log) nothing; a server is sent them one by
    /// one and the first refusal stops there ([`Error::Refused`] says how many it had taken).
    pub fn append(&self, entries: &[Vec<u8>]) -> Result<Vec<Appended>, Error> {
        match self {
            LogSource::Dir(dir) => {
                let key_path = nospy_log::LogConfig::load(dir)?
                    .private_key_file
                    .ok_or_else(|| Error::NoPrivateKey(dir.clone()))?;
                let key = nospy_log::keyfile::read_signer(&key_path)?;
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
                let http = Blocking::new(TIMEOUT)?;
                let endpoint = format!("{url}/add");
                let mut out = Vec::new();
                for (i, data) in entries.iter().enumerate() {
                    let (status, body) = http.post(&endpoint, data.clone())?;
                    if status != 200 {
                        return Err(Error::Refused {
                            url: url.clone(),
                            status,
                            position: i,
                            of: entries.len(),
                            said: String::from_utf8_lossy(&body).trim().to_string(),
                        });
                    }
                    let a: AddResponse = json(&endpoint, &body)?;
                    out.push(Appended {
                        index: a.index,
                        hash: a.hash,
                        duplicate: a.duplicate,
                    });
                }
                Ok(out)
            }
        }
    }
}

/// What [`LogSource::verdicts`] found.
pub struct FleetVerdicts {
    /// The verdict for each distinct digest the log knows anything about.
    pub verdicts: HashMap<Sha256, nospy_policy::Verdict>,
    /// Every release of a local log, when asked for (see [`LogSource::read`]).
    pub releases: Option<Vec<ListedRelease>>,
}

impl LogSource {
    /// The verdict under `verifier`, at time `now`, for each distinct one of `digests` (a
    /// fleet's firmware, say) the log knows anything about: one reading of the log for all of
    /// them (which also lists the log's releases, with `releases`), one batch of signature
    /// checks.
    pub fn verdicts(
        &self,
        digests: &[Option<Sha256>],
        verifier: &nospy_policy::Verifier<'_>,
        checkpoint: Option<&Path>,
        now: u64,
        releases: bool,
        progress: Progress<'_>,
    ) -> Result<FleetVerdicts, Error> {
        let wanted = nospy_policy::fleet::distinct(digests);
        let (evidence, releases) = self.read(&wanted, checkpoint, releases, progress)?;
        Ok(FleetVerdicts {
            verdicts: nospy_policy::fleet::verify_all(verifier, &wanted, &evidence, now),
            releases,
        })
    }
}

/// Reads a JSON answer of the server's API.
fn json<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadAnswer {
        url: url.to_string(),
        problem: format!("not the API's JSON: {e}"),
    })
}

/// Calls `f` with the index, bytes and statement of every entry of `log` below `size` that is a
/// statement (others are skipped): the one reading of a whole log.
fn each_statement(
    log: &Log,
    size: u64,
    progress: Progress<'_>,
    mut f: impl FnMut(u64, &[u8], &Statement) -> Result<(), nospy_log::LogError>,
) -> Result<(), Error> {
    let reader = log.reader();
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
        progress(((b + 1) * 256).min(size), size);
    }
    Ok(())
}

/// A log read entry by entry under one checkpoint: a server's current one, or a local log's
/// (or the signed checkpoint in a file, its text kept verbatim: its cosignatures are what a
/// verifier counts).
enum Under<'a> {
    Remote(Remote<'a>),
    Dir { log: Log, size: u64, text: String },
}

impl<'a> Under<'a> {
    fn open(src: &'a LogSource, checkpoint: Option<&Path>) -> Result<Under<'a>, Error> {
        match src {
            LogSource::Server(url) => {
                if checkpoint.is_some() {
                    return Err(Error::NeedsLocalLog("--checkpoint"));
                }
                Ok(Under::Remote(Remote::new(url)?))
            }
            LogSource::Dir(dir) => {
                let log = Log::open(dir)?;
                let (size, text) = match checkpoint {
                    None => {
                        let sc = log.checkpoint();
                        (sc.checkpoint.size, sc.to_text())
                    }
                    Some(p) => (
                        log.checkpoint_from_file(p)?.checkpoint.size,
                        std::fs::read_to_string(p).map_err(|e| {
                            Error::Log(nospy_log::LogError::Io {
                                path: p.to_path_buf(),
                                source: e,
                            })
                        })?,
                    ),
                };
                Ok(Under::Dir { log, size, text })
            }
        }
    }

    fn size(&self) -> u64 {
        match self {
            Under::Remote(r) => r.size,
            Under::Dir { size, .. } => *size,
        }
    }

    fn checkpoint(&self) -> &str {
        match self {
            Under::Remote(r) => &r.checkpoint,
            Under::Dir { text, .. } => text,
        }
    }

    /// Entry `index` with its inclusion proof; beyond the checkpoint, an error naming it.
    fn logged(&mut self, index: u64) -> Result<LoggedEntry, Error> {
        let size = self.size();
        if index >= size {
            return Err(Error::BeyondCheckpoint { index, size });
        }
        match self {
            Under::Remote(r) => r.logged(index),
            Under::Dir { log, .. } => Ok(LoggedEntry {
                index,
                bytes: log.entry(index)?,
                proof: log.inclusion_proof(LogIndex(index), TreeSize(size))?,
                proof_checkpoint: None,
            }),
        }
    }
}

/// A server read entry by entry under its current checkpoint: entries from their bundles (each
/// bundle fetched once), inclusion proofs from `/proof/inclusion`.
struct Remote<'a> {
    base: &'a str,
    http: Blocking,
    /// The checkpoint, verbatim, and its size.
    checkpoint: String,
    size: u64,
    bundles: HashMap<u64, Vec<Vec<u8>>>,
}

impl<'a> Remote<'a> {
    /// The server at `base`, under the checkpoint it serves now.
    fn new(base: &'a str) -> Result<Remote<'a>, Error> {
        let http = Blocking::new(TIMEOUT)?;
        let cp_url = format!("{base}/checkpoint");
        let checkpoint =
            String::from_utf8(http.get_ok(&cp_url)?).map_err(|_| Error::BadAnswer {
                url: cp_url.clone(),
                problem: "the checkpoint is not UTF-8".into(),
            })?;
        let size = SignedCheckpoint::parse(checkpoint.as_bytes())
            .map_err(|e| Error::BadAnswer {
                url: cp_url,
                problem: e.to_string(),
            })?
            .checkpoint
            .size;
        Ok(Remote {
            base,
            http,
            checkpoint,
            size,
            bundles: HashMap::new(),
        })
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.http.get_ok(&format!("{}/{path}", self.base))
    }

    /// Entry `index` (below the checkpoint's size), from its bundle.
    fn entry(&mut self, index: u64) -> Result<Vec<u8>, Error> {
        let b = index / 256;
        if !self.bundles.contains_key(&b) {
            let width = tile::width_in(0, b, self.size);
            let id = TileId {
                level: 0,
                index: b,
                width,
            };
            let data = self.get(&id.entries_path())?;
            let entries = tile::parse_bundle(&data, width).map_err(|e| Error::BadAnswer {
                url: format!("{}/{}", self.base, id.entries_path()),
                problem: e.to_string(),
            })?;
            self.bundles
                .insert(b, entries.into_iter().map(|e| e.to_vec()).collect());
        }
        self.bundles[&b]
            .get((index % 256) as usize)
            .cloned()
            .ok_or_else(|| Error::BadAnswer {
                url: format!("{}/tile/entries/...", self.base),
                problem: format!("entry {index} is not in its bundle"),
            })
    }

    /// Entry `index` with its inclusion proof under the checkpoint.
    fn logged(&mut self, index: u64) -> Result<LoggedEntry, Error> {
        let bytes = self.entry(index)?;
        let path = format!("proof/inclusion?index={index}&size={}", self.size);
        let p: InclusionResponse = json(&format!("{}/{path}", self.base), &self.get(&path)?)?;
        Ok(LoggedEntry {
            index,
            bytes,
            proof: p.proof,
            proof_checkpoint: None,
        })
    }
}

/// From a running server: its checkpoint, and each entry its lookup index lists for `digest`,
/// with an inclusion proof against that checkpoint. Nothing here is trusted: the verdict checks
/// the checkpoint's signatures and every proof.
fn remote_evidence(base: &str, digest: &Sha256) -> Result<(String, Vec<LoggedEntry>), Error> {
    let mut r = Remote::new(base)?;
    let size = r.size;
    // Every page of the index's answer: a page left unread could hold a revocation.
    let mut listed = Vec::new();
    let mut after: Option<u64> = None;
    let indexed = loop {
        let lookup = match after {
            None => format!("lookup?digest={}", digest.to_hex()),
            Some(a) => format!("lookup?digest={}&after={a}", digest.to_hex()),
        };
        let url = format!("{base}/{lookup}");
        let page: LookupResponse = json(&url, &r.get(&lookup)?)?;
        let last = page.entries.last().map(|e| e.index);
        listed.extend(page.entries.iter().map(|e| e.index));
        match page.next {
            // Pages go forward, or the server is looping us.
            Some(n) if after.is_none_or(|a| n > a) && last == Some(n) => after = Some(n),
            Some(n) => {
                return Err(Error::BadAnswer {
                    url,
                    problem: format!("the next page would start after {n}, which is not after this page's last entry"),
                })
            }
            None => break page.size,
        }
    };
    let mut indexes: Vec<u64> = listed.into_iter().filter(|&i| i < size).collect();
    // The index follows the log: what it had not indexed yet (beyond the size it answers for),
    // up to the checkpoint, is read and searched here.
    let listed: HashSet<u64> = indexes.iter().copied().collect();
    for index in indexed.min(size)..size {
        if !listed.contains(&index) && nospy_statement::is_about(&r.entry(index)?, digest) {
            indexes.push(index);
        }
    }
    let out = indexes
        .into_iter()
        .map(|i| r.logged(i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((r.checkpoint, out))
}
