//! Helpers for driving the real `nospy` binary.
#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

pub mod flows;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn nospy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nospy"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw: Vec<u8>,
}

pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

pub fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut c = nospy();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("spawn nospy");
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        raw: stdout,
    }
}

/// Waits for `child` (its stdout and stderr piped) at most `limit`; past it, kills it and
/// fails the test with what it printed (a guard against a hang, not a measurement).
pub fn wait_bounded(mut child: std::process::Child, limit: std::time::Duration, what: &str) -> Run {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {}s:\n{}\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        raw: stdout,
    }
}

/// Runs with a bound on its time (see [`wait_bounded`]) and requires exit status 0.
pub fn ok_within(args: &[&str], limit: std::time::Duration) -> Run {
    let child = nospy()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nospy");
    let r = wait_bounded(child, limit, &format!("nospy {args:?}"));
    assert_eq!(
        r.code, 0,
        "nospy {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Runs and requires exit status 0.
pub fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(
        r.code, 0,
        "nospy {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Generates a signing key named `name` into `file`; returns its verifier key.
pub fn new_key(file: &Path, name: &str) -> String {
    ok(&["key", "generate", "--name", name, "--out", s(file)])
        .stdout
        .trim()
        .to_string()
}

/// Creates a key and an empty log in `dir`; returns (log dir, key file, verifier key).
pub fn new_log(dir: &Path, origin: &str) -> (PathBuf, PathBuf, String) {
    let key = dir.join("log.key");
    let vkey = new_key(&key, origin);
    let log = dir.join("log");
    ok(&["log", "init", s(&log), "--origin", origin, "--key", s(&key)]);
    (log, key, vkey)
}

/// Every file under `dir`, as relative paths with their contents, sorted.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Starts `nospy serve` on a free loopback port; returns the child and its URL
/// (`http://127.0.0.1:N`), read from what it prints.
pub fn serve(dir: &Path, config: &Path) -> (std::process::Child, String) {
    serve_with(dir, config, &[])
}

/// [`serve`] with more arguments.
pub fn serve_with(dir: &Path, config: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = nospy()
        .args([
            "serve",
            "--dir",
            s(dir),
            "--config",
            s(config),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = said_after(&mut child, "nospy serve: listening on ");
    (child, url)
}

/// Reads `child`'s standard error (piped) until a line starting with `prefix`; returns the rest
/// of that line, and keeps draining the pipe so that the child never blocks on it.
pub fn said_after(child: &mut std::process::Child, prefix: &str) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let rest = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "exited before saying {prefix:?}"
        );
        if let Some(a) = line.trim().strip_prefix(prefix) {
            break a.to_string();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    rest
}

/// Writes `dir/serve.toml` admitting one vendor (its verifier key) as the only submitter.
pub fn serve_config(dir: &Path, vendor_vkey: &str) -> PathBuf {
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor_vkey.trim()
        ),
    )
    .unwrap();
    cfg
}

/// Loads `html` in headless Chromium and returns its DOM after load and its standard error.
pub fn chromium_dom(html: &Path, profile: &Path) -> (String, String) {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (apt-get install chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The entry of a JSON report's `devices` list with this `device` id.
pub fn device<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == id)
        .unwrap()
}

/// Reads `nospy demo`'s standard error until it says where it serves; keeps draining it after.
pub fn served_at(child: &mut std::process::Child) -> std::net::SocketAddr {
    let said = said_after(child, "nospy demo: serving on http://");
    said.split(';').next().unwrap().parse().unwrap()
}
