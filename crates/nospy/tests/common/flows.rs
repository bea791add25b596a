//! The MUDscope plugs' manifests, inventory and operator configuration, and what softflowd
//! exports for their captures: the monitor's fixtures, for the single-process monitor and the
//! one through NATS alike.

use super::*;
use std::path::{Path, PathBuf};

pub fn net(rel: &str) -> PathBuf {
    vectors().join("net").join(rel)
}

/// The two plugs' manifests (imported from their MUD profiles), an inventory naming both, and
/// the operator configuration giving the labs' gateways, in `t`.
pub fn setup(t: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for lab in ["tue", "ut"] {
        let m = t.join(format!("{lab}.toml"));
        ok(&[
            "manifest",
            "import-mud",
            s(&net(&format!("mud/mudscope_{lab}-tplink-plugMud.json"))),
            "--out",
            s(&m),
        ]);
        args.extend(["--manifest".to_string(), s(&m).to_string()]);
    }
    let inv = t.join("inventory.csv");
    std::fs::write(
        &inv,
        "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
         tue-plug,tue-tplink-plug.com,tue-tplink-plug,other,wifi,tue-lab,false,192.168.10.206,,1,30\n\
         ut-plug,ut-tplink-plug.com,ut-tplink-plug,other,wifi,ut-lab,false,192.168.32.2,,1,30\n",
    )
    .unwrap();
    let op = t.join("operator.toml");
    std::fs::write(
        &op,
        "[controllers]\n\"urn:ietf:params:mud:gateway\" = [\"192.168.10.1\", \"192.168.32.1\"]\n",
    )
    .unwrap();
    args.extend([
        "--inventory".to_string(),
        s(&inv).to_string(),
        "--operator".to_string(),
        s(&op).to_string(),
    ]);
    args
}

/// `softflowd` reads a capture and exports its flows (`version` 5, 9 or 10) to UDP `port` on
/// loopback.
pub fn softflowd_send(t: &Path, capture: &str, version: &str, port: u16) {
    let r = std::process::Command::new("softflowd")
        .args(["-d", "-a", "-c", "none", "-v", version])
        .args(["-r", s(&net(&format!("pcap/{capture}")))])
        .args(["-n", &format!("127.0.0.1:{port}")])
        .args(["-p", s(&t.join("softflowd.pid"))])
        .output()
        .expect("softflowd (apt-get install softflowd)");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// What `softflowd` exports for a capture (`version` 5, 9 or 10), as a pcap of the UDP datagrams
/// it sent to a collector on loopback (raw IPv4, the way a capture at the collector has them).
pub fn softflowd_exports(t: &Path, capture: &str, version: &str) -> PathBuf {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    softflowd_send(t, capture, version, port);
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    // Classic pcap, little-endian: magic, version 2.4, zone, accuracy, snap length, raw IPv4.
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&[2, 0, 4, 0]);
    for v in [0u32, 0, 65_535, 228] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    let mut buf = vec![0u8; 65_536];
    let mut n = 0;
    while let Ok(len) = sock.recv(&mut buf) {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&((28 + len) as u16).to_be_bytes());
        ip.extend_from_slice(&9995u16.to_be_bytes());
        ip.extend_from_slice(&port.to_be_bytes());
        ip.extend_from_slice(&((8 + len) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&buf[..len]);
        for v in [1_700_000_000 + n, 0, ip.len() as u32, ip.len() as u32] {
            pcap.extend_from_slice(&v.to_le_bytes());
        }
        pcap.extend_from_slice(&ip);
        n += 1;
    }
    assert!(n > 0, "softflowd sent nothing");
    let out = t.join(format!("exports-v{version}.pcap"));
    std::fs::write(&out, pcap).unwrap();
    out
}

/// A running `nospy monitor --listen` (or `nospy collect --listen`): the child, the UDP port it collects on, and the rest of
/// its standard error (read to the end on another thread).
pub struct Live {
    pub child: std::process::Child,
    pub port: u16,
    pub stderr: std::thread::JoinHandle<String>,
}

pub fn start_live(args: &[String]) -> Live {
    use std::io::{BufRead, BufReader, Read};
    let mut child = nospy()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut before = String::new();
    let port = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "nospy monitor exited before listening: {before}"
        );
        before.push_str(&line);
        if let Some(a) = line
            .trim()
            .split_once(": collecting on udp:")
            .map(|(_, a)| a)
        {
            break a.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let stderr = std::thread::spawn(move || {
        let mut rest = before;
        let _ = err.read_to_string(&mut rest);
        rest
    });
    Live {
        child,
        port,
        stderr,
    }
}

impl Live {
    /// Stops it with SIGTERM (what arrived before is still read) and returns its exit code, its
    /// JSON report and its standard error.
    pub fn stop(self) -> (i32, serde_json::Value, String) {
        let k = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(k.success());
        let out = self.child.wait_with_output().unwrap();
        let err = self.stderr.join().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), v, err)
    }
}
