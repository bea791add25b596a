//! A log's tiles in S3-compatible object storage (`s3://BUCKET/PREFIX`), as a CDN would serve
//! them: the same c2sp.org/tlog-tiles paths as a log directory, under a prefix.
//!
//! Every tile and entry bundle path is written once (partial tiles have their own `.p/<W>`
//! paths), so they are written create-if-absent (`If-None-Match: *`). When the object exists,
//! it is read back and compared: the same bytes are success (a retried write, or a second
//! writer that computed the same tree), other bytes are [`ObjectError::Conflict`], which is
//! fatal: two writers disagree about the log. Only `checkpoint` is ever replaced, and only if
//! its version (ETag) is the one this writer last read or wrote ([`ObjectError::Fenced`]
//! otherwise): a writer that lost the log to another can never overwrite what that one
//! published.
//!
//! [`upload`] copies a directory log into a bucket (`nospy log copy DIR s3://...`), after
//! auditing it; the way back is [`crate::mirror::mirror`] with [`ObjectTiles::get`] as its
//! fetcher, which verifies everything it copies.

use crate::LogError;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::VerifierKey;
use nospy_tlog::tile::TileId;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use std::path::Path;
use std::sync::Arc;

/// Why an object-storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectError {
    /// An immutable path already holds other bytes than the ones being written: another writer
    /// (or another log) wrote there. Fatal: the log must not be written until it is understood.
    Conflict {
        /// The object's path.
        path: String,
    },
    /// `checkpoint` changed since this writer last read or wrote it: another writer published.
    /// Fatal for this writer: it must stop and step down.
    Fenced {
        /// The object's path.
        path: String,
    },
    /// The store failed (unreachable, refused, timed out): the operation may succeed if tried
    /// again.
    Store {
        /// The object's path.
        path: String,
        /// What the store said.
        problem: String,
    },
    /// The URL or its options are not usable.
    Config(String),
}

impl ObjectError {
    /// Whether the error means another writer is at work (nothing may be written until a
    /// person or a fresh start has looked), as opposed to a store that may answer next time.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ObjectError::Conflict { .. } | ObjectError::Fenced { .. }
        )
    }
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectError::Conflict { path } => write!(
                f,
                "{path}: the store already holds other bytes at this path: another writer, or another log, is at this prefix"
            ),
            ObjectError::Fenced { path } => write!(
                f,
                "{path}: replaced by another writer since this one last saw it: this writer no longer sequences the log"
            ),
            ObjectError::Store { path, problem } => write!(f, "{path}: {problem}"),
            ObjectError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ObjectError {}

/// What writing an immutable object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The object is new.
    Created,
    /// The object was there already, with the same bytes.
    AlreadyThere,
}

/// The version of `checkpoint` a writer last read or wrote: the condition of its next replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVersion(UpdateVersion);

/// The tiles, entry bundles and checkpoint of one log in an object store, under a prefix.
#[derive(Debug, Clone)]
pub struct ObjectTiles {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    name: String,
}

/// `Cache-Control` of tiles and bundles: their bytes never change.
const IMMUTABLE: &str = "public, max-age=604800, immutable";
/// `Cache-Control` of the checkpoint: always asked again.
const NO_CACHE: &str = "no-cache";

