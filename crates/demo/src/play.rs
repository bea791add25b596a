//! The demo played: the world written into a directory, and every party's part played there by
//! running a nospy executable's own commands against a log server, exactly as a user types them,
//! each command and its answer kept for the transcript.
//!
//! This module does I/O (files in the world's directory, the executable's processes); it starts
//! no server: the caller runs the log server and the witnesses, gives their URL, and says when
//! the log is cosigned and indexed up to a size.

use crate::World;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Written last: the world in its directory is complete (its content: what [`play`] returns).
pub const DONE: &str = "world.json";

/// Why the demo could not be played.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlayError {
    /// The directory holds something other than a finished demo world.
    Occupied(PathBuf),
    /// The directory holds the finished world of another seed (`None`: its record names none).
    OtherSeed {
        /// The directory.
        dir: PathBuf,
        /// The seed its record names.
        found: Option<u64>,
        /// The seed asked for.
        seed: u64,
    },
    /// A file of the world could not be written or read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A command could not be run, or did not give the expected answer.
    Command {
        /// The command line, as a user would type it.
        line: String,
        /// Its exit code (`None`: not run, or killed by a signal).
        code: Option<i32>,
        /// What it printed (standard output, then standard error), or why it did not run.
        output: String,
    },
    /// A command's JSON answer (or the world's record) could not be read.
    Answer {
        /// The command line, or the record's file.
        line: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The witnesses did not cosign (or the server did not index) the log up to this size in
    /// the time the caller allows.
    NotCosigned {
        /// The size waited for.
        size: u64,
    },
}

impl std::fmt::Display for PlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlayError::Occupied(dir) => write!(
                f,
                "{} holds something other than a finished demo world (an earlier demo stopped while building it?): remove it, or give another directory",
                dir.display()
            ),
            PlayError::OtherSeed { dir, found, seed } => match found {
                Some(found) => write!(
                    f,
                    "{} holds the world of seed {found}, not {seed}",
                    dir.display()
                ),
                None => write!(f, "{} holds a world of no seed, not {seed}", dir.display()),
            },
            PlayError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PlayError::Command {
                line,
                code: Some(code),
                output,
            } => write!(f, "{line} exited {code}:\n{output}"),
            PlayError::Command { line, output, .. } => write!(f, "{line}: {output}"),
            PlayError::Answer { line, problem } => write!(f, "{line}: {problem}"),
            PlayError::NotCosigned { size } => write!(
                f,
                "the witnesses did not cosign the log's {size} entries within 30 s"
            ),
        }
    }
}

impl std::error::Error for PlayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlayError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlayError + '_ {
    move |source| PlayError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `dir` hold the world `w`: written into a new or empty directory (`None`: to be
/// played), or found finished there by an earlier run (its record, as [`play`] returned it).
pub fn prepare(w: &World, dir: &Path) -> Result<Option<Value>, PlayError> {
    let done = dir.join(DONE);
    if done.exists() {
        let bytes = std::fs::read(&done).map_err(io(&done))?;
        let record: Value = serde_json::from_slice(&bytes).map_err(|e| PlayError::Answer {
            line: done.display().to_string(),
            problem: e.to_string(),
        })?;
        let found = record["seed"].as_u64();
        if found != Some(w.seed) {
            return Err(PlayError::OtherSeed {
                dir: dir.to_path_buf(),
                found,
                seed: w.seed,
            });
        }
        return Ok(Some(record));
    }
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(PlayError::Occupied(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for f in &w.files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        create(&path, &f.bytes, f.private)?;
    }
    Ok(None)
}

/// Creates `path` durably (never over an existing file), the owner's only when `private`.
pub fn create(path: &Path, bytes: &[u8], private: bool) -> Result<(), PlayError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(path).map_err(io(path))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|_| file.sync_all())
        .map_err(io(path))
}

/// Runs nospy commands in the world's directory, says each one (unless quiet), and keeps each
/// with its output for the transcript.
pub struct Player {
    exe: PathBuf,
    dir: PathBuf,
    transcript: String,
    quiet: bool,
}

impl Player {
    /// A player running the executable `exe` in `dir`; `quiet` says nothing on standard error.
    pub fn new(exe: PathBuf, dir: PathBuf, quiet: bool) -> Player {
        Player {
            exe,
            dir,
            transcript: String::new(),
            quiet,
        }
    }

