//! [`Transport`] on NATS JetStream (server 2.9 or later).
//!
//! For a deployment named `NAME` (upper-case letters, digits, `_` and `-`):
//!
//! - stream `NAME_FLOWS`, subjects `NAME.flows.<partition>`: the collectors' batches, file
//!   storage, message ids deduplicated over [`Options::dedup_window`], kept for
//!   [`Options::retention`];
//! - stream `NAME_DNS`, subject `NAME.dns`: every DNS answer once more, in batches stored
//!   before the partitions' batches that hold them, kept [`nospy_monitor::ANSWERS_MATTER_FOR`]
//!   (a day and an hour) beyond [`Options::retention`]: what a worker taking a partition over
//!   reads again;
//! - stream `NAME_ROWS`, subjects `NAME.rows.<partition>`: each partition's chain of parts,
//!   extended with `Nats-Expected-Last-Subject-Sequence`, kept until deleted; a message that
//!   ends a part has header `Nospy-Counted`, the last flow sequence the part counted (what
//!   [`Transport::ends`] reads without the part);
//! - key-value bucket `NAME_STATE`: `partitions` (fixed by the first setup), `numbering` (the
//!   digest of the inventory's devices and addresses, recorded by the first collector or
//!   worker: `crate::numbering::claim`), `setup` (the workers' devices and manifests),
//!   `input.<source>` (each source's counts), `template.<hex>` (an exporter's templates),
//!   `lease.<partition>` (who holds a partition), `dns.missing-before` (set when `NAME_DNS` was
//!   set up after flows had been published: the answers before were not kept there).
//!
//! A partition is read by an ordered consumer (ephemeral, no acknowledgements, gapless: the
//! client recreates it from the last sequence it delivered whenever it misses one), so only the
//! chain says what has been counted.

use crate::transport::{
    ChainEnd, Delivered, DnsAnswers, Ends, PartitionReader, Sealed, To, Transport, TransportError,
};
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::time::Duration;

/// How the streams are created (by whoever sets them up first; later setups keep them).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the flow stream keeps batches (the parts say what was counted; this bounds the
    /// disk the stream takes, and how far back a worker can catch up).
    pub retention: Duration,
    /// How long a batch's message id is remembered: a batch published again within it is not
    /// stored twice.
    pub dedup_window: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retention: Duration::from_secs(24 * 3600),
            dedup_window: Duration::from_secs(15 * 60),
        }
    }
}

