//! The walk in README.md runs as written, against the binary under test.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::path::Path;
use std::process::Command;

#[test]
fn the_readme_walk_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme.find("\n# walk:begin\n").expect("README has a walk");
    let end = readme.find("\n# walk:end\n").expect("README's walk ends");
    let script = &readme[start..end];
    let bin = Path::new(env!("CARGO_BIN_EXE_nospy")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README walk failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("verified: release.json is entry 0"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: 3 entries"), "{stdout}");
    assert_eq!(stdout.matches("ADMIT").count(), 2, "{stdout}");
    assert!(stdout.contains("revocation not checked"), "{stdout}");
}
