//! The collector's batches: every flow and DNS answer in its partition's batches, in order,
//! every answer once more in the answers stream's batches, sealed before any partition's batch
//! that holds it, and no batch beyond what the engine takes in one message, whatever the items.

#![allow(clippy::unwrap_used)]

use nospy_flow::dns::Answer;
use nospy_flow::source::Sink;
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::Inventory;
use nospy_stream::collect::{Publisher, To, BATCH_BYTES, BATCH_ITEMS};
use nospy_stream::numbering::Numbering;
use nospy_stream::wire::{decode_batch, Item};
use nospy_testkit::fixtures::access_device;
use std::net::IpAddr;
use std::sync::Arc;

fn inventory() -> Inventory {
    Inventory {
        devices: (0..4u8)
            .map(|i| access_device(&format!("d{i}"), vec![IpAddr::from([10, 0, 0, i])]))
            .collect(),
    }
}

/// Long DNS names seal a batch by its bytes before it has its most items; flows by their
/// count. Read back, the batches of each partition give its items in the order given.
#[test]
fn batches_are_sealed_by_count_and_by_bytes_and_lose_nothing() {
    let partitions = 2;
    let inv = inventory();
    let numbering = Arc::new(Numbering::new(&inv));
    let mut p = Publisher::new(&inv, numbering.clone(), partitions, "test");
    let mut given = 0usize;
    let mut flows = 0u64;
    // Flows, then DNS answers with 250-byte names (sent to every partition), then flows again.
    for round in 0..3u64 {
        let n = if round == 1 {
            3 * BATCH_ITEMS
        } else {
            BATCH_ITEMS + 7
        };
        for i in 0..n as u64 {
            if round == 1 {
                p.dns(&DnsSeen {
                    ts_ns: i,
                    client: IpAddr::from([10, 0, 0, 1]),
                    answer: Answer {
                        name: format!("{}.example", "a".repeat(240)),
                        addr: IpAddr::from([192, 0, 2, (i % 256) as u8]),
                        ttl: 60,
                    },
                });
            } else {
                p.flow(&Flow {
                    first_ns: 1_000_000_000 * (round * 10_000 + i),
                    last_ns: 1_000_000_000 * (round * 10_000 + i) + 5,
                    src: IpAddr::from([10, 0, 0, (i % 4) as u8]),
                    dst: IpAddr::from([198, 51, 100, 9]),
                    sport: 40_000,
                    dport: 443,
                    proto: 6,
                    packets: 3,
                    bytes: 300,
                    initiator_known: true,
                });
                flows += 1;
            }
            given += 1;
        }
    }
    p.flush();
    let sealed = p.take_sealed();
    let mut read_flows = 0u64;
    let mut read_dns = 0usize;
    let mut by_bytes = 0;
    // The answers sealed for the answers stream so far (their times: each answer's is its own).
    let mut answers: Vec<u64> = Vec::new();
    for b in &sealed {
        assert!(
            b.bytes.len() < 1 << 20,
            "batch {} of {} bytes",
            b.id,
            b.bytes.len()
        );
        let items = decode_batch(&b.bytes, &numbering).unwrap();
        assert!(
            !items.is_empty() && items.len() <= BATCH_ITEMS,
            "batch {}",
            b.id
        );
        if items.len() < BATCH_ITEMS && items.iter().all(|i| matches!(i, Item::Dns(_))) {
            by_bytes += 1;
            assert!(b.bytes.len() <= BATCH_BYTES, "batch {}", b.id);
        }
        if b.to == To::DnsAnswers {
            assert!(b.id.starts_with("test.dns."), "{}", b.id);
            for it in &items {
                let Item::Dns(d) = it else {
                    panic!("batch {}: not an answer", b.id)
                };
                answers.push(d.ts_ns);
            }
            continue;
        }
        // Within a partition, flows in the order given.
        let mut last = 0;
        for it in &items {
            match it {
                Item::Flow(f, refs) => {
                    assert!(f.first_ns >= last, "batch {}: flows out of order", b.id);
                    // The device the collector found: the source's (device i at 10.0.0.i).
                    let IpAddr::V4(src) = f.src else { panic!() };
                    assert_eq!(
                        numbering.devices(*refs),
                        [Some(u32::from(src.octets()[3])), None]
                    );
                    last = f.first_ns;
                    read_flows += 1;
                }
                Item::Dns(d) => {
                    // Sealed for the answers stream before this batch.
                    assert!(
                        answers.contains(&d.ts_ns),
                        "batch {}: answer {} not yet in the answers stream",
                        b.id,
                        d.ts_ns
                    );
                    read_dns += 1
                }
                Item::Unknown { .. } => panic!("no flow here is of no device"),
            }
        }
    }
    assert_eq!(read_flows, flows);
    // Every DNS answer in every partition, and once, in order, in the answers stream.
    assert_eq!(read_dns, (given - flows as usize) * partitions as usize);
    assert_eq!(
        answers,
        (0..(given - flows as usize) as u64).collect::<Vec<_>>()
    );
    // 3 * 2048 answers of about 300 bytes in each of two partitions: sealed by bytes.
    assert!(by_bytes >= 4, "{by_bytes} batches sealed by their bytes");
}