    /// Every command run so far, each followed by what it printed.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Runs `nospy args...`; `ok` lists the exit codes that are the expected answer. Returns
    /// what it printed on standard output.
    pub fn run(&mut self, args: &[&str], ok: &[i32]) -> Result<String, PlayError> {
        let line = command_line(args);
        if !self.quiet {
            eprintln!("{line}");
        }
        let out = std::process::Command::new(&self.exe)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| PlayError::Command {
                line: line.clone(),
                code: None,
                output: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.transcript
            .push_str(&format!("{line}\n{stdout}{stderr}\n"));
        let code = out.status.code();
        if !code.is_some_and(|c| ok.contains(&c)) {
            return Err(PlayError::Command {
                line,
                code,
                output: format!("{stdout}{stderr}"),
            });
        }
        Ok(stdout)
    }

    /// `nospy log init log`: the world's log, with the log party's key.
    pub fn init_log(&mut self, w: &World) -> Result<(), PlayError> {
        self.run(
            &[
                "log",
                "init",
                "log",
                "--origin",
                crate::ORIGIN,
                "--key",
                &w.log.key_file,
            ],
            &[0],
        )
        .map(drop)
    }

    /// `nospy log add --server url files`: the entries the files were given.
    fn add(&mut self, url: &str, files: &[String]) -> Result<Vec<u64>, PlayError> {
        let mut args = vec!["log", "add", "--server", url, "--json"];
        args.extend(files.iter().map(String::as_str));
        let v = self.json(&args, &[0])?;
        Ok(indexes(&v["entries"]))
    }

    fn json(&mut self, args: &[&str], ok: &[i32]) -> Result<Value, PlayError> {
        let text = self.run(args, ok)?;
        serde_json::from_str(&text).map_err(|e| PlayError::Answer {
            line: command_line(args),
            problem: format!("its JSON: {e}"),
        })
    }

    /// Writes `value` as the world's file `name`.
    fn keep(&self, name: &str, value: &Value) -> Result<(), PlayError> {
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec_pretty(value).expect("a JSON value serializes");
        std::fs::write(&path, bytes).map_err(io(&path))
    }
}

/// `$ nospy args...`, each argument quoted for a POSIX shell when it needs it.
fn command_line(args: &[&str]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.to_string()
            }
        })
        .collect();
    format!("$ nospy {}", quoted.join(" "))
}

/// The `index` of each object of a JSON list.
fn indexes(list: &Value) -> Vec<u64> {
    list.as_array()
        .map(|a| a.iter().filter_map(|e| e["index"].as_u64()).collect())
        .unwrap_or_default()
}

