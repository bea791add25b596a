//! What the collectors, workers and reports need of a streaming engine, and nothing more: a
//! partitioned stream of batches with deduplicating message ids, an ordered gapless read of one
//! partition from a sequence, a chain of parts per partition extended only from its known end,
//! and a small key-value store with compare-and-swap.

use bytes::Bytes;
use std::time::Duration;

/// Why the stream's work could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// The engine failed, refused or did not answer in time: what was being done, and its
    /// words. Transient: a worker starts again from the chains' ends.
    Engine {
        /// What was being done.
        doing: String,
        /// What the engine (or its client) said.
        problem: String,
    },
    /// A deployment name the engine cannot hold (the name).
    Name(String),
    /// What the engine holds is not what nospy wrote there (what): starting again does not
    /// help.
    Corrupt(String),
    /// A range of partitions beyond the stream's.
    Partitions {
        /// The range's first.
        first: u32,
        /// Its last.
        last: u32,
        /// The stream's partitions.
        count: u32,
    },
    /// A thread or runtime of this process stopped or could not start (what).
    Stopped(String),
    /// Closed windows could not be handed on within [`crate::worker::ENGINE_PATIENCE`] (the
    /// reasons were said as they happened).
    WindowsNotHandedOn,
    /// A collector asked to publish an input under a name whose batches' ids the stream would
    /// take for another run's (why, and what to do): its flows would be lost or counted twice.
    /// Starting again does not help.
    InputAgain(String),
    /// This process's inventory numbers devices' addresses otherwise than the deployment's
    /// (their digests, in hex): it would write or read device numbers the others do not share.
    OtherInventory {
        /// This process's.
        ours: String,
        /// The deployment's.
        theirs: String,
    },
}

impl TransportError {
    /// A failure of the engine, while `doing` something.
    pub fn engine(doing: impl std::fmt::Display, problem: impl std::fmt::Display) -> Self {
        TransportError::Engine {
            doing: doing.to_string(),
            problem: problem.to_string(),
        }
    }

    /// Whether trying again may succeed (the engine failed), as opposed to a fault that stays.
    pub fn is_transient(&self) -> bool {
        matches!(self, TransportError::Engine { .. })
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Engine { doing, problem } => write!(f, "{doing}: {problem}"),
            TransportError::Name(name) => write!(
                f,
                "stream name {name:?}: upper-case letters, digits, '_' and '-', at most 64"
            ),
            TransportError::Corrupt(what)
            | TransportError::Stopped(what)
            | TransportError::InputAgain(what) => f.write_str(what),
            TransportError::Partitions { first, last, count } => write!(
                f,
                "partitions {first}-{last}: not within 0-{} (the stream has {count})",
                count.saturating_sub(1)
            ),
            TransportError::WindowsNotHandedOn => {
                f.write_str("windows could not be handed on (see above)")
            }
            TransportError::OtherInventory { ours, theirs } => write!(
                f,
                "this deployment was set up with another inventory (its devices and addresses: {theirs}; this inventory's: {ours}): every collector and worker of a deployment reads the same inventory (for another, start another deployment with --stream NAME)"
            ),
        }
    }
}

impl std::error::Error for TransportError {}

/// Where a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// A partition of the flow stream: a device's flows and every DNS answer, in order.
    Partition(u32),
    /// The DNS answers stream: every answer once more, kept longer than the flows, for a worker
    /// that takes a partition over to read again the answers read before ([`Transport::dns_answers`]).
    /// A batch of answers is stored before any partition's batch that holds one of them.
    DnsAnswers,
}

/// A batch ready to publish.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Where it goes.
    pub to: To,
    /// Its message id: the source, the partition (or `dns`) and the batch's number in it.
    pub id: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// A message read from a partition.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its sequence in the flow stream (increasing along a partition, not contiguous).
    pub seq: u64,
    /// Its bytes (a batch, if whoever published it was a collector).
    pub payload: Bytes,
}

/// The DNS answers stream as a worker reads it again ([`Transport::dns_answers`]).
pub struct DnsAnswers<R> {
    /// Its messages in order, from the first kept after the sequence asked for (`None`: it
    /// keeps none).
    pub reader: Option<R>,
    /// The sequence of its last message when the read began (0: it never had one): the read
    /// is done there.
    pub last: u64,
    /// Whether answers published after the sequence asked for and before the first kept are
    /// missing: some were removed (the stream keeps them for a while only), or, read from its
    /// start, collectors published answers before the stream was set up (an older version's
    /// deployment).
    pub missing_before: bool,
}

/// An ordered read of one partition.
#[allow(async_fn_in_trait)] // one implementation, used by generic code on one task
pub trait PartitionReader {
    /// The next messages in order, at most `max`, waiting at most `wait` for the first; empty
    /// when none came. Never skips one: a reader that cannot go on gaplessly fails.
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError>;
}

/// The end of a partition's chain: the part there and its sequence in the rows stream.
#[derive(Debug, Clone)]
pub struct ChainEnd {
    /// The rows stream's sequence of the last part (the chain is extended only from it).
    pub seq: u64,
    /// The last part's bytes.
    pub part: Bytes,
}

