//! A real exporter: `softflowd` (Debian's package; `.ci/run` installs it) reads a published
//! capture and exports NetFlow v5, v9 and IPFIX over UDP on loopback; what nospy's collector
//! decodes must agree with what nospy reads from the capture itself.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_flow::netflow::Collector;
use nospy_flow::source::read_traffic;
use nospy_flow::Flow;
use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const CAPTURE: &str = "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap";

fn capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/net/pcap")
        .join(CAPTURE)
}

/// The export datagrams softflowd sends for the capture, in `version`.
fn export(version: &str) -> Vec<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let t = tempfile::tempdir().unwrap();
    let status = Command::new("softflowd")
        .arg("-d")
        .args(["-r", capture().to_str().unwrap()])
        .args(["-n", &format!("127.0.0.1:{port}")])
        .args(["-v", version])
        // Flow times from the capture, not from the time of the run.
        .arg("-a")
        .args(["-p", t.path().join("pid").to_str().unwrap()])
        // No control socket: with one in a subdirectory, softflowd 1.1.0 waits in accept() after
        // the capture's end instead of exiting.
        .args(["-c", "none"])
        .output()
        .unwrap_or_else(|e| {
            panic!("softflowd could not run ({e}); install it: apt-get install softflowd")
        });
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // softflowd has sent everything before it exits; the datagrams wait in the socket's buffer.
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    assert!(!out.is_empty(), "softflowd sent nothing");
    out
}

type Key = (IpAddr, IpAddr, u16, u16, u8);

/// Packets and bytes per conversation (both directions together), and the first packet's time.
fn conversations(flows: &[Flow]) -> BTreeMap<Key, (u64, u64, u64)> {
    let mut m: BTreeMap<Key, (u64, u64, u64)> = BTreeMap::new();
    for f in flows {
        let k = if (f.src, f.sport) <= (f.dst, f.dport) {
            (f.src, f.dst, f.sport, f.dport, f.proto)
        } else {
            (f.dst, f.src, f.dport, f.sport, f.proto)
        };
        let e = m.entry(k).or_insert((0, 0, u64::MAX));
        e.0 += f.packets;
        e.1 += f.bytes;
        e.2 = e.2.min(f.first_ns);
    }
    m
}

/// How far apart the first packet's time may be: NetFlow v9's header carries whole seconds only
/// (records are relative to the exporter's uptime), the others milliseconds.
fn agrees(version: &str, time_slack_ns: u64) {
    let mut from_capture = Vec::new();
    read_traffic(
        &std::fs::read(capture()).unwrap(),
        &mut from_capture,
        &mut |_, _| {},
    )
    .unwrap();
    let mut c = Collector::new();
    let mut exported = Vec::new();
    for d in export(version) {
        c.read("softflowd", &d, &mut exported).unwrap();
    }
    assert_eq!(c.counters.malformed, 0);
    assert_eq!(c.counters.no_template, 0);
    let (ours, theirs) = (conversations(&from_capture), conversations(&exported));
    // softflowd exports IPv4 TCP, UDP and ICMP flows; everything it exported, nospy found in the
    // capture with the same packets and bytes, starting at the same time (to the format's
    // precision). Bytes: nospy counts each packet's IP length (NetFlow's "layer 3 bytes");
    // softflowd counts what follows the Ethernet header, so a short frame's padding (at most 26
    // bytes: a 60-byte minimum frame around a 20-byte IP packet) is added.
    assert!(theirs.len() > 50, "{} conversations", theirs.len());
    for (k, (packets, bytes, first)) in &theirs {
        let Some((p, b, f)) = ours.get(k) else {
            panic!("v{version}: softflowd exported {k:?}, nospy did not find it in the capture");
        };
        assert_eq!(packets, p, "v{version}: {k:?}");
        assert!(
            bytes >= b && *bytes <= b + 26 * p,
            "v{version}: {k:?}: {bytes} bytes exported, {b} in the capture"
        );
        assert!(
            first.abs_diff(*f) <= time_slack_ns,
            "v{version}: {k:?} starts {first} vs {f}"
        );
    }
    // And nospy found no IPv4 TCP or UDP conversation that softflowd did not export.
    for k in ours.keys() {
        if k.0.is_ipv4() && matches!(k.4, 6 | 17) {
            assert!(
                theirs.contains_key(k),
                "v{version}: softflowd did not export {k:?}"
            );
        }
    }
}

#[test]
fn netflow_v5_from_softflowd_agrees_with_the_capture() {
    agrees("5", 5_000_000);
}

#[test]
fn netflow_v9_from_softflowd_agrees_with_the_capture() {
    agrees("9", 1_000_000_000);
}

#[test]
fn ipfix_from_softflowd_agrees_with_the_capture() {
    agrees("10", 5_000_000);
}
