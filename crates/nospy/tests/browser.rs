//! The dashboard in a real browser (headless Chromium driven through chromedriver), on the
//! demo world as `nospy demo` serves it: every page without a console error (a CSP violation
//! is one), with its landmarks and named charts; the keyboard reaches the content; the status
//! figures follow the log live while an entry is added; and with JavaScript off the pages are
//! whole and the search form works.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use common::*;
use nospy_testkit::webdriver::{Driver, Session, ENTER, TAB};
use serde_json::{json, Value};
use std::time::Duration;

/// The browser console's errors (CSP violations, failed loads, script errors).
fn errors(b: &Session) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect()
}

const LANDMARKS: &str = "return ['header', 'nav', 'main', 'footer', 'form[role=search]']
    .map(function (s) { return document.querySelectorAll(s).length; });";

/// Charts (SVG with role img) without an accessible name from their title.
const UNNAMED_CHARTS: &str = "return Array.from(document.querySelectorAll('svg[role=img]'))
    .filter(function (s) {
        var id = s.getAttribute('aria-labelledby');
        var t = id && document.getElementById(id);
        return !t || !t.textContent.trim();
    }).length;";

#[test]
fn the_dashboard_works_in_a_real_browser_with_and_without_javascript() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("world");
    let mut demo = nospy()
        .args(["demo", s(&dir), "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = served_at(&mut demo);
    let base = format!("http://{addr}");
    let world: Value =
        serde_json::from_slice(&std::fs::read(dir.join("world.json")).unwrap()).unwrap();
    let evidence = world["evidence"][0].as_u64().unwrap();
    let revoked = nospy_demo::World::new(1).releases[2].digest.to_hex();
    let driver = Driver::start();

    // JavaScript on: every page loads without a console error, with its landmarks.
    let b = driver.session(&t.path().join("profile-js"), true);
    let pages = [
        "/".to_string(),
        "/entries".into(),
        "/entries/0".into(),
        format!("/entries/{evidence}"),
        "/witnesses".into(),
        format!("/verdict/{revoked}"),
        format!("/search?q={revoked}"),
        "/fleet".into(),
        "/violations".into(),
        "/exposure".into(),
    ];
    for p in &pages {
        b.goto(&format!("{base}{p}"));
        assert_eq!(errors(&b), Vec::<String>::new(), "{p}");
        assert_eq!(b.eval(LANDMARKS, json!([])), json!([1, 1, 1, 1, 1]), "{p}");
        assert_eq!(b.eval(UNNAMED_CHARTS, json!([])), json!(0), "{p}");
    }
    // Every chart is laid out and every bar drawn.
    let laid_out = b.eval(
        "var svgs = Array.from(document.querySelectorAll('svg[role=img]'));
         var bars = Array.from(document.querySelectorAll('svg rect.bar'));
         var size = function (e) { var r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
         return [svgs.length, svgs.filter(size).length, bars.length, bars.filter(size).length];",
        json!([]),
    );
    let n: Vec<u64> = serde_json::from_value(laid_out.clone()).unwrap();
    assert!(
        n[0] >= 8 && n[2] >= n[0] / 2,
        "the exposure page draws its charts: {laid_out}"
    );
    assert_eq!(
        (n[1], n[3]),
        (n[0], n[2]),
        "charts and bars of no size: {laid_out}"
    );

    // The links between pages work (each answered 200 by the server).
    let mut links = std::collections::BTreeSet::new();
    for p in &pages {
        b.goto(&format!("{base}{p}"));
        let found = b.eval(
            "return Array.from(document.querySelectorAll('a[href^=\"/\"]')).map(function (a) { return a.getAttribute('href'); });",
            json!([]),
        );
        for l in found.as_array().unwrap() {
            links.insert(l.as_str().unwrap().split('#').next().unwrap().to_string());
        }
    }
    assert!(links.len() > 20, "{links:?}");
    for l in &links {
        let r = nospy_testkit::http::request(addr, "GET", l, b"");
        assert_eq!(r.status, 200, "the link {l}");
    }

    // The keyboard reaches the search box and every link of the status, entries, violations
    // and exposure pages.
    for p in ["/", "/entries", "/violations", "/exposure"] {
        b.goto(&format!("{base}{p}"));
        let focusable = b
            .eval(
                "return document.querySelectorAll('a[href], input, button, summary').length;",
                json!([]),
            )
            .as_u64()
            .unwrap();
        let mut reached = std::collections::BTreeSet::new();
        for _ in 0..focusable + 2 {
            b.keys(TAB);
            let who = b.eval(
                "var e = document.activeElement; return e.id || e.getAttribute('href') || e.tagName + ' ' + e.textContent;",
                json!([]),
            );
            reached.insert(who.as_str().unwrap().to_string());
        }
        let all: std::collections::BTreeSet<String> = serde_json::from_value(b.eval(
            "return Array.from(document.querySelectorAll('a[href], input, button, summary')).map(function (e) { return e.id || e.getAttribute('href') || e.tagName + ' ' + e.textContent; });",
            json!([]),
        ))
        .unwrap();
        assert!(reached.contains("q"), "{p}: the search box: {reached:?}");
        let missed: Vec<_> = all.difference(&reached).collect();
        assert!(missed.is_empty(), "{p}: not reached by Tab: {missed:?}");
    }

    // The keyboard: the first Tab reaches the skip link, Enter goes to the content.
    b.goto(&format!("{base}/"));
    b.keys(TAB);
    assert_eq!(
        b.eval("return document.activeElement.textContent;", json!([])),
        json!("Skip to the content")
    );
    b.keys(ENTER);
    assert!(b.url().ends_with("/#main"), "{}", b.url());

    // Live: the status page follows the log while an entry is added through the server.
    assert!(
        b.wait_until(
            "return Number(document.documentElement.getAttribute('data-live-updates')) >= 1;",
            Duration::from_secs(30)
        ),
        "the page's script received no event"
    );
    let before: u64 = b
        .eval(
            "return document.querySelector('[data-live=size]').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hotfix = dir.join("firmware/vx-ran-5000-4.2.2-hotfix.bin");
    let statement = t.path().join("hotfix.json");
    ok(&[
        "release",
        "sign",
        "--key",
        s(&dir.join("keys/vendor.key")),
        "--artifact",
        s(&hotfix),
        "--product",
        "vx-ran-5000",
        "--version",
        "4.2.2",
        "--source-commit",
        "0123456789ab",
        "--manifest",
        s(&dir.join("manifests/vx-ran-5000-4.2.1.toml")),
        "--out",
        s(&statement),
    ]);
    ok(&["log", "add", "--server", &base, s(&statement)]);
    let want = format!(
        "return document.querySelector('[data-live=size]').textContent === '{}';",
        before + 1
    );
    assert!(
        b.wait_until(&want, Duration::from_secs(30)),
        "the page did not follow the log to {}",
        before + 1
    );
    assert_eq!(errors(&b), Vec::<String>::new());
    drop(b);

    // JavaScript off: the pages are whole, and the search form works by the keyboard alone.
    let b = driver.session(&t.path().join("profile-nojs"), false);
    b.goto(&format!("{base}/"));
    assert_eq!(
        b.eval(
            "return document.documentElement.getAttribute('data-live-updates');",
            json!([])
        ),
        Value::Null,
        "the page's script did not run"
    );
    let size = b.eval(
        "return document.querySelector('[data-live=size]').textContent;",
        json!([]),
    );
    assert_eq!(size, json!((before + 1).to_string()));
    b.eval("document.getElementById('q').focus();", json!([]));
    b.keys(&format!("{revoked}{ENTER}"));
    assert!(
        b.wait_until(
            "return location.pathname === '/search';",
            Duration::from_secs(30)
        ),
        "{}",
        b.url()
    );
    let listed = b.eval(
        "return document.querySelectorAll('main a[href^=\"/entries/\"]').length;",
        json!([]),
    );
    assert!(
        listed.as_u64().unwrap() >= 3,
        "the release, its attestation and revocation: {listed}"
    );
    b.goto(&format!("{base}/fleet"));
    let text = b.eval(
        "return document.querySelector('main').textContent;",
        json!([]),
    );
    assert!(text.as_str().unwrap().contains("ran-000007"), "{text}");
    assert_eq!(errors(&b), Vec::<String>::new());
    drop(b);

    // An empty log: the pages load, without a console error.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (log, _, vkey) = new_log(&empty, "empty.nospy.example/log");
    let cfg = serve_config(&empty, &vkey);
    let (mut server, url) = serve(&log, &cfg);
    let b = driver.session(&t.path().join("profile-empty"), true);
    let nothing = format!("/search?q={}", "0".repeat(64));
    for p in ["/", "/entries", "/witnesses", &nothing] {
        b.goto(&format!("{url}{p}"));
        assert_eq!(errors(&b), Vec::<String>::new(), "{p}");
        assert_eq!(b.eval(LANDMARKS, json!([])), json!([1, 1, 1, 1, 1]), "{p}");
    }
    drop(b);
    let _ = server.kill();
    let _ = server.wait();

    let pid = demo.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let r = wait_bounded(demo, Duration::from_secs(60), "nospy demo after SIGTERM");
    assert_eq!(r.code, 0);
}
