//! `nospy bench`: performance measured against the same machine's own limits, in one run.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Flow conformance: IPFIX records decoded and judged per second on one core, and pcap
    /// packets per second beside `tcpdump -r` with the equivalent one-device filter.
    ///
    /// Generates a fleet of --devices devices (a model per ten devices, each model's manifest
    /// with its share of --rules rules: IP prefixes with services, every tenth a DNS name),
    /// --records IPFIX records in 1,400-byte export messages (80% allowed, 20% not), decoded and
    /// judged on one thread; then writes a pcap of --packets packets (TCP conversations with
    /// handshakes, UDP exchanges) and reads and judges it with the whole fleet and with one
    /// device (and one device on a pcap of as many packets of its own traffic), beside `tcpdump
    /// -n -r FILE -w /dev/null 'host <that device>'` on the same file in the same run (IPFIX:
    /// best of three; pcap: five rounds taking each measurement in turn, the best of each
    /// kept). Needs tcpdump. Use a release build:
    /// `cargo run --release -- bench monitor`.
    Monitor {
        /// Devices in the fleet.
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Rules over all manifests.
        #[arg(long, default_value_t = 100_000)]
        rules: usize,
        /// IPFIX records to decode and judge.
        #[arg(long, default_value_t = 3_000_000)]
        records: usize,
        /// Packets in the pcap.
        #[arg(long, default_value_t = 2_000_000)]
        packets: usize,
        /// Directory for the pcap (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Instead: the monitor through NATS JetStream at this URL (`nats://HOST:PORT`): the
        /// single-process rate, the raw JetStream rate for the same batches, and end to end
        /// with a collector and 1, then 2, workers, in one run (on streams of its own, deleted
        /// after; the workers hold their partitions before the collector starts); then the
        /// collector alone and one worker alone, with the CPU seconds each spends per million
        /// records beside the single process's, and the NATS server's where it runs on this
        /// machine (with the most end to end can then reach here, `ratio_ceiling`).
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// With --nats: partitions of the bench's stream.
        #[arg(long, default_value_t = 16)]
        partitions: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exposure on a national operator's inventory: parsing it, judging a policy's rules,
    /// sweeping the caps and writing the HTML report, and the whole `nospy exposure` command.
    ///
    /// Generates a CSV inventory of --devices devices (core, access, transport and management
    /// elements; a designated vendor in each; sensitive sites; 5G and 4G) into a temporary file
    /// (not timed), then times, beside a reference measured in the same run (reading the file and
    /// splitting every line into its fields, the least any reader must do): parsing it strictly,
    /// judging examples/exposure-uk.toml's rules, a 0-50% cap sweep by 5%, the HTML report; and
    /// the real binary doing all of it. Use a release build: `cargo run --release -- bench
    /// exposure`.
    Exposure {
        /// Devices in the inventory.
        #[arg(long, default_value_t = 1_000_000)]
        devices: usize,
        /// Directory for the inventory (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The real server over loopback: signed submissions per second (each acknowledged only
    /// once durable), their latency, and tile reads per second.
    ///
    /// Signs --entries release statements first (not timed), starts `nospy serve` on a new log
    /// in a temporary directory, and has --clients keep-alive connections submit them all
    /// (verify, deduplicate, sequence, fsync, acknowledge), then read random full tiles and entry
    /// bundles for --read-seconds. The reference, measured first in the same run: the same
    /// clients POSTing the same bodies to a bare HTTP server that answers at once, the floor set
    /// by this machine's HTTP stack and loopback (`http_floor_ratio` = submissions / floor). Use a
    /// release build: `cargo run --release -- bench serve`.
    Serve {
        /// Submissions to make.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Concurrent client connections (each waits for its answer before the next submission,
        /// so this bounds how large a batch can grow).
        #[arg(long, default_value_t = 512)]
        clients: usize,
        /// How long to read tiles.
        #[arg(long, default_value_t = 3.0)]
        read_seconds: f64,
        /// Directory for the log (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every dashboard page of a large log, each answered by the real server over loopback:
    /// its time to the last byte (p50, p99) and size against the budgets (p99 at most 20 ms,
    /// at most 100 KB), beside the log's checkpoint fetched by the same client. Makes the log
    /// with the sequencer first (signed releases, every hundredth revoked; not timed), an
    /// inventory and the UK exposure rules for the operator pages. Exits 1 when a budget is
    /// not met. Use a release build: `cargo run --release -- bench dashboard`.
    Dashboard {
        /// Entries in the log.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Devices in the operator's inventory (over a tenth as many distinct firmware).
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Directory for the log (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the log afterwards.
        #[arg(long)]
        keep: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bundle verifications per second on one core, and artifact hashing beside
    /// `openssl speed -evp sha256` measured in the same run.
    ///
    /// Makes --bundles bundles (a release and two evaluators' attestations each, under one
    /// checkpoint cosigned by two witnesses, in a log of three entries per bundle), then verifies
    /// them on one thread, round after round, for --seconds, with one verifier (which checks each
    /// checkpoint's signatures once). Every verdict must be "admit". Then hashes a --hash-mib MiB
    /// file from the page cache and compares with OpenSSL's SHA-256 on 1 MiB blocks. Use a release
    /// build: `cargo run --release -- bench verify`.
    Verify {
        /// Distinct bundles to verify.
        #[arg(long, default_value_t = 200)]
        bundles: usize,
        /// How long to verify.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Size of the file hashed, in MiB.
        #[arg(long, default_value_t = 512)]
        hash_mib: usize,
        /// Directory for the file hashed (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Durable log appends and inclusion proofs, beside this machine's SHA-256 and fsynced write
    /// throughput measured in the same run.
    ///
    /// Appends --entries entries of --entry-size bytes in batches of --batch through the real
    /// sequencer (tiles, bundles, fsyncs, signed checkpoint per batch), then generates --proofs
    /// inclusion proofs for random entries of the resulting log: in the steady state of a reader
    /// whose tile cache holds the tiles (after one unmeasured pass), and with the entry's own
    /// level-0 tile evicted before each proof, so that it is read from its file and its interior
    /// nodes recomputed (255 SHA-256 node hashes).
    ///
    /// The machine's limit (DESIGN.md §11, "raw SHA-256 + sequential write") is the rate at which
    /// one core hashes each entry's bytes and the disk then writes them durably, one after the
    /// other; the write rate is measured as an ideal one-file log would write (the same bytes in
    /// all, the same bytes per fsync as a batch), before and after the appends. Two stricter limits are reported beside
    /// it: all cores hashing while the disk writes (whichever is slower), and that again bounded
    /// by the rate at which the file system makes new small files durable, since tlog-tiles needs
    /// two new files per 256 entries. Use a release build:
    /// `cargo run --release -- bench log`.
    ///
    /// With --storage and --database, the log on object storage with its state in PostgreSQL
    /// instead (a new prefix and a new schema, removed afterwards unless --keep): durable
    /// appends with deduplication (one entry in ten repeats an earlier one), time per batch,
    /// objects written per checkpoint, and beside them the two servers' limits measured in the
    /// same run: the store's conditional PUTs of the same sizes at the same concurrency, and
    /// PostgreSQL's rate of recording entries (a pending row and a deduplication row each).
    Log {
        /// Number of entries to append.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Size of each entry in bytes (at most 65,535).
        #[arg(long, default_value_t = 1024)]
        entry_size: usize,
        /// Entries per batch (one checkpoint and one round of fsyncs per batch).
        #[arg(long, default_value_t = 32_768)]
        batch: usize,
        /// Inclusion proofs to time.
        #[arg(long, default_value_t = 20_000)]
        proofs: usize,
        /// Directory to create the log in (default: a new directory under the system's temporary
        /// directory). It is removed afterwards unless --keep is given.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the log afterwards.
        #[arg(long)]
        keep: bool,
        /// The log on object storage: s3://BUCKET/PREFIX (options as for `nospy log copy`).
        #[arg(long, requires = "database")]
        storage: Option<String>,
        /// With --storage: the PostgreSQL database (postgres://user@host:port/db).
        #[arg(long, requires = "storage")]
        database: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Not a speed figure: `nospy serve` for --seconds under valid signed submissions (6
    /// clients), oversize and malformed bodies, reads, floods of 300 connections and slow
    /// clients that never finish, its resident memory sampled every 100 ms. Fails if the memory
    /// passes --ceiling-mb, a valid submission is answered anything but 200 or 503, or an
    /// acknowledged entry is lost (read back and audited after it stops). Prints the requests
    /// by kind and answer, and the peak RSS.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The most resident memory (MiB) the server may take.
        #[arg(long, default_value_t = 1024)]
        ceiling_mb: u64,
        /// Where to make the log (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON: {"seconds", "acknowledged", "lost", "peak_rss_mb", "ceiling_mb", "requests"}.
        #[arg(long)]
        json: bool,
    },
    /// Not a speed figure: `nospy serve` SIGKILLed at random moments (20-500 ms into each
    /// round) under concurrent signed submissions, restarted, --rounds times; after every kill
    /// every index ever acknowledged is read back with its exact entry and the log is audited.
    /// Stops at the first loss (the log is kept for a look). The test suite runs a few rounds;
    /// run a thousand here: `cargo run --release -- bench kills --rounds 1000`.
    Kills {
        /// How many kills.
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Where to make the log (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON: {"kills", "clients", "acknowledged", "answered_503", "lost", "seconds"}.
        #[arg(long)]
        json: bool,
    },
    /// Not a speed figure: two `nospy serve` instances on one log in object storage and
    /// PostgreSQL, under concurrent signed submissions to both; the one that sequences is
    /// SIGKILLed (every --pause-every-th round SIGSTOPped until the other has taken over, then
    /// SIGCONTed) and restarted, --rounds times. Reports how long the other took to publish a
    /// larger checkpoint, and fails if an acknowledged entry is lost, the bucket does not audit
    /// clean, or two checkpoints of one size were ever seen with different roots. E.g.
    /// `cargo run --release -- bench failover --storage 's3://b/p?endpoint=http://127.0.0.1:8333&allow_http=true' --database postgres://postgres@127.0.0.1/test`.
    Failover {
        /// The object storage: s3://BUCKET/PREFIX (a new prefix is made under it).
        #[arg(long)]
        storage: String,
        /// The PostgreSQL database (a new schema is made in it, and dropped at the end).
        #[arg(long)]
        database: String,
        /// How many times the sequencing instance is stopped.
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Every how many rounds the stop is a pause (SIGSTOP, SIGCONT) rather than a kill;
        /// 0 for kills only.
        #[arg(long, default_value_t = 10)]
        pause_every: usize,
        /// Concurrent submitters, each sending to either instance.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Where the keys and configuration go (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON: {"rounds", "kills", "pauses", "clients", "acknowledged", "entries",
        /// "answered_503", "lost", "forks", "checkpoints_seen", "takeover_ms_p50",
        /// "takeover_ms_p99", "takeover_ms_max" (after kills), "pause_takeover_ms_p50",
        /// "pause_takeover_ms_max", "seconds"}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: BenchCommand) -> Result<ExitCode> {
    let base = |dir: Option<PathBuf>| dir.unwrap_or_else(std::env::temp_dir);
    match c {
        BenchCommand::Soak {
            seconds,
            ceiling_mb,
            dir,
            json,
        } => nospy_bench::soak::run(&base(dir), seconds, ceiling_mb, json),
        BenchCommand::Kills {
            rounds,
            clients,
            dir,
            json,
        } => nospy_bench::kills::run(&base(dir), rounds, clients, json),
        BenchCommand::Failover {
            storage,
            database,
            rounds,
            pause_every,
            clients,
            dir,
            json,
        } => nospy_bench::failover::run(&nospy_bench::failover::Failover {
            storage,
            database,
            rounds,
            pause_every,
            clients: clients.max(1),
            dir: base(dir),
            json,
        }),
        BenchCommand::Exposure { devices, dir, json } => {
            nospy_bench::exposure::run(devices, &base(dir), json)
        }
        BenchCommand::Monitor {
            devices,
            rules,
            records,
            packets,
            dir,
            nats,
            partitions,
            json,
        } => match nats {
            Some(url) => {
                nospy_bench::monitor::run_nats(&url, devices, rules, records, partitions, json)
            }
            None => nospy_bench::monitor::run(devices, rules, records, packets, &base(dir), json),
        },
        BenchCommand::Serve {
            entries,
            clients,
            read_seconds,
            dir,
            json,
        } => nospy_bench::serve::run(&base(dir), entries, clients, read_seconds, json),
        BenchCommand::Dashboard {
            entries,
            devices,
            requests,
            dir,
            keep,
            json,
        } => {
            let met =
                nospy_bench::dashboard::run(&base(dir), entries, devices, requests, keep, json)?;
            return Ok(if met {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        BenchCommand::Verify {
            bundles,
            seconds,
            hash_mib,
            dir,
            json,
        } => {
            anyhow::ensure!(
                bundles >= 1 && seconds > 0.0 && hash_mib >= 1,
                "--bundles, --seconds and --hash-mib must be positive"
            );
            nospy_bench::verify::run(bundles, seconds, hash_mib, base(dir), json)
        }
        BenchCommand::Log {
            entries,
            entry_size,
            batch,
            proofs,
            dir,
            keep,
            storage,
            database,
            json,
        } => match (storage, database) {
            (Some(storage), Some(database)) => nospy_bench::cluster::run(
                &storage, &database, entries, entry_size, batch, keep, json,
            ),
            _ => nospy_bench::log::run(&base(dir), entries, entry_size, batch, proofs, keep, json),
        },
    }?;
    Ok(ExitCode::SUCCESS)
}
