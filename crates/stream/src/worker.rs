//! A worker: holds partitions by lease, judges their flows with one [`Monitor`], and appends
//! what it counted, per window, to each partition's chain.
//!
//! **Exactly once.** A partition is read from the end of its chain (the last flow sequence
//! its last part covers), gaplessly and in order. What a worker counts stays in its memory
//! until it appends a part covering it, and the append succeeds only where the chain still
//! ends where this worker found it. So: a worker killed before an append loses only what the
//! next holder reads again; a worker that lost its lease without knowing (paused, cut off) has
//! its append refused, drops what it held, and reads nothing more of that partition; no flow
//! is in two parts of one chain. A part too large for one message is appended as chunks, each
//! where the one before ended the chain: a part is appended once its last chunk is, and the
//! chunks of one never finished are passed over by every reader (`wire::Assembler`).
//!
//! **Leases.** `lease.<partition>` in the state store names the holder, renewed (its revision
//! moved on) every [`LEASE_TICK`]; a lease not renewed for [`LEASE_EXPIRY`] is free to take.
//! Each worker announces itself (`worker.<id>`) and holds at most its fair share of the
//! partitions it may take (their count over the workers alive), releasing the rest after
//! appending what it counted of them: a worker that joins gets partitions, one that leaves
//! has its partitions taken over. Workers count each other every [`MEMBERSHIP_TICK`], so a
//! worker that joins has its share within about half a second, not after the next lease
//! ticks. Leases serve only who works; the chain's check is what keeps the counts right.

use crate::transport::{PartitionReader, Transport, TransportError};
use crate::wire::{
    chunk_part, decode_batch_into, decode_part, encode_part, part_end, read_chain_message,
    Assembler, ChainMessage, Item, Part,
};
use bytes::Bytes;
use nospy_monitor::{Counting, Delta, Monitor};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often leases and announcements are renewed.
pub const LEASE_TICK: Duration = Duration::from_secs(1);
/// How long an unrenewed lease or announcement stays another's.
pub const LEASE_EXPIRY: Duration = Duration::from_secs(5);
/// How often a worker counts the workers alive between lease ticks: a change (one joined or
/// left) shares the partitions out again at once, not at the next tick.
pub const MEMBERSHIP_TICK: Duration = Duration::from_millis(250);
/// After a change of the workers alive, how long a worker holding less than its share looks
/// for partitions let go at every [`MEMBERSHIP_TICK`] (the others release theirs after their
/// next count and an append).
const SETTLING: Duration = Duration::from_secs(3);
/// A part is appended once what it would hold could be this large, counting every row and
/// device at its largest encoding ([`ROW_BYTES`], [`PEER_NAMES_BYTES`], [`DEVICE_BYTES`]; most
/// take a fifth of that), and the part before is answered: until it is, flows are judged on into
/// this one rather than waited with.
const PART_BYTES: usize = 1536 * 1024;
/// The most a part may hold by the same count: before a batch is judged, what is held is
/// appended (waiting for the part before) if the batch could take it past this (each flow adds
/// at most two rows and two devices: a batch of [`crate::collect::BATCH_ITEMS`] flows adds at
/// most 2.4 MiB). It bounds what a worker holds of a partition. Parts are cut by
/// [`PART_BYTES`] long before, at a few hundred KB; one whose encoding outgrows the engine's
/// messages ([`PART_MESSAGE`]: a vendor's traffic and manifest can make rows and names that
/// large) is appended as chunks ([`crate::wire::chunk_part`]). Before parts could be chunked
/// they were cut to fit a message by this count (at 896 KiB less a batch's worst case): five
/// times as many, each waited for, and the engine's work per flow a fifth higher.
const PART_MOST: usize = 4 * PART_BYTES;
/// The largest encoding of a row in a part (`wire`: a 5-byte device, direction, an IPv6 peer,
/// protocol, port and six 10-byte numbers).
const ROW_BYTES: usize = 5 + 1 + 17 + 1 + 2 + 60;
/// The largest encoding of the names a violation row's peer stood for, recorded with the row
/// (an IPv6 peer, a 5-byte set and a 10-byte count).
const PEER_NAMES_BYTES: usize = 17 + 5 + 10;
/// The largest encoding of a device's counts in a part.
const DEVICE_BYTES: usize = 5 + 30;
/// The largest encoding of a window in a part without its rows, devices and names: its start,
/// five 10-byte counts, the five lists' lengths and the names byte.
const WINDOW_BYTES: usize = 8 + 5 * 10 + 5 * 4 + 1;
/// The most a part's message (or a chunk's) may take: the engine's 1 MiB, less room for its
/// headers.
const PART_MESSAGE: usize = 1024 * 1024 - 4096;
/// Messages read from a partition at a turn.
const READ_MESSAGES: usize = 8;
/// With [`Config::until_caught_up`], idle this long: append what is held and see whether
/// everything is counted (at most once in four times this).
const UNTIL_IDLE: Duration = Duration::from_millis(5);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This worker's name (in its leases).
    pub id: String,
    /// The partitions it may take.
    pub partitions: BTreeSet<u32>,
    /// Window length, seconds.
    pub window_secs: u64,
    /// Longest time what it counted stays unappended.
    pub flush: Duration,
    /// Stop once a collector has finished a source (it records `input.<source>` at its end),
    /// every partition this worker may take has been counted to the end of the flow stream (by
    /// whichever worker), and this worker has appended everything it counted.
    pub until_caught_up: bool,
    /// The SHA-256 of the inventory (every part carries it).
    pub inventory: [u8; 32],
    /// The inventory's addresses numbered, as collectors write devices' addresses in batches
    /// (recorded as the deployment's when it has none; another refused at the start).
    pub numbering: std::sync::Arc<crate::numbering::Numbering>,
    /// Hand each window of each held partition, once closed, to the `on_window` of [`run`]:
    /// a window is closed once the partition's flows have started this long after its end
    /// (or, for a quiet partition, once the clock has), and when a worker that stops once
    /// everything is counted stops. `None`: windows are not handed on.
    pub close_after: Option<Duration>,
}

/// What [`run`] calls for each closed window: the partition, the window's start (Unix
/// seconds) and every delta its chain holds of the window. An error is said and the window
/// handed on again later; success is recorded (`closed.<partition>` in the state store), so a
/// window is handed on once, or, if a worker dies in between, again by the next holder (what
/// the caller does with it must make a repeat harmless: signed evidence is deterministic, and a
/// log keeps an entry once).
pub type OnWindow<'a> = dyn FnMut(u32, u64, Vec<Delta>) -> Result<(), WindowError> + 'a;

