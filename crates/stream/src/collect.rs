//! The collector's side: flows attributed to devices and put into their partitions' batches
//! ([`Publisher`], a [`Sink`] any source feeds), DNS answers into every partition's and into
//! the answers stream's, and the batches published in order, with retries under their own
//! message ids ([`publish_all`]).

use crate::numbering::Numbering;
use crate::wire::BatchWriter;
use bytes::Bytes;
use nospy_flow::source::{Sink, Stats};
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::Inventory;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Most items in one batch (about 155 KB of IPv4 flows). The engine's work, the collector's
/// and the workers' each have a part per message (the store's index and deduplication, the
/// publication's acknowledgement, the reads and the threads woken): batches of 2,048 items
/// made four times as many messages, and end to end with 2 workers was 0.54-0.63 of one
/// process's rate against 0.59-0.69 for these (`nospy bench monitor --nats`, 7 runs each on
/// a 2-core VM). Larger ones would not fit a message at their largest ([`BATCH_BYTES`]). A
/// worker keeps room in what it holds of a partition for the rows and devices a whole batch
/// can add (2.4 MiB at most for these: `worker`'s `PART_MOST`).
pub const BATCH_ITEMS: usize = 8192;

/// Most bytes of items in one batch, each counted at its largest encoding
/// ([`BatchWriter::most`]: 79 bytes a flow, so [`BATCH_ITEMS`] of them take 632 KiB): DNS
/// answers with long names seal a batch before it has [`BATCH_ITEMS`] of them. A batch stays within the engine's 1 MiB messages: it is
/// sealed once this is reached, so it holds at most this and one item (an answer's name is
/// at most 64 KiB).
pub const BATCH_BYTES: usize = 768 * 1024;

/// Whether a batch is to be sealed: [`BATCH_ITEMS`] items, or [`BATCH_BYTES`] by the largest
/// encodings.
fn full(b: &BatchWriter) -> bool {
    b.items() >= BATCH_ITEMS || b.most() >= BATCH_BYTES
}

pub use crate::transport::{Sealed, To};

/// Attributes flows to devices and writes them, by partition, into batches (as they come: no
/// flow is kept), sealed once full.
pub struct Publisher {
    partitions: u32,
    /// The inventory's addresses, numbered (a device's address is written as its number).
    numbering: std::sync::Arc<Numbering>,
    /// Partition by device (its place in the inventory).
    partition: Vec<u32>,
    /// Per partition, the batch being written.
    pending: Vec<BatchWriter>,
    /// Per partition, whether its pending items hold a DNS answer.
    pending_answers: Vec<bool>,
    numbers: Vec<u64>,
    /// The answers stream's batch begun, and its number.
    answers: BatchWriter,
    answers_number: u64,
    /// Flows of no device: per start second, (flows, packets, bytes).
    unknown: BTreeMap<u64, (u64, u64, u64)>,
    source: String,
    sealed: Vec<Sealed>,
    /// Flows attributed, and flows of no device.
    pub attributed: u64,
    /// Flows of no device.
    pub unattributed: u64,
}

impl Publisher {
    /// A publisher for `inventory`'s devices (`numbering`: its addresses numbered) into
    /// `partitions` partitions; `source` names the input in every batch's message id (the same
    /// input must give the same name, so that a second run over it is deduplicated; different
    /// inputs different names).
    pub fn new(
        inventory: &Inventory,
        numbering: std::sync::Arc<Numbering>,
        partitions: u32,
        source: &str,
    ) -> Publisher {
        let pending = (0..partitions.max(1))
            .map(|_| BatchWriter::new(&numbering, BATCH_ITEMS))
            .collect();
        Publisher {
            partitions: partitions.max(1),
            answers: BatchWriter::new(&numbering, 0),
            numbering,
            partition: inventory
                .devices
                .iter()
                .map(|d| crate::partition_of(&d.device, partitions))
                .collect(),
            pending,
            pending_answers: vec![false; partitions.max(1) as usize],
            numbers: vec![0; partitions.max(1) as usize],
            answers_number: 0,
            unknown: BTreeMap::new(),
            source: source.to_string(),
            sealed: Vec::new(),
            attributed: 0,
            unattributed: 0,
        }
    }