/// A deployment's streams on a NATS server.
pub struct Nats {
    js: jetstream::Context,
    name: String,
    options: Options,
    kv: tokio::sync::OnceCell<kv::Store>,
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> TransportError {
    TransportError::engine(what, e)
}

impl Nats {
    /// Connects to `url` (`nats://HOST:PORT`) for the deployment `name`.
    pub async fn connect(url: &str, name: &str, options: Options) -> Result<Nats, TransportError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if !ok {
            return Err(TransportError::Name(name.to_string()));
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| err(format!("connecting to {url}"), e))?;
        // Fail fast on a server that is not there (the retries above keep trying behind).
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(10));
        Ok(Nats {
            js,
            name: name.to_string(),
            options,
            kv: tokio::sync::OnceCell::new(),
        })
    }

    fn flows(&self) -> String {
        format!("{}_FLOWS", self.name)
    }

    fn rows(&self) -> String {
        format!("{}_ROWS", self.name)
    }

    fn dns(&self) -> String {
        format!("{}_DNS", self.name)
    }

    fn dns_subject(&self) -> String {
        format!("{}.dns", self.name)
    }

    fn subject(&self, to: To) -> String {
        match to {
            To::Partition(p) => self.flow_subject(p),
            To::DnsAnswers => self.dns_subject(),
        }
    }

    fn flow_subject(&self, p: u32) -> String {
        format!("{}.flows.{p}", self.name)
    }

    fn row_subject(&self, p: u32) -> String {
        format!("{}.rows.{p}", self.name)
    }

    async fn kv(&self) -> Result<&kv::Store, TransportError> {
        self.kv
            .get_or_try_init(|| async {
                let bucket = format!("{}_STATE", self.name);
                if self.js.get_stream(format!("KV_{bucket}")).await.is_err() {
                    // The bucket's stream as the key-value API lays it out, created directly:
                    // the client's own creation asks for account details that servers before
                    // 2.10 answer in another shape.
                    self.js
                        .get_or_create_stream(stream::Config {
                            name: format!("KV_{bucket}"),
                            subjects: vec![format!("$KV.{bucket}.>")],
                            max_messages_per_subject: 1,
                            storage: stream::StorageType::File,
                            allow_rollup: true,
                            deny_delete: true,
                            allow_direct: true,
                            discard: stream::DiscardPolicy::New,
                            num_replicas: 1,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| err(format!("creating the key-value bucket {bucket}"), e))?;
                }
                self.js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|e| err(format!("the key-value bucket {bucket}"), e))
            })
            .await
    }

    /// Publishes `batches` in order, up to [`IN_FLIGHT`] awaiting their acknowledgements, and
    /// returns when every one was stored: how many were duplicates.
    async fn send_all(&self, batches: &[&Sealed]) -> Result<u64, TransportError> {
        let mut acks = std::collections::VecDeque::new();
        let mut dups = 0;
        for b in batches {
            let subject = self.subject(b.to);
            let ack = self
                .js
                .send_publish(
                    subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(b.bytes.clone())
                        .message_id(&b.id),
                )
                .await
                .map_err(|e| err(format!("publishing to {subject}"), e))?;
            acks.push_back((subject, ack));
            if acks.len() >= IN_FLIGHT {
                if let Some((subject, a)) = acks.pop_front() {
                    let a = a
                        .await
                        .map_err(|e| err(format!("publishing to {subject}"), e))?;
                    dups += a.duplicate as u64;
                }
            }
        }
        while let Some((subject, a)) = acks.pop_front() {
            let a = a
                .await
                .map_err(|e| err(format!("publishing to {subject}"), e))?;
            dups += a.duplicate as u64;
        }
        Ok(dups)
    }

    /// How long the flow stream remembers a batch's message id, as it was set up (by whoever
    /// set it up first).
    pub async fn dedup_window(&self) -> Result<Duration, TransportError> {
        let flows = self.flows();
        let mut s = self.stream(&flows).await?;
        Ok(s.info()
            .await
            .map_err(|e| err(format!("the stream {flows}"), e))?
            .config
            .duplicate_window)
    }

    async fn stream(&self, name: &str) -> Result<stream::Stream, TransportError> {
        self.js.get_stream(name).await.map_err(|e| {
            err(
                format!("stream {name} (run `nospy collect` first, which creates it)"),
                e,
            )
        })
    }
}

/// Batches a collector has sent and not yet seen stored.
const IN_FLIGHT: usize = 256;

/// The state key set when the answers stream was set up after flows had been published.
const MISSING_BEFORE: &str = "dns.missing-before";

/// Whether the engine said there is no such stream.
fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The last message on `subject` of stream `s`, if it has any.
async fn last_on(
    s: &stream::Stream,
    subject: &str,
) -> Result<Option<jetstream::message::StreamMessage>, TransportError> {
    match s.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(err(format!("the last message on {subject}"), e)),
    }
}

/// The header of a key-value message that says what it does to its key (`DEL`, `PURGE`; a
/// value put has none, or `PUT`).
const KV_OPERATION: &str = "KV-Operation";

/// The header of a chain's message that ends a part: the last flow sequence it counted.
const COUNTED: &str = "Nospy-Counted";

/// The last message of each subject of `s` that `filter` matches (a wildcard), once each: its
/// subject, its sequence and its headers, from one short-lived consumer that delivers the headers alone
/// (no message's bytes are read or sent).
async fn lasts(
    s: &stream::Stream,
    filter: String,
) -> Result<Vec<(String, u64, Option<async_nats::HeaderMap>)>, TransportError> {
    let what = format!("the last messages on {filter}");
    let c = s
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            headers_only: true,
            memory_storage: true,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| err(&what, e))?;
    let name = c.cached_info().name.clone();
    let mut out = Vec::new();
    // What was pending when the consumer was made: the last message of each subject, delivered
    // first. Only those are read (messages published since would come after them: a busy
    // stream does not keep this going).
    let mut left = c.cached_info().num_pending;
    while left > 0 {
        let mut got = c
            .fetch()
            .max_messages(left.min(1024) as usize)
            .messages()
            .await
            .map_err(|e| err(&what, e))?;
        let mut any = false;
        while let Some(m) = got.next().await {
            let m = m.map_err(|e| err(&what, e))?;
            let info = m.info().map_err(|e| err(&what, e))?;
            left = left.saturating_sub(1);
            any = true;
            out.push((
                m.message.subject.to_string(),
                info.stream_sequence,
                m.message.headers.clone(),
            ));
        }
        if !any {
            break;
        }
    }
    let _ = s.delete_consumer(&name).await;
    Ok(out)
}