/// Why the caller could not take a closed window (its own error: the worker says it and hands
/// the window on again later).
pub type WindowError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve`] calls for each closed window: [`OnWindow`]'s arguments after the setup the
/// worker recorded.
pub type ServeOnWindow<'a> =
    dyn FnMut(&crate::report::Setup, u32, u64, Vec<Delta>) -> Result<(), WindowError> + 'a;

/// What a worker did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Flows judged.
    pub flows: u64,
    /// Messages read.
    pub messages: u64,
    /// Messages that were not batches (counted, reported, covered by a part and so not read
    /// again, and nothing of them counted).
    pub refused: u64,
    /// Parts appended.
    pub parts: u64,
    /// Partitions lost to another worker's append.
    pub lost: u64,
    /// Partitions taken (first, or over from another worker).
    pub taken: u64,
    /// Flows that started in a window already handed on (more than the lateness late): counted
    /// in the report, not in what that window handed on.
    pub late: u64,
    /// Parts too large for one of the engine's messages, appended as chunks.
    pub chunked_parts: u64,
    /// Partitions taken where the chain ended beyond what this worker's monitor had read of
    /// them and the answers stream no longer kept every answer that may matter: for a day no
    /// flow only a name could allow is held against a device
    /// ([`Monitor::answers_unread_before`]).
    pub taken_with_answers_unread: u64,
    /// DNS answers read again from the answers stream when partitions were taken whose earlier
    /// answers this worker had not read.
    pub dns_answers_read_again: u64,
    /// Messages of the answers stream that were not batches of DNS answers (said, skipped).
    pub dns_messages_refused: u64,
    /// Per partition, the flow sequence up to which this worker's monitor read every message
    /// (and so every DNS answer): kept across sessions, so that a worker taking back its own
    /// partitions after the engine failed knows it missed nothing.
    read_to: BTreeMap<u32, u64>,
    /// The answers stream's sequence up to which this worker's monitor read it again.
    answers_read_to: u64,
}

/// One partition this worker holds; `E` is the engine's answer to a part sent.
struct Held<R, E> {
    reader: R,
    /// The part sent and not yet answered.
    in_flight: Option<InFlight<E>>,
    /// The rows stream sequence of the chain's end (0: empty).
    chain: u64,
    /// The last flow sequence the chain covers.
    done: u64,
    /// The last flow sequence counted into `pending`.
    read: u64,
    watermark_ns: u64,
    pending: Vec<(u64, Delta)>,
    pending_bytes: usize,
    /// What the monitor counted of this partition and not yet taken into `pending`, set aside
    /// while it reads the others ([`Monitor::swap_counting`]), and the window it is of (`None`:
    /// nothing counted). Taken at a new window, before a part is sent, and when the part would
    /// grow too large: not after every read, which would cut a window's rows into as many
    /// deltas as reads, each sorted and then merged again.
    counting: Counting,
    window: Option<u64>,
    refused: u64,
    since: Instant,
    /// The lease's revision this worker last wrote.
    lease: u64,
    /// Windows with counts in the chain, not yet handed on (with [`Config::close_after`]).
    open_windows: BTreeSet<u64>,
    /// When a message last came.
    last_message: Instant,
    /// The start of the first window not yet handed on.
    closed_below: u64,
}

impl<R, E> Held<R, E> {
    /// A partition held under lease revision `lease`, read by `reader`, with nothing counted
    /// and an empty chain.
    fn new(reader: R, lease: u64) -> Held<R, E> {
        Held {
            reader,
            in_flight: None,
            chain: 0,
            done: 0,
            read: 0,
            watermark_ns: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            counting: Counting::default(),
            window: None,
            refused: 0,
            since: Instant::now(),
            lease,
            open_windows: BTreeSet::new(),
            last_message: Instant::now(),
            closed_below: 0,
        }
    }
}

/// A part sent, its answer not yet awaited.
struct InFlight<E> {
    answer: E,
    /// The last flow sequence it covers.
    last: u64,
    /// The windows it holds counts of.
    windows: Vec<u64>,
}

/// The most `d` takes in a part (each of its sets of names as written: a 4-byte count and each
/// name with its 2-byte length).
fn delta_bytes(d: &Delta) -> usize {
    WINDOW_BYTES
        + d.devices.len() * DEVICE_BYTES
        + (d.violations.len() + d.unattributable.len()) * ROW_BYTES
        + d.peer_names.as_ref().map_or(0, Vec::len) * PEER_NAMES_BYTES
        + d.name_sets
            .iter()
            .map(|set| {
                4 + set
                    .iter()
                    .map(|n| n.len().min(u16::MAX as usize) + 2)
                    .sum::<usize>()
            })
            .sum::<usize>()
}

/// Runs a worker until `stop` is set (or, with [`Config::until_caught_up`], until everything
/// is counted); `say` is told what happens (partitions taken, lost, released; refused
/// messages).
pub async fn run<T: Transport>(
    t: &T,
    monitor: &mut Monitor,
    cfg: &Config,
    stop: &std::sync::atomic::AtomicBool,
    say: &mut dyn FnMut(String),
    on_window: &mut OnWindow<'_>,
) -> Result<Stats, TransportError> {
    let mut st = Stats::default();
    let mut failing_since: Option<Instant> = None;
    // Batches this worker could not read would be refused and skipped: refuse to start instead.
    let started = Instant::now();
    while let Err(e) = crate::numbering::claim(t, &cfg.numbering).await {
        if !e.is_transient() || started.elapsed() > ENGINE_PATIENCE {
            return Err(e);
        }
        say(format!("{e}; trying again in 1 s"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        let before = st.parts;
        match session(t, monitor, cfg, stop, say, on_window, &mut st).await {
            Ok(()) => return Ok(st),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                // What was counted and not appended is dropped: the chains say where to read
                // from again (this worker's leases are still its own, and taken back at once).
                let _ = monitor.take();
                if st.parts > before {
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > ENGINE_PATIENCE {
                    return Err(e);
                }
                say(format!("{e}; starting again from the chains' ends in 1 s"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// How long a worker keeps starting again while the engine fails (a restart of the server, a
/// partition of the network) before it gives up with the error.
pub const ENGINE_PATIENCE: Duration = Duration::from_secs(120);

/// One run of the worker, until stopped or until the engine fails.
async fn session<T: Transport>(
    t: &T,
    monitor: &mut Monitor,
    cfg: &Config,
    stop: &std::sync::atomic::AtomicBool,
    say: &mut dyn FnMut(String),
    on_window: &mut OnWindow<'_>,
    st: &mut Stats,
) -> Result<(), TransportError> {
    let mut held: BTreeMap<u32, Held<T::Reader, T::Extending>> = BTreeMap::new();
    // Others' leases and announcements: key to (revision, when it last changed).
    let mut seen: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    let mut tick = Instant::now() - LEASE_TICK;
    let mut counted = Instant::now();
    // Workers alive at the last count, and until when to look for partitions let go.
    let mut alive = 0usize;
    let mut settling_until = Instant::now();
    let mut idle_since = Instant::now();
    // One batch's items, read into the same buffer each time.
    let mut items = Vec::new();
    // Running to the stream's end: when it was last asked whether everything is counted,
    // whether what was held has been appended since, and whether a collector said it ended.
    let mut checked = Instant::now();
    let mut appended = false;
    let mut inputs_ended = false;
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        // Run to the stream's end: once idle, see at once whether everything is counted (and
        // again once what was held is appended), else at most once in four idle spells (in
        // twenty while no collector has said it ended: until then the answer is no).
        let check_soon = cfg.until_caught_up
            && idle_since.elapsed() > UNTIL_IDLE
            && (appended || checked.elapsed() >= if inputs_ended { 4 } else { 20 } * UNTIL_IDLE);
        // Between ticks, count the workers alive: a change shares the partitions out again
        // now, and for a while a worker short of its share looks for partitions let go.
        let mut share_again = false;
        let mut just_counted = None;
        if tick.elapsed() < LEASE_TICK && !check_soon && counted.elapsed() >= MEMBERSHIP_TICK {
            counted = Instant::now();
            let now_alive = alive_workers(t, &mut seen).await?;
            just_counted = Some(now_alive);
            if now_alive != alive {
                settling_until = Instant::now() + SETTLING;
                share_again = true;
            }
            let share = cfg.partitions.len().div_ceil(now_alive.max(1));
            share_again |= Instant::now() < settling_until && held.len() < share;
        }
        if tick.elapsed() >= LEASE_TICK || share_again {
            tick = Instant::now();
            counted = tick;
            announce(t, &cfg.id).await?;
            // Counted a moment ago when that is why the partitions are shared out now.
            let now_alive = match just_counted {
                Some(n) => n,
                None => alive_workers(t, &mut seen).await?,
            };
            if now_alive != alive {
                settling_until = Instant::now() + SETTLING;
                alive = now_alive;
            }
            let share = cfg.partitions.len().div_ceil(alive.max(1));
            renew(t, cfg, &mut held, st, say).await?;
            // Hand on the windows that have closed.
            let mut gone = Vec::new();
            for (&p, h) in held.iter_mut() {
                if !close_windows(t, monitor, p, h, cfg, st, false, on_window, say).await? {
                    gone.push(p);
                }
            }
            for p in gone {
                leave(&mut held, p, st, say, "another worker extended its chain");
            }
            // Release beyond the fair share (after appending what was counted).
            while held.len() > share {
                let Some((&p, _)) = held.iter().next_back() else {
                    break;
                };
                let mut h = held.remove(&p).expect("held");
                if append(t, monitor, p, &mut h, cfg, st).await? {
                    let _ = t
                        .swap(&lease_key(p), Bytes::from_static(b""), Some(h.lease))
                        .await?;
                    say(format!(
                        "partition {p}: released ({share} each for {alive} workers)"
                    ));
                }
            }
            // Take free or expired partitions up to the share (their readers opened at once).
            let mut taken = Vec::new();
            for &p in &cfg.partitions {
                if held.len() + taken.len() >= share {
                    break;
                }
                if held.contains_key(&p) {
                    continue;
                }
                let which = Takeable::FreeOwnOrExpired(&mut seen);
                let Some(lease) = take_lease(t, p, &cfg.id, which).await? else {
                    continue;
                };
                taken.push((p, lease));
            }
            let opened =
                futures_util::future::try_join_all(taken.iter().map(|&(p, l)| open(t, p, l, cfg)))
                    .await?;
            // Partitions whose chains end beyond what this worker's monitor read of them (taken
            // from another worker, or its own before it restarted): the DNS answers before were
            // not read here.
            let mut unread = Vec::new();
            for ((p, _), h) in taken.into_iter().zip(opened) {
                say(format!(
                    "partition {p}: taken, from flow sequence {} (chain at {})",
                    h.done, h.chain
                ));
                if h.done > st.read_to.get(&p).copied().unwrap_or(0) {
                    unread.push((p, h.done, h.watermark_ns));
                } else {
                    st.read_to.entry(p).or_insert(h.done);
                }
                st.taken += 1;
                held.insert(p, h);
            }
            if !unread.is_empty() {
                // Read again from the answers stream before any of their flows, as one
                // process would have read them; what it no longer keeps is held against no
                // device until it has expired.
                let missed = read_answers_again(t, monitor, cfg, &mut held, st, say).await?;
                for &(p, done, watermark_ns) in &unread {
                    let since = match missed {
                        Missed::Nothing => None,
                        Missed::Before(first_ns) => Some(first_ns),
                        Missed::AllBefore => Some(watermark_ns),
                    };
                    let Some(since) = since else {
                        st.read_to.insert(p, done);
                        continue;
                    };
                    monitor.answers_unread_before(since);
                    if nospy_monitor::answers_matter(since, watermark_ns) {
                        st.taken_with_answers_unread += 1;
                        say(format!(
                            "partition {p}: the DNS answers before flow sequence {done} are no longer all kept (the answers stream keeps them a day beyond the flows): for a day, flows only a name could allow are unattributable"
                        ));
                    }
                    st.read_to.insert(p, done);
                }
            }
        }
        // Whether everything is counted: asked apart from the leases' ticks, which need not
        // come as often.
        if check_soon {
            checked = Instant::now();
            appended = false;
        }
        if check_soon
            && held
                .values()
                .all(|h| h.pending.is_empty() && h.window.is_none() && h.in_flight.is_none())
            && (inputs_ended || {
                inputs_ended = !t.keys("input.").await?.is_empty();
                inputs_ended
            })
            && caught_up(t, &cfg.partitions).await?
        {
            say("every partition is counted to the end of the stream".into());
            // A partition no worker holds (one let go as this worker joined, its last
            // windows not yet handed on) is taken now, so that its windows are closed
            // too: a worker that ends leaves no window behind.
            if cfg.close_after.is_some() {
                for &p in &cfg.partitions {
                    if held.contains_key(&p) {
                        continue;
                    }
                    if let Some(lease) = take_lease(t, p, &cfg.id, Takeable::Free).await? {
                        let h = open(t, p, lease, cfg).await?;
                        say(format!(
                            "partition {p}: taken to hand on its windows ({} open)",
                            h.open_windows.len()
                        ));
                        st.taken += 1;
                        held.insert(p, h);
                    }
                }
            }
            // Everything is counted: every window of what this worker holds is closed,
            // and handed on (again, while what takes them refuses for a while: another
            // worker holding a local log's lock, say).
            let started = Instant::now();
            loop {
                for (&p, h) in held.iter_mut() {
                    close_windows(t, monitor, p, h, cfg, st, true, on_window, say).await?;
                }
                if held.values().all(|h| h.open_windows.is_empty()) {
                    break;
                }
                if started.elapsed() > ENGINE_PATIENCE {
                    return Err(TransportError::WindowsNotHandedOn);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            break;
        }
        // Read every held partition a little, in turn: what has arrived, without waiting.
        let mut any = false;
        let parts: Vec<u32> = held.keys().copied().collect();
        if parts.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let wait = Duration::ZERO;
        for p in parts {
            let Some(h) = held.get_mut(&p) else { continue };
            let got = h.reader.next(READ_MESSAGES, wait).await?;
            if !got.is_empty() {
                any = true;
                h.last_message = Instant::now();
            }
            // This partition's counting, and the window it is of, back in the monitor.
            monitor.swap_counting(&mut h.counting);
            let mut window: Option<u64> = h.window.take();
            let mut lost_now = false;
            let mut late = 0u64;
            let mut unknown: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
            for m in got {
                // Never counted twice: a reader that starts again delivers nothing at or
                // before what was read.
                if m.seq <= h.read {
                    say(format!(
                        "partition {p}: message {} delivered again (read up to {}); skipped",
                        m.seq, h.read
                    ));
                    continue;
                }
                st.messages += 1;
                match decode_batch_into(&m.payload, &cfg.numbering, &mut items) {
                    Ok(()) => {}
                    Err(e) => {
                        h.read = m.seq;
                        st.read_to.insert(p, m.seq);
                        st.refused += 1;
                        h.refused += 1;
                        say(format!(
                            "partition {p}: message {} is not a flow batch ({e}); counted as refused",
                            m.seq
                        ));
                        continue;
                    }
                };
                // Room in the part for the most this batch can add (each flow two rows and two
                // devices at most): else what is held is appended first, so that what is held
                // stays bounded whatever the batches hold. The items bound the flows: these are
                // counted (a pass over the batch) only when that bound leaves no room.
                let crowded = h.read > h.done
                    && part_bound(monitor, h, items.len()) > PART_MOST
                    && part_bound(
                        monitor,
                        h,
                        items.iter().filter(|i| matches!(i, Item::Flow(..))).count(),
                    ) > PART_MOST;
                if crowded {
                    hand_over(monitor, h, &mut window, &mut unknown);
                    if !send(t, monitor, p, h, cfg, st).await? {
                        lost_now = true;
                        break;
                    }
                }
                h.read = m.seq;
                st.read_to.insert(p, m.seq);
                for it in &items {
                    match *it {
                        Item::Flow(ref f, refs) => {
                            let second = f.first_ns / 1_000_000_000;
                            // The window of the flow before, unless this one lies outside it.
                            let w = match window {
                                Some(c)
                                    if (c..c.saturating_add(cfg.window_secs)).contains(&second) =>
                                {
                                    c
                                }
                                _ => window_of(second, cfg.window_secs),
                            };
                            if window.is_some_and(|c| c != w) {
                                let d = monitor.take();
                                push(h, window.unwrap_or(w), d);
                            }
                            window = Some(w);
                            st.flows += 1;
                            if w < h.closed_below {
                                late += 1;
                            }
                            h.watermark_ns = h.watermark_ns.max(f.first_ns);
                            // The devices the collector found: no lookup of the addresses.
                            monitor.flow_of(f, cfg.numbering.devices(refs));
                        }
                        Item::Dns(ref d) => monitor.dns(d),
                        Item::Unknown {
                            second,
                            flows,
                            packets,
                            bytes,
                        } => {
                            let e = unknown
                                .entry(window_of(second, cfg.window_secs))
                                .or_insert((0, 0, 0));
                            e.0 += flows;
                            e.1 += packets;
                            e.2 += bytes;
                        }
                    }
                }
                // Parts of about PART_BYTES: appended once what is held reaches it and the
                // part before is answered. Until it is, flows are judged on into this one
                // (PART_MOST bounds it above) rather than waited with.
                if part_bound(monitor, h, 0) >= PART_BYTES {
                    match settle_if_answered(h, cfg, st)? {
                        None => {}
                        Some(false) => {
                            lost_now = true;
                            break;
                        }
                        Some(true) => {
                            hand_over(monitor, h, &mut window, &mut unknown);
                            if !send(t, monitor, p, h, cfg, st).await? {
                                lost_now = true;
                                break;
                            }
                        }
                    }
                }
            }
            // Set aside again until the next read of this partition (or a part is sent).
            h.window = window;
            monitor.swap_counting(&mut h.counting);
            if lost_now {
                leave(&mut held, p, st, say, "another worker extended its chain");
                continue;
            }
            if late > 0 {
                st.late += late;
                say(format!(
                    "partition {p}: {late} flows started in windows already handed on (more than the lateness late): counted in the report, not in those windows' evidence"
                ));
            }
            for (w, (flows, packets, bytes)) in unknown {
                push(h, w, unknown_delta(flows, packets, bytes));
            }
            let due = h.pending_bytes >= PART_BYTES
                || (h.read > h.done && h.since.elapsed() >= cfg.flush);
            // Sent once the part before is answered (else at a later turn).
            let lost = due
                && match settle_if_answered(h, cfg, st)? {
                    None => false,
                    Some(false) => true,
                    Some(true) => !send(t, monitor, p, h, cfg, st).await?,
                };
            if lost {
                leave(&mut held, p, st, say, "another worker extended its chain");
            }
        }
        if any {
            idle_since = Instant::now();
        } else {
            // Nothing had arrived anywhere: wait a little (longer once idle for a while).
            let idle = idle_since.elapsed();
            tokio::time::sleep(Duration::from_millis(if idle > Duration::from_secs(1) {
                20
            } else {
                2
            }))
            .await;
        }
        let idle_append = if cfg.until_caught_up {
            UNTIL_IDLE
        } else {
            Duration::from_millis(100)
        };
        if !any && idle_since.elapsed() > idle_append {
            // Idle: append what is held now rather than at the next flush.
            let (sent, lost) = append_all(t, monitor, &mut held, cfg, st).await?;
            appended |= sent;
            for p in lost {
                leave(&mut held, p, st, say, "another worker extended its chain");
            }
        }
    }
    // Stopping: append what was counted, and free the leases (of the partitions still held).
    let (_, lost) = append_all(t, monitor, &mut held, cfg, st).await?;
    let free: Vec<(String, u64)> = held
        .iter()
        .filter(|(p, _)| !lost.contains(p))
        .map(|(&p, h)| (lease_key(p), h.lease))
        .collect();
    futures_util::future::try_join_all(
        free.iter()
            .map(|(key, lease)| t.swap(key, Bytes::from_static(b""), Some(*lease))),
    )
    .await?;
    Ok(())
}

/// Appends what every held partition counted: every part sent, then every answer awaited (not
/// one partition's after another's). Returns whether a part was sent, and the partitions lost
/// (another worker extended their chains: what was counted of them is dropped).
async fn append_all<T: Transport>(
    t: &T,
    monitor: &mut Monitor,
    held: &mut BTreeMap<u32, Held<T::Reader, T::Extending>>,
    cfg: &Config,
    st: &mut Stats,
) -> Result<(bool, Vec<u32>), TransportError> {
    let (mut sent, mut lost) = (false, Vec::new());
    for (&p, h) in held.iter_mut() {
        if h.read > h.done {
            sent = true;
            if !send(t, monitor, p, h, cfg, st).await? {
                lost.push(p);
            }
        }
    }
    for (&p, h) in held.iter_mut() {
        if !lost.contains(&p) && !settle(h, cfg, st).await? {
            lost.push(p);
        }
    }
    Ok((sent, lost))
}

/// Renews the leases of what is held; leaves what another took.
async fn renew<T: Transport>(
    t: &T,
    cfg: &Config,
    held: &mut BTreeMap<u32, Held<T::Reader, T::Extending>>,
    st: &mut Stats,
    say: &mut dyn FnMut(String),
) -> Result<(), TransportError> {
    let mut gone = Vec::new();
    for (&p, h) in held.iter_mut() {
        match t
            .swap(&lease_key(p), Bytes::from(cfg.id.clone()), Some(h.lease))
            .await?
        {
            Some(r) => h.lease = r,
            None => gone.push(p),
        }
    }
    for p in gone {
        leave(held, p, st, say, "its lease was taken");
    }
    Ok(())
}

/// What reading the answers stream again could not read.
#[derive(Debug, Clone, Copy)]
enum Missed {
    /// Nothing: it keeps every answer published since it was last read.
    Nothing,
    /// The answers before the first it keeps, which began at this time.
    Before(u64),
    /// Every answer before now: it keeps none.
    AllBefore,
}

/// How long reading the answers stream again waits for its next message before it fails (and
/// the worker starts again).
const ANSWERS_PATIENCE: Duration = Duration::from_secs(30);

/// Reads the DNS answers the answers stream keeps into `monitor`, in the order published,
/// renewing the leases held meanwhile: the answers a partition's earlier batches held, read
/// by whoever counted them, and those published since (which the partitions hold too: an
/// answer read twice changes nothing). Those it read at an earlier call are in the monitor
/// already: it reads from where that call ended ([`Stats`] keeps it). Returns what it could
/// not read.
async fn read_answers_again<T: Transport>(
    t: &T,
    monitor: &mut Monitor,
    cfg: &Config,
    held: &mut BTreeMap<u32, Held<T::Reader, T::Extending>>,
    st: &mut Stats,
    say: &mut dyn FnMut(String),
) -> Result<Missed, TransportError> {
    let kept = t.dns_answers(st.answers_read_to).await?;
    let mut first_ns: Option<u64> = None;
    let mut items = Vec::new();
    let mut renewed = Instant::now();
    let mut answers = 0u64;
    if let Some(mut reader) = kept.reader {
        let mut at = 0;
        let mut quiet = Instant::now();
        while at < kept.last {
            if renewed.elapsed() >= LEASE_TICK {
                renew(t, cfg, held, st, say).await?;
                renewed = Instant::now();
            }
            let got = reader.next(64, Duration::from_millis(200)).await?;
            if got.is_empty() {
                if quiet.elapsed() > ANSWERS_PATIENCE {
                    return Err(TransportError::engine(
                        "reading the DNS answers stream again",
                        format!(
                            "nothing came for {} s after sequence {at} (its last was {})",
                            ANSWERS_PATIENCE.as_secs(),
                            kept.last
                        ),
                    ));
                }
                continue;
            }
            quiet = Instant::now();
            for m in got {
                at = m.seq;
                let batch = decode_batch_into(&m.payload, &cfg.numbering, &mut items);
                if let Err(e) = batch {
                    st.dns_messages_refused += 1;
                    say(format!(
                        "DNS answers stream: message {} is not a batch ({e}); skipped",
                        m.seq
                    ));
                    continue;
                }
                if items.iter().any(|i| !matches!(i, Item::Dns(_))) {
                    st.dns_messages_refused += 1;
                    say(format!(
                        "DNS answers stream: message {} holds more than DNS answers; skipped",
                        m.seq
                    ));
                    continue;
                }
                // The first message kept begins at its earliest answer.
                let first = first_ns.is_none();
                for it in &items {
                    if let Item::Dns(d) = it {
                        monitor.dns(d);
                        answers += 1;
                        if first {
                            first_ns = Some(first_ns.map_or(d.ts_ns, |f| f.min(d.ts_ns)));
                        }
                    }
                }
            }
        }
    }
    st.answers_read_to = st.answers_read_to.max(kept.last);
    st.dns_answers_read_again += answers;
    say(format!(
        "{answers} DNS answers read again from the answers stream"
    ));
    Ok(match (kept.missing_before, first_ns) {
        (false, _) => Missed::Nothing,
        (true, Some(ns)) => Missed::Before(ns),
        (true, None) => Missed::AllBefore,
    })
}

/// Leaves partition `p` to another worker that took it (`why`): what was counted of it and not
/// appended is dropped (that worker reads it again from the chain).
fn leave<R, E>(
    held: &mut BTreeMap<u32, Held<R, E>>,
    p: u32,
    st: &mut Stats,
    say: &mut dyn FnMut(String),
    why: &str,
) {
    held.remove(&p);
    st.lost += 1;
    say(format!("partition {p}: {why}; left to it"));
}

/// What the partition being read counted so far (in `monitor`, of `window`) and its flows of no
/// device, into what `h` holds to send.
fn hand_over<R, E>(
    monitor: &mut Monitor,
    h: &mut Held<R, E>,
    window: &mut Option<u64>,
    unknown: &mut BTreeMap<u64, (u64, u64, u64)>,
) {
    if let Some(w) = window.take() {
        let d = monitor.take();
        push(h, w, d);
    }
    for (w, (flows, packets, bytes)) in std::mem::take(unknown) {
        push(h, w, unknown_delta(flows, packets, bytes));
    }
}

/// The most the part `h` would take if what the monitor counts of it were taken now and
/// `flows` more flows judged first: every row and device at its largest encoding ([`ROW_BYTES`]
/// and, as it may be a violation's, [`PEER_NAMES_BYTES`]; [`DEVICE_BYTES`]), each flow adding
/// at most two rows and two devices.
fn part_bound<R, E>(monitor: &Monitor, h: &Held<R, E>, flows: usize) -> usize {
    let (rows, devices) = monitor.held();
    h.pending_bytes
        + (rows + 2 * flows) * (ROW_BYTES + PEER_NAMES_BYTES)
        + (devices + 2 * flows) * DEVICE_BYTES
}

/// Flows of no device, as a delta.
fn unknown_delta(flows: u64, packets: u64, bytes: u64) -> Delta {
    Delta {
        flows,
        packets,
        bytes,
        unknown_device_flows: flows,
        ..Delta::default()
    }
}

/// Adds what was counted of window `w` to what is held: kept as it is until the part is sent
/// (then merged once per window, [`Delta::merged`]), counted at its own size, which bounds what
/// it adds to the merged part.
fn push<R, E>(h: &mut Held<R, E>, w: u64, d: Delta) {
    if d.is_empty() {
        return;
    }
    h.pending_bytes += delta_bytes(&d);
    h.pending.push((w, d));
}

/// The start of the window holding `second`.
pub fn window_of(second: u64, window_secs: u64) -> u64 {
    second - second % window_secs.max(1)
}

/// Which leases [`take_lease`] takes.
enum Takeable<'a> {
    /// Free ones only.
    Free,
    /// Free ones, this worker's own from before the engine failed, and others' not renewed
    /// for [`LEASE_EXPIRY`] (`seen`: each lease's revision and when it last changed).
    FreeOwnOrExpired(&'a mut BTreeMap<String, (u64, Instant)>),
}

/// Takes partition `p`'s lease for worker `id` if it is one `which` allows, by compare-and-swap
/// on its revision: the new revision, or `None` when it is not to be taken (or another worker
/// took it first).
async fn take_lease<T: Transport>(
    t: &T,
    p: u32,
    id: &str,
    which: Takeable<'_>,
) -> Result<Option<u64>, TransportError> {
    let key = lease_key(p);
    let expected = match (t.get(&key).await?, which) {
        (None, _) => None,
        (Some((v, rev)), _) if v.is_empty() => Some(rev),
        (Some((v, rev)), Takeable::FreeOwnOrExpired(_)) if v[..] == *id.as_bytes() => Some(rev),
        (Some((_, rev)), Takeable::FreeOwnOrExpired(seen)) => {
            let e = seen.entry(key.clone()).or_insert((rev, Instant::now()));
            if e.0 != rev {
                *e = (rev, Instant::now());
            }
            if e.1.elapsed() < LEASE_EXPIRY {
                return Ok(None);
            }
            Some(rev)
        }
        (Some(_), Takeable::Free) => return Ok(None),
    };
    t.swap(&key, Bytes::from(id.to_string()), expected).await
}

fn lease_key(p: u32) -> String {
    format!("lease.{p}")
}

/// Which worker holds each of partitions `0..partitions` (by its [`Config::id`]), as its
/// lease says: `None` for a partition free or never taken. A lease lapses unrenewed, so a
/// worker that died still holds its partitions here until another takes them.
pub async fn holders<T: Transport>(
    t: &T,
    partitions: u32,
) -> Result<Vec<Option<String>>, TransportError> {
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        out.push(
            t.get(&lease_key(p))
                .await?
                .filter(|(v, _)| !v.is_empty())
                .map(|(v, _)| String::from_utf8_lossy(&v).into_owned()),
        );
    }
    Ok(out)
}

/// Announces this worker (its key's revision moves on: it is alive).
async fn announce<T: Transport>(t: &T, id: &str) -> Result<u64, TransportError> {
    t.put(&format!("worker.{id}"), Bytes::from(id.to_string()))
        .await
}

/// Workers whose announcement moved on within [`LEASE_EXPIRY`].
async fn alive_workers<T: Transport>(
    t: &T,
    seen: &mut BTreeMap<String, (u64, Instant)>,
) -> Result<usize, TransportError> {
    let mut n = 0;
    for (k, rev) in t.keys("worker.").await? {
        let e = seen.entry(k).or_insert((rev, Instant::now()));
        if e.0 != rev {
            *e = (rev, Instant::now());
        }
        if e.1.elapsed() < LEASE_EXPIRY {
            n += 1;
        }
    }
    Ok(n)
}

/// Opens a partition at the end of its chain.
async fn open<T: Transport>(
    t: &T,
    p: u32,
    lease: u64,
    cfg: &Config,
) -> Result<Held<T::Reader, T::Extending>, TransportError> {
    let mut open_windows = BTreeSet::new();
    let mut below = 0;
    if cfg.close_after.is_some() {
        below = closed_below(t, p).await?;
        for part in chain_parts(t, p).await? {
            open_windows.extend(part.windows.iter().map(|w| w.0).filter(|w| *w >= below));
        }
    }
    let (chain, done, watermark_ns) = chain_end(t, p, true).await?;
    let reader = t.read(p, done).await?;
    Ok(Held {
        chain,
        done,
        read: done,
        watermark_ns,
        open_windows,
        closed_below: below,
        ..Held::new(reader, lease)
    })
}

/// Every part of `p`'s chain that was appended whole, in order: chunked parts assembled, the
/// chunks of parts never appended whole left out (and parts that cannot be read: a report
/// says them).
async fn chain_parts<T: Transport>(t: &T, p: u32) -> Result<Vec<Part>, TransportError> {
    let mut assembler = Assembler::default();
    let mut parts = Vec::new();
    for b in t.chain(p).await? {
        if let Ok(Some(bytes)) = assembler.add(&b) {
            if let Ok(part) = decode_part(&bytes) {
                parts.push(part);
            }
        }
    }
    Ok(parts)
}

/// Where `p`'s chain ends: the rows sequence of its last message (0: it has none), which the
/// next part must follow, and the last flow sequence and the watermark of its last part
/// appended whole (0 and 0: none), from which the partition is read. Chunks of a part never
/// appended whole, at the end, are passed over back to where the chain ended before them.
/// `whole`: that last part is read whole (a worker about to follow it finds it unreadable
/// now, not a report later); else its head alone.
async fn chain_end<T: Transport>(
    t: &T,
    p: u32,
    whole: bool,
) -> Result<(u64, u64, u64), TransportError> {
    let Some(end) = t.chain_end(p).await? else {
        return Ok((0, 0, 0));
    };
    let (mut seq, mut bytes) = (end.seq, end.part);
    loop {
        let unreadable = |e: crate::wire::WireError| {
            TransportError::Corrupt(format!(
                "partition {p}: the part at rows sequence {seq} of its chain is unreadable: {e}"
            ))
        };
        let before = match read_chain_message(&bytes).map_err(unreadable)? {
            ChainMessage::Part(b) if whole => {
                let part = decode_part(b).map_err(unreadable)?;
                return Ok((end.seq, part.last, part.watermark_ns));
            }
            ChainMessage::Part(b) => {
                let (last, watermark_ns) = part_end(b).map_err(unreadable)?;
                return Ok((end.seq, last, watermark_ns));
            }
            // A last chunk follows the others of its part (each was appended only after the
            // one before): the part was appended whole.
            ChainMessage::Chunk(c) if c.index + 1 == c.count => {
                return Ok((end.seq, c.last, c.watermark_ns))
            }
            ChainMessage::Chunk(c) => c.before,
        };
        if before == 0 {
            return Ok((end.seq, 0, 0));
        }
        if before >= seq {
            return Err(TransportError::Corrupt(format!(
                "partition {p}: the chunk at rows sequence {seq} says the chain ended at {before} before it"
            )));
        }
        seq = before;
        bytes = t.chain_at(p, seq).await?.ok_or_else(|| {
            TransportError::Corrupt(format!(
                "partition {p}: a chunk says the chain ended at rows sequence {seq}, where it has no part"
            ))
        })?;
    }
}

/// The start of the first window of `p` not yet handed on.
async fn closed_below<T: Transport>(t: &T, p: u32) -> Result<u64, TransportError> {
    Ok(t.get(&format!("closed.{p}"))
        .await?
        .and_then(|(v, _)| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0))
}

#[allow(clippy::too_many_arguments)]
/// Hands on the windows of `p` that are closed (all of them with `all`), in order, after
/// appending what is held.
async fn close_windows<T: Transport, R>(
    t: &T,
    monitor: &mut Monitor,
    p: u32,
    h: &mut Held<R, T::Extending>,
    cfg: &Config,
    st: &mut Stats,
    all: bool,
    on_window: &mut OnWindow<'_>,
    say: &mut dyn FnMut(String),
) -> Result<bool, TransportError> {
    let Some(after) = cfg.close_after else {
        return Ok(true);
    };
    let mut limit = h.watermark_ns / 1_000_000_000;
    if h.last_message.elapsed() > after {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        limit = limit.max(now);
    }
    let due: Vec<u64> = h
        .open_windows
        .iter()
        .copied()
        .filter(|w| all || w + cfg.window_secs + after.as_secs() <= limit)
        .collect();
    if due.is_empty() {
        return Ok(true);
    }
    if !append(t, monitor, p, h, cfg, st).await? {
        return Ok(false);
    }
    let parts = chain_parts(t, p).await?;
    for w in due {
        let deltas: Vec<Delta> = parts
            .iter()
            .flat_map(|part| part.windows.iter())
            .filter(|(x, _)| *x == w)
            .map(|(_, d)| d.clone())
            .collect();
        if let Err(e) = on_window(p, w, deltas) {
            say(format!(
                "partition {p}, window {}: {e}; handed on again later",
                nospy_monitor::evidence::format_time(w.saturating_mul(1_000_000_000))
            ));
            break;
        }
        t.put(
            &format!("closed.{p}"),
            Bytes::from((w + cfg.window_secs).to_string()),
        )
        .await?;
        h.open_windows.remove(&w);
        h.closed_below = h.closed_below.max(w + cfg.window_secs);
    }
    Ok(true)
}

/// Whether the chains of `partitions` cover every message in them so far. Asked again and
/// again as a run nears its end: the engine says where each partition ends without sending
/// its messages; a chain whose end it cannot say so is read (its last part's head).
async fn caught_up<T: Transport>(
    t: &T,
    partitions: &BTreeSet<u32>,
) -> Result<bool, TransportError> {
    let ends = t.ends().await?;
    for p in partitions {
        let Some(&last) = ends.flows.get(p) else {
            continue;
        };
        let done = match ends.chains.get(p) {
            None => return Ok(false),
            Some(&(_, Some(done))) => done,
            Some(&(_, None)) => {
                let (seq, done, _) = chain_end(t, *p, false).await?;
                if seq == 0 {
                    return Ok(false);
                }
                done
            }
        };
        if done < last {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Appends what `h` counted as one part and waits for the engine's answer. `false`: the
/// chain was extended by another worker; what was counted is dropped (that worker reads it
/// again).
async fn append<T: Transport, R>(
    t: &T,
    monitor: &mut Monitor,
    p: u32,
    h: &mut Held<R, T::Extending>,
    cfg: &Config,
    st: &mut Stats,
) -> Result<bool, TransportError> {
    Ok(send(t, monitor, p, h, cfg, st).await? && settle(h, cfg, st).await?)
}

/// Sends what `h` counted as one part without waiting for the answer, which [`settle`] awaits
/// (before the next part: it is conditional on this one's sequence). `false`: the answer to the
/// part sent before said another worker extended the chain.
async fn send<T: Transport, R>(
    t: &T,
    monitor: &mut Monitor,
    p: u32,
    h: &mut Held<R, T::Extending>,
    cfg: &Config,
    st: &mut Stats,
) -> Result<bool, TransportError> {
    if !settle(h, cfg, st).await? {
        return Ok(false);
    }
    if h.read == h.done {
        return Ok(true);
    }
    // What the monitor counted of the partition and set aside (none while it is being read:
    // the reader takes it itself before sending).
    if let Some(w) = h.window.take() {
        monitor.swap_counting(&mut h.counting);
        let d = monitor.take();
        monitor.swap_counting(&mut h.counting);
        push(h, w, d);
    }
    // One delta per window (one taken from the monitor is already in order, and kept so).
    let mut windows: BTreeMap<u64, Vec<Delta>> = BTreeMap::new();
    for (w, d) in std::mem::take(&mut h.pending) {
        windows.entry(w).or_default().push(d);
    }
    let windows: BTreeMap<u64, Delta> = windows
        .into_iter()
        .map(|(w, mut ds)| {
            (
                w,
                if ds.len() == 1 {
                    ds.remove(0)
                } else {
                    Delta::merged(ds)
                },
            )
        })
        .collect();
    let part = Part {
        inventory: cfg.inventory,
        partition: p,
        after: h.done,
        last: h.read,
        watermark_ns: h.watermark_ns,
        window_secs: cfg.window_secs,
        refused: h.refused,
        windows: windows.into_iter().collect(),
    };
    let windows: Vec<u64> = part.windows.iter().map(|w| w.0).collect();
    let last = part.last;
    // A part too large for one message goes as chunks, each appended where the one before
    // ended the chain; the last is sent as a part is.
    let mut chunks = chunk_part(
        encode_part(&part),
        p,
        h.chain,
        last,
        h.watermark_ns,
        PART_MESSAGE,
    );
    let whole = chunks.pop().unwrap_or_default();
    if !chunks.is_empty() {
        st.chunked_parts += 1;
    }
    for c in chunks {
        match t.extend_chain(p, h.chain, Bytes::from(c), None).await? {
            Some(seq) => h.chain = seq,
            None => return Ok(false),
        }
    }
    let answer = t
        .send_extend(p, h.chain, Bytes::from(whole), Some(last))
        .await?;
    h.in_flight = Some(InFlight {
        answer,
        last,
        windows,
    });
    h.pending_bytes = 0;
    h.refused = 0;
    h.since = Instant::now();
    Ok(true)
}

/// Awaits the answer to the part `h` sent, if any: the chain then ends at it. `false`: another
/// worker extended the chain first; nothing of the part was appended.
async fn settle<R, E>(
    h: &mut Held<R, E>,
    cfg: &Config,
    st: &mut Stats,
) -> Result<bool, TransportError>
where
    E: std::future::Future<Output = Result<Option<u64>, TransportError>>,
{
    let Some(f) = h.in_flight.take() else {
        return Ok(true);
    };
    let answer = f.answer.await?;
    Ok(settled(h, answer, f.last, f.windows, cfg, st))
}

/// [`settle`] if the part `h` sent is answered already (or none is in flight); `None` if its
/// answer has not come yet: then nothing changes, and the worker judges on rather than wait.
fn settle_if_answered<R, E>(
    h: &mut Held<R, E>,
    cfg: &Config,
    st: &mut Stats,
) -> Result<Option<bool>, TransportError>
where
    E: std::future::Future<Output = Result<Option<u64>, TransportError>> + Unpin,
{
    let Some(mut f) = h.in_flight.take() else {
        return Ok(Some(true));
    };
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(std::pin::Pin::new(&mut f.answer), &mut cx) {
        std::task::Poll::Pending => {
            h.in_flight = Some(f);
            Ok(None)
        }
        std::task::Poll::Ready(answer) => Ok(Some(settled(h, answer?, f.last, f.windows, cfg, st))),
    }
}

/// What a part's answer means for its partition: the chain ends at the part (`true`), or
/// another worker extended it first (`false`).
fn settled<R, E>(
    h: &mut Held<R, E>,
    answer: Option<u64>,
    last: u64,
    windows: Vec<u64>,
    cfg: &Config,
    st: &mut Stats,
) -> bool {
    match answer {
        Some(seq) => {
            if cfg.close_after.is_some() {
                h.open_windows.extend(windows);
            }
            h.chain = seq;
            h.done = last;
            st.parts += 1;
            true
        }
        None => false,
    }
}

/// The runtime a worker runs on: [`run`] on the thread that blocks on it, and the engine's
/// connection (its socket reads, its pull requests) on one thread of its own, so that messages
/// keep arriving while the worker judges instead of only when it waits.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs a worker on deployment `deployment` of the NATS server at `url`, on the current
/// thread, until SIGINT or SIGTERM (or, with [`Config::until_caught_up`], until everything is
/// counted): connects, takes `range` of the stream's partitions (all of them when `None`) as
/// `cfg.partitions`, records `setup` (with the worker's window length) for reports, and
/// [`run`]s.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    url: &str,
    deployment: &str,
    range: Option<(u32, u32)>,
    mut cfg: Config,
    setup: crate::report::Setup,
    monitor: &mut Monitor,
    say: &mut dyn FnMut(String),
    on_window: &mut ServeOnWindow<'_>,
) -> Result<Stats, TransportError> {
    let rt = runtime().map_err(|e| TransportError::Stopped(format!("starting the worker: {e}")))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    rt.block_on(async {
        let nats =
            crate::nats::Nats::connect(url, deployment, crate::nats::Options::default()).await?;
        let n = nats.setup(16).await?;
        cfg.partitions = match range {
            None => (0..n).collect(),
            Some((a, b)) if a <= b && b < n => (a..=b).collect(),
            Some((first, last)) => {
                return Err(TransportError::Partitions {
                    first,
                    last,
                    count: n,
                })
            }
        };
        let setup = crate::report::Setup {
            window_secs: cfg.window_secs,
            ..setup
        };
        nats.put("setup", setup.to_bytes()).await?;
        let s2 = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut i), Ok(mut t)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                tokio::select! { _ = i.recv() => {}, _ = t.recv() => {} }
                s2.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        say(format!(
            "worker {} on {} partitions of {deployment}_FLOWS",
            cfg.id,
            cfg.partitions.len()
        ));
        let mut windows = |p: u32, w: u64, deltas: Vec<Delta>| on_window(&setup, p, w, deltas);
        run(&nats, monitor, &cfg, &stop, say, &mut windows).await
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nospy_monitor::{DeviceCounts, NamedPeer, RowParts};
    use std::net::IpAddr;

    /// A part's answer, as the engine gives it: pending until `tx` sends it.
    type Answer = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<u64>, TransportError>> + Send>,
    >;

    fn answer_later() -> (
        tokio::sync::oneshot::Sender<Result<Option<u64>, TransportError>>,
        Answer,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, Box::pin(async move { rx.await.unwrap() }))
    }

    fn held_with(in_flight: Option<InFlight<Answer>>) -> Held<(), Answer> {
        Held {
            in_flight,
            chain: 5,
            done: 3,
            read: 9,
            ..Held::new((), 1)
        }
    }

    /// A part not yet answered leaves its partition as it is (the worker judges on), one
    /// answered ends the chain at it, and one refused says another worker extended the chain.
    #[test]
    fn a_part_not_yet_answered_is_not_waited_for() {
        let cfg = Config {
            id: "w".into(),
            partitions: BTreeSet::from([0]),
            window_secs: 300,
            flush: Duration::from_secs(1),
            until_caught_up: false,
            inventory: [0; 32],
            numbering: std::sync::Arc::new(crate::numbering::Numbering::new(
                &nospy_inventory::Inventory::default(),
            )),
            close_after: Some(Duration::from_secs(60)),
        };
        let mut st = Stats::default();
        let (tx, answer) = answer_later();
        let mut h = held_with(Some(InFlight {
            answer,
            last: 7,
            windows: vec![600],
        }));
        assert_eq!(settle_if_answered(&mut h, &cfg, &mut st).unwrap(), None);
        assert_eq!((h.chain, h.done, st.parts), (5, 3, 0));
        assert!(h.in_flight.is_some() && h.open_windows.is_empty());
        tx.send(Ok(Some(42))).unwrap();
        assert_eq!(
            settle_if_answered(&mut h, &cfg, &mut st).unwrap(),
            Some(true)
        );
        assert_eq!((h.chain, h.done, st.parts), (42, 7, 1));
        assert!(h.in_flight.is_none());
        assert_eq!(h.open_windows, BTreeSet::from([600]));
        // Nothing in flight: nothing to wait for.
        assert_eq!(
            settle_if_answered(&mut h, &cfg, &mut st).unwrap(),
            Some(true)
        );
        // Refused: another worker's part is the chain's end.
        let (tx, answer) = answer_later();
        h.in_flight = Some(InFlight {
            answer,
            last: 9,
            windows: vec![],
        });
        tx.send(Ok(None)).unwrap();
        assert_eq!(
            settle_if_answered(&mut h, &cfg, &mut st).unwrap(),
            Some(false)
        );
        assert_eq!((h.chain, h.done, st.parts), (42, 7, 1));
        // The engine's failure is the caller's to handle, as when the answer is awaited.
        let (tx, answer) = answer_later();
        h.in_flight = Some(InFlight {
            answer,
            last: 11,
            windows: vec![],
        });
        tx.send(Err(TransportError::Stopped("gone".into())))
            .unwrap();
        assert!(settle_if_answered(&mut h, &cfg, &mut st).is_err());
    }

    /// A window's counts at their largest encodings: numbers of 64 bits, device numbers of
    /// 32, IPv6 peers, times that wrap, long names, and every violation's peer with names.
    fn largest(rows: u16, devices: u32) -> Delta {
        let row = |i: u16| RowParts {
            device: u32::MAX,
            to_device: true,
            peer: IpAddr::from([0xffff, i, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff]),
            proto: 255,
            port: u16::MAX,
            flows: u64::MAX,
            packets: u64::MAX,
            bytes: u64::MAX,
            first_ns: u64::MAX,
            last_ns: u64::MAX - 1,
            names: u32::MAX,
            openers: nospy_monitor::OPENED_BY_DEVICE
                | nospy_monitor::OPENED_BY_PEER
                | nospy_monitor::OPENER_UNKNOWN,
        };
        Delta {
            flows: u64::MAX,
            packets: u64::MAX,
            bytes: u64::MAX,
            unknown_device_flows: u64::MAX,
            flows_in_dropped_rows: u64::MAX,
            devices: (0..devices)
                .map(|i| DeviceCounts {
                    device: u32::MAX - i,
                    flows: u64::MAX,
                    violations: u64::MAX,
                    unattributable: u64::MAX,
                })
                .collect(),
            violations: (0..rows).map(row).collect(),
            unattributable: (0..rows).map(row).collect(),
            name_sets: vec![
                Vec::new().into(),
                vec![format!("{}.example", "a".repeat(245)); 3].into(),
            ],
            peer_names: Some(
                (0..rows)
                    .map(|i| NamedPeer {
                        peer: row(i).peer,
                        set: u32::MAX,
                        total: u64::MAX,
                    })
                    .collect(),
            ),
        }
    }

    fn part(windows: Vec<(u64, Delta)>) -> Part {
        Part {
            inventory: [0xff; 32],
            partition: u32::MAX,
            after: u64::MAX,
            last: u64::MAX,
            watermark_ns: u64::MAX,
            window_secs: u64::MAX,
            refused: u64::MAX,
            windows,
        }
    }

    /// What a worker counts a pending window at is never less than what it takes in a part,
    /// whatever it holds: so the bound that keeps a part within the engine's messages holds.
    #[test]
    fn a_window_never_takes_more_in_a_part_than_the_worker_counts() {
        let empty = encode_part(&part(vec![])).len();
        for (rows, devices) in [(0, 0), (1, 1), (100, 3), (1_000, 2_000)] {
            let d = largest(rows, devices);
            let took = encode_part(&part(vec![(u64::MAX, d.clone())])).len() - empty;
            assert!(
                took <= delta_bytes(&d),
                "{rows} rows of each kind and {devices} devices take {took} bytes, counted at {}",
                delta_bytes(&d)
            );
        }
    }

    /// A part whose violation peers' names take it past the engine's messages goes as chunks,
    /// each within them, which read back as the part, names and all; any other part as it is.
    #[test]
    fn a_part_too_large_for_a_message_goes_as_chunks_and_reads_back_whole() {
        let mut d = largest(100, 10);
        // 5,000 peers, each with two long names of its own: about 2.5 MB of names.
        d.violations = (0..5_000u16)
            .map(|i| RowParts {
                peer: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]),
                names: 0,
                ..d.violations[0]
            })
            .collect();
        let first = d.name_sets.len() as u32;
        d.peer_names = Some(
            (0..5_000u16)
                .map(|i| NamedPeer {
                    peer: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]),
                    set: first + u32::from(i),
                    total: 2,
                })
                .collect(),
        );
        for i in 0..5_000 {
            d.name_sets.push(
                ["a", "b"]
                    .iter()
                    .map(|k| format!("{k}{i:05}.{}.example", "n".repeat(236)))
                    .collect(),
            );
        }
        d.unattributable.iter_mut().for_each(|r| r.names = 1);
        let big = part(vec![(1_700_000_000, d.clone())]);
        let bytes = encode_part(&big);
        assert!(bytes.len() > 2 * PART_MESSAGE);
        let chunks = chunk_part(
            bytes.clone(),
            7,
            41,
            big.last,
            big.watermark_ns,
            PART_MESSAGE,
        );
        assert_eq!(
            chunks.len(),
            bytes.len().div_ceil(PART_MESSAGE - crate::wire::CHUNK_HEAD)
        );
        let mut assembler = Assembler::default();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= PART_MESSAGE, "chunk {i}: {} bytes", c.len());
            let whole = assembler.add(c).unwrap();
            assert_eq!(whole.is_some(), i + 1 == chunks.len(), "chunk {i}");
            if let Some(whole) = whole {
                assert_eq!(decode_part(&whole).unwrap(), big);
            }
        }
        // What fits is written as it is.
        let small = encode_part(&part(vec![(1_700_000_000, largest(100, 10))]));
        assert_eq!(
            chunk_part(small.clone(), 7, 41, 1, 1, PART_MESSAGE),
            [small]
        );
    }
}
