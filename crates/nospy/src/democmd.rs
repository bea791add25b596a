//! `nospy demo`: writes the demo world (`nospy_demo`), runs its log server and two witnesses,
//! plays every party's part with nospy's own commands against that server, and serves the
//! result with the dashboard.

use anyhow::{Context as _, Result};
use nospy_demo::play::{self, Player};
use nospy_demo::World;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
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

/// Runs `nospy demo`.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let w = World::new(a.seed);
    let dir = a.dir;
    let found = play::prepare(&w, &dir)?;
    let mut player = Player::new(
        std::env::current_exe().context("finding nospy's own executable")?,
        dir.clone(),
        a.json,
    );
    if found.is_none() {
        player.init_log(&w)?;
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
        play::create(&token_file, format!("{text}\n").as_bytes(), true)?;
    }
    std::fs::write(dir.join("serve.toml"), w.serve_config(&addrs, token))?;
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
    let record = match found {
        Some(record) => record,
        None => {
            let cosigned = |size: u64| {
                rt.block_on(server.wait_for(std::time::Duration::from_secs(30), |p| {
                    p.witnessed >= size && p.indexed >= size
                }))
            };
            play::play(&w, &mut player, &url, &cosigned)?
        }
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