    /// Seals partition `p`'s batch if an item just written filled it.
    fn written(&mut self, p: u32) {
        if full(&self.pending[p as usize]) {
            self.seal(p);
        }
    }

    fn seal(&mut self, p: u32) {
        // The answers it holds are sealed for the answers stream first (and so stored first:
        // `Transport::publish`).
        if std::mem::take(&mut self.pending_answers[p as usize]) {
            self.seal_answers();
        }
        if self.pending[p as usize].items() == 0 {
            return;
        }
        let batch = std::mem::replace(
            &mut self.pending[p as usize],
            BatchWriter::new(&self.numbering, BATCH_ITEMS),
        );
        let n = self.numbers[p as usize];
        self.numbers[p as usize] += 1;
        self.sealed.push(Sealed {
            to: To::Partition(p),
            id: format!("{}.{p}.{n}", self.source),
            bytes: Bytes::from(batch.finish()),
        });
    }

    fn seal_answers(&mut self) {
        if self.answers.items() == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.answers, BatchWriter::new(&self.numbering, 0));
        let n = self.answers_number;
        self.answers_number += 1;
        self.sealed.push(Sealed {
            to: To::DnsAnswers,
            id: format!("{}.dns.{n}", self.source),
            bytes: Bytes::from(batch.finish()),
        });
    }

    fn spill_unknown(&mut self) {
        for (second, (flows, packets, bytes)) in std::mem::take(&mut self.unknown) {
            let p = (second % u64::from(self.partitions)) as u32;
            self.pending[p as usize].unknown(second, flows, packets, bytes);
            self.written(p);
        }
    }

    /// The batches sealed since the last call, in the order they must be published.
    pub fn take_sealed(&mut self) -> Vec<Sealed> {
        std::mem::take(&mut self.sealed)
    }

    /// Seals every batch begun (at the end of the input, or on a timer for a live source).
    pub fn flush(&mut self) {
        self.spill_unknown();
        self.seal_answers();
        for p in 0..self.partitions {
            self.seal(p);
        }
    }
}

impl Sink for Publisher {
    fn wants(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.numbering.contains(src) || self.numbering.contains(dst)
    }

    fn flow(&mut self, f: &Flow) {
        // Both addresses looked up, so that the worker need not: a device's is written as its
        // number. The partition of the device that sent it, else of the one it was sent to:
        // one worker judges both sides of a flow between two devices.
        let refs = self.numbering.refs(f.src, f.dst);
        let device = refs[0].or(refs[1]).and_then(|r| self.numbering.device(r));
        match device.and_then(|d| self.partition.get(d as usize)) {
            Some(&p) => {
                self.attributed += 1;
                self.pending[p as usize].flow(&self.numbering, f, refs);
                self.written(p);
            }
            None => {
                self.unattributed += 1;
                let e = self
                    .unknown
                    .entry(f.first_ns / 1_000_000_000)
                    .or_insert((0, 0, 0));
                e.0 += 1;
                e.1 += f.packets;
                e.2 += f.bytes;
                if self.unknown.len() > BATCH_ITEMS {
                    self.spill_unknown();
                }
            }
        }
    }

    fn dns(&mut self, seen: &DnsSeen) {
        // The answers stream's batch first: a partition's batch sealed below seals it too.
        self.answers.dns(seen);
        if full(&self.answers) {
            self.seal_answers();
        }
        // Every partition: a name rule of any device may need it, in its place among the flows.
        for p in 0..self.partitions {
            self.pending_answers[p as usize] = true;
            self.pending[p as usize].dns(seen);
            self.written(p);
        }
    }
}

/// How this version cuts an input into batches: their format and the bounds that seal them.
/// Two collectors that cut alike give the same input's batches the same ids and contents; two
/// that cut otherwise give the same id (`source.partition.number`) to different flows. Any
/// change to how batches are cut or written must change what this says.
pub fn cut() -> String {
    format!(
        "{} {BATCH_ITEMS} items {BATCH_BYTES} bytes",
        String::from_utf8_lossy(crate::wire::BATCH_MAGIC)
    )
}

/// An input a collector publishes: the name its batches' ids begin with, and whether it is
/// read live (its flows differ from run to run) or from a file (the same each run).
#[derive(Debug, Clone)]
pub struct Input {
    /// The name (letters, digits, `-` and `_`).
    pub source: String,
    /// Read live: a run under a name used before is never the same input again.
    pub live: bool,
}

