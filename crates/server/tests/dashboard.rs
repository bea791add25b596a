//! The dashboard: pages for people and the same data as JSON, with a strict
//! Content-Security-Policy, entries decoded and escaped, and each entry's proof to download
//! that verifies offline.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::Sequencer;
use nospy_server::{start, Options};
use nospy_statement::predicate::{Predicate, Revocation};
use nospy_statement::{sign, DigestSet, ResourceDescriptor};
use nospy_testkit::http::{request, request_with, Reply};
use nospy_tlog::checkpoint::TlogProof;
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;
use std::time::Duration;

const ORIGIN: &str = "dashboard.nospy.example/log";
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [1; 32]).unwrap()
}

/// A log of 60 signed revocations, entry i of "firmware {i % 7}" (the last one's reason is
/// markup), and one entry that is not a statement; the entries in order.
fn log(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let mut entries: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let reason = if i == 59 {
                "<script>alert(1)</script>".to_string()
            } else {
                format!("reason {i}")
            };
            sign(
                vec![ResourceDescriptor {
                    name: Some(format!("fw-{i}.bin")),
                    digest: Some(DigestSet::sha256(&Sha256::of(
                        format!("firmware {}", i % 7).as_bytes(),
                    ))),
                    ..Default::default()
                }],
                &Predicate::Revocation(Revocation {
                    reason,
                    effective: "2026-01-01T00:00:00Z".into(),
                }),
                &[&vendor],
            )
            .to_json()
        })
        .collect();
    entries.push(b"not a statement".to_vec());
    Sequencer::init(dir, ORIGIN, &log_key(), None).unwrap();
    let mut seq = Sequencer::open(dir, log_key()).unwrap();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    seq.append(&refs).unwrap();
    entries
}

/// The entry indexes a JSON page lists under `entries`.
fn indexes(v: &serde_json::Value) -> Vec<u64> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// The server's options for the log in `dir`: small queues and batches, a quick index.
fn options(dir: &std::path::Path, config: Option<std::path::PathBuf>, listen: &str) -> Options {
    Options {
        config,
        queue: 16,
        max_batch: 16,
        index_delay: Duration::from_millis(10),
        ..Options::new(
            nospy_server::Storage::Dir(dir.to_path_buf()),
            log_key(),
            listen.parse().unwrap(),
        )
    }
}

fn serve(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> nospy_server::Running {
    rt.block_on(start(options(dir, None, "127.0.0.1:0")))
        .unwrap()
}

fn secured(r: &Reply) {
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("set-cookie"), None);
}

