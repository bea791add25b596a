//! `nospy bench`: performance measured against the same machine's own limits, in one run.

use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BenchCommand {}

pub fn run(c: BenchCommand) -> Result<ExitCode> {
    match c {}
}
