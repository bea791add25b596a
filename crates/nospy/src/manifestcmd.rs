//! `nospy manifest`: check manifests and import MUD files.

use crate::util::{print_json, read_input, write_output};
use anyhow::{Context as _, Result};
use clap::Subcommand;
use nospy_manifest::mud::{import, Note};
use nospy_manifest::Manifest;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Convert an RFC 8520 MUD file into a behaviour manifest (TOML).
    ///
    /// Reads the RFC's `ietf-access-control-list:acls` and the older `access-lists` form that
    /// MUDgee and osMUD write. Every element that a manifest cannot represent is named on
    /// standard error: either its ACE was left out (the manifest allows less than the MUD file),
    /// or it was approximated, as described. Review those before signing a release.
    ///
    /// Example: nospy manifest import-mud device.mud.json --out manifest.toml
    ImportMud {
        /// The MUD file (`-` for standard input).
        file: PathBuf,
        /// Write the manifest here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON: {"manifest", "imported", "left_out", "approximated"}.
        #[arg(long)]
        json: bool,
    },
    /// Check a manifest file and print it in its canonical form.
    Check {
        /// The manifest (TOML).
        file: PathBuf,
        /// Print the JSON form that release statements carry.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: ManifestCommand) -> Result<ExitCode> {
    match c {
        ManifestCommand::ImportMud { file, out, json } => {
            let bytes = read_input(&file)?;
            let imp =
                import(&bytes).with_context(|| format!("{}: cannot import", file.display()))?;
            let (left, approx): (Vec<&Note>, Vec<&Note>) = imp
                .notes
                .iter()
                .partition(|n| matches!(n, Note::Skipped { .. }));
            if json {
                if let Some(p) = &out {
                    write_output(Some(p), imp.manifest.to_toml().as_bytes())?;
                }
                print_json(&json!({
                    "manifest": imp.manifest.to_json(),
                    "imported": imp.imported,
                    "left_out": left.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "approximated": approx.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                }))?;
            } else {
                let header = format!("# Imported by nospy from {}.\n", file.display());
                write_output(
                    out.as_deref(),
                    format!("{header}{}", imp.manifest.to_toml()).as_bytes(),
                )?;
                eprintln!(
                    "{}: {} ACEs became {} rules",
                    file.display(),
                    imp.imported,
                    imp.manifest.allow.len()
                );
                for n in &imp.notes {
                    eprintln!("  {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Check { file, json } => {
            let text = String::from_utf8(read_input(&file)?)
                .with_context(|| format!("{}: not UTF-8", file.display()))?;
            let m = Manifest::from_toml(&text).with_context(|| format!("{}", file.display()))?;
            if json {
                print_json(&m.to_json())?;
            } else {
                print!("{}", m.to_toml());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