impl ObjectTiles {
    /// The log under `prefix` (no leading or trailing `/`; empty for the bucket's root) of
    /// `store`; `name` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, name: &str) -> ObjectTiles {
        ObjectTiles {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            name: name.to_string(),
        }
    }

    /// The log at `s3://BUCKET/PREFIX`. The endpoint, region and credentials come from the AWS
    /// environment variables as `object_store` reads them (`AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...) and from the URL's
    /// query, which wins (`?endpoint=http://127.0.0.1:8333&allow_http=true&region=us-east-1`;
    /// any `object_store` S3 option, with or without its `aws_` prefix). Requests use path-style
    /// addressing unless `virtual_hosted_style_request=true`, as S3-compatible servers expect.
    /// A request is retried at most three times within ten seconds, connects within five and
    /// completes within thirty (`?timeout=60s&connect_timeout=10s` move the last two).
    pub fn from_url(url: &str) -> Result<ObjectTiles, ObjectError> {
        let bad = |m: String| ObjectError::Config(format!("{url}: {m}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX".into()))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        // Bounded retries: a store that is down must surface as an error within seconds (the
        // server answers 503; a leader stops), not after the library's three-minute default.
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(10),
                ..object_store::RetryConfig::default()
            })
            .with_config(
                object_store::aws::AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::ConnectTimeout,
                ),
                "5s",
            )
            .with_config(
                object_store::aws::AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::Timeout,
                ),
                "30s",
            );
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("option {pair:?} is not key=value")))?;
            let key = if k.starts_with("aws_") {
                k.to_string()
            } else {
                format!("aws_{k}")
            };
            let key: object_store::aws::AmazonS3ConfigKey = key
                .parse()
                .or_else(|_| k.parse())
                .map_err(|_| bad(format!("{k:?} is not an S3 option")))?;
            b = b.with_config(key, v);
        }
        let store = b.build().map_err(|e| bad(e.to_string()))?;
        Ok(ObjectTiles::new(Arc::new(store), prefix, url))
    }

    /// What the log is called in messages (its URL).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn store_error(&self, rel: &str, e: object_store::Error) -> ObjectError {
        ObjectError::Store {
            path: format!("{}: {rel}", self.name),
            problem: e.to_string(),
        }
    }

    /// The object at the tlog-tiles path `rel`, or `None` when there is none.
    pub async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) => Err(self.store_error(rel, e)),
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error(rel, e)),
        }
    }

    /// Writes a tile or entry bundle, which must not exist with other bytes (see the module
    /// documentation).
    pub async fn put_immutable(&self, rel: &str, data: Vec<u8>) -> Result<Written, ObjectError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: Attributes::from_iter([(Attribute::CacheControl, IMMUTABLE)]),
            ..PutOptions::default()
        };
        let path = self.path(rel);
        match self
            .store
            .put_opts(&path, PutPayload::from(data.clone()), opts)
            .await
        {
            Ok(_) => Ok(Written::Created),
            Err(object_store::Error::AlreadyExists { .. }) => match self.get(rel).await? {
                Some(there) if there == data => Ok(Written::AlreadyThere),
                _ => Err(ObjectError::Conflict {
                    path: format!("{}: {rel}", self.name),
                }),
            },
            Err(e) => Err(self.store_error(rel, e)),
        }
    }

    /// The checkpoint and its version, or `None` when the log has none yet.
    pub async fn checkpoint(&self) -> Result<Option<(Vec<u8>, CheckpointVersion)>, ObjectError> {
        match self.store.get(&self.path("checkpoint")).await {
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| self.store_error("checkpoint", e))?;
                Ok(Some((bytes.to_vec(), CheckpointVersion(version))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error("checkpoint", e)),
        }
    }

    /// Publishes `data` as the checkpoint: created when `last` is `None` (and none may exist),
    /// else replaced only if the store's version is still `last`. Returns the new version, the
    /// condition of the next replace.
    pub async fn replace_checkpoint(
        &self,
        data: Vec<u8>,
        last: Option<&CheckpointVersion>,
    ) -> Result<CheckpointVersion, ObjectError> {
        let opts = PutOptions {
            mode: match last {
                None => PutMode::Create,
                Some(v) => PutMode::Update(v.0.clone()),
            },
            attributes: Attributes::from_iter([(Attribute::CacheControl, NO_CACHE)]),
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path("checkpoint"), PutPayload::from(data), opts)
            .await
        {
            Ok(r) => Ok(CheckpointVersion(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Err(ObjectError::Fenced {
                path: format!("{}: checkpoint", self.name),
            }),
            Err(e) => Err(self.store_error("checkpoint", e)),
        }
    }
}

/// A bucket's log read blocking, as [`crate::TileReader`] and a server's read API read it
/// (from blocking threads). Full tiles and entry bundles, whose bytes never change, are kept
/// once read, up to a bound in bytes; partial ones and the checkpoint are always read again.
#[derive(Debug)]
pub struct BlockingObjects {
    tiles: ObjectTiles,
    rt: tokio::runtime::Handle,
    kept: std::sync::Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    bytes: usize,
    objects: std::collections::HashMap<String, Arc<Vec<u8>>>,
}

/// The default bound of what a [`BlockingObjects`] keeps: 64 MiB.
pub const KEPT_BYTES: usize = 64 << 20;

impl BlockingObjects {
    /// Reads `tiles` on the runtime `rt` (whose workers must not be the callers: its
    /// `block_on` is used).
    pub fn new(tiles: ObjectTiles, rt: tokio::runtime::Handle) -> BlockingObjects {
        BlockingObjects {
            tiles,
            rt,
            kept: std::sync::Mutex::new(Kept::default()),
        }
    }

    /// The bucket's log.
    pub fn tiles(&self) -> &ObjectTiles {
        &self.tiles
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the object at `rel` never changes: a full tile or entry bundle.
fn immutable(rel: &str) -> bool {
    rel.starts_with("tile/") && !rel.contains(".p/")
}

impl crate::source::TileSource for BlockingObjects {
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LogError> {
        if let Some(b) = self.kept().objects.get(rel) {
            return Ok(Some(b.as_ref().clone()));
        }
        let got = self
            .rt
            .block_on(self.tiles.get(rel))
            .map_err(|e| LogError::Io {
                path: self.locate(rel),
                source: std::io::Error::other(e.to_string()),
            })?;
        if let Some(b) = &got {
            if immutable(rel) && b.len() <= KEPT_BYTES / 16 {
                let mut k = self.kept();
                if k.bytes + b.len() > KEPT_BYTES {
                    // Forget an arbitrary half: immutable objects read uniformly need no better.
                    let drop: Vec<String> = k
                        .objects
                        .keys()
                        .take(k.objects.len() / 2 + 1)
                        .cloned()
                        .collect();
                    for d in drop {
                        if let Some(v) = k.objects.remove(&d) {
                            k.bytes -= v.len();
                        }
                    }
                }
                k.bytes += b.len();
                k.objects.insert(rel.to_string(), Arc::new(b.clone()));
            }
        }
        Ok(got)
    }

    fn locate(&self, rel: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("{}: {rel}", self.tiles.name))
    }
}

/// What [`upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The size of the checkpoint published in the bucket.
    pub size: u64,
    /// Tiles and bundles written.
    pub created: u64,
    /// Tiles and bundles that were there already with the same bytes (an earlier, interrupted
    /// copy).
    pub already_there: u64,
    /// Whether the bucket's checkpoint was replaced (false when it already was this one).
    pub published: bool,
}

/// Why [`upload`] stopped. Nothing is published before every tile and bundle is in place.
#[derive(Debug)]
#[non_exhaustive]
pub enum UploadError {
    /// Reading or auditing the directory log failed.
    Log(LogError),
    /// The directory log does not audit clean: it is not copied.
    NotClean(String),
    /// The bucket already holds another log, or a later or different tree of this one.
    Refused(String),
    /// The object store failed or another writer is at work.
    Object(ObjectError),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Log(e) => write!(f, "{e}"),
            UploadError::NotClean(m) => write!(f, "the log does not audit clean: {m}"),
            UploadError::Refused(m) => f.write_str(m),
            UploadError::Object(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UploadError {}

impl From<ObjectError> for UploadError {
    fn from(e: ObjectError) -> Self {
        UploadError::Object(e)
    }
}

impl From<LogError> for UploadError {
    fn from(e: LogError) -> Self {
        UploadError::Log(e)
    }
}

/// How many objects are written at once.
const CONCURRENT_PUTS: usize = 16;

/// Copies the log in `dir` (verified with `key`) into `to`: audits it, writes every tile and
/// entry bundle its checkpoint covers (the older partial ones too, so that a client holding an
/// older checkpoint finds what it asks for), then publishes the checkpoint. A copy interrupted
/// and run again finds what it wrote already and goes on. The bucket may hold an older
/// checkpoint of the same log (the immutable paths then prove it is a prefix: any other history
/// is a [`ObjectError::Conflict`]); it may not hold another log's, a larger one, or another root
/// of the same size. `progress` is told (objects done, objects in all).
pub async fn upload(
    dir: &Path,
    key: &VerifierKey,
    to: &ObjectTiles,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Uploaded, UploadError> {
    let report = crate::audit::audit(dir, key, |_, _| {})?;
    if !report.uncovered.is_empty() {
        return Err(UploadError::NotClean(format!(
            "files beyond its checkpoint: {}",
            report.uncovered.join(", ")
        )));
    }
    let storage = crate::storage::DirStorage::new(dir);
    let local = crate::read_checkpoint(&storage, key)?;
    let size = local.checkpoint.size;
    let there = to.checkpoint().await?;
    if let Some((bytes, _)) = &there {
        let remote = SignedCheckpoint::open(bytes, key).map_err(|e| {
            UploadError::Refused(format!(
                "{}: the bucket holds a checkpoint this log's key does not verify ({e}): another log is at this prefix",
                to.name()
            ))
        })?;
        let r = &remote.checkpoint;
        if r.size > size || (r.size == size && r.root != local.checkpoint.root) {
            return Err(UploadError::Refused(format!(
                "{}: the bucket's checkpoint (size {}) is not an earlier state of this log's (size {size})",
                to.name(),
                r.size
            )));
        }
    }
    // Every covered tile and bundle path the directory holds, in order.
    let mut rels = Vec::new();
    collect(dir, "tile", &mut rels).map_err(crate::error::io(dir.join("tile")))?;
    let rels: Vec<String> = rels
        .into_iter()
        .filter(|rel| match TileId::parse(rel) {
            Ok((id, _)) => {
                let covered = nospy_tlog::tile::width_in(id.level, id.index, size);
                covered > 0 && id.width <= covered
            }
            Err(_) => false,
        })
        .collect();
    let total = rels.len() as u64;
    let (mut created, mut already_there) = (0u64, 0u64);
    for chunk in rels.chunks(CONCURRENT_PUTS) {
        let mut puts = tokio::task::JoinSet::new();
        for rel in chunk {
            let data = storage
                .read(rel)?
                .ok_or_else(|| UploadError::NotClean(format!("{rel} vanished while copying")))?;
            let to = to.clone();
            let rel = rel.clone();
            puts.spawn(async move { to.put_immutable(&rel, data).await });
        }
        while let Some(r) = puts.join_next().await {
            match r.map_err(|e| {
                UploadError::Object(ObjectError::Store {
                    path: to.name().to_string(),
                    problem: e.to_string(),
                })
            })?? {
                Written::Created => created += 1,
                Written::AlreadyThere => already_there += 1,
            }
        }
        progress(created + already_there, total);
    }
    let text = local.to_text().into_bytes();
    let published = match &there {
        Some((bytes, _)) if *bytes == text => false,
        Some((_, version)) => {
            to.replace_checkpoint(text, Some(version)).await?;
            true
        }
        None => {
            to.replace_checkpoint(text, None).await?;
            true
        }
    };
    Ok(Uploaded {
        size,
        created,
        already_there,
        published,
    })
}

/// Why a bucket's log does not audit clean, or could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuditError {
    /// The object store failed.
    Object(ObjectError),
    /// An object is missing or is not what the entries and the checkpoint make it: its path
    /// and the fault.
    Bad(String, String),
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Object(e) => write!(f, "{e}"),
            AuditError::Bad(path, problem) => write!(f, "{path}: {problem}"),
        }
    }
}

impl std::error::Error for AuditError {}

impl From<ObjectError> for AuditError {
    fn from(e: ObjectError) -> Self {
        AuditError::Object(e)
    }
}

/// Audits the log in a bucket against `key`, trusting nothing in the bucket: the checkpoint
/// must verify; every entry bundle is read and hashed, every full hash tile and every partial
/// tile of the checkpoint's tree recomputed and compared with its object, and the root compared
/// with the checkpoint's. Reads one object at a time, holding only the tree's right edge.
/// `progress` is told (entries audited, entries in all).
pub async fn audit(
    tiles: &ObjectTiles,
    key: &VerifierKey,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<crate::AuditReport, AuditError> {
    use crate::edge::RightEdge;
    use nospy_tlog::hash::leaf_hash;
    use nospy_tlog::tile::TILE_WIDTH;
    let at = |rel: &str| format!("{}: {rel}", tiles.name());
    let required = |rel: String, got: Option<Vec<u8>>| {
        got.ok_or_else(|| AuditError::Bad(at(&rel), "missing".into()))
    };
    let text = required("checkpoint".into(), tiles.get("checkpoint").await?)?;
    let sc = SignedCheckpoint::open(&text, key)
        .map_err(|e| AuditError::Bad(at("checkpoint"), e.to_string()))?;
    let n = sc.checkpoint.size;
    let mut edge = RightEdge::new();
    let mut report = crate::AuditReport::default();
    let bundles = n.div_ceil(TILE_WIDTH as u64);
    for b in 0..bundles {
        let width = (n - b * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as u16;
        let id = TileId {
            level: 0,
            index: b,
            width,
        };
        let rel = id.entries_path();
        let data = required(rel.clone(), tiles.get(&rel).await?)?;
        let entries = nospy_tlog::tile::parse_bundle(&data, width)
            .map_err(|e| AuditError::Bad(at(&rel), e.to_string()))?;
        let batch: Vec<(&[u8], nospy_tlog::Hash)> =
            entries.iter().map(|e| (*e, leaf_hash(e))).collect();
        let written = edge
            .append(&batch)
            .map_err(|e| AuditError::Bad(at(&rel), format!("{e:?}")))?;
        report.bundles += 1;
        report.entries += entries.len() as u64;
        // Full hash tiles, as they are completed; the partial ones once, at the end.
        for (path, bytes) in written {
            if path.starts_with("tile/entries/") || path.contains(".p/") {
                continue;
            }
            let there = required(path.clone(), tiles.get(&path).await?)?;
            if there != bytes {
                return Err(AuditError::Bad(
                    at(&path),
                    "is not the tile its entries give".into(),
                ));
            }
            report.tiles += 1;
        }
        progress(report.entries, n);
    }
    for (id, hs) in edge.tree().partial_tiles() {
        let path = id.path();
        let there = required(path.clone(), tiles.get(&path).await?)?;
        if there != crate::edge::tile_bytes(hs) {
            return Err(AuditError::Bad(
                at(&path),
                "is not the tile its entries give".into(),
            ));
        }
        report.tiles += 1;
    }
    report.root = edge.root();
    if report.root != sc.checkpoint.root {
        return Err(AuditError::Bad(
            at("checkpoint"),
            format!(
                "its root is not the root of the {n} entries in the bucket: the bucket does not hold the log its checkpoint signs"
            ),
        ));
    }
    Ok(report)
}

/// The relative paths of the files below `dir/rel`, sorted.
fn collect(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir.join(rel)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<(String, bool)> = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        names.push((name, e.file_type()?.is_dir()));
    }
    names.sort();
    for (name, is_dir) in names {
        let child = format!("{rel}/{name}");
        if is_dir {
            collect(dir, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn tiles() -> ObjectTiles {
        ObjectTiles::new(Arc::new(InMemory::new()), "logs/one", "memory")
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn an_immutable_path_takes_the_same_bytes_again_and_refuses_others() {
        run(async {
            let t = tiles();
            let w = t.put_immutable("tile/0/000.p/1", vec![1; 32]).await;
            assert_eq!(w, Ok(Written::Created));
            let w = t.put_immutable("tile/0/000.p/1", vec![1; 32]).await;
            assert_eq!(w, Ok(Written::AlreadyThere));
            let e = t
                .put_immutable("tile/0/000.p/1", vec![2; 32])
                .await
                .unwrap_err();
            assert!(
                matches!(e, ObjectError::Conflict { .. }) && e.is_fatal(),
                "{e}"
            );
            assert_eq!(t.get("tile/0/000.p/1").await, Ok(Some(vec![1; 32])));
            assert_eq!(t.get("tile/0/001").await, Ok(None));
        })
    }

    #[test]
    fn the_checkpoint_is_replaced_only_from_the_version_last_seen() {
        run(async {
            let t = tiles();
            assert_eq!(t.checkpoint().await, Ok(None));
            let v1 = t.replace_checkpoint(b"one".to_vec(), None).await.unwrap();
            // A second writer that believes there is none is fenced.
            let e = t.replace_checkpoint(b"other".to_vec(), None).await;
            assert!(matches!(e, Err(ObjectError::Fenced { .. })), "{e:?}");
            let v2 = t
                .replace_checkpoint(b"two".to_vec(), Some(&v1))
                .await
                .unwrap();
            // The writer holding the old version is fenced: it lost the log.
            let e = t.replace_checkpoint(b"stale".to_vec(), Some(&v1)).await;
            assert!(matches!(e, Err(ObjectError::Fenced { .. })), "{e:?}");
            let (bytes, seen) = t.checkpoint().await.unwrap().unwrap();
            assert_eq!(bytes, b"two");
            assert_eq!(seen, v2);
            t.replace_checkpoint(b"three".to_vec(), Some(&seen))
                .await
                .unwrap();
        })
    }

    #[test]
    fn urls_name_a_bucket_and_take_options() {
        let t = ObjectTiles::from_url(
            "s3://bucket/a/b?endpoint=http://127.0.0.1:9&allow_http=true&region=r1",
        )
        .unwrap();
        assert_eq!(t.path("checkpoint").as_ref(), "a/b/checkpoint");
        // Client options too.
        ObjectTiles::from_url("s3://b?timeout=60s&connect_timeout=10s").unwrap();
        for bad in [
            "bucket/a",
            "s3://",
            "s3:///x",
            "s3://b/p?nonsense=1",
            "s3://b/p?novalue",
        ] {
            assert!(
                matches!(ObjectTiles::from_url(bad), Err(ObjectError::Config(_))),
                "{bad}"
            );
        }
    }
}