/// The partition of `subject`, one of `NAME.<kind>.<partition>`.
fn partition_of(subject: &str) -> Option<u32> {
    subject.rsplit_once('.')?.1.parse().ok()
}

/// The most messages a read asks the server for at once (the client asks again once half are
/// read): what a worker holds of a partition ahead of judging it is at most one and a half
/// times this many batches (each at most [`crate::collect::BATCH_BYTES`] and one item: about
/// 1.9 MB of full batches of flows, 10 MB at most), not the client's default of 500 (which a
/// worker behind its stream held for each partition). It also keeps the received bytes in
/// memory already touched: with the default, a worker alone on a full stream was about 7%
/// slower, page faults of fresh buffers taking most of the difference; with 4, a worker alone
/// judged about a tenth less (`nospy bench monitor --nats`).
const READ_AHEAD: i64 = 8;

/// An ordered read of `subject` of stream `s` from the first message after sequence `after`
/// (`what` it is, for errors).
async fn ordered_read(
    s: &stream::Stream,
    subject: String,
    after: u64,
    what: &str,
) -> Result<NatsReader, TransportError> {
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            max_batch: READ_AHEAD,
            ..Default::default()
        })
        .await
        .map_err(|e| err(format!("reading {what}"), e))?;
    let messages = c
        .messages()
        .await
        .map_err(|e| err(format!("reading {what}"), e))?;
    Ok(NatsReader { messages })
}

/// The ordered read of one partition (or of the answers stream).
pub struct NatsReader {
    messages: consumer::pull::Ordered,
}

impl PartitionReader for NatsReader {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError> {
        let mut out = Vec::new();
        let mut limit = wait;
        while out.len() < max {
            let m = match tokio::time::timeout(limit, self.messages.next()).await {
                Err(_) => break,
                Ok(None) => return Err(err("reading a partition", "the reader ended")),
                Ok(Some(Err(e))) => return Err(err("reading a partition", e)),
                Ok(Some(Ok(m))) => m,
            };
            let seq = m
                .info()
                .map_err(|e| err("a message without its stream sequence", e))?
                .stream_sequence;
            out.push(Delivered {
                seq,
                payload: m.message.payload.clone(),
            });
            // After the first, only what has already arrived.
            limit = Duration::ZERO;
        }
        Ok(out)
    }
}

impl Transport for Nats {
    type Reader = NatsReader;
    type Extending = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<u64>, TransportError>> + Send>,
    >;

