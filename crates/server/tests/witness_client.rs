//! Asking witnesses, and reporting them, with hostile witnesses: a reply is read only up to a
//! bound, and a witness's name cannot forge a metrics series.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_server::config::Witness;
use nospy_server::metrics::Metrics;
use nospy_server::witnessing::{add_checkpoint, Reply, MAX_REPLY};
use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use nospy_tlog::note::SignerKey;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn witness_reply_of_endless_bytes_is_cut_at_the_bound() {
    // Regression (issue 13, defect 8): a witness's reply body was read whole, whatever its size.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A "witness" that answers 200 and then sends bytes for ever.
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "a".repeat(65536));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let log = SignerKey::from_seed("log.example/w", [1; 32]).unwrap();
        let witness = SignerKey::from_seed("witness.example", [2; 32]).unwrap();
        let sc: SignedCheckpoint = Checkpoint {
            origin: "log.example/w".into(),
            size: 1,
            root: nospy_tlog::Hash([3; 32]),
            extensions: vec![],
        }
        .sign(&log)
        .unwrap();
        let w = Witness {
            url: format!("http://{addr}"),
            key: witness.cosigner_verifier(),
        };
        let reply = add_checkpoint(
            &nospy_client::http::client(),
            &w,
            &sc,
            0,
            &[],
            Duration::from_secs(20),
        )
        .await;
        match reply {
            Reply::Failed(e) => assert!(e.contains(&format!("over {MAX_REPLY} bytes")), "{e}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn metrics_label_values_are_escaped() {
    // Regression (issue 13, defect 8): a witness name with a quote or a line feed could end the
    // label value and write a series of its own.
    let m = Metrics::default();
    m.witness("w\"} 99\nnospy_log_tree_size 1\\", true);
    let text = m.render();
    assert!(
        text.contains(r#"witness="w\"} 99\nnospy_log_tree_size 1\\",result="ok"} 1"#),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("nospy_log_tree_size 1")),
        "{text}"
    );
}
