//! Every `nospy bench ...`: each measures nospy on this machine against a reference measured in
//! the same run (the machine's SHA-256 and fsynced-write limits, a bare HTTP server, `openssl
//! speed`, `tcpdump -r`), and prints the figures, as JSON with the keys of DESIGN.md §12 when
//! asked. The binary parses the arguments and calls in here.
//!
//! Figures from a debug build mean little: each benchmark says so when it runs in one.

#![forbid(unsafe_code)]

mod child;
pub mod cluster;
pub mod dashboard;
pub mod exposure;
pub mod failover;
pub mod kills;
pub mod load;
pub mod log;
pub mod monitor;
pub mod serve;
pub mod soak;
pub mod verify;

use std::io::Write;

/// Progress for people, on standard error, unless the output is JSON.
pub(crate) fn say(json: bool, msg: &str) {
    if !json {
        eprintln!("{msg}");
    }
}

/// Prints a JSON value on standard output.
pub(crate) fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut o, v)?;
    writeln!(o)?;
    Ok(())
}
