//! `nospy`: the command-line binary. Thin: parsing arguments, reading files, printing; the work is
//! in the library crates.

#![forbid(unsafe_code)]
// The doc comments of this crate are clap help text, written for a terminal, not rustdoc.
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]

mod admit;
mod benchcmd;
mod democmd;
mod diffcmd;
mod evidencecmd;
mod exposurecmd;
mod fleetcmd;
mod keys;
mod logcmd;
mod manifestcmd;
mod monitorcmd;
mod monitortext;
mod servecmd;
mod statements;
mod streamcmd;
mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// nospy turns a network-equipment vendor's "no-spy" promise into evidence machines check:
/// signed release statements and evaluator attestations in an append-only transparency log
/// (C2SP tlog-tiles), verified before firmware is admitted.
///
/// Exit status: 0 success, 1 a negative answer (a proof that does not verify, an audit that
/// finds a fault), 2 unusable input or a failure.
#[derive(Parser)]
#[command(
    name = "nospy",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Accept private key files that their group or others may read (refused otherwise, as ssh
    /// refuses them: chmod 600 the key instead where you can).
    #[arg(long, global = true)]
    allow_open_keys: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create and inspect Ed25519 signing keys (signed-note key formats).
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Create, append to, prove from and audit a transparency log kept in a directory.
    #[command(subcommand)]
    Log(logcmd::LogCommand),
    /// Behaviour manifests: check them, import MUD files.
    #[command(subcommand)]
    Manifest(manifestcmd::ManifestCommand),
    /// Sign release statements (the vendor).
    #[command(subcommand)]
    Release(statements::ReleaseCommand),
    /// Say where two builds differ: archives member by member, ELF files section by section.
    ///
    /// Compares files or directories; tar (plain or gzip), zip and cpio archives are opened and
    /// compared member by member, recursively, and ELF files section by section. Exit 0 when
    /// identical, 1 when not.
    Diff {
        /// The build the vendor shipped.
        shipped: std::path::PathBuf,
        /// The build rebuilt from reviewed source.
        rebuilt: std::path::PathBuf,
        /// Print JSON: {"identical", "digests", "differences"}.
        #[arg(long)]
        json: bool,
    },
    /// Attest a release (the evaluator): binary equivalence of a rebuild, or a source review.
    ///
    /// For binary-equivalence, --shipped and --rebuilt are compared: identical bytes sign a pass,
    /// anything else a fail carrying where they differ. The attestation names the release entry
    /// by log origin, index and leaf hash.
    ///
    /// Example:
    ///   nospy attest --key eval.key --kind binary-equivalence --shipped fw.bin \
    ///     --rebuilt rebuilt/fw.bin --release-entry 0 --log ./log --out attestation.json
    #[command(verbatim_doc_comment)]
    Attest(statements::AttestArgs),
    /// Revoke artifacts (vendor or evaluator): a signed statement that they must not run.
    Revoke(statements::RevokeArgs),
    /// Gather, for one artifact, its release, attestations and revocations with inclusion proofs
    /// under one checkpoint, into one offline-verifiable file.
    Bundle(admit::BundleArgs),
    /// May this firmware run? Every check of the agreement, in order, with its reason.
    ///
    /// Checks: the checkpoint (log signature, a quorum of fresh witness cosignatures); the
    /// release (signed by a vendor of the agreement, about this artifact's digest, included);
    /// the evaluators (k distinct organisations attest binary equivalence; a failing attestation
    /// denies); the manifest (against the agreement's rules); revocation (needs --log: a bundle
    /// cannot prove an absence and says so); rollback (with --state) and minimum versions.
    ///
    /// Exit status: 0 admit, 1 deny, 2 unusable input.
    Verify(admit::VerifyArgs),
    /// Serve the log over HTTP: the tlog-tiles read API, the write API, proofs, metrics, and
    /// witnessing of every new checkpoint.
    ///
    /// Without --dir it runs on an embedded default directory (./nospy-data), made on first use
    /// with a log, its key, and demo vendor and evaluator keys admitted as submitters.
    ///
    /// Read API (c2sp.org/tlog-tiles): GET /checkpoint, /tile/<L>/<N>[.p/<W>],
    /// /tile/entries/<N>[.p/<W>]. Write API: POST /add with a DSSE envelope (`nospy release
    /// sign` ...), answered with {"index", "hash", "duplicate"} once durable. Helpers:
    /// GET /proof/inclusion?index=&size=, /proof/consistency?from=&to=, /lookup?digest=
    /// (entries about an artifact, from a SQLite index beside the tiles), /metrics. SIGTERM
    /// finishes what was acknowledged and stops.
    ///
    /// Dashboard (a browser at http://127.0.0.1:7379/; each page also JSON with `Accept:
    /// application/json` or `.json`): / (status, live), /entries (paged), /entries/<N> (decoded,
    /// with /entries/<N>/proof, its c2sp.org/tlog-proof), /search?q=, /witnesses,
    /// /verdict/<SHA256> (under serve.toml's [dashboard] agreements); with [dashboard]
    /// inventory (and exposure, token_file) the operator pages /fleet, /violations, /exposure.
    Serve(servecmd::ServeArgs),
    /// The whole chain in one command: a demo world (a vendor's three releases, two evaluators,
    /// two witnesses, an operator's 1,000 devices and a capture in which one phones home, a
    /// regulator's caps), played with nospy's own commands and served with the dashboard.
    ///
    /// Example: nospy demo ./nospy-demo   (then open http://127.0.0.1:7379/)
    Demo(democmd::DemoArgs),
    /// Check traffic against each device's manifest: which flows its manifest does not allow.
    ///
    /// Reads a packet capture (--pcap, pcap or pcapng, streamed), captured flow exports
    /// (--flows, NetFlow v5/v9, IPFIX) or exports sent live (--listen udp:ADDR), attributes each
    /// flow to the inventory's device by address, and judges it against that device's manifest:
    /// the manifest of its firmware's release in the log (--agreement with --log or --server), or
    /// --manifest files matched by vendor and model. Abstractions (operator-networks,
    /// my-controller, local-networks, controller:URI) come from --operator; DNS-name rules are
    /// satisfied by DNS answers in the capture, within their TTL, or by a --resolver snapshot. A
    /// flow only a DNS-name rule could allow, when no answer could be seen, is reported as
    /// unattributable, apart from violations. With --evidence-key, each device's violations
    /// become a signed evidence statement appended to the log.
    ///
    /// Examples:
    ///   nospy monitor --inventory inventory.csv --manifest vx-ran-5000.toml \
    ///     --operator operator.toml --pcap site-0001.pcapng
    ///   nospy monitor --inventory inventory.csv --agreement agreement.toml --log ./log \
    ///     --evidence-key monitor.key --listen udp:0.0.0.0:4739 --duration 1h
    ///
    /// Exit status: 0 no violation, 1 violations found, 2 unusable input.
    #[command(
        verbatim_doc_comment,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Monitor(Box<monitorcmd::MonitorArgs>),
    /// Read breach evidence back: verify an evidence entry under an agreement.
    #[command(subcommand)]
    Evidence(evidencecmd::EvidenceCommand),
    /// Publish flows to NATS JetStream for a pool of monitor workers (`nospy monitor --nats`).
    ///
    /// Reads captured flow exports (--flows), a packet capture (--pcap) or exports sent live
    /// (--listen udp:ADDR), attributes each flow to the inventory's device by address, and
    /// publishes them in binary batches to the stream's partition of their device (a hash of
    /// its id), each batch under a message id made of the source, the partition and its number,
    /// so that a batch published again is stored once. Flows of no device are counted. The
    /// exporters' templates are kept in the stream's state bucket.
    ///
    /// Example (one collector, two workers, then the report):
    ///   nospy collect --inventory inventory.csv --nats nats://127.0.0.1:4222 --flows exports.pcap
    ///   nospy monitor --inventory inventory.csv --manifest vx.toml --nats nats://127.0.0.1:4222 &
    ///   nospy monitor --inventory inventory.csv --manifest vx.toml --nats nats://127.0.0.1:4222 &
    ///   nospy monitor report --nats nats://127.0.0.1:4222 --json
    #[command(verbatim_doc_comment)]
    Collect(streamcmd::CollectArgs),
    /// Measure the network's dependence on a designated vendor against a policy's caps and
    /// deadlines.
    ///
    /// For each rule (vendor, scope, cap, measure, effective date): the vendor's share of the
    /// scope, compliant or in breach at the date, days to the deadline, and the fewest devices
    /// whose replacement brings the share within the cap, with their cost. --what-if sweeps the
    /// cap to show the price of each level of restriction; --html writes a report with charts.
    ///
    /// Example:
    ///   nospy exposure --inventory inventory.csv --policy examples/exposure-uk.toml \
    ///     --what-if 0:50:5 --html exposure.html
    ///
    /// Exit status: 0 no rule in breach, 1 a rule in breach at the date, 2 unusable input.
    #[command(verbatim_doc_comment)]
    Exposure(exposurecmd::ExposureArgs),
    /// Check every device of the inventory under the agreement.
    ///
    /// For each device, from its firmware digest: is the firmware in the log, admitted (the
    /// very verdict of `nospy verify`, with its reason), revoked, or superseded by a newer
    /// admitted release of the same product? Summary counts, the failing devices, --json, and
    /// --html for a report.
    ///
    /// Example:
    ///   nospy fleet --inventory inventory.csv --agreement agreement.toml --log ./mirror
    ///
    /// Exit status: 0 every device admitted and current, 1 a device fails, 2 unusable input.
    #[command(verbatim_doc_comment)]
    Fleet(fleetcmd::FleetArgs),
    /// Witness a log: cosign checkpoints that extend what was cosigned before.
    #[command(subcommand)]
    Witness(admit::WitnessCommand),
    /// Measure nospy's performance on this machine against the machine's own limits.
    #[command(subcommand)]
    Bench(benchcmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.allow_open_keys {
        nospy_log::keyfile::allow_open_keys();
    }
    let result = match cli.command {
        Command::Key(c) => keys::run(c),
        Command::Log(c) => logcmd::run(c),
        Command::Manifest(c) => manifestcmd::run(c),
        Command::Release(c) => statements::release(c),
        Command::Diff {
            shipped,
            rebuilt,
            json,
        } => diffcmd::run(&shipped, &rebuilt, json),
        Command::Attest(a) => statements::attest(a),
        Command::Revoke(a) => statements::revoke(a),
        Command::Bundle(a) => admit::bundle(a),
        Command::Verify(a) => admit::verify_cmd(a),
        Command::Witness(c) => admit::witness(c),
        Command::Serve(a) => servecmd::run(a),
        Command::Demo(a) => democmd::run(a),
        Command::Monitor(a) => monitorcmd::run(*a),
        Command::Evidence(c) => evidencecmd::run(c),
        Command::Collect(a) => streamcmd::collect(a),
        Command::Exposure(a) => exposurecmd::run(a),
        Command::Fleet(a) => fleetcmd::run(a),
        Command::Bench(c) => benchcmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The causes after the message, each once: an error whose text already carries its
            // cause (a file's path and the system's words) is not followed by that cause again.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("nospy: {msg}");
            util::exit_code_for(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
