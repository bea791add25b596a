//! A `nospy serve` child process (this very binary) and one-shot HTTP requests to it, for the
//! benchmarks that kill or soak a real server.

use anyhow::{bail, Context as _, Result};
use nospy_log::Sequencer;
use nospy_tlog::note::SignerKey;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A log served by a child: its directory, its key, the one vendor it admits, its
/// `serve.toml`.
pub(crate) struct Served {
    pub(crate) log: PathBuf,
    pub(crate) key: SignerKey,
    pub(crate) vendor: SignerKey,
    pub(crate) config: PathBuf,
}

/// A new log in `work/log` named `origin` (its key file owner-only, remembered for `nospy
/// serve`), and a `serve.toml` admitting one vendor; keys from `seed`.
pub(crate) fn new_log(work: &Path, origin: &str, seed: u8) -> Result<Served> {
    let key = SignerKey::from_seed(origin, [seed; 32])?;
    let vendor = SignerKey::from_seed("vendor.bench.example", [seed.wrapping_add(1); 32])?;
    let log = work.join("log");
    let key_file = work.join("log.key");
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    f.open(&key_file)?
        .write_all(key.to_private_string().as_bytes())?;
    Sequencer::init(&log, origin, &key, Some(key_file))?;
    let config = work.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor.verifier()
        ),
    )?;
    Ok(Served {
        log,
        key,
        vendor,
        config,
    })
}

/// Starts `nospy serve` (this very binary) on a free loopback port.
pub(crate) fn serve(dir: &Path, cfg: &Path) -> Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut child = Command::new(exe)
        .args(["serve", "--dir"])
        .arg(dir)
        .arg("--config")
        .arg(cfg)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting nospy serve")?;
    let (addr, mut err) = listening(&mut child)?;
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    Ok((child, addr))
}

/// Where a `nospy serve` child listens, read from its standard error (the rest of which the
/// caller must go on reading, so that the child never blocks on a full pipe).
pub(crate) fn listening(
    child: &mut Child,
) -> Result<(SocketAddr, BufReader<std::process::ChildStderr>)> {
    let mut err = BufReader::new(child.stderr.take().context("its standard error")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            bail!("nospy serve exited before listening");
        }
        if let Some(a) = line
            .trim()
            .strip_prefix("nospy serve: listening on http://")
        {
            return Ok((a.parse()?, err));
        }
    }
}

/// One request on its own connection: the status and the body, or `None` when the server
/// could not be reached or hung up.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    request_within(addr, method, path, body, Duration::from_secs(30))
}

/// [`request`], giving up (`None`) when an answer takes longer than `timeout`.
pub(crate) fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}
