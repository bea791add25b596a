//! `nospy log`: the transparency log in a directory.

use crate::util::{
    print_json, read_input, signer_key, verifier_key, write_output, Negative, Progress,
};
use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use nospy_log::object::ObjectTiles;
use nospy_log::{audit, Log, LogConfig, Sequencer};
use nospy_tlog::checkpoint::{SignedCheckpoint, TlogProof};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle;
use nospy_tlog::tile::MAX_ENTRY_LEN;
use nospy_tlog::{LogIndex, TreeSize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Create an empty log in DIR, signed by the key in FILE.
    ///
    /// DIR is laid out as c2sp.org/tlog-tiles serves it (`checkpoint`, `tile/...`): publish it
    /// with any static web server. nospy's bookkeeping is in DIR/.nospy (no secrets; the private
    /// key stays where it is, and its path is remembered for `log add`). The key's name must be
    /// the origin.
    ///
    /// Example:
    ///   nospy key generate --name log.example.org/nospy --out log.key
    ///   nospy log init ./log --origin log.example.org/nospy --key log.key
    #[command(verbatim_doc_comment)]
    Init {
        /// The log directory (new, or empty).
        dir: PathBuf,
        /// The checkpoint origin: a schema-less URL naming the log.
        #[arg(long)]
        origin: String,
        /// The log's private key file.
        #[arg(long)]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a remote log (served as c2sp.org/tlog-tiles, by `nospy serve` or any other
    /// implementation) into DIR, verifying every step against the log's signed checkpoints.
    ///
    /// The tree is recomputed from the entries: the remote checkpoint's root must come out, and
    /// the part already mirrored must be unchanged, or nothing is written. Run it again to catch
    /// up; an interrupted run resumes. The mirror is a log directory that `nospy log audit`,
    /// `nospy bundle --log` and `nospy verify --log` read.
    ///
    /// Example: nospy log mirror http://log.example.org:7379 ./mirror --key 'log.example.org/nospy+...'
    Mirror {
        /// The log's URL prefix (http:// only).
        url: String,
        /// The mirror directory.
        dir: PathBuf,
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        key: String,
        /// Print JSON: {"url", "dir", "from_size", "size", "root", "bundles_fetched"}.
        #[arg(long)]
        json: bool,
    },
    /// Copy a log between a directory and S3-compatible object storage, either way.
    ///
    /// DIR to s3://BUCKET/PREFIX: audits the directory log, writes every tile and entry bundle
    /// its checkpoint covers (create-if-absent: an object already there must hold the same
    /// bytes, or the copy stops, since another writer is at that prefix), then publishes the
    /// checkpoint, replacing only an older checkpoint of the same log. s3:// to DIR: a verifying
    /// mirror, as `nospy log mirror`. Both resume where an interrupted run stopped.
    ///
    /// The endpoint, region and credentials come from the AWS environment variables
    /// (AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP) or
    /// from the URL's query, which wins: s3://tiles/log?endpoint=http://127.0.0.1:8333&allow_http=true.
    /// Requests use path-style addressing, as S3-compatible servers expect.
    ///
    /// Example: nospy log copy ./log 's3://tiles/nospy?endpoint=http://127.0.0.1:8333&allow_http=true' --key 'log.example.org/nospy+...'
    Copy {
        /// Where from: a log directory, or s3://BUCKET/PREFIX.
        from: String,
        /// Where to: s3://BUCKET/PREFIX, or a directory.
        to: String,
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        key: String,
        /// Print JSON: {"from", "to", "size", "created", "already_there", "published"} into a
        /// bucket; the mirror's object out of one.
        #[arg(long)]
        json: bool,
    },
    /// Append entries: one per FILE (`-` reads standard input), in one durable batch.
    ///
    /// Each file must be a signed nospy statement (a DSSE envelope from `nospy release sign`,
    /// `nospy attest`, `nospy revoke`) whose signatures verify with the keys they name; --raw
    /// appends arbitrary bytes instead. Prints each entry's index once it is on disk and covered
    /// by a new signed checkpoint. An entry already in the log keeps its index and is not
    /// appended again. Entries are at most 65,535 bytes. If any file fails a check, nothing is
    /// appended.
    ///
    /// Example: nospy log add ./log release.json
    ///
    /// On object storage: `nospy log add s3://BUCKET/PREFIX --database postgres://... --key K
    /// FILE...` appends through the sequencer whose state is in PostgreSQL (creating the log's
    /// schema and empty checkpoint if there are none): it waits (up to --wait) for the lease
    /// when another instance sequences, and first publishes any batch a failed one recorded.
    Add {
        /// The log directory (or s3://BUCKET/PREFIX with --database), then the files to append,
        /// one entry each. With --server, files only.
        #[arg(required = true, value_name = "DIR|FILE")]
        paths: Vec<PathBuf>,
        /// Submit to a running `nospy serve` at this URL instead of a directory.
        #[arg(long)]
        server: Option<String>,
        /// With an s3:// log: the PostgreSQL database holding the sequencer's state.
        #[arg(long)]
        database: Option<String>,
        /// With --database: the schema of this log's tables (one per log).
        #[arg(long, default_value = "nospy", requires = "database")]
        schema: String,
        /// With --database: how long to wait for the lease while another instance sequences.
        #[arg(long, default_value = "30s", requires = "database")]
        wait: String,
        /// Private key file (default: the one given to `log init`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Append the files as they are, without checking that they are signed statements.
        #[arg(long)]
        raw: bool,
        /// Print JSON: {"entries": [{"index", "hash", "duplicate"}], "size"}.
        #[arg(long)]
        json: bool,
    },
    /// Print the log's latest signed checkpoint.
    Checkpoint {
        /// The log directory.
        dir: PathBuf,
        /// Print JSON: {"origin", "size", "root", "note"}.
        #[arg(long)]
        json: bool,
    },
    /// Write entry INDEX, byte for byte, to standard output or --out.
    Entry {
        /// The log directory.
        dir: PathBuf,
        /// The entry's index.
        index: u64,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON instead: {"index", "leaf_hash", "length", "base64"}.
        #[arg(long, conflicts_with = "out")]
        json: bool,
    },
    /// Write a c2sp.org/tlog-proof that entry --index is in the tree of --size entries.
    ///
    /// The proof carries the signed checkpoint (cosignatures included) and verifies offline with
    /// `nospy log verify-proof`. Without --size the latest checkpoint is used; an earlier size
    /// needs a checkpoint of that size, which nospy keeps for every batch it committed.
    ///
    /// Example: nospy log prove ./log --index 3 --out entry3.tlog-proof
    Prove {
        /// The log directory.
        dir: PathBuf,
        /// The entry's index.
        #[arg(long)]
        index: u64,
        /// Tree size to prove against (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON instead: {"index", "size", "proof", "checkpoint", "tlog_proof"}.
        #[arg(long, conflicts_with = "out")]
        json: bool,
    },
    /// Verify a c2sp.org/tlog-proof for an entry, offline.
    ///
    /// Checks the checkpoint's signature by the log key, then the inclusion proof from the
    /// entry's leaf hash to the checkpoint's root. Exit 0 if it verifies, 1 if not.
    ///
    /// Example: nospy log verify-proof entry3.tlog-proof --entry release.json --key 'log.example.org/nospy+...'
    VerifyProof {
        /// The proof file (`-` for standard input).
        proof: PathBuf,
        /// The entry the proof is about.
        #[arg(long)]
        entry: PathBuf,
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        key: String,
        /// Print JSON: {"verified", "index", "size", "root", "reason"}.
        #[arg(long)]
        json: bool,
    },
    /// Print the consistency proof from the tree of --from entries to the tree of --to entries.
    ///
    /// The proof is printed one base64 hash per line (RFC 9162 §2.1.4), after checking it
    /// against the log's own roots.
    Consistency {
        /// The log directory.
        dir: PathBuf,
        /// Older tree size (at least 1).
        #[arg(long)]
        from: u64,
        /// Newer tree size (default: the latest).
        #[arg(long)]
        to: Option<u64>,
        /// Print JSON: {"from", "to", "from_root", "to_root", "proof"}.
        #[arg(long)]
        json: bool,
    },
    /// Check a whole log: every entry hashed, every tile and bundle compared, the signature and
    /// root of the checkpoint verified.
    ///
    /// This is the self-check a sceptical evaluator runs on a copy of a log, from any
    /// tlog-tiles implementation: it trusts nothing in DIR but what --key verifies. Exit 0 if
    /// the log is sound, 1 if anything is wrong (the file and the problem are named).
    ///
    /// Example: nospy log audit ./mirror --key 'log.example.org/nospy+...'
    Audit {
        /// The log directory, or s3://BUCKET/PREFIX (options as for `nospy log copy`; --key is
        /// then required).
        dir: PathBuf,
        /// The log's verifier key, or a file holding it. Without it, the key in DIR/.nospy is
        /// used, which only checks the log against itself.
        #[arg(long)]
        key: Option<String>,
        /// Print JSON: {"ok", "entries", "tiles", "bundles", "root", "uncovered", "error"}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: LogCommand) -> Result<ExitCode> {
    match c {
        LogCommand::Init {
            dir,
            origin,
            key,
            json,
        } => init(&dir, &origin, &key, json),
        LogCommand::Mirror {
            url,
            dir,
            key,
            json,
        } => mirror(&url, &dir, &key, json),
        LogCommand::Copy {
            from,
            to,
            key,
            json,
        } => copy(&from, &to, &key, json),
        LogCommand::Add {
            paths,
            server,
            database,
            schema,
            wait,
            key,
            raw,
            json,
        } => match server {
            Some(url) => add_remote(&url, &paths, json),
            None if database.is_some() || paths[0].to_string_lossy().starts_with("s3://") => {
                let (url, files) = paths.split_first().context("give the log's s3:// URL")?;
                let database = database.context("an s3:// log needs --database")?;
                let key = key.context("an s3:// log needs --key (its private key file)")?;
                let entries = read_entries(files, raw)?;
                let wait = nospy_statement::time::parse_duration(&wait).with_context(|| {
                    format!("--wait {wait:?}: expected a duration such as 30s or 5m")
                })?;
                add_cluster(
                    &url.to_string_lossy(),
                    &database,
                    &schema,
                    &key,
                    std::time::Duration::from_secs(wait),
                    &entries,
                    files,
                    json,
                )
            }
            None => {
                let (dir, files) = paths.split_first().context("give the log directory")?;
                if files.is_empty() {
                    bail!("give at least one file to append after the log directory");
                }
                add(dir, files, key.as_deref(), raw, json)
            }
        },
        LogCommand::Checkpoint { dir, json } => {
            let log = Log::open(&dir)?;
            let sc = log.checkpoint();
            if json {
                print_json(&json!({
                    "origin": sc.checkpoint.origin,
                    "size": sc.checkpoint.size,
                    "root": sc.checkpoint.root.to_base64(),
                    "note": sc.to_text(),
                }))?;
            } else {
                print!("{}", sc.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Entry {
            dir,
            index,
            out,
            json,
        } => {
            let log = Log::open(&dir)?;
            let e = log.entry(index)?;
            if json {
                use base64::Engine as _;
                print_json(&json!({
                    "index": index,
                    "leaf_hash": leaf_hash(&e).to_hex(),
                    "length": e.len(),
                    "base64": base64::engine::general_purpose::STANDARD.encode(&e),
                }))?;
            } else {
                write_output(out.as_deref(), &e)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Prove {
            dir,
            index,
            size,
            out,
            json,
        } => {
            let log = Log::open(&dir)?;
            let size = size.unwrap_or(log.size());
            let sc = log.checkpoint_at(size)?.with_context(|| {
                format!(
                    "the log kept no checkpoint of size {size}; the latest is {}",
                    log.size()
                )
            })?;
            let proof = log.inclusion_proof(LogIndex(index), TreeSize(size))?;
            let p = TlogProof {
                extra: None,
                index,
                proof,
                checkpoint: sc.to_text(),
            };
            if json {
                let hashes: Vec<String> = p.proof.iter().map(|h| h.to_base64()).collect();
                print_json(&json!({
                    "index": index, "size": size, "proof": hashes,
                    "checkpoint": p.checkpoint, "tlog_proof": p.to_text(),
                }))?;
            } else {
                write_output(out.as_deref(), p.to_text().as_bytes())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::VerifyProof {
            proof,
            entry,
            key,
            json,
        } => verify_proof(&proof, &entry, &key, json),
        LogCommand::Consistency {
            dir,
            from,
            to,
            json,
        } => {
            let log = Log::open(&dir)?;
            let to = to.unwrap_or(log.size());
            let (m, n) = (TreeSize(from), TreeSize(to));
            let proof = log.consistency_proof(m, n)?;
            let (r1, r2) = (log.root_at(m)?, log.root_at(n)?);
            merkle::verify_consistency(m, n, &proof, r1.as_ref(), r2.as_ref()).context(
                "the log's own consistency proof does not verify: run `nospy log audit`",
            )?;
            if json {
                let p: Vec<String> = proof.iter().map(|h| h.to_base64()).collect();
                print_json(&json!({
                    "from": from, "to": to,
                    "from_root": r1.to_base64(), "to_root": r2.to_base64(),
                    "proof": p,
                }))?;
            } else {
                for h in &proof {
                    println!("{}", h.to_base64());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Audit { dir, key, json } => audit_cmd(&dir, key.as_deref(), json),
    }
}

fn init(dir: &Path, origin: &str, key_file: &Path, json: bool) -> Result<ExitCode> {
    let key = signer_key(key_file)?;
    let abs = std::fs::canonicalize(key_file)
        .with_context(|| format!("resolving {}", key_file.display()))?;
    Sequencer::init(dir, origin, &key, Some(abs))?;
    let log = Log::open(dir)?;
    if json {
        print_json(&json!({
            "dir": dir, "origin": origin,
            "verifier_key": key.verifier().to_string(),
            "checkpoint": log.checkpoint().to_text(),
        }))?;
    } else {
        eprintln!(
            "created log {origin} in {}; its verifier key:",
            dir.display()
        );
        println!("{}", key.verifier());
    }
    Ok(ExitCode::SUCCESS)
}

fn add(
    dir: &Path,
    files: &[PathBuf],
    key: Option<&Path>,
    raw: bool,
    json: bool,
) -> Result<ExitCode> {
    if files
        .iter()
        .filter(|f| f.as_path() == Path::new("-"))
        .count()
        > 1
    {
        bail!("standard input (-) can be given only once");
    }
    let entries = read_entries(files, raw)?;
    let key_path = match key {
        Some(k) => k.to_path_buf(),
        None => LogConfig::load(dir)?
            .private_key_file
            .context("this log remembers no private key file: give one with --key")?,
    };
    let key = signer_key(&key_path)?;
    let mut seq = Sequencer::open(dir, key)?;
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    let appended = seq.append(&refs)?;
    print_appended(&appended, files, seq.size(), json)
}

/// Reads and checks every file before anything touches the log: nothing is appended unless all
/// is good.
fn read_entries(files: &[PathBuf], raw: bool) -> Result<Vec<Vec<u8>>> {
    if files.is_empty() {
        bail!("give at least one file to append after the log");
    }
    if files
        .iter()
        .filter(|f| f.as_path() == Path::new("-"))
        .count()
        > 1
    {
        bail!("standard input (-) can be given only once");
    }
    let mut entries = Vec::with_capacity(files.len());
    for f in files {
        let data = read_input(f)?;
        if data.len() > MAX_ENTRY_LEN {
            bail!(
                "{}: {} bytes, over the 65,535-byte entry limit of tlog-tiles; nothing was appended \
                 (log a statement that references large artifacts by digest instead)",
                f.display(),
                data.len()
            );
        }
        if !raw {
            nospy_statement::inspect(&data).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a signed nospy statement: {e}; nothing was appended (--raw appends arbitrary entries)",
                    f.display()
                )
            })?;
        }
        entries.push(data);
    }
    Ok(entries)
}

/// `nospy log add s3://... --database ...`: through the object-storage sequencer.
#[allow(clippy::too_many_arguments)]
fn add_cluster(
    url: &str,
    database: &str,
    schema: &str,
    key_path: &Path,
    wait: std::time::Duration,
    entries: &[Vec<u8>],
    files: &[PathBuf],
    json: bool,
) -> Result<ExitCode> {
    let key = signer_key(key_path)?;
    let tiles = ObjectTiles::from_url(url)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (appended, size) = rt.block_on(async {
        nospy_log::cluster::init(database, schema, &tiles, &key).await?;
        let deadline = std::time::Instant::now() + wait;
        let mut seq = loop {
            match nospy_log::cluster::ClusterSequencer::lead(database, schema, tiles.clone(), key.clone()).await? {
                Some(seq) => break seq,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                None => anyhow::bail!(
                    "another instance sequences {url} (it holds the lease in schema {schema}); waited {}s",
                    wait.as_secs()
                ),
            }
        };
        let appended = seq.append(entries).await?;
        Ok::<_, anyhow::Error>((appended, seq.size()))
    })?;
    print_appended(&appended, files, size, json)
}

fn print_appended(
    appended: &[nospy_log::Appended],
    files: &[PathBuf],
    size: u64,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let list: Vec<_> = appended
            .iter()
            .map(|a| json!({"index": a.index, "hash": a.hash.to_hex(), "duplicate": a.duplicate}))
            .collect();
        print_json(&json!({"entries": list, "size": size}))?;
    } else {
        for (a, f) in appended.iter().zip(files) {
            let dup = if a.duplicate {
                "  (already in the log)"
            } else {
                ""
            };
            println!("{}\t{}\t{}{dup}", a.index, a.hash.to_hex(), f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_proof(proof: &Path, entry: &Path, key: &str, json: bool) -> Result<ExitCode> {
    let key = verifier_key(key)?;
    let text = read_input(proof)?;
    let text =
        String::from_utf8(text).with_context(|| format!("{}: not UTF-8 text", proof.display()))?;
    let p = TlogProof::parse(&text)
        .with_context(|| format!("{}: not a tlog-proof", proof.display()))?;
    let entry_bytes = read_input(entry)?;
    match p.verify(&entry_bytes, &key) {
        Ok(sc) => {
            if json {
                print_json(&json!({
                    "verified": true, "index": p.index, "size": sc.checkpoint.size,
                    "root": sc.checkpoint.root.to_base64(), "leaf_hash": leaf_hash(&entry_bytes).to_hex(),
                }))?;
            } else {
                println!(
                    "verified: {} is entry {} of {} at size {}",
                    entry.display(),
                    p.index,
                    sc.checkpoint.origin,
                    sc.checkpoint.size
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let reason = format!("{}: {e}", proof.display());
            if json {
                let size = SignedCheckpoint::parse(p.checkpoint.as_bytes())
                    .ok()
                    .map(|s| s.checkpoint.size);
                print_json(
                    &json!({"verified": false, "index": p.index, "size": size, "reason": reason}),
                )?;
                Ok(ExitCode::from(1))
            } else {
                Err(Negative(format!("proof does not verify: {reason}")).into())
            }
        }
    }
}

fn audit_cmd(dir: &Path, key: Option<&str>, json: bool) -> Result<ExitCode> {
    if let Some(url) = dir.to_str().filter(|d| d.starts_with("s3://")) {
        return audit_bucket(url, key, json);
    }
    let key = match key {
        Some(k) => verifier_key(k)?,
        None => {
            eprintln!(
                "nospy: no --key given: checking the log against the key in its own configuration"
            );
            LogConfig::load(dir)?.verifier(dir)?
        }
    };
    let mut progress = Progress::new("audited entries");
    match audit(dir, &key, |d, t| progress.update(d, t)) {
        Ok(r) => audited(&r, &key, json),
        Err(e @ (nospy_log::LogError::Io { .. } | nospy_log::LogError::NotALog { .. })) => {
            Err(e.into())
        }
        Err(e) => audit_failed(&e, json),
    }
}

fn audited(
    r: &nospy_log::AuditReport,
    key: &nospy_tlog::note::VerifierKey,
    json: bool,
) -> Result<ExitCode> {
    if json {
        print_json(&json!({
            "ok": true, "entries": r.entries, "tiles": r.tiles, "bundles": r.bundles,
            "root": r.root.to_base64(), "uncovered": r.uncovered,
        }))?;
    } else {
        println!(
            "ok: {} entries, {} tiles and {} entry bundles check out; root {} is signed by {}",
            r.entries,
            r.tiles,
            r.bundles,
            r.root.to_base64(),
            key.name()
        );
        for u in &r.uncovered {
            println!(
                "warning: {u} is not covered by the checkpoint (left by an unfinished append?)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_failed(e: &dyn std::fmt::Display, json: bool) -> Result<ExitCode> {
    if json {
        print_json(&json!({"ok": false, "error": e.to_string()}))?;
        Ok(ExitCode::from(1))
    } else {
        Err(Negative(format!("audit failed: {e}")).into())
    }
}

/// `nospy log audit s3://...`: the same checks over the bucket's objects.
fn audit_bucket(url: &str, key: Option<&str>, json: bool) -> Result<ExitCode> {
    let key =
        verifier_key(key.context("auditing a bucket needs --key: it holds no configuration")?)?;
    let tiles = ObjectTiles::from_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut progress = Progress::new("audited entries");
    let mut tell = |d, t| progress.update(d, t);
    match rt.block_on(nospy_log::object::audit(&tiles, &key, &mut tell)) {
        Ok(r) => audited(&r, &key, json),
        Err(nospy_log::object::AuditError::Object(e)) => Err(e.into()),
        Err(e) => audit_failed(&e, json),
    }
}

fn add_remote(url: &str, files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let src = nospy_client::LogSource::Server(url.trim_end_matches('/').to_string());
    let mut out = Vec::new();
    for f in files {
        let data = read_input(f)?;
        let a = src
            .append(&[data])
            .with_context(|| format!("{}: not appended", f.display()))?
            .remove(0);
        if !json {
            let dup = if a.duplicate {
                "  (already in the log)"
            } else {
                ""
            };
            println!("{}\t{}\t{}{dup}", a.index, a.hash.to_hex(), f.display());
        }
        out.push(json!({"index": a.index, "hash": a.hash.to_hex(), "duplicate": a.duplicate}));
    }
    if json {
        print_json(&json!({ "entries": out }))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn mirror(url: &str, dir: &Path, key: &str, json: bool) -> Result<ExitCode> {
    let key = verifier_key(key)?;
    let base = url.trim_end_matches('/');
    let http = nospy_client::http::Blocking::new(std::time::Duration::from_secs(60))?;
    let m = nospy_log::mirror::mirror(
        dir,
        &key,
        |path| http.get_ok(&format!("{base}/{path}")),
        &mut Progress::callback("mirrored entries"),
    )
    .with_context(|| format!("mirroring {base} into {}", dir.display()))?;
    mirrored("mirrored", base, dir, &key, &m, json)
}

fn mirrored(
    verb: &str,
    url: &str,
    dir: &Path,
    key: &nospy_tlog::note::VerifierKey,
    m: &nospy_log::mirror::Mirrored,
    json: bool,
) -> Result<ExitCode> {
    if json {
        print_json(&json!({
            "url": url, "dir": dir, "from_size": m.from_size, "size": m.size,
            "root": m.root.to_base64(), "bundles_fetched": m.bundles_fetched,
        }))?;
    } else {
        println!(
            "{verb} {} from size {} to {} ({} bundles fetched); root {} verified",
            key.name(),
            m.from_size,
            m.size,
            m.bundles_fetched,
            m.root.to_base64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn copy(from: &str, to: &str, key: &str, json: bool) -> Result<ExitCode> {
    let key = verifier_key(key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match (from.starts_with("s3://"), to.starts_with("s3://")) {
        (false, true) => {
            let bucket = ObjectTiles::from_url(to)?;
            let dir = Path::new(from);
            let mut progress = Progress::new("copied objects");
            let mut tell = |done, total| progress.update(done, total);
            let up = rt
                .block_on(nospy_log::object::upload(dir, &key, &bucket, &mut tell))
                .with_context(|| format!("copying {} into {to}", dir.display()))?;
            if json {
                print_json(&json!({
                    "from": from, "to": to, "size": up.size, "created": up.created,
                    "already_there": up.already_there, "published": up.published,
                }))?;
            } else {
                println!(
                    "copied {} (size {}) into {to}: {} objects written, {} already there; checkpoint {}",
                    key.name(),
                    up.size,
                    up.created,
                    up.already_there,
                    if up.published { "published" } else { "unchanged" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        (true, false) => {
            let bucket = ObjectTiles::from_url(from)?;
            let dir = Path::new(to);
            let m = nospy_log::mirror::mirror(
                dir,
                &key,
                |rel| match rt.block_on(bucket.get(rel)) {
                    Ok(Some(b)) => Ok(b),
                    Ok(None) => Err(format!("{rel} is not in the bucket")),
                    Err(e) => Err(e.to_string()),
                },
                &mut Progress::callback("copied entries"),
            )
            .with_context(|| format!("copying {from} into {}", dir.display()))?;
            mirrored("copied", from, dir, &key, &m, json)
        }
        _ => bail!("give one log directory and one s3://BUCKET/PREFIX (in either order)"),
    }
}
