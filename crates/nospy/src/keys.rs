//! `nospy key`: Ed25519 keys in signed-note form.

use crate::util::{print_json, signer_key};
use anyhow::{Context as _, Result};
use clap::Subcommand;
use nospy_tlog::note::SignerKey;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 key pair.
    ///
    /// The private key is written to FILE in Go's `PRIVATE+KEY+name+id+base64` form, readable by
    /// its owner only; FILE must not exist yet. The verifier key (`name+id+base64`, type 0x01) is
    /// printed: give it to whoever checks your signatures. The same key's witness form (type
    /// 0x04, for c2sp.org/tlog-cosignature) is printed beside it, so one key file serves a witness.
    ///
    /// Example: nospy key generate --name log.example.org/nospy --out log.key
    Generate {
        /// Key name: for a log, its origin (e.g. `log.example.org/nospy`); for others a
        /// schema-less URL naming the signer. No spaces and no `+`.
        #[arg(long)]
        name: String,
        /// File to write the private key to.
        #[arg(long)]
        out: PathBuf,
        /// Print JSON: {"name", "verifier_key", "witness_key", "private_key_file"}.
        #[arg(long)]
        json: bool,
    },
    /// Print the verifier key of a private key file (with --witness, its cosignature form).
    Public {
        /// The private key file.
        file: PathBuf,
        /// Print the witness (tlog-cosignature, type 0x04) form only.
        #[arg(long)]
        witness: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: KeyCommand) -> Result<ExitCode> {
    match c {
        KeyCommand::Generate { name, out, json } => {
            // The seed is wiped once the key holds it (the key wipes its own copy when dropped).
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::getrandom(&mut *seed)
                .context("reading the system's random number generator")?;
            let key = SignerKey::from_seed(&name, *seed)?;
            write_private(&out, &key)?;
            report(&key, &out, json)?;
        }
        KeyCommand::Public {
            file,
            witness,
            json,
        } => {
            let key = signer_key(&file)?;
            if witness && !json {
                println!("{}", key.cosigner_verifier());
            } else {
                report(&key, &file, json)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(key: &SignerKey, file: &Path, json: bool) -> Result<()> {
    if json {
        print_json(&json!({
            "name": key.name(),
            "verifier_key": key.verifier().to_string(),
            "witness_key": key.cosigner_verifier().to_string(),
            "private_key_file": file,
        }))
    } else {
        println!("{}", key.verifier());
        eprintln!("witness (cosignature) form: {}", key.cosigner_verifier());
        Ok(())
    }
}

pub fn write_private(path: &Path, key: &SignerKey) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    let r = writeln!(f, "{}", key.to_private_string().as_str()).and_then(|_| f.sync_all());
    if let Err(e) = r {
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
