//! `nospy`: the command-line binary. Thin: parsing arguments, reading files, printing; the work is
//! in the library crates.

#![forbid(unsafe_code)]

mod bench;
mod keys;
mod logcmd;
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
}

#[derive(Subcommand)]
enum Command {
    /// Create and inspect Ed25519 signing keys (signed-note key formats).
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Create, append to, prove from and audit a transparency log kept in a directory.
    #[command(subcommand)]
    Log(logcmd::LogCommand),
    /// Measure nospy's performance on this machine against the machine's own limits.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(c) => keys::run(c),
        Command::Log(c) => logcmd::run(c),
        Command::Bench(c) => bench::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nospy: {e:#}");
            util::exit_code_for(&e)
        }
    }
}