/// Plays every party's part against the log server at `url` (`cosigned(size)`: whether the
/// log was cosigned and indexed up to `size` in the time allowed). Writes the commands' JSON
/// answers the world keeps (monitor.json, fleet.json, exposure.json), the transcript, and last
/// [`DONE`] with the record it returns: the seed and the entries each party logged.
pub fn play(
    w: &World,
    p: &mut Player,
    url: &str,
    cosigned: &dyn Fn(u64) -> bool,
) -> Result<Value, PlayError> {
    let statements = p.dir.join("statements");
    std::fs::create_dir_all(&statements).map_err(io(&statements))?;
    let wait = |size: u64| match cosigned(size) {
        true => Ok(()),
        false => Err(PlayError::NotCosigned { size }),
    };
    // The vendor signs and logs its three releases.
    let mut files = Vec::new();
    for r in &w.releases {
        let out = format!("statements/release-{}.json", r.version);
        let commit = nospy_tlog::Sha256::of(format!("source {}", r.version).as_bytes()).to_hex();
        let mut args = vec![
            "release",
            "sign",
            "--key",
            &w.vendor.key_file,
            "--artifact",
            &r.firmware,
            "--product",
            crate::PRODUCT,
            "--version",
            r.version,
            "--source-commit",
            &commit[..12],
            "--manifest",
            &r.manifest,
            "--out",
            &out,
        ];
        if let Some(s) = r.supersedes {
            args.extend(["--supersedes", s]);
        }
        p.run(&args, &[0])?;
        files.push(out);
    }
    let releases = p.add(url, &files)?;
    // The evaluators rebuild and attest; the DE lab's rebuild of 4.2.1 differs.
    let mut files = Vec::new();
    for (r, &entry) in w.releases.iter().zip(&releases) {
        for (e, rebuilt, equal) in &r.rebuilds {
            if !equal {
                p.run(&["diff", &r.firmware, rebuilt], &[1])?;
            }
            let org = if *e == 0 { "uk" } else { "de" };
            let out = format!("statements/attest-{org}-{}.json", r.version);
            p.run(
                &[
                    "attest",
                    "--key",
                    &w.evaluators[*e].key_file,
                    "--kind",
                    "binary-equivalence",
                    "--shipped",
                    &r.firmware,
                    "--rebuilt",
                    rebuilt,
                    "--release-entry",
                    &entry.to_string(),
                    "--log",
                    "log",
                    "--out",
                    &out,
                ],
                &[0],
            )?;
            files.push(out);
        }
    }
    let attestations = p.add(url, &files)?;
    // The vendor revokes what the DE lab found.
    let mut files = Vec::new();
    for r in w.releases.iter().filter(|r| r.revoked.is_some()) {
        let out = format!("statements/revoke-{}.json", r.version);
        p.run(
            &[
                "revoke",
                "--key",
                &w.vendor.key_file,
                "--artifact-digest",
                &r.digest.to_hex(),
                "--reason",
                r.revoked.unwrap_or_default(),
                "--out",
                &out,
            ],
            &[0],
        )?;
        files.push(out);
    }
    let revocations = p.add(url, &files)?;
    let size = revocations.iter().max().map_or(0, |i| i + 1);
    wait(size)?;
    // The operator's monitor judges the capture and logs its evidence.
    let monitor = p.json(
        &[
            "monitor",
            "--inventory",
            "inventory.csv",
            "--operator",
            "operator.toml",
            "--resolver",
            "resolver.txt",
            "--pcap",
            "capture.pcap",
            "--agreement",
            "agreement.toml",
            "--server",
            url,
            "--evidence-key",
            &w.monitor.key_file,
            "--json",
        ],
        &[1],
    )?;
    p.keep("monitor.json", &monitor)?;
    let evidence = indexes(&monitor["evidence"]["statements"]);
    let size = evidence.iter().max().map_or(size, |i| i + 1);
    wait(size)?;
    // The operator mirrors the log (verifying it), and checks its fleet against the mirror:
    // read whole, so that newer releases are found.
    let log_key = w.log.key.verifier().to_string();
    p.run(&["log", "mirror", url, "mirror", "--key", &log_key], &[0])?;
    let fleet = p.json(
        &[
            "fleet",
            "--inventory",
            "inventory.csv",
            "--agreement",
            "agreement.toml",
            "--log",
            "mirror",
            "--json",
        ],
        &[0, 1],
    )?;
    p.keep("fleet.json", &fleet)?;
    // A third country's view: the case of the firmware caught phoning home, gathered from the
    // mirror and verified offline under the agreement (its [monitors] trust the operator's).
    if let Some(r) = w.releases.iter().find(|r| r.version == w.phoning_device.1) {
        let digest = r.digest.to_hex();
        let case = format!("case-{}.json", r.version);
        p.run(
            &[
                "evidence", "case", &digest, "--log", "mirror", "--out", &case,
            ],
            &[0],
        )?;
        p.run(
            &["evidence", "verify", &case, "--agreement", "agreement.toml"],
            &[0],
        )?;
    }
    let exposure = p.json(
        &[
            "exposure",
            "--inventory",
            "inventory.csv",
            "--policy",
            "exposure.toml",
            "--html",
            "exposure.html",
            "--json",
        ],
        &[1],
    )?;
    p.keep("exposure.json", &exposure)?;
    let record = json!({
        "seed": w.seed,
        "releases": releases,
        "attestations": attestations,
        "revocations": revocations,
        "evidence": evidence,
    });
    let transcript = p.dir.join("transcript.txt");
    std::fs::write(&transcript, &p.transcript).map_err(io(&transcript))?;
    p.keep(DONE, &record)?;
    Ok(record)
}