fn json(r: &Reply) -> serde_json::Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn the_status_page_and_its_json_show_the_log() {
    let t = tempfile::tempdir().unwrap();
    log(t.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(t.path(), &rt);
    let r = request(srv.addr, "GET", "/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    secured(&r);
    let html = r.text();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(ORIGIN), "{html}");
    assert!(html.contains("<main id=\"main\">"), "{html}");
    // Growth and submission rates, marked for live updates ("not measured yet" until a second has
    // passed since the server's first reading).
    assert!(html.contains(r#"<span data-live="growth">"#), "{html}");
    assert!(html.contains(r#"<span data-live="submissions">"#), "{html}");
    // No inline script or style, nothing from elsewhere: the one script is the server's own
    // file, and the page is whole without it.
    for tag in html.split("<script").skip(1) {
        assert!(tag.starts_with(" src=\"/assets/live-"), "{html}");
        assert!(
            tag.contains("></script>") && tag.find("></script>") < tag.find('<').map(|i| i + 1),
            "{html}"
        );
    }
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("style="), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // The stylesheet is the server's own, named by its digest, cached for ever.
    let css = html
        .split("href=\"")
        .map(|s| s.split('"').next().unwrap())
        .find(|h| h.starts_with("/assets/style-"))
        .unwrap()
        .to_string();
    let c = request(srv.addr, "GET", &css, b"");
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(c.header("cache-control").unwrap().contains("immutable"));
    secured(&c);
    assert_eq!(
        request(srv.addr, "GET", "/assets/style-000000000000.css", b"").status,
        404
    );

    // The same as JSON, by Accept or by the .json path.
    for r in [
        request_with(srv.addr, "GET", "/", &[("Accept", "application/json")], b""),
        request(srv.addr, "GET", "/status.json", b""),
    ] {
        assert_eq!(r.status, 200);
        secured(&r);
        let v = json(&r);
        assert_eq!(v["origin"], ORIGIN);
        assert_eq!(v["size"], 61);
        assert_eq!(v["cosignatures"], 0);
        assert_eq!(v["witnesses"], 0);
        let recent = v["recent"].as_array().unwrap();
        assert_eq!(recent.len(), 10);
        assert_eq!(recent[0]["index"], 60);
        assert_eq!(recent[0]["kind"], "other");
        assert_eq!(recent[1]["index"], 59);
        assert_eq!(recent[1]["kind"], "revocation");
        assert!(v["checkpoint"].as_str().unwrap().starts_with(ORIGIN));
    }
}

#[test]
fn entries_are_paged_newest_first_and_each_is_decoded_escaped_and_provable() {
    let t = tempfile::tempdir().unwrap();
    let entries = log(t.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(t.path(), &rt);

    let v = json(&request(srv.addr, "GET", "/entries.json", b""));
    let list = v["entries"].as_array().unwrap();
    assert_eq!(list.len(), 50);
    assert_eq!(list[0]["index"], 60);
    assert_eq!(list[49]["index"], 11);
    assert_eq!(v["next"], 11);
    let v = json(&request(srv.addr, "GET", "/entries.json?before=11", b""));
    let list = v["entries"].as_array().unwrap();
    assert_eq!(list.len(), 11);
    assert_eq!(list[10]["index"], 0);
    assert_eq!(v["next"], serde_json::Value::Null);
    let r = request(srv.addr, "GET", "/entries?before=11", b"");
    assert_eq!(r.status, 200);
    secured(&r);
    assert!(r.text().contains("href=\"/entries/10\""), "{}", r.text());
    assert!(!r.text().contains("Older entries"));
    assert!(request(srv.addr, "GET", "/entries", b"")
        .text()
        .contains("href=\"/entries?before=11\""));

    // One entry: decoded, as a page and as JSON.
    let v = json(&request(srv.addr, "GET", "/entries/3.json", b""));
    assert_eq!(v["kind"], "revocation");
    assert_eq!(v["index"], 3);
    assert_eq!(v["subjects"][0]["name"], "fw-3.bin");
    assert_eq!(
        v["subjects"][0]["sha256"],
        Sha256::of(b"firmware 3").to_hex()
    );
    assert_eq!(v["statement"]["predicate"]["reason"], "reason 3");
    assert_eq!(
        v["leaf_hash"],
        nospy_tlog::hash::leaf_hash(&entries[3]).to_hex()
    );
    let page = request(srv.addr, "GET", "/entries/3", b"").text();
    assert!(page.contains("reason 3"), "{page}");
    assert!(page.contains("does not verify it"), "{page}");
    assert!(page.contains(&Sha256::of(b"firmware 3").to_hex()), "{page}");
    // Markup in an entry is text on the page.
    let page = request(srv.addr, "GET", "/entries/59", b"").text();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    let v = json(&request(srv.addr, "GET", "/entries/60.json", b""));
    assert_eq!(v["kind"], "other");
    assert_eq!(v["statement"], serde_json::Value::Null);

    // Its proof verifies offline with the log's key.
    let r = request(srv.addr, "GET", "/entries/3/proof", b"");
    assert_eq!(r.status, 200);
    let p = TlogProof::parse(&r.text()).unwrap();
    assert_eq!(p.index, 3);
    let sc = p.verify(&entries[3], &log_key().verifier()).unwrap();
    assert_eq!(sc.checkpoint.size, 61);
    assert!(p.verify(&entries[4], &log_key().verifier()).is_err());

    // What is not an entry is refused with why, as a page or as JSON.
    for (path, status) in [
        ("/entries/61", 404),
        ("/entries/61.json", 404),
        ("/entries/x", 400),
        ("/entries/-1", 400),
        ("/entries/99999999999999999999999", 400),
        ("/entries/61/proof", 404),
        ("/entries?before=x", 400),
    ] {
        let r = request(srv.addr, "GET", path, b"");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        secured(&r);
    }
    let v = json(&request(srv.addr, "GET", "/entries/61.json", b""));
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("beyond the published tree"));
}

#[test]
fn search_finds_an_artifact_s_entries_and_goes_to_an_index() {
    let t = tempfile::tempdir().unwrap();
    log(t.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(t.path(), &rt);
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 61)));
    let d = Sha256::of(b"firmware 3");
    let about: Vec<u64> = (0..60).filter(|i| i % 7 == 3).collect();
    let q = format!("/search.json?q=sha256:{}", d.to_hex().to_uppercase());
    let v = json(&request(srv.addr, "GET", &q, b""));
    assert_eq!(v["matched"], "artifact");
    assert_eq!(v["covered"], 61);
    let found = indexes(&v);
    assert_eq!(found, about);
    assert_eq!(v["next"], serde_json::Value::Null);
    let r = request(srv.addr, "GET", &format!("/search?q={}", d.to_hex()), b"");
    assert_eq!(r.status, 200);
    secured(&r);
    for i in &about {
        assert!(
            r.text().contains(&format!("href=\"/entries/{i}\"")),
            "{}",
            r.text()
        );
    }
    // An index goes to its entry; as JSON, it is the entry.
    let r = request(srv.addr, "GET", "/search?q=12", b"");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/entries/12"));
    let v = json(&request(srv.addr, "GET", "/search.json?q=12", b""));
    assert_eq!(v["matched"], "index");
    assert_eq!(v["entries"][0]["index"], 12);
    assert_eq!(request(srv.addr, "GET", "/search?q=61", b"").status, 404);
    // A signer's key name (or the whole key) finds what it signed, paged from the index.
    let v = json(&request(
        srv.addr,
        "GET",
        "/search.json?q=Vendor.Example",
        b"",
    ));
    assert_eq!(v["matched"], "term");
    let found = indexes(&v);
    assert_eq!(found, (0..50).collect::<Vec<_>>(), "{v}");
    let next = v["next"].as_u64().unwrap();
    let key = SignerKey::from_seed("vendor.example", [2; 32])
        .unwrap()
        .verifier()
        .to_string();
    let v = json(&request(
        srv.addr,
        "GET",
        &format!(
            "/search.json?q={}&after={next}",
            key.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        ),
        b"",
    ));
    let found = indexes(&v);
    assert_eq!(found, (50..60).collect::<Vec<_>>(), "{v}");
    assert_eq!(v["next"], serde_json::Value::Null);
    // What it cannot search for, it says, with a 400.
    let r = request(srv.addr, "GET", "/search.json?q=a%3Bb", b"");
    assert_eq!(r.status, 400);
    let v = json(&r);
    assert_eq!(v["matched"], "unknown");
    assert!(v["note"]
        .as_str()
        .unwrap()
        .contains("a vendor or a product"));
    let v = json(&request(srv.addr, "GET", "/search.json", b""));
    assert_eq!(v["matched"], "nothing");
    assert_eq!(
        request(srv.addr, "GET", "/search?q=1&after=x", b"").status,
        400
    );
    // Every page carries the search box.
    assert!(request(srv.addr, "GET", "/entries", b"")
        .text()
        .contains("<form role=\"search\" action=\"/search\" method=\"get\">"));
}

#[test]
fn a_release_verdict_is_nospy_verify_s_under_each_configured_agreement() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let other = SignerKey::from_seed("release.othervendor.example", [5; 32]).unwrap();
    let fw = |i: u64| Sha256::of(format!("firmware {i}").as_bytes());
    let revocation = sign(
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&fw(2))),
            ..Default::default()
        }],
        &Predicate::Revocation(Revocation {
            reason: "remote shell found".into(),
            effective: "2026-01-01T00:00:00Z".into(),
        }),
        &[&vendor],
    )
    .to_json();
    let entries = [
        nospy_testkit::fixtures::release_submission(1, &vendor),
        nospy_testkit::fixtures::release_submission(2, &vendor),
        revocation,
    ];
    Sequencer::init(&dir, ORIGIN, &log_key(), None).unwrap();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    Sequencer::open(&dir, log_key())
        .unwrap()
        .append(&refs)
        .unwrap();
    let agreement = |name: &str, key: &SignerKey| {
        format!(
            "name = \"{name}\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n[[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n",
            log_key().verifier(),
            key.verifier()
        )
    };
    std::fs::write(t.path().join("ours.toml"), agreement("ours", &vendor)).unwrap();
    std::fs::write(t.path().join("theirs.toml"), agreement("theirs", &other)).unwrap();
    let cfg = t.path().join("serve.toml");
    std::fs::write(
        &cfg,
        "[dashboard]\nagreements = [\"ours.toml\", \"theirs.toml\"]\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt
        .block_on(start(Options {
            lookup_page: 1,
            ..options(&dir, Some(cfg), "127.0.0.1:0")
        }))
        .unwrap();
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 3)));
    let ours = nospy_policy::Agreement::from_toml(&agreement("ours", &vendor)).unwrap();
    for (i, admit) in [(1, true), (2, false), (9, false)] {
        let v = json(&request(
            srv.addr,
            "GET",
            &format!("/verdict/{}.json", fw(i).to_hex()),
            b"",
        ));
        assert_eq!(v["complete"], true);
        assert_eq!(v["verdicts"][0]["agreement"], "ours");
        assert_eq!(v["verdicts"][0]["admit"], admit, "firmware {i}: {v}");
        // The checks are those `nospy verify` draws from the log itself.
        let ev = nospy_client::LogSource::Dir(dir.clone())
            .evidence_under(&[fw(i)], None, &mut |_, _| {})
            .unwrap()
            .remove(&fw(i))
            .unwrap();
        let want = nospy_policy::verify(&ours, &fw(i), &ev, None, 1_800_000_000);
        let got: Vec<(String, String)> = v["verdicts"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].to_string(), c["outcome"].to_string()))
            .collect();
        let want: Vec<(String, String)> = serde_json::to_value(&want.checks)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].to_string(), c["outcome"].to_string()))
            .collect();
        assert_eq!(got, want, "firmware {i}");
        // Under an agreement with another vendor key, nothing is admitted.
        assert_eq!(v["verdicts"][1]["agreement"], "theirs");
        assert_eq!(v["verdicts"][1]["admit"], false);
    }
    let page = request(
        srv.addr,
        "GET",
        &format!("/verdict/{}", fw(2).to_hex()),
        b"",
    );
    assert_eq!(page.status, 200);
    secured(&page);
    let html = page.text();
    assert!(html.contains("DENY"), "{html}");
    assert!(html.contains("remote shell found"), "{html}");
    assert!(html.contains("this page displays"), "{html}");
    // Entries link their subjects to the verdict.
    let e = request(srv.addr, "GET", "/entries/0", b"").text();
    assert!(
        e.contains(&format!("href=\"/verdict/{}\"", fw(1).to_hex())),
        "{e}"
    );
    assert_eq!(request(srv.addr, "GET", "/verdict/nothex", b"").status, 400);
}

