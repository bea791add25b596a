//! The monitor beyond one process: flows through a streaming engine to a pool of workers.
//!
//! ```text
//!  exporters ──udp──> collect ──batches──> flows stream, one subject per partition
//!  (or files)         (decode, attribute            │ (ordered, gapless, from a sequence)
//!                      to a device, partition)      v
//!                                        worker: judge, per window ──parts──> rows stream,
//!                                        (a Monitor, as one process)          a chain per partition
//!                                                                              │
//!                                        report: merge the windows' parts <────┘
//! ```
//!
//! - A **collector** ([`collect::Publisher`]) attributes each flow to its device through the
//!   inventory and puts it in the batch of the device's partition (a hash of the device id, so
//!   a device's flows keep their order); DNS answers go to every partition in their place among
//!   the flows, and flows of no device are counted per second into one partition. A batch's
//!   message id is the source's, the partition's and the batch's number, so a batch published
//!   twice (a retry, or a collector run again over the same file) is stored once.
//! - A **worker** (`worker`) holds partitions by lease and reads each from where its chain
//!   ends; what it counted goes, per window, into a part appended to the partition's chain on
//!   the rows stream only if the chain still ends where the worker last saw it (JetStream's
//!   expected-last-subject-sequence). That append is the acknowledgement: what a part covers
//!   is never read again, what it does not is read again by whoever holds the partition next,
//!   and two workers that both think they hold a partition cannot both extend its chain. So a
//!   worker killed at any point loses nothing and counts nothing twice.
//! - A **report** ([`report`]) merges the parts of a window (or a range of windows) of every
//!   partition into the report `nospy monitor --json` prints for the same flows.
//!
//! - `listen` is the live UDP collector both `nospy monitor --listen` and `nospy collect
//!   --listen` run; `outbox` takes a collector's batches and state to the engine from blocking
//!   code.
//!
//! The engine is behind [`transport::Transport`]; NATS JetStream (`nats::Nats`, feature
//! `nats`, on by default) is the one implementation.

#![forbid(unsafe_code)]

pub mod collect;
#[cfg(feature = "listen")]
pub mod listen;
#[cfg(feature = "nats")]
pub mod nats;
pub mod numbering;
#[cfg(feature = "nats")]
pub mod outbox;
pub mod report;
pub mod transport;
pub mod wire;
#[cfg(feature = "nats")]
pub mod worker;

/// The partition of a device: a hash of its id (FNV-1a), so that it does not depend on the
/// inventory's order and every collector and worker agrees on it.
pub fn partition_of(device: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

/// The SHA-256 of an inventory's devices as workers number them (ids in order): parts made
/// under another inventory are refused by a report.
pub fn inventory_digest(inventory: &nospy_inventory::Inventory) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for d in &inventory.devices {
        h.update((d.device.len() as u32).to_be_bytes());
        h.update(d.device.as_bytes());
    }
    h.finalize().into()
}