    async fn setup(&self, partitions: u32) -> Result<u32, TransportError> {
        let flows = self.flows();
        self.js
            .get_or_create_stream(stream::Config {
                name: flows.clone(),
                subjects: vec![format!("{}.flows.*", self.name)],
                storage: stream::StorageType::File,
                max_age: self.options.retention,
                duplicate_window: self.options.dedup_window,
                ..Default::default()
            })
            .await
            .map_err(|e| err(format!("creating the stream {flows}"), e))?;
        let dns = self.dns();
        match self.js.get_stream(&dns).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                // Flows published before (by an older version) had answers this stream lacks.
                let mut f = self.stream(&flows).await?;
                let before = f
                    .info()
                    .await
                    .map_err(|e| err(format!("the stream {flows}"), e))?
                    .state
                    .last_sequence
                    > 0;
                self.js
                    .get_or_create_stream(stream::Config {
                        name: dns.clone(),
                        subjects: vec![self.dns_subject()],
                        storage: stream::StorageType::File,
                        max_age: self.options.retention + nospy_monitor::ANSWERS_MATTER_FOR,
                        duplicate_window: self.options.dedup_window,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| err(format!("creating the stream {dns}"), e))?;
                if before {
                    self.put(MISSING_BEFORE, Bytes::from_static(b"1")).await?;
                }
            }
            Err(e) => return Err(err(format!("the stream {dns}"), e)),
        }
        let rows = self.rows();
        self.js
            .get_or_create_stream(stream::Config {
                name: rows.clone(),
                subjects: vec![format!("{}.rows.*", self.name)],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| err(format!("creating the stream {rows}"), e))?;
        let kv = self.kv().await?;
        match kv
            .create("partitions", Bytes::from(partitions.to_string()))
            .await
        {
            Ok(_) => Ok(partitions),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let v = kv
                    .get("partitions")
                    .await
                    .map_err(|e| err("reading the partition count", e))?
                    .ok_or_else(|| {
                        TransportError::Corrupt("the partition count vanished".into())
                    })?;
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        TransportError::Corrupt(format!(
                            "the state bucket's partition count is {:?}, not a number",
                            String::from_utf8_lossy(&v)
                        ))
                    })
            }
            Err(e) => Err(err("recording the partition count", e)),
        }
    }

    async fn publish(&self, batches: &[Sealed]) -> Result<u64, TransportError> {
        // Sent in order on the one connection (so stored in order), acknowledgements awaited
        // with up to IN_FLIGHT outstanding. Batches of answers first, each stored before any
        // other is sent: the partitions' batches hold the same answers, and a worker that
        // reads a partition's batch must find its answers in the answers stream when it
        // takes the partition over (two streams store apart, whatever the order sent).
        let (answers, flows): (Vec<&Sealed>, Vec<&Sealed>) =
            batches.iter().partition(|b| b.to == To::DnsAnswers);
        let mut dups = self.send_all(&answers).await?;
        dups += self.send_all(&flows).await?;
        Ok(dups)
    }

    async fn dns_answers(&self, after: u64) -> Result<DnsAnswers<NatsReader>, TransportError> {
        let name = self.dns();
        let mut s = match self.js.get_stream(&name).await {
            Ok(s) => s,
            // Set up by an older version: no answer was kept.
            Err(e) if is_not_found(&e) => {
                return Ok(DnsAnswers {
                    reader: None,
                    last: 0,
                    missing_before: true,
                })
            }
            Err(e) => return Err(err(format!("the stream {name}"), e)),
        };
        let state = s
            .info()
            .await
            .map_err(|e| err(format!("the stream {name}"), e))?
            .state
            .clone();
        // Removed since `after`: the first kept is beyond the next (or none is kept of some
        // published since).
        let removed = if state.messages == 0 {
            state.last_sequence > after
        } else {
            state.first_sequence > after + 1
        };
        let missing_before = removed || (after == 0 && self.get(MISSING_BEFORE).await?.is_some());
        if state.messages == 0 || state.last_sequence <= after {
            return Ok(DnsAnswers {
                reader: None,
                last: state.last_sequence,
                missing_before,
            });
        }
        Ok(DnsAnswers {
            reader: Some(ordered_read(&s, self.dns_subject(), after, &name).await?),
            last: state.last_sequence,
            missing_before,
        })
    }

    async fn read(&self, partition: u32, after: u64) -> Result<NatsReader, TransportError> {
        let s = self.stream(&self.flows()).await?;
        let what = format!("partition {partition}");
        ordered_read(&s, self.flow_subject(partition), after, &what).await
    }

    async fn ends(&self) -> Result<Ends, TransportError> {
        let mut ends = Ends::default();
        let flows = self.stream(&self.flows()).await?;
        for (subject, seq, _) in lasts(&flows, format!("{}.flows.*", self.name)).await? {
            if let Some(p) = partition_of(&subject) {
                ends.flows.insert(p, seq);
            }
        }
        let rows = self.stream(&self.rows()).await?;
        for (subject, seq, headers) in lasts(&rows, format!("{}.rows.*", self.name)).await? {
            let Some(p) = partition_of(&subject) else {
                continue;
            };
            let counted = headers
                .as_ref()
                .and_then(|h| h.get(COUNTED))
                .and_then(|v| v.as_str().parse::<u64>().ok());
            ends.chains.insert(p, (seq, counted));
        }
        Ok(ends)
    }

    async fn chain(&self, partition: u32) -> Result<Vec<Bytes>, TransportError> {
        let s = self.stream(&self.rows()).await?;
        let subject = self.row_subject(partition);
        let mut out = Vec::new();
        let mut seq = 1;
        loop {
            match s.get_first_raw_message_by_subject(&subject, seq).await {
                Ok(m) => {
                    seq = m.sequence + 1;
                    out.push(m.payload);
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Ok(out)
                }
                Err(e) => return Err(err(format!("partition {partition}'s chain"), e)),
            }
        }
    }

    async fn chain_at(&self, partition: u32, seq: u64) -> Result<Option<Bytes>, TransportError> {
        let s = self.stream(&self.rows()).await?;
        match s.get_raw_message(seq).await {
            Ok(m) if m.subject.as_str() == self.row_subject(partition) => Ok(Some(m.payload)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(err(format!("partition {partition}'s chain at {seq}"), e)),
        }
    }

    async fn chain_end(&self, partition: u32) -> Result<Option<ChainEnd>, TransportError> {
        let s = self.stream(&self.rows()).await?;
        Ok(last_on(&s, &self.row_subject(partition))
            .await?
            .map(|m| ChainEnd {
                seq: m.sequence,
                part: m.payload,
            }))
    }

    async fn send_extend(
        &self,
        partition: u32,
        expected: u64,
        part: Bytes,
        counted: Option<u64>,
    ) -> Result<Self::Extending, TransportError> {
        let subject = self.row_subject(partition);
        let mut message = jetstream::message::PublishMessage::build()
            .payload(part)
            .expected_last_subject_sequence(expected);
        if let Some(counted) = counted {
            message = message.header(COUNTED, counted.to_string().as_str());
        }
        let sent = self
            .js
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| err(format!("appending to {subject}"), e))?;
        Ok(Box::pin(async move {
            match sent.await {
                Ok(ack) => Ok(Some(ack.sequence)),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    Ok(None)
                }
                Err(e) => Err(err(format!("appending to {subject}"), e)),
            }
        }))
    }

    async fn all_parts(&self) -> Result<Vec<Bytes>, TransportError> {
        let mut s = self.stream(&self.rows()).await?;
        let state = s
            .info()
            .await
            .map_err(|e| err("the rows stream", e))?
            .state
            .clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        // One request per part, by sequence: parts are large and few (a consumer's flow
        // control buys nothing here).
        for seq in state.first_sequence..=state.last_sequence {
            match s.get_raw_message(seq).await {
                Ok(m) => out.push(m.payload),
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(err(format!("part {seq} of the rows stream"), e)),
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, TransportError> {
        let kv = self.kv().await?;
        match kv
            .entry(key)
            .await
            .map_err(|e| err(format!("reading {key}"), e))?
        {
            Some(e) if e.operation == kv::Operation::Put => Ok(Some((e.value, e.revision))),
            _ => Ok(None),
        }
    }

    async fn swap(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<Option<u64>, TransportError> {
        let kv = self.kv().await?;
        match revision {
            None => match kv.create(key, value).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(err(format!("creating {key}"), e)),
            },
            Some(rev) => match kv.update(key, value, rev).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(err(format!("updating {key}"), e)),
            },
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, TransportError> {
        let kv = self.kv().await?;
        kv.put(key, value)
            .await
            .map_err(|e| err(format!("writing {key}"), e))
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, TransportError> {
        let kv = self.kv().await?;
        // The keys' last messages alone, their headers only (a deleted key's says so): whole
        // tokens are asked of the engine by subject, anything else filtered here.
        let filter = match prefix.strip_suffix('.') {
            Some(tokens) if !tokens.is_empty() => format!("{}{prefix}>", kv.prefix),
            _ => format!("{}>", kv.prefix),
        };
        let mut out = Vec::new();
        for (subject, seq, headers) in lasts(&kv.stream, filter).await? {
            let Some(key) = subject.strip_prefix(kv.prefix.as_str()) else {
                continue;
            };
            let removed = headers
                .as_ref()
                .and_then(|h| h.get(KV_OPERATION))
                .is_some_and(|op| op.as_str() != "PUT");
            if key.starts_with(prefix) && !removed {
                out.push((key.to_string(), seq));
            }
        }
        out.sort();
        Ok(out)
    }
}