/// Reads server-sent events from `stream` until one of type `status` whose data satisfies
/// `done` (30 s at most: the read timeout fails the test).
fn next_status(
    r: &mut std::io::BufReader<std::net::TcpStream>,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    use std::io::BufRead as _;
    let mut event = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        let line = line.trim_end();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            if event == "status" && done(&v) {
                return v;
            }
        }
    }
}

/// Opens `/events`: the stream after its head, or the head of a refusal.
fn connect_events(
    addr: std::net::SocketAddr,
) -> Result<std::io::BufReader<std::net::TcpStream>, String> {
    use std::io::{BufRead as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head);
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert!(head.contains(CSP), "{head}");
    Ok(r)
}

fn open_events(addr: std::net::SocketAddr) -> std::io::BufReader<std::net::TcpStream> {
    connect_events(addr).unwrap_or_else(|head| panic!("/events refused: {head}"))
}

#[test]
fn the_live_stream_follows_the_log_and_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    Sequencer::init(&dir, ORIGIN, &log_key(), None).unwrap();
    let cfg = t.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor.verifier()
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt
        .block_on(start(options(&dir, Some(cfg), "127.0.0.1:0")))
        .unwrap();
    let mut live = open_events(srv.addr);
    let first = next_status(&mut live, |_| true);
    assert_eq!(first["size"], 0);
    // An entry appended: the stream says so, with the new size.
    for i in 0..3 {
        let r = request(
            srv.addr,
            "POST",
            "/add",
            &nospy_testkit::fixtures::release_submission(i, &vendor),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let v = next_status(&mut live, |v| v["size"] == 3);
    assert_eq!(v["cosignatures"], 0);
    let v = next_status(&mut live, |v| v["indexed"] == 3);
    assert_eq!(v["size"], 3);
    // Bounded: beyond the most streams at once, a clear refusal; the pages still answer.
    let mut more: Vec<_> = (1..nospy_server::MAX_LIVE_STREAMS)
        .map(|_| open_events(srv.addr))
        .collect();
    let r = request(srv.addr, "GET", "/events", b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("live streams"), "{}", r.text());
    assert_eq!(request(srv.addr, "GET", "/", b"").status, 200);
    // One closed frees its place.
    drop(more.pop());
    drop(live);
    let mut again = None;
    for _ in 0..100 {
        let r = request(srv.addr, "GET", "/status.json", b"");
        assert_eq!(r.status, 200);
        if let Some(s) = try_events(srv.addr) {
            again = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut again = again.expect("a place freed by a closed stream");
    assert_eq!(next_status(&mut again, |_| true)["size"], 3);
    // Stopping the server ends every stream.
    rt.block_on(srv.shutdown()).unwrap();
    use std::io::Read as _;
    let mut rest = Vec::new();
    let _ = again.read_to_end(&mut rest);
    for mut s in more {
        let _ = s.read_to_end(&mut rest);
    }
}

/// A live stream, if the server takes one now.
fn try_events(addr: std::net::SocketAddr) -> Option<std::io::BufReader<std::net::TcpStream>> {
    match connect_events(addr) {
        Ok(r) => Some(r),
        Err(head) if head.starts_with("HTTP/1.1 503") => None,
        Err(head) => panic!("/events: {head}"),
    }
}

/// The operator's world for the operator pages: releases 1.1 (fw 1), 1.2 (fw 2, revoked) and
/// 1.3 (fw 3) of vx-1, and a monitor's evidence about fw 1.
fn operator_log(dir: &std::path::Path) {
    use nospy_statement::predicate::{Evidence, FlowViolation, Window};
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let monitor = SignerKey::from_seed("monitor.operator.example", [6; 32]).unwrap();
    let fw = |i: u64| Sha256::of(format!("firmware {i}").as_bytes());
    let about = |i: u64| {
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&fw(i))),
            ..Default::default()
        }]
    };
    let revocation = sign(
        about(2),
        &Predicate::Revocation(Revocation {
            reason: "remote shell found".into(),
            effective: "2026-01-01T00:00:00Z".into(),
        }),
        &[&vendor],
    )
    .to_json();
    let evidence = sign(
        about(1),
        &Predicate::Evidence(Evidence {
            device: "ran-2".into(),
            window: Window {
                start: "2026-12-01T10:00:00Z".into(),
                end: "2026-12-01T10:20:00Z".into(),
            },
            flows: vec![FlowViolation {
                direction: "from-device".into(),
                peer: "203.0.113.66".into(),
                protocol: "tcp".into(),
                port: 8443,
                flows: 4,
                packets: 28,
                bytes: 2620,
                first_seen: "2026-12-01T10:02:00Z".into(),
                last_seen: "2026-12-01T10:17:00Z".into(),
                why: None,
                names: None,
                names_left_out: 0,
                same_vendor: false,
                opened_by: None,
            }],
            manifest: Some("entry 0".into()),
            source: DigestSet::sha256(&Sha256::of(b"capture")),
            release: None,
            resolutions: None,
            device_addresses: vec![],
        }),
        &[&monitor],
    )
    .to_json();
    let entries = [
        nospy_testkit::fixtures::release_submission(1, &vendor),
        nospy_testkit::fixtures::release_submission(2, &vendor),
        nospy_testkit::fixtures::release_submission(3, &vendor),
        revocation,
        evidence,
    ];
    Sequencer::init(dir, ORIGIN, &log_key(), None).unwrap();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    Sequencer::open(dir, log_key())
        .unwrap()
        .append(&refs)
        .unwrap();
}