/// What the state store keeps of an input begun (`source.<name>`): how it was cut, when it
/// was first begun (Unix seconds), and whether live.
#[cfg(feature = "nats")]
#[derive(serde::Serialize, serde::Deserialize)]
struct Begun {
    cut: String,
    began_s: u64,
    live: bool,
}

/// Records `input` as begun (`source.<name>` in the state store) before any of its batches is
/// published, or refuses to publish it ([`crate::transport::TransportError::InputAgain`]) where the stream would
/// take its batches for an earlier run's that are not the same, or would no longer know the
/// earlier run's. A run under a name begun before is taken only when both read a file, cut it
/// alike ([`cut`]) and the first began less than half of `dedup_window` (the flow stream's:
/// [`crate::nats::Nats::dedup_window`]) before `now_s`: then each batch the first stored is
/// stored once, the other half of the window being what the run again has to publish them.
/// Otherwise, ids alike for other flows would lose flows (deduplicated), and ids forgotten
/// would count them twice.
#[cfg(feature = "nats")]
pub async fn begin<T: crate::transport::Transport>(
    t: &T,
    input: &Input,
    dedup_window: std::time::Duration,
    now_s: u64,
) -> Result<(), crate::transport::TransportError> {
    use crate::transport::TransportError;
    let key = format!("source.{}", input.source);
    let mine = Begun {
        cut: cut(),
        began_s: now_s,
        live: input.live,
    };
    let body = serde_json::to_vec(&mine).map_err(|e| TransportError::Stopped(e.to_string()))?;
    // Set unless set already (two collectors begun at once: one sets it, the other reads it).
    let Some(theirs) = t.set_once(&key, Bytes::from(body)).await? else {
        return Ok(());
    };
    let theirs: Begun = serde_json::from_slice(&theirs)
        .map_err(|e| TransportError::Corrupt(format!("{key} in the state store: {e}")))?;
    let name = &input.source;
    if input.live || theirs.live {
        return Err(TransportError::InputAgain(format!(
            "input {name} was begun before{}: a live input's flows differ from run to run, and the stream would take this run's batches for the earlier run's (same ids) and drop them. Give this run another --source (or none: a live input's default name has its start time)",
            if theirs.live { ", by a live collector" } else { "" }
        )));
    }
    if theirs.cut != mine.cut {
        return Err(TransportError::InputAgain(format!(
            "input {name} was begun by a collector that cuts batches as {:?}; this one cuts them as {:?}, so the same ids would name other flows (dropped as already stored, or stored beside and counted twice). Run it again with the version that began it",
            theirs.cut, mine.cut
        )));
    }
    let age = now_s.saturating_sub(theirs.began_s);
    let half = dedup_window.as_secs() / 2;
    if age > half {
        return Err(TransportError::InputAgain(format!(
            "input {name} was begun {age} s ago; the flow stream knows a batch's id for {} s, and a run again must begin within half of that ({half} s) for every batch the first run stored to be known (each not known would be counted twice). What the first run stored is counted; if it stopped before the end, the rest is not (to count it, collect a file of only the flows it did not reach, or the whole file into another deployment: --stream)",
            dedup_window.as_secs()
        )));
    }
    Ok(())
}

#[cfg(feature = "nats")]
/// Publishes batches in order, all of them again under the same ids until the engine has
/// stored every one (a retry after a timeout or a restart of the server stores nothing twice),
/// for at most `patience`. Returns how many were duplicates of batches already stored.
pub async fn publish_all<T: crate::transport::Transport>(
    t: &T,
    batches: &[Sealed],
    patience: std::time::Duration,
) -> Result<u64, crate::transport::TransportError> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match t.publish(batches).await {
            Ok(dups) => return Ok(dups),
            Err(_) if started.elapsed() < patience => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a collector read from a source, as it keeps it in the state store (`input.<source>`)
/// for reports: the `input` counts of `nospy monitor --json`, and the packets of no device.
pub fn input_json(st: &Stats) -> serde_json::Value {
    let mut v = nospy_monitor::output::input_json(st);
    v["unknown_device_packets"] = st.unwanted_packets.into();
    v
}
