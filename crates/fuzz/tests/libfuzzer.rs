//! The libFuzzer builds of the targets (`fuzz/` at the top of the repository) compile on this
//! toolchain, and each runs, coverage-guided, over its seeds and a few thousand inputs of its
//! own without finding a crash. (Longer runs: `cargo fuzz run <target> -s none`, or the
//! binaries this test leaves in `target/fuzz`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failing test

use std::path::Path;
use std::process::Command;

/// The coverage instrumentation cargo-fuzz asks of rustc when no sanitizer is wanted.
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";

#[test]
fn the_libfuzzer_targets_build_and_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let vv = Command::new(&rustc).arg("-vV").output().unwrap();
    let host = String::from_utf8(vv.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let target_dir = root.join("target/fuzz");
    // An explicit --target keeps the instrumentation off build scripts and proc macros.
    let out = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--target", &host])
        .arg("--manifest-path")
        .arg(root.join("fuzz/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building fuzz/ failed (libfuzzer-sys needs a C++ compiler):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join(&host).join("release");
    for (name, _) in nospy_fuzz::TARGETS {
        let seeds = root.join("crates/fuzz/seeds").join(name);
        let corpus = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin.join(name));
        cmd.args([
            "-runs=3000",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-seed=1",
        ])
        .arg(corpus.path());
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        // Published inputs, read in place, where a target takes whole files of them.
        let vectors = root.join("../shared/vectors");
        let published = match *name {
            "traffic" => Some("net/pcap"),
            "mud" => Some("net/mud"),
            "envelope" => Some("attest/in-toto"),
            "checkpoint" => Some("tlog/tessera-testdata-log/testdata/log"),
            _ => None,
        };
        if let Some(p) = published {
            cmd.arg(vectors.join(p));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "fuzz target {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
