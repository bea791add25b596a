//! A log on object storage and PostgreSQL, served by several instances at once.
//!
//! Every instance runs the same threads. The sequencer thread of each tries, every half
//! second, to take the lease ([`ClusterSequencer::lead`]); the one that holds it appends (its own
//! submissions, and those the others recorded in the database), publishes, and hands its
//! checkpoints to the witnessing thread. An instance that does not lead records the submissions
//! it verified in the database ([`Relay::submit`]) and answers each once a published checkpoint
//! covers the index the leader gave it (learnt from the deduplication map); one it cannot
//! answer within [`RELAY_PATIENCE`] gets 503 (it stays recorded: submitted again, it gets the
//! same index). A leader that fails, or finds itself fenced out, steps down at once and relays
//! what it held; the next leader (maybe itself, half a second later) integrates whatever was
//! recorded.
//!
//! Every instance follows the bucket's checkpoint ([`follow`]): it publishes for its read API a
//! checkpoint only when it verifies with the log's key and moves the log on.

use crate::pipeline::sequencer::SequencerLinks;
use crate::pipeline::{AddRequest, Refused};
use crate::{index, index_pg, lock_read, offer, Shared};
use nospy_log::cluster::{ClusterError, ClusterSequencer, Relay};
use nospy_log::object::ObjectTiles;
use nospy_log::{Appended, TileCache, TileReader};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::note::{SignerKey, VerifierKey};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// What the sequencer thread of a log on object storage needs.
pub(crate) struct ClusterConfig {
    pub(crate) tiles: ObjectTiles,
    pub(crate) database: String,
    pub(crate) schema: String,
    pub(crate) key: SignerKey,
}

/// How often an instance that does not lead tries to take the lease.
const LEAD_EVERY: Duration = Duration::from_millis(500);
/// How often a leader checks that its lease's connection is alive.
const LEASE_EVERY: Duration = Duration::from_secs(1);
/// How often relayed submissions are looked for in the deduplication map.
const WAITERS_EVERY: Duration = Duration::from_millis(25);
/// How often an idle leader looks for submissions other instances relayed.
const RELAYED_EVERY: Duration = Duration::from_millis(20);
/// How often every instance reads the bucket's checkpoint.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How long a relayed submission waits for a published checkpoint before its submitter gets
/// 503 (it stays recorded, and keeps its index when submitted again).
pub(crate) const RELAY_PATIENCE: Duration = Duration::from_secs(10);

