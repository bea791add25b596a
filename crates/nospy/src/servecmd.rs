//! `nospy serve`: the log over HTTP, on an embedded default directory when none is given.

use crate::util::signer_key;
use anyhow::{Context as _, Result};
use clap::Args;
use nospy_log::{LogConfig, Sequencer};
use nospy_tlog::note::SignerKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The directory `nospy serve` uses when given none.
pub const DEFAULT_DIR: &str = "nospy-data";

#[derive(Args)]
pub struct ServeArgs {
    /// The log directory (from `nospy log init`). Without it, nospy uses ./nospy-data, creating
    /// on first use a log (nospy-data/log, key nospy-data/log.key), a demo vendor and evaluator
    /// key, and nospy-data/serve.toml admitting them.
    #[arg(long, conflicts_with = "storage")]
    dir: Option<PathBuf>,
    /// Serve a log on S3-compatible object storage instead: s3://BUCKET/PREFIX, with the
    /// sequencer's state and the lookup index in --database. Every instance started on the same
    /// storage, database and schema serves reads and takes submissions; one at a time (the
    /// holder of a PostgreSQL advisory lock) sequences and witnesses, and another takes over
    /// within a second or two when it stops. The endpoint and credentials come from AWS_ENDPOINT,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP or from the URL
    /// (`?endpoint=http://127.0.0.1:8333&allow_http=true`). The log is created (schema, empty
    /// checkpoint) on first use. Needs --key.
    #[arg(long, requires_all = ["database", "key"])]
    storage: Option<String>,
    /// With --storage: the PostgreSQL database (postgres://user@host:port/db, or
    /// "host=... user=... dbname=..."). Add sslmode=require for TLS with the server's
    /// certificate verified (system roots, or sslrootcert=FILE). Whoever can write the database
    /// can make the log say what they choose, as the key's holder can.
    #[arg(long, requires = "storage")]
    database: Option<String>,
    /// With --storage: the schema of this log's tables in --database (one per log).
    #[arg(long, default_value = "nospy", requires = "storage")]
    schema: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:7379")]
    listen: std::net::SocketAddr,
    /// The configuration (submitters, witnesses); reloaded when it changes. Default with the
    /// embedded directory: nospy-data/serve.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The log's private key (default: the one given to `log init`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Submissions that may wait for the sequencer before new ones get 503 Retry-After.
    #[arg(long, default_value_t = nospy_server::QUEUE)]
    queue: usize,
    /// Most entries per batch.
    #[arg(long, default_value_t = nospy_server::MAX_BATCH)]
    max_batch: usize,
    /// How long (milliseconds) the lookup index gathers new entries before writing them in one
    /// transaction, at most. Longer means fewer, larger writes under load; `/lookup` answers for
    /// the entries indexed so far and says how many (`size`), and `nospy verify --server` reads
    /// the entries beyond that from the log itself, so nothing is missed either way.
    #[arg(long, default_value_t = 100)]
    index_delay: u64,
    /// Most entries in one answer of `/lookup`; an answer with more to give says where the
    /// next page starts (`next`), and `nospy verify --server` reads every page.
    #[arg(long, default_value_t = nospy_server::LOOKUP_PAGE)]
    lookup_page: usize,
    /// The memory (bytes) that submissions may hold while they wait to be appended; beyond it
    /// `POST /add` answers 503 with Retry-After at once.
    #[arg(long, default_value_t = nospy_server::MAX_QUEUED_BYTES)]
    max_queued_bytes: usize,
    /// Most connections open at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = nospy_server::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most connections open at once from one client address.
    #[arg(long, default_value_t = nospy_server::MAX_CONNECTIONS_PER_CLIENT)]
    max_connections_per_client: usize,
}

fn generate(path: &Path, name: &str) -> Result<SignerKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("reading the system's random number generator")?;
    let key = SignerKey::from_seed(name, seed)?;
    crate::keys::write_private(path, &key)?;
    Ok(key)
}

/// Creates the embedded default directory on first use.
fn embedded_default(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let log = root.join("log");
    let config = root.join("serve.toml");
    if log.join(nospy_log::CONFIG_FILE).exists() {
        return Ok((log, config));
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let origin = "localhost/nospy";
    let key_path = root.join("log.key");
    let key = generate(&key_path, origin)?;
    let abs = std::fs::canonicalize(&key_path)?;
    Sequencer::init(&log, origin, &key, Some(abs))?;
    let vendor = generate(&root.join("vendor.key"), "vendor.localhost")?;
    let evaluator = generate(&root.join("evaluator.key"), "evaluator.localhost")?;
    let text = format!(
        "# nospy serve configuration, made on first use of the embedded default directory.\n\
         # Submitters: the keys whose statements the log accepts, and in which role (vendor:\n\
         # releases and revocations; evaluator: attestations and revocations; monitor: evidence).\n\
         # The file is reloaded when it changes.\n\n\
         [[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n\n[[submitter]]\nrole = \"evaluator\"\nkey = \"{}\"\n\n\
         # Witnesses asked to cosign every checkpoint, e.g.\n\
         # [witnesses]\n# quorum = 1\n# timeout = \"1s\"\n# [[witnesses.member]]\n# url = \"http://127.0.0.1:7380\"\n# key = \"witness.example+...+B...\"\n",
        vendor.verifier(),
        evaluator.verifier()
    );
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    eprintln!(
        "nospy serve: created {root} with a new log ({origin}, key {root}/log.key), a demo vendor key {root}/vendor.key and evaluator key {root}/evaluator.key, admitted in {root}/serve.toml",
        root = root.display()
    );
    Ok((log, config))
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let (storage, config, key_path) = match (a.storage, a.dir) {
        (Some(tiles), _) => {
            let database = a.database.context("--storage needs --database")?;
            let key = a.key.context("--storage needs --key")?;
            let storage = nospy_server::Storage::Cluster(nospy_server::ClusterStorage {
                tiles,
                database,
                schema: a.schema,
            });
            (storage, a.config, key)
        }
        (None, dir) => {
            let (dir, config) = match dir {
                Some(d) => (d, a.config),
                None => {
                    let (d, c) = embedded_default(Path::new(DEFAULT_DIR))?;
                    (d, a.config.or(Some(c)))
                }
            };
            let key = match a.key {
                Some(k) => k,
                None => LogConfig::load(&dir)?
                    .private_key_file
                    .context("this log remembers no private key file: give one with --key")?,
            };
            (nospy_server::Storage::Dir(dir), config, key)
        }
    };
    let key = signer_key(&key_path)?;
    let log_vkey = key.verifier();
    let from = match &storage {
        nospy_server::Storage::Dir(d) => d.display().to_string(),
        nospy_server::Storage::Cluster(c) => format!("{} (schema {})", c.tiles, c.schema),
    };
    eprintln!(
        "nospy serve: log {} ({}) from {from}",
        log_vkey.name(),
        log_vkey
    );
    nospy_server::run(nospy_server::Options {
        storage,
        key,
        config,
        listen: a.listen,
        queue: a.queue,
        max_batch: a.max_batch,
        index_delay: std::time::Duration::from_millis(a.index_delay),
        lookup_page: a.lookup_page,
        max_queued_bytes: a.max_queued_bytes,
        max_connections: a.max_connections,
        max_connections_per_client: a.max_connections_per_client,
    })?;
    Ok(ExitCode::SUCCESS)
}