/// Where every partition ends, by sequences alone: [`Transport::ends`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ends {
    /// Per partition with flows: the sequence of its last message.
    pub flows: std::collections::BTreeMap<u32, u64>,
    /// Per partition with a chain: the rows sequence of the chain's last message, and the last
    /// flow sequence counted by the part it ends (`None` where its writer did not say so: a
    /// chunk of a part not appended whole, or a part of an earlier version; its bytes say).
    pub chains: std::collections::BTreeMap<u32, (u64, Option<u64>)>,
}

/// A streaming engine as nospy uses it.
#[allow(async_fn_in_trait)] // one implementation, used by generic code on one task
pub trait Transport {
    /// The reader of [`Transport::read`].
    type Reader: PartitionReader;
    /// The answer of [`Transport::send_extend`]: as [`Transport::extend_chain`]'s.
    type Extending: std::future::Future<Output = Result<Option<u64>, TransportError>> + Unpin;

    /// Creates the streams and the state store where they are missing; the number of
    /// partitions is fixed by the first setup, and returned (whatever `partitions` says after).
    async fn setup(&self, partitions: u32) -> Result<u32, TransportError>;

    /// Publishes batches, in order (several may be in flight at once, but they are stored in
    /// this order), batches of DNS answers ([`To::DnsAnswers`]) stored before any of the
    /// others; a batch with the id of one stored before (within the engine's deduplication
    /// window) is not stored again. Returns how many were such duplicates. On an error, some
    /// may have been stored: publishing them all again stores nothing twice.
    async fn publish(&self, batches: &[Sealed]) -> Result<u64, TransportError>;

    /// Reads the DNS answers stream from its first message kept after sequence `after`, in
    /// order.
    async fn dns_answers(&self, after: u64) -> Result<DnsAnswers<Self::Reader>, TransportError>;

    /// Reads `partition` from the first message after sequence `after`, in order.
    async fn read(&self, partition: u32, after: u64) -> Result<Self::Reader, TransportError>;

    /// Where every partition's flows and chain end, without reading their messages: asked
    /// again and again as a run nears its end, of every partition at once.
    async fn ends(&self) -> Result<Ends, TransportError>;

    /// Every part of `partition`'s chain, in order.
    async fn chain(&self, partition: u32) -> Result<Vec<Bytes>, TransportError>;

    /// The message of `partition`'s chain at rows sequence `seq`, if there is one there.
    async fn chain_at(&self, partition: u32, seq: u64) -> Result<Option<Bytes>, TransportError>;

    /// The end of `partition`'s chain of parts, if it has any.
    async fn chain_end(&self, partition: u32) -> Result<Option<ChainEnd>, TransportError>;

    /// Appends a part (or a chunk of one) to `partition`'s chain only if its end is still at
    /// `expected` (0: the chain is empty). `counted`: the last flow sequence of the part this
    /// message ends (a part, or its last chunk), recorded beside it for [`Transport::ends`];
    /// `None` for a chunk before the last. `Ok(None)`: the chain's end was not at `expected`
    /// (another worker extended it); nothing was appended.
    async fn extend_chain(
        &self,
        partition: u32,
        expected: u64,
        part: Bytes,
        counted: Option<u64>,
    ) -> Result<Option<u64>, TransportError> {
        self.send_extend(partition, expected, part, counted)
            .await?
            .await
    }

    /// [`Transport::extend_chain`] sent, its answer not yet awaited: the caller goes on with
    /// other work while the engine stores the part, and awaits the answer before anything that
    /// depends on it (the next part of the chain is conditional on this one's sequence).
    async fn send_extend(
        &self,
        partition: u32,
        expected: u64,
        part: Bytes,
        counted: Option<u64>,
    ) -> Result<Self::Extending, TransportError>;

    /// Every part of every chain, in the order they were appended.
    async fn all_parts(&self) -> Result<Vec<Bytes>, TransportError>;

    /// A value of the state store, with its revision.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, TransportError>;

    /// Sets a value of the state store only if its revision is `revision` (`None`: only if it
    /// has none). `Ok(None)`: it was not; nothing was written.
    async fn swap(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<Option<u64>, TransportError>;

    /// Sets `key` to `value` unless it holds a value already (what a deployment's first
    /// process records for the others to agree with): `None` when this set it, else the value
    /// it holds.
    async fn set_once(&self, key: &str, value: Bytes) -> Result<Option<Bytes>, TransportError> {
        loop {
            if self.swap(key, value.clone(), None).await?.is_some() {
                return Ok(None);
            }
            // Set by another meanwhile (unless deleted since: then set it again).
            if let Some((theirs, _)) = self.get(key).await? {
                return Ok(Some(theirs));
            }
        }
    }

    /// Sets a value of the state store.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64, TransportError>;

    /// The keys of the state store that begin with `prefix`, each once, in order, with their
    /// revisions (as [`Transport::get`] gives them). A prefix of whole tokens (ending in `.`)
    /// is asked of the store itself.
    async fn keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, TransportError>;
}
