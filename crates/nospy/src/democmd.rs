//! `nospy demo`: writes the demo world (`nospy_demo`), runs its log server and two witnesses,
//! plays every party's part with nospy's own commands against that server, and serves the
//! result with the dashboard.

use anyhow::{bail, Context as _, Result};
use nospy_demo::World;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `nospy demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the world is written (made on first use; a later run serves it again).
    #[arg(default_value = "nospy-demo")]
    dir: PathBuf,
    /// Where the log server (and its dashboard) listens.
    #[arg(long, default_value = "127.0.0.1:7379")]
    listen: SocketAddr,
    /// The world's seed: the same seed, the same keys, images, inventory and capture.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Build the world (or find it), say what to look at, and stop instead of serving.
    #[arg(long)]
    no_serve: bool,
    /// Print one JSON object: url, dir, seed, devices, releases, entries, look_at.
    #[arg(long)]
    json: bool,
}

/// Written last: the world in this directory is complete.
const DONE: &str = "world.json";

fn write_world(w: &World, dir: &Path) -> Result<()> {
    for f in &w.files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        create(&path, &f.bytes, f.private)?;
    }
    Ok(())
}

/// Creates `path` (never over an existing file), the owner's only when `private`.
fn create(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs one nospy command in the world's directory, says it, and keeps its output in the
/// transcript. `ok` lists the exit codes that are the expected answer.
struct Player {
    exe: PathBuf,
    dir: PathBuf,
    transcript: String,
    quiet: bool,
}

impl Player {
    fn run(&mut self, args: &[&str], ok: &[i32]) -> Result<String> {
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
        let line = format!("$ nospy {}", quoted.join(" "));
        if !self.quiet {
            eprintln!("{line}");
        }
        let out = std::process::Command::new(&self.exe)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("running {line}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.transcript
            .push_str(&format!("{line}\n{stdout}{stderr}\n"));
        let code = out.status.code().unwrap_or(-1);
        if !ok.contains(&code) {
            bail!("{line} exited {code}:\n{stdout}{stderr}");
        }
        Ok(stdout)
    }

    /// `nospy log add --server url files`: the entries the files were given.
    fn add(&mut self, url: &str, files: &[String]) -> Result<Vec<u64>> {
        let mut args = vec!["log", "add", "--server", url, "--json"];
        args.extend(files.iter().map(String::as_str));
        let v = self.json(&args, &[0])?;
        Ok(v["entries"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["index"].as_u64()).collect())
            .unwrap_or_default())
    }

    fn json(&mut self, args: &[&str], ok: &[i32]) -> Result<Value> {
        let text = self.run(args, ok)?;
        serde_json::from_str(&text).with_context(|| format!("nospy {}: its JSON", args.join(" ")))
    }
}

/// Plays every party's part against the server at `url`; returns what the world records.
fn play(
    w: &World,
    p: &mut Player,
    url: &str,
    wait_cosigned: &dyn Fn(u64) -> bool,
) -> Result<Value> {
    std::fs::create_dir_all(p.dir.join("statements"))?;
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
            nospy_demo::PRODUCT,
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
    if !wait_cosigned(size) {
        bail!("the witnesses did not cosign the log's {size} entries within 30 s");
    }
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
    std::fs::write(
        p.dir.join("monitor.json"),
        serde_json::to_vec_pretty(&monitor)?,
    )?;
    let evidence: Vec<u64> = monitor["evidence"]["statements"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["index"].as_u64()).collect())
        .unwrap_or_default();
    let size = evidence.iter().max().map_or(size, |i| i + 1);
    if !wait_cosigned(size) {
        bail!("the witnesses did not cosign the log's {size} entries within 30 s");
    }
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
    std::fs::write(p.dir.join("fleet.json"), serde_json::to_vec_pretty(&fleet)?)?;
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
    std::fs::write(
        p.dir.join("exposure.json"),
        serde_json::to_vec_pretty(&exposure)?,
    )?;
    Ok(json!({
        "seed": w.seed,
        "releases": releases,
        "attestations": attestations,
        "revocations": revocations,
        "evidence": evidence,
    }))
}

fn serve_config(w: &World, witnesses: &[SocketAddr], token: bool) -> String {
    let mut s =
        String::from("# Written by nospy demo at each start (the witnesses' ports change).\n");
    for p in [&w.vendor, &w.evaluators[0], &w.evaluators[1], &w.monitor] {
        s.push_str(&format!(
            "[[submitter]]\nrole = \"{}\"\nkey = \"{}\"\n\n",
            p.role,
            p.key.verifier()
        ));
    }
    s.push_str("[witnesses]\nquorum = 2\ntimeout = \"2s\"\n");
    for (p, a) in w.witnesses.iter().zip(witnesses) {
        s.push_str(&format!(
            "[[witnesses.member]]\nurl = \"http://{a}\"\nkey = \"{}\"\n",
            p.key.cosigner_verifier()
        ));
    }
    s.push_str(
        "\n[dashboard]\nagreements = [\"agreement.toml\"]\ninventory = \"inventory.csv\"\nexposure = \"exposure.toml\"\n",
    );
    if token {
        s.push_str("token_file = \"dashboard.token\"\n");
    }
    s
}

/// Runs `nospy demo`.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let w = World::new(a.seed);
    let dir = a.dir;
    let done = dir.join(DONE);
    let fresh = !done.exists();
    if fresh {
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            bail!(
                "{} holds something other than a finished demo world (an earlier demo stopped while building it?): remove it, or give another directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_world(&w, &dir)?;
    } else {
        let v: Value = serde_json::from_slice(&std::fs::read(&done)?)
            .with_context(|| format!("reading {}", done.display()))?;
        if v["seed"].as_u64() != Some(a.seed) {
            bail!(
                "{} holds the world of seed {}, not {}",
                dir.display(),
                v["seed"],
                a.seed
            );
        }
    }
    let mut player = Player {
        exe: std::env::current_exe().context("finding nospy's own executable")?,
        dir: dir.clone(),
        transcript: String::new(),
        quiet: a.json,
    };
    if fresh {
        player.run(
            &[
                "log",
                "init",
                "log",
                "--origin",
                nospy_demo::ORIGIN,
                "--key",
                &w.log.key_file,
            ],
            &[0],
        )?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let logs = vec![(nospy_demo::ORIGIN.to_string(), w.log.key.verifier())];
    let witnesses = rt.block_on(async {
        let mut v = Vec::new();
        for (i, p) in w.witnesses.iter().enumerate() {
            v.push(
                nospy_witness::serve::start(nospy_witness::serve::WitnessOptions {
                    key: p.key.clone(),
                    logs: logs.clone(),
                    db: dir.join(format!("witness-{}.sqlite", i + 1)),
                    listen: "127.0.0.1:0".parse().expect("an address"),
                    clock: std::sync::Arc::new(nospy_log::clock::SystemClock),
                })
                .await?,
            );
        }
        Ok::<_, nospy_witness::Error>(v)
    })?;
    let addrs: Vec<SocketAddr> = witnesses.iter().map(|x| x.addr).collect();
    // Beyond loopback the operator pages need a bearer token: one is made on first need.
    let token = !a.listen.ip().is_loopback();
    let token_file = dir.join("dashboard.token");
    if token && !token_file.exists() {
        let mut bytes = [0u8; 24];
        getrandom::getrandom(&mut bytes).context("reading the system's random number generator")?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        create(&token_file, format!("{text}\n").as_bytes(), true)?;
    }
    std::fs::write(dir.join("serve.toml"), serve_config(&w, &addrs, token))?;
    let server = rt.block_on(nospy_server::start(nospy_server::Options {
        config: Some(dir.join("serve.toml")),
        queue: 1024,
        max_batch: 256,
        index_delay: std::time::Duration::from_millis(50),
        ..nospy_server::Options::new(
            nospy_server::Storage::Dir(dir.join("log")),
            w.log.key.clone(),
            a.listen,
        )
    }))?;
    let url = format!("http://{}", server.addr);
    let record = if fresh {
        let wait = |size: u64| {
            rt.block_on(server.wait_for(std::time::Duration::from_secs(30), |p| {
                p.witnessed >= size && p.indexed >= size
            }))
        };
        let record = play(&w, &mut player, &url, &wait)?;
        std::fs::write(dir.join("transcript.txt"), &player.transcript)?;
        std::fs::write(&done, serde_json::to_vec_pretty(&record)?)?;
        record
    } else {
        serde_json::from_slice(&std::fs::read(&done)?)?
    };
    let digest = |i: usize| w.releases[i].digest.to_hex();
    let look_at = vec![
        json!({"what": "the log, its checkpoint and its witnesses' cosignatures", "url": format!("{url}/")}),
        json!({"what": "every statement, newest first", "url": format!("{url}/entries")}),
        json!({"what": "4.2.0, admitted under the agreement", "url": format!("{url}/verdict/{}", digest(1))}),
        json!({"what": "4.2.1, denied: the DE lab's rebuild differs and the vendor revoked it", "url": format!("{url}/verdict/{}", digest(2))}),
        json!({"what": "the evidence: a radio on 4.2.1 phoning home", "url": format!("{url}/entries/{}", record["evidence"][0])}),
        json!({"what": "the witnesses", "url": format!("{url}/witnesses")}),
        json!({"what": "the operator's fleet: superseded, failed and unlogged radios", "url": format!("{url}/fleet")}),
        json!({"what": "the violations the monitor's evidence records", "url": format!("{url}/violations")}),
        json!({"what": "the regulator's caps: VendorX over 35% of the access network", "url": format!("{url}/exposure")}),
    ];
    if a.json {
        crate::util::print_json(&json!({
            "url": url, "dir": dir, "seed": a.seed, "devices": w.devices,
            "releases": w.releases.iter().map(|r| json!({"version": r.version, "sha256": r.digest.to_hex()})).collect::<Vec<_>>(),
            "entries": record, "look_at": look_at,
        }))?;
    } else {
        println!(
            "\nThe demo world is in {} ({} devices); its log is served at {url}\n",
            dir.display(),
            w.devices
        );
        for l in &look_at {
            println!(
                "  {:<70} {}",
                l["what"].as_str().unwrap_or_default(),
                l["url"].as_str().unwrap_or_default()
            );
        }
        println!(
            "\nWhat the parties did, command by command: {}",
            dir.join("transcript.txt").display()
        );
        if token {
            println!(
                "The operator pages (fleet, violations, exposure) need the bearer token in {} (listening beyond loopback).",
                token_file.display()
            );
        }
    }
    rt.block_on(async {
        if a.no_serve {
            server.shutdown().await?;
        } else {
            eprintln!("nospy demo: serving on {url}; Ctrl-C stops");
            server.wait().await?;
        }
        for x in witnesses {
            x.shutdown().await;
        }
        Ok::<_, nospy_server::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
