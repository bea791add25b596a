//! The stream's errors by kind: what a worker may try again and what it may not.

use nospy_stream::nats::{Nats, Options};
use nospy_stream::transport::TransportError;

#[test]
fn a_bad_deployment_name_is_refused_before_connecting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in ["", "lower", "WITH SPACE", &"X".repeat(65)] {
        // No server listens on port 1: the name is refused before anything is sent.
        let e = rt
            .block_on(Nats::connect(
                "nats://127.0.0.1:1",
                name,
                Options::default(),
            ))
            .err()
            .expect("refused");
        assert_eq!(e, TransportError::Name(name.to_string()));
        assert!(!e.is_transient(), "{e}");
    }
}

#[test]
fn only_the_engine_s_failures_are_worth_trying_again() {
    assert!(TransportError::engine("reading a partition", "timed out").is_transient());
    for e in [
        TransportError::Corrupt("the part at the end of its chain is unreadable".into()),
        TransportError::Partitions {
            first: 3,
            last: 20,
            count: 16,
        },
        TransportError::Stopped("the publisher stopped".into()),
        TransportError::WindowsNotHandedOn,
    ] {
        assert!(!e.is_transient(), "{e}");
    }
    assert_eq!(
        TransportError::Partitions {
            first: 3,
            last: 20,
            count: 16
        }
        .to_string(),
        "partitions 3-20: not within 0-15 (the stream has 16)"
    );
}