/// The bucket's checkpoint, verified with the log's key; `None` when there is none.
pub(crate) async fn read_published(
    tiles: &ObjectTiles,
    key: &VerifierKey,
) -> Result<Option<SignedCheckpoint>, String> {
    match tiles.checkpoint().await {
        Ok(Some((bytes, _))) => SignedCheckpoint::open(&bytes, key)
            .map(Some)
            .map_err(|e| format!("{}: checkpoint: {e}", tiles.name())),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Follows the bucket's checkpoint for the read API (a task, until aborted). What does not
/// verify, or would move the log back, is not taken.
pub(crate) async fn follow(shared: Arc<Shared>, tiles: ObjectTiles, key: VerifierKey) {
    let mut complained = false;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        match read_published(&tiles, &key).await {
            Ok(Some(sc)) => {
                offer(&shared, &sc);
                complained = false;
            }
            Ok(None) => {}
            Err(e) if !complained => {
                eprintln!("nospy serve: cannot read the published checkpoint (retrying): {e}");
                complained = true;
            }
            Err(_) => {}
        }
    }
}

/// The lookup index of a log on object storage: every instance brings the PostgreSQL index up
/// to the published checkpoint from the tiles (rows are inserted if absent, so instances
/// indexing at once only repeat work). It wakes when the sequencer thread says the log grew,
/// and every `delay` (a checkpoint another instance published), and stops when the sequencer
/// thread does.
pub(crate) fn run_indexer(
    idx: index_pg::PgIndex,
    (url, schema): (String, String),
    grew: std::sync::mpsc::Receiver<Vec<index::Row>>,
    shared: Arc<Shared>,
    delay: Duration,
    rt: Handle,
) {
    let delay = delay.max(Duration::from_millis(50));
    let cache = TileCache::new(64);
    let mut idx = Some(idx);
    let mut failing = false;
    loop {
        match grew.recv_timeout(delay) {
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while grew.try_recv().is_ok() {}
        let size = lock_read(&shared.published).size;
        let r = (|| -> Result<u64, String> {
            if idx.is_none() {
                idx = Some(
                    rt.block_on(index_pg::PgIndex::open(&url, &schema))
                        .map_err(|e| e.to_string())?,
                );
            }
            let i = idx.as_mut().ok_or("no index")?;
            let mut from = rt.block_on(i.size()).map_err(|e| e.to_string())?;
            let reader = TileReader::new(shared.source.as_ref(), &cache, size);
            while from < size {
                // A bundle at a time: rows for up to 256 entries per transaction.
                let rows = index::bundle_rows(&reader, from / 256, from, size)
                    .map_err(|e| e.to_string())?;
                rt.block_on(i.add(&rows)).map_err(|e| e.to_string())?;
                from = rt.block_on(i.size()).map_err(|e| e.to_string())?;
                crate::indexed(&shared, from);
            }
            Ok(from)
        })();
        match r {
            Ok(n) => {
                crate::indexed(&shared, n);
                if failing {
                    eprintln!("nospy serve: the lookup index is written again");
                    failing = false;
                }
            }
            Err(e) => {
                // A new connection next time; said once until it works again.
                idx = None;
                if !failing {
                    eprintln!("nospy serve: the lookup index is behind (retrying): {e}");
                    failing = true;
                }
            }
        }
    }
}

/// A relayed submission waiting for its index to be published.
struct Waiter {
    request: AddRequest,
    hash: Hash,
    /// Its index, once the deduplication map has it.
    index: Option<u64>,
    /// Whether the log held it before it was relayed.
    duplicate: bool,
    since: Instant,
}

/// The sequencer thread of an instance of a log on object storage (see the module
/// documentation).
pub(crate) fn run_cluster(
    config: ClusterConfig,
    rt: Handle,
    links: SequencerLinks,
    shared: Arc<Shared>,
    max_batch: usize,
) {
    let SequencerLinks {
        verified: rx,
        index: grew,
        witness: witness_tx,
        cosigned: cosigned_rx,
    } = links;
    let mut me = Instance {
        config,
        rt,
        shared,
        leader: None,
        relay: None,
        waiters: Vec::new(),
        next_lead: Instant::now(),
        next_lease_check: Instant::now() + LEASE_EVERY,
        next_waiters: Instant::now(),
        next_relayed: Instant::now(),
        lead_error: None,
    };
    let mut closing: Option<Instant> = None;
    loop {
        me.try_to_lead(&witness_tx);
        me.check_lease();
        while let Ok(sc) = cosigned_rx.try_recv() {
            me.publish_cosigned(sc);
        }
        let mut batch = Vec::new();
        if closing.is_none() {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(b) => batch = b,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    closing = Some(Instant::now())
                }
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
        if me.leader.is_some() {
            me.append(batch, max_batch, &witness_tx, &grew);
        } else if !batch.is_empty() {
            me.relay(batch);
        }
        me.answer_waiters();
        if let Some(since) = closing {
            // Relayed submissions are answered if the leader publishes them soon; the rest
            // get 503 (they stay recorded).
            if me.waiters.is_empty() || since.elapsed() > Duration::from_secs(5) {
                for w in me.waiters.drain(..) {
                    let _ = w.request.reply.send(Err(Refused::Unavailable(
                        "this instance is stopping; the submission is recorded and keeps its index when submitted again".into(),
                    )));
                }
                break;
            }
        }
    }
    // Let the witnessing thread finish its round and publish its result.
    drop(witness_tx);
    while let Ok(sc) = cosigned_rx.recv() {
        me.publish_cosigned(sc);
    }
}

/// One instance's sequencing: leading or not, and the submissions it relayed.
struct Instance {
    config: ClusterConfig,
    rt: Handle,
    shared: Arc<Shared>,
    leader: Option<ClusterSequencer>,
    relay: Option<Relay>,
    waiters: Vec<Waiter>,
    next_lead: Instant,
    next_lease_check: Instant,
    next_waiters: Instant,
    /// When an idle leader next looks for relayed submissions.
    next_relayed: Instant,
    /// Why taking the lead last failed, until it succeeds (said once).
    lead_error: Option<String>,
}

impl Instance {
    /// Takes the lease if it is free and the time has come to try.
    fn try_to_lead(&mut self, witness: &std::sync::mpsc::Sender<SignedCheckpoint>) {
        if self.leader.is_some() || Instant::now() < self.next_lead {
            return;
        }
        self.next_lead = Instant::now() + LEAD_EVERY;
        let c = &self.config;
        let r = self.rt.block_on(ClusterSequencer::lead(
            &c.database,
            &c.schema,
            c.tiles.clone(),
            c.key.clone(),
        ));
        match r {
            Ok(Some(seq)) => {
                self.lead_error = None;
                eprintln!(
                    "nospy serve: this instance sequences the log now (epoch {}, size {})",
                    seq.epoch(),
                    seq.size()
                );
                offer(&self.shared, seq.checkpoint());
                let _ = witness.send(seq.checkpoint().clone());
                self.shared.metrics.leader.store(1, Relaxed);
                self.next_lease_check = Instant::now() + LEASE_EVERY;
                self.leader = Some(seq);
            }
            Ok(None) => {}
            Err(e) => {
                // Said once while it keeps failing.
                if self.lead_error.is_none() {
                    eprintln!(
                        "nospy serve: could not take the lead (retrying every {LEAD_EVERY:?}): {e}"
                    );
                }
                self.lead_error = Some(e.to_string());
            }
        }
    }

    /// Steps down when the lease's connection is gone.
    fn check_lease(&mut self) {
        let Some(l) = &self.leader else { return };
        if Instant::now() < self.next_lease_check {
            return;
        }
        self.next_lease_check = Instant::now() + LEASE_EVERY;
        if !self.rt.block_on(l.holds_lease()) {
            self.step_down("its lease's connection to the database is gone");
        }
    }

    fn step_down(&mut self, why: &str) {
        if self.leader.take().is_some() {
            eprintln!("nospy serve: this instance stopped sequencing the log: {why}");
            self.shared.metrics.leader.store(0, Relaxed);
        }
    }

    /// Republishes the leader's checkpoint with the cosignatures the witnesses gave it.
    fn publish_cosigned(&mut self, sc: SignedCheckpoint) {
        let size = sc.checkpoint.size;
        if let Some(l) = self.leader.as_mut() {
            match self.rt.block_on(l.publish_cosigned(&sc)) {
                Ok(true) => {
                    offer(&self.shared, &sc);
                }
                Ok(false) => {}
                Err(e) => {
                    eprintln!("nospy serve: could not publish the cosigned checkpoint: {e}");
                    if !e.is_transient() {
                        self.step_down(&e.to_string());
                    }
                }
            }
        }
        self.shared
            .progress
            .send_modify(|p| p.witnessed = p.witnessed.max(size));
    }

    /// Appends this instance's verified batch and what the others relayed; answers its own
    /// submitters. On failure it steps down and relays its batch.
    fn append(
        &mut self,
        batch: Vec<AddRequest>,
        max_batch: usize,
        witness: &std::sync::mpsc::Sender<SignedCheckpoint>,
        grew: &std::sync::mpsc::Sender<Vec<index::Row>>,
    ) {
        if batch.is_empty() && Instant::now() < self.next_relayed {
            return;
        }
        self.next_relayed = Instant::now() + RELAYED_EVERY;
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let room = max_batch.saturating_sub(batch.len());
        let relayed = match self.rt.block_on(l.relayed(room)) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("reading relayed submissions: {e}");
                self.step_down(&why);
                self.relay(batch);
                return;
            }
        };
        if batch.is_empty() && relayed.is_empty() {
            return;
        }
        let mut entries: Vec<Vec<u8>> = batch.iter().map(|r| r.entry.clone()).collect();
        entries.extend(relayed.iter().map(|(_, e)| e.clone()));
        let before = l.size();
        let result = self.rt.block_on(l.append(&entries));
        match result {
            Ok(out) => {
                let size = l.size();
                let sc = l.checkpoint().clone();
                let ids: Vec<i64> = relayed.iter().map(|(id, _)| *id).collect();
                if let Err(e) = self.rt.block_on(l.forget_relayed(&ids)) {
                    // Appended already: appending them again gives the same indices.
                    eprintln!("nospy serve: could not forget relayed submissions: {e}");
                }
                let m = &self.shared.metrics;
                m.entries.fetch_add(size - before, Relaxed);
                m.batch_size.observe(entries.len() as f64);
                offer(&self.shared, &sc);
                for (r, a) in batch.into_iter().zip(out) {
                    m.append_latency.observe(r.received.elapsed().as_secs_f64());
                    let _ = r.reply.send(Ok(a));
                }
                if size > before {
                    let _ = witness.send(sc);
                    let _ = grew.send(Vec::new());
                }
            }
            Err(e) => {
                eprintln!("nospy serve: append failed: {e}");
                let why = e.to_string();
                self.step_down(&why);
                // The batch was recorded or not: relayed, it gets its index either way.
                self.relay(batch);
            }
        }
    }

    /// Records verified submissions for the leader; answers at once those the log holds and
    /// are published, and keeps the others waiting.
    fn relay(&mut self, batch: Vec<AddRequest>) {
        if batch.is_empty() {
            return;
        }
        let entries: Vec<Vec<u8>> = batch.iter().map(|r| r.entry.clone()).collect();
        let r = self.with_relay(|rt, relay| rt.block_on(relay.submit(&entries)));
        match r {
            Ok(known) => {
                for (request, index) in batch.into_iter().zip(known) {
                    let hash = leaf_hash(&request.entry);
                    self.waiters.push(Waiter {
                        request,
                        hash,
                        index,
                        duplicate: index.is_some(),
                        since: Instant::now(),
                    });
                }
                self.next_waiters = Instant::now();
            }
            Err(e) => {
                let msg = format!("not recorded: the database failed: {e}");
                eprintln!("nospy serve: {msg}");
                for r in batch {
                    let _ = r.reply.send(Err(Refused::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Runs `f` on the relay's connection, opening it if needed; a failed call drops it (the
    /// next opens a new one).
    fn with_relay<T>(
        &mut self,
        f: impl FnOnce(&Handle, &Relay) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        if self.relay.is_none() {
            let c = &self.config;
            self.relay = Some(self.rt.block_on(Relay::connect(&c.database, &c.schema))?);
        }
        let relay = self.relay.as_ref().ok_or(ClusterError::Poisoned)?;
        let r = f(&self.rt, relay);
        if r.is_err() {
            self.relay = None;
        }
        r
    }

    /// Answers the relayed submissions a published checkpoint covers; 503 to those that waited
    /// too long.
    fn answer_waiters(&mut self) {
        if self.waiters.is_empty() || Instant::now() < self.next_waiters {
            return;
        }
        self.next_waiters = Instant::now() + WAITERS_EVERY;
        let unknown: Vec<Hash> = self
            .waiters
            .iter()
            .filter(|w| w.index.is_none())
            .map(|w| w.hash)
            .collect();
        if !unknown.is_empty() {
            match self.with_relay(|rt, relay| rt.block_on(relay.indices(&unknown))) {
                Ok(found) => {
                    for w in &mut self.waiters {
                        if w.index.is_none() {
                            w.index = found.get(&w.hash).copied();
                        }
                    }
                }
                Err(e) => {
                    eprintln!("nospy serve: cannot read the deduplication map (retrying): {e}")
                }
            }
        }
        let published = lock_read(&self.shared.published).size;
        let m = self.shared.metrics.clone();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            if let Some(index) = w.index.filter(|i| *i < published) {
                m.append_latency
                    .observe(w.request.received.elapsed().as_secs_f64());
                let _ = w.request.reply.send(Ok(Appended {
                    index,
                    hash: w.hash,
                    duplicate: w.duplicate,
                }));
            } else if w.since.elapsed() > RELAY_PATIENCE {
                let _ = w.request.reply.send(Err(Refused::Unavailable(
                    "recorded, but no published checkpoint covers it yet (no instance sequences the log?); submit it again later: it keeps its index".into(),
                )));
            } else {
                keep.push(w);
            }
        }
        self.waiters = keep;
    }
}