/// serve.toml with the operator pages (an agreement trusting the vendor, an inventory, the
/// exposure policy, the token file if `token`) in `dir`; its path.
fn operator_config(dir: &std::path::Path, token: bool) -> std::path::PathBuf {
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let fw = |i: u64| Sha256::of(format!("firmware {i}").as_bytes()).to_hex();
    std::fs::write(
        dir.join("agreement.toml"),
        format!(
            "name = \"ours\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n[[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n",
            log_key().verifier(),
            vendor.verifier()
        ),
    )
    .unwrap();
    let head = "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n";
    let rows = [
        format!(
            "ran-1,VendorX,vx-1,access,5g,north,false,10.1.0.1,{},1,100",
            fw(3)
        ),
        format!(
            "ran-2,VendorX,vx-1,access,5g,south,true,10.1.0.2,{},1,100",
            fw(1)
        ),
        format!(
            "ran-3,VendorX,vx-1,access,5g,south,true,10.1.0.3,{},1,100",
            fw(2)
        ),
        format!(
            "ran-4,VendorX,vx-1,access,5g,north,false,10.1.0.4,{},1,100",
            fw(9)
        ),
        "ran-5,VendorY,vy-2,access,5g,north,false,10.1.0.5,,1,100".to_string(),
    ];
    std::fs::write(
        dir.join("inventory.csv"),
        format!("{head}{}\n", rows.join("\n")),
    )
    .unwrap();
    std::fs::write(
        dir.join("exposure.toml"),
        "[[rule]]\nname = \"At most 35% of the access network\"\nvendor = \"VendorX\"\nscope = { functions = [\"access\"] }\nmax_share = 0.35\nmeasure = \"weight\"\neffective = \"2023-10-31\"\n",
    )
    .unwrap();
    let mut cfg = format!(
        "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n[dashboard]\nagreements = [\"agreement.toml\"]\ninventory = \"inventory.csv\"\nexposure = \"exposure.toml\"\n",
        vendor.verifier()
    );
    if token {
        std::fs::write(dir.join("token"), "s3cret-token-of-the-operator\n").unwrap();
        cfg.push_str("token_file = \"token\"\n");
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn the_operator_pages_show_the_fleet_its_violations_and_exposure_to_the_token_holder() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    operator_log(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Beyond loopback, without a token, the server will not show an operator's inventory.
    let cfg = operator_config(t.path(), false);
    let err = rt
        .block_on(start(options(&dir, Some(cfg.clone()), "0.0.0.0:0")))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("token_file"), "{err}");
    let cfg = operator_config(t.path(), true);
    let srv = rt
        .block_on(start(options(&dir, Some(cfg), "127.0.0.1:0")))
        .unwrap();
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 5)));
    let auth = [("Authorization", "Bearer s3cret-token-of-the-operator")];
    for path in ["/fleet", "/violations.json", "/exposure"] {
        let r = request(srv.addr, "GET", path, b"");
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        secured(&r);
        let wrong = [("Authorization", "Bearer s3cret-token-of-the-operatoR")];
        assert_eq!(request_with(srv.addr, "GET", path, &wrong, b"").status, 401);
    }
    // The fleet: by standing, site and vendor; the failing devices listed.
    let f = json(&request_with(srv.addr, "GET", "/fleet.json", &auth, b""));
    assert_eq!(f["agreement"], "ours");
    assert_eq!(f["complete"], true);
    let s = &f["summary"];
    assert_eq!(
        (
            s["devices"].as_u64(),
            s["admitted"].as_u64(),
            s["revoked"].as_u64()
        ),
        (Some(5), Some(2), Some(1)),
        "{f}"
    );
    assert_eq!(
        (
            s["unlogged"].as_u64(),
            s["unknown"].as_u64(),
            s["superseded"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{f}: ran-2 on 1.1 and the revoked 1.2 of ran-3 are both older than 1.3"
    );
    assert_eq!(f["sites"][1][0], "south");
    assert_eq!(f["sites"][1][1], true);
    assert_eq!(f["sites"][1][2]["revoked"], 1);
    assert_eq!(f["vendors"][1][0], "VendorY");
    assert_eq!(f["vendors"][1][1]["unknown"], 1);
    let failing: Vec<(&str, &str)> = f["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap(),
                d["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failing,
        [
            ("ran-2", "admitted"),
            ("ran-3", "revoked"),
            ("ran-4", "unlogged")
        ]
    );
    assert_eq!(f["failing"][0]["superseded_by"][0], "1.3");
    let page = request_with(srv.addr, "GET", "/fleet", &auth, b"");
    secured(&page);
    let html = page.text();
    assert!(html.contains("remote shell found"), "{html}");
    assert!(
        html.contains(r#"href="/fleet""#),
        "the navigation names the operator pages"
    );
    // A vendor or a product finds its releases.
    for q in ["VendorX", "vx-1"] {
        let v = json(&request(
            srv.addr,
            "GET",
            &format!("/search.json?q={q}"),
            b"",
        ));
        let found = indexes(&v);
        assert_eq!(found, [0, 1, 2], "{q}: {v}");
    }
    // The violations: the evidence entry about ran-2's firmware, with its flows.
    let v = json(&request_with(
        srv.addr,
        "GET",
        "/violations.json",
        &auth,
        b"",
    ));
    let e = &v["evidence"].as_array().unwrap()[..];
    assert_eq!(e.len(), 1, "{v}");
    assert_eq!(e[0]["index"], 4);
    assert_eq!(e[0]["device"], "ran-2");
    assert_eq!(e[0]["site"], "south");
    assert_eq!(e[0]["signers"][0], "monitor.operator.example");
    assert_eq!(e[0]["flows"][0]["peer"], "203.0.113.66");
    let html = request_with(srv.addr, "GET", "/violations", &auth, b"").text();
    assert!(html.contains(r#"href="/entries/4""#), "{html}");
    // Exposure: four of five access devices are VendorX's, over the 35% cap; the chart named,
    // its figures in a table.
    let x = json(&request_with(srv.addr, "GET", "/exposure.json", &auth, b""));
    assert_eq!(x["rules"][0]["in_force"], true);
    assert_eq!(x["rules"][0]["compliant"], false);
    assert!((x["rules"][0]["share"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    let page = request_with(srv.addr, "GET", "/exposure", &auth, b"");
    secured(&page);
    let html = page.text();
    assert!(
        html.contains(r#"role="img" aria-labelledby="shares-0-title""#),
        "{html}"
    );
    assert!(
        html.contains(r#"<table class="data"><caption>Each vendor's share"#),
        "{html}"
    );
    assert!(!html.contains("style="), "no inline style under the CSP");
    // The vendor revokes 1.3: the fleet is judged again as the log grows (the page answers
    // from the last judgement meanwhile, and says so).
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let revocation = sign(
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&Sha256::of(b"firmware 3"))),
            ..Default::default()
        }],
        &Predicate::Revocation(Revocation {
            reason: "a beacon".into(),
            effective: "2026-01-01T00:00:00Z".into(),
        }),
        &[&vendor],
    )
    .to_json();
    assert_eq!(request(srv.addr, "POST", "/add", &revocation).status, 200);
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 6)));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let f = loop {
        let f = json(&request_with(srv.addr, "GET", "/fleet.json", &auth, b""));
        if f["size"] == 6 {
            break f;
        }
        assert_eq!(f["published"], 6, "{f}");
        assert!(
            std::time::Instant::now() < deadline,
            "not judged again: {f}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(f["summary"]["revoked"], 2, "{f}");
    rt.block_on(srv.shutdown()).unwrap();
}

#[test]
fn without_an_inventory_there_are_no_operator_pages() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    log(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(&dir, &rt);
    for path in ["/fleet", "/violations", "/exposure.json"] {
        let r = request(srv.addr, "GET", path, b"");
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("no inventory"), "{}", r.text());
    }
    assert!(!request(srv.addr, "GET", "/", b"")
        .text()
        .contains(r#"href="/fleet""#));
    // A token or exposure policy without an inventory is a configuration error.
    assert!(
        nospy_server::config::ServeConfig::from_toml("[dashboard]\ntoken_file = \"t\"\n").is_err()
    );
}

#[test]
fn hostile_paths_and_queries_get_a_4xx_page_never_a_panic_or_reflected_markup() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    operator_log(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = operator_config(t.path(), false);
    let srv = rt
        .block_on(start(options(&dir, Some(cfg), "127.0.0.1:0")))
        .unwrap();
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 5)));
    let long = "a".repeat(20_000);
    let hostile = [
        "/entries?before=abc".to_string(),
        "/entries?before=-1".into(),
        "/entries?before=99999999999999999999999".into(),
        "/entries/abc".into(),
        "/entries/-1".into(),
        "/entries/1e9".into(),
        "/entries/18446744073709551616".into(),
        "/entries/5".into(),
        "/entries/%00".into(),
        "/entries/4/proof.json".into(),
        "/entries/%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(),
        "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(),
        "/search?q=%ff%fe".into(),
        format!("/search?q={long}"),
        "/search?q=5".into(),
        "/search?q=1&after=%3Cb%3E".into(),
        "/verdict/%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(),
        format!("/verdict/{}", "f".repeat(63)),
        "/fleet?from=%3Cb%3E".into(),
        "/fleet?from=-5".into(),
        "/assets/..%2F..%2Fetc%2Fpasswd".into(),
        "/assets/style-%3Cb%3E.css".into(),
        "/nothing/here".into(),
    ];
    for path in &hostile {
        for accept in ["text/html", "application/json"] {
            let r = request_with(srv.addr, "GET", path, &[("Accept", accept)], b"");
            assert!(
                (400..500).contains(&r.status),
                "{path} ({accept}): {} {}",
                r.status,
                r.text()
            );
            let body = r.text();
            if accept == "text/html" {
                assert!(!body.contains("<script>alert"), "{path}: {body}");
                assert!(!body.contains("<b>"), "{path}: {body}");
            } else {
                // JSON is data (served as such, with nosniff).
                assert!(json(&r).is_object(), "{path}: {body}");
            }
            assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        }
    }
    // And the server serves on.
    assert_eq!(request(srv.addr, "GET", "/", b"").status, 200);
    rt.block_on(srv.shutdown()).unwrap();
}

#[test]
fn markup_in_every_field_of_a_logged_statement_is_shown_escaped() {
    use nospy_statement::predicate::{Evidence, FlowViolation, Release, Source, Window};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let x = |f: &str| format!("<script>alert('{f}')</script><img src=x onerror=alert(1)>");
    let vendor = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let manifest = nospy_manifest::Manifest::from_toml(&format!(
        "[device]\nvendor = \"{}\"\nmodel = \"{}\"\n[capabilities]\nvendor_remote_access = \"none\"\n",
        x("manifest vendor").replace('"', "\\\""),
        x("model").replace('"', "\\\"")
    ))
    .unwrap();
    let fw = Sha256::of(b"firmware with markup");
    let subject = vec![ResourceDescriptor {
        name: Some(x("subject name")),
        digest: Some(DigestSet::sha256(&fw)),
        ..Default::default()
    }];
    let release = sign(
        subject.clone(),
        &Predicate::Release(Box::new(Release {
            vendor: x("vendor"),
            product: x("product"),
            version: x("version"),
            source: Source {
                repository: Some(x("repository")),
                commit: x("commit"),
                toolchain: Some(x("toolchain")),
            },
            sbom: None,
            build_recipe: None,
            supersedes: vec![x("supersedes")],
            manifest,
        })),
        &[&vendor],
    )
    .to_json();
    let evidence = sign(
        subject,
        &Predicate::Evidence(Evidence {
            device: x("device"),
            window: Window {
                start: "2026-12-01T10:00:00Z".into(),
                end: "2026-12-01T10:20:00Z".into(),
            },
            flows: vec![FlowViolation {
                direction: x("direction"),
                peer: x("peer"),
                protocol: x("protocol"),
                port: 1,
                flows: 1,
                packets: 1,
                bytes: 1,
                first_seen: "2026-12-01T10:02:00Z".into(),
                last_seen: "2026-12-01T10:17:00Z".into(),
                why: None,
                names: None,
                names_left_out: 0,
                same_vendor: false,
                opened_by: None,
            }],
            manifest: Some(x("manifest")),
            source: DigestSet::sha256(&Sha256::of(b"capture")),
            release: None,
            resolutions: None,
            device_addresses: vec![],
        }),
        &[&vendor],
    )
    .to_json();
    Sequencer::init(&dir, ORIGIN, &log_key(), None).unwrap();
    Sequencer::open(&dir, log_key())
        .unwrap()
        .append(&[&release, &evidence])
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(&dir, &rt);
    assert!(rt.block_on(srv.wait_for(Duration::from_secs(30), |p| p.indexed >= 2)));
    for path in [
        "/".to_string(),
        "/entries".into(),
        "/entries/0".into(),
        "/entries/1".into(),
        format!("/search?q={}", fw.to_hex()),
        format!("/verdict/{}", fw.to_hex()),
    ] {
        let r = request(srv.addr, "GET", &path, b"");
        assert_eq!(r.status, 200, "{path}");
        let html = r.text();
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img"), "{path}: {html}");
        // (With no agreement configured the verdict page shows no field of the statement.)
        assert!(
            path.starts_with("/verdict") || html.contains("&lt;script&gt;alert("),
            "{path}: shown, escaped: {html}"
        );
    }
    rt.block_on(srv.shutdown()).unwrap();
}
