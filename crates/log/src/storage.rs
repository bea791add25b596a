//! The log's files on local disk, laid out exactly as tlog-tiles serves them, with the durability
//! rules of the sequencer: files are fsynced, and so are the directories that name them, before
//! the checkpoint that covers them is published; the checkpoint is replaced atomically.
//!
//! Reads go through [`crate::source::TileSource`], which a bucket implements too; writes are
//! this storage's own.

use crate::edge::{EdgeError, RightEdge};
use crate::error::{corrupt, io, LogError};
use crate::source::TileSource;
use nospy_tlog::hash::Hash;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Name of the private directory beside the public files (config, lock, temporary files). A web
/// server publishing the log should not serve it; it holds no secret (the key stays where it was).
pub const PRIVATE_DIR: &str = ".nospy";

/// How many threads write and fsync a batch's files: fsyncs issued together let the file system
/// commit them in one journal transaction.
const WRITERS: usize = 32;

/// One change a [`DirStorage`] made to the file system, as a [`Recorder`] notes it: paths are
/// relative to the log directory. Crash-consistency tests replay prefixes of these onto a model
/// of a file system that loses what was not made durable (`crates/log/tests/crash_states.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A directory was created.
    Mkdir(String),
    /// A file was written whole (created, or overwritten in place and cut to length).
    Write(String, Vec<u8>),
    /// A file was fsynced.
    Fsync(String),
    /// A directory was fsynced: the names it holds are durable.
    FsyncDir(String),
    /// A file was renamed over another name.
    Rename(String, String),
    /// Two names were exchanged (`RENAME_EXCHANGE`).
    Exchange(String, String),
    /// A file was removed.
    Unlink(String),
    /// Bytes were appended to a file, without fsync.
    Append(String, Vec<u8>),
    /// A mark the test writes between operations (such as: so many entries acknowledged).
    Mark(u64),
}

/// Where a [`DirStorage`] notes every change it makes, in order.
pub type Recorder = std::sync::Arc<Mutex<Vec<Op>>>;

/// A log directory.
#[derive(Debug)]
pub struct DirStorage {
    root: PathBuf,
    /// Directories known to exist; guarded because writer threads create directories concurrently.
    known_dirs: Mutex<HashSet<PathBuf>>,
    /// Notes every change, for crash-consistency tests.
    recorder: Option<Recorder>,
}

impl DirStorage {
    /// The storage rooted at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStorage {
            root: root.into(),
            known_dirs: Mutex::new(HashSet::new()),
            recorder: None,
        }
    }

    /// The same storage, noting every change it makes in `recorder`.
    pub fn recording(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn note(&self, op: impl FnOnce(&dyn Fn(&Path) -> String) -> Op) {
        if let Some(r) = &self.recorder {
            let rel = |p: &Path| {
                p.strip_prefix(&self.root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned()
            };
            lock(r).push(op(&rel));
        }
    }

    /// Writes `data` as the whole of the file `p` and fsyncs it.
    fn write_file(&self, p: &Path, data: &[u8]) -> Result<(), LogError> {
        write_file(p, data)?;
        self.note(|rel| Op::Write(rel(p), data.to_vec()));
        self.note(|rel| Op::Fsync(rel(p)));
        Ok(())
    }

    /// Fsyncs directories.
    fn sync_dirs(&self, dirs: &[PathBuf]) -> Result<(), LogError> {
        sync_dirs(dirs)?;
        for d in dirs {
            self.note(|rel| Op::FsyncDir(rel(d)));
        }
        Ok(())
    }

    /// Appends `data` to the file `rel`, creating it, without fsync (for what may be lost).
    pub fn append_volatile(&self, rel: &str, data: &[u8]) -> Result<(), LogError> {
        let p = self.path(rel);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        f.write_all(data).map_err(io(&p))?;
        self.note(|_| Op::Append(rel.to_string(), data.to_vec()));
        Ok(())
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Full path of a log-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a file; `None` if it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LogError> {
        let p = self.path(rel);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(p)(e)),
        }
    }

    /// Reads the right edge of the tree of `size` entries (one partial tile per level, and the
    /// partial entry bundle) and checks that it gives `root`: what a writer needs to extend the
    /// tree without reading the rest of it.
    pub fn read_right_edge(&self, size: u64, root: &Hash) -> Result<RightEdge, LogError> {
        let (tiles, bundle) = RightEdge::sources(size);
        let tiles = tiles
            .iter()
            .map(|id| {
                id.map(|id| self.read_required(&id.path(), "tile"))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bundle = bundle
            .map(|id| self.read_required(&id.entries_path(), "entry bundle"))
            .transpose()?;
        RightEdge::restore(size, root, tiles, bundle).map_err(|e| match e {
            EdgeError::WrongRoot => corrupt(
                self.path("tile"),
                format!(
                    "the partial tiles do not give the checkpoint's root hash (size {size}); \
                     run `nospy log audit`"
                ),
            ),
            EdgeError::Malformed(rel, problem) => corrupt(self.path(&rel), problem),
            EdgeError::TooLong(..) => corrupt(self.path("tile"), "unexpected"),
        })
    }

    /// Whether a file exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Writes every file (replacing any uncommitted earlier version), then makes all of them and
    /// the directories naming them durable. On return without error, every byte is on disk.
    pub fn write_durably(&self, files: &[(String, Vec<u8>)]) -> Result<(), LogError> {
        if files.is_empty() {
            return Ok(());
        }
        let dirty_dirs: Mutex<HashSet<PathBuf>> = Mutex::new(HashSet::new());
        let chunk = files.len().div_ceil(WRITERS);
        let results: Vec<Result<(), LogError>> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    let dirty = &dirty_dirs;
                    s.spawn(move || -> Result<(), LogError> {
                        for (rel, data) in part {
                            let p = self.path(rel);
                            let parent = p.parent().unwrap_or(&self.root).to_path_buf();
                            self.ensure_dir(&parent, dirty)?;
                            // Rewriting a file that exists changes no directory entry: only new
                            // names need their directory fsynced.
                            let existed = p.exists();
                            self.write_file(&p, data)?;
                            if !existed {
                                lock(dirty).insert(parent);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(LogError::OutOfRange("writer thread panicked".into()))
                    })
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), _>>()?;
        let dirs: Vec<PathBuf> = lock(&dirty_dirs).drain().collect();
        self.sync_dirs(&dirs)
    }

    /// Fsyncs directories of the log, several at once.
    pub fn sync_dirs_rel(&self, rels: &[&str]) -> Result<(), LogError> {
        let dirs: Vec<PathBuf> = rels.iter().map(|r| self.path(r)).collect();
        self.sync_dirs(&dirs)
    }

    /// Creates `dir` and any missing parents, noting each parent whose entries changed.
    fn ensure_dir(&self, dir: &Path, dirty: &Mutex<HashSet<PathBuf>>) -> Result<(), LogError> {
        if lock(&self.known_dirs).contains(dir) {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.is_dir() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for m in missing.iter().rev() {
            match fs::create_dir(m) {
                Ok(()) => self.note(|rel| Op::Mkdir(rel(m))),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(m.clone())(e)),
            }
            if let Some(p) = m.parent() {
                lock(dirty).insert(p.to_path_buf());
            }
        }
        lock(&self.known_dirs).insert(dir.to_path_buf());
        Ok(())
    }

    /// Replaces the file `rel` atomically and durably: written to `tmp` (in the private
    /// directory), fsynced, then published with [`DirStorage::rename_durably`].
    pub fn replace_atomically(&self, rel: &str, tmp: &str, data: &[u8]) -> Result<(), LogError> {
        self.write_file(&self.path(tmp), data)?;
        self.rename_durably(tmp, rel)
    }

    /// Publishes the durable file `tmp` as `rel`, atomically, and fsyncs the directories of both
    /// names. Where `rel` exists and the system can, the two names are exchanged (Linux's
    /// `RENAME_EXCHANGE`) rather than `rel` replaced: the old version stays as `tmp`, to be
    /// overwritten in place next time, so publishing frees and allocates no inode (on ext4 without
    /// a journal, every allocation scans past the recently freed ones, and a log publishes a
    /// checkpoint per batch). `tmp`'s directory is fsynced too: until it is, a crash could leave
    /// both names on one inode.
    pub fn rename_durably(&self, tmp: &str, rel: &str) -> Result<(), LogError> {
        let (t, p) = (self.path(tmp), self.path(rel));
        let exchanged = p.exists()
            && rustix::fs::renameat_with(
                rustix::fs::CWD,
                &t,
                rustix::fs::CWD,
                &p,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .is_ok();
        if exchanged {
            self.note(|rel| Op::Exchange(rel(&t), rel(&p)));
        } else {
            fs::rename(&t, &p).map_err(io(&p))?;
            self.note(|rel| Op::Rename(rel(&t), rel(&p)));
        }
        let (dt, dp) = (
            t.parent().unwrap_or(&self.root).to_path_buf(),
            p.parent().unwrap_or(&self.root).to_path_buf(),
        );
        if dt == dp {
            self.sync_dirs(&[dp])
        } else {
            self.sync_dirs(&[dt, dp])
        }
    }

    /// Removes a file if it exists, and reports whether it did.
    pub fn remove(&self, rel: &str) -> Result<bool, LogError> {
        let p = self.path(rel);
        match fs::remove_file(&p) {
            Ok(()) => {
                self.note(|rel| Op::Unlink(rel(&p)));
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(p)(e)),
        }
    }

    /// The widths of the partial versions of a tile that exist (`<base>.p/<W>` files).
    pub fn partial_widths(&self, base: &str) -> Result<Vec<u16>, LogError> {
        let d = self.path(&format!("{base}.p"));
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(d)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io(&d))?;
            if let Some(w) = e.file_name().to_str().and_then(|n| n.parse::<u16>().ok()) {
                out.push(w);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Fsyncs a directory of the log.
    pub fn sync_dir(&self, rel: &str) -> Result<(), LogError> {
        self.sync_dirs(&[self.path(rel)])
    }
}

impl TileSource for DirStorage {
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LogError> {
        DirStorage::read(self, rel)
    }

    fn locate(&self, rel: &str) -> PathBuf {
        self.path(rel)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A writer thread that panicked leaves the set usable: it only ever holds paths.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `data` as the whole of the file `p` and fsyncs it. An existing file is overwritten in
/// place and then cut to length, rather than truncated first: truncating frees its blocks (and,
/// on a file system mounted with `discard`, waits for the device to discard them) only for them
/// to be allocated again at once.
fn write_file(p: &Path, data: &[u8]) -> Result<(), LogError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(io(p))?;
    f.write_all(data).map_err(io(p))?;
    f.set_len(data.len() as u64).map_err(io(p))?;
    f.sync_all().map_err(io(p))
}

/// Fsyncs directories, on as many threads as there are directories (up to the writer count), so
/// that their journal commits overlap.
fn sync_dirs(dirs: &[PathBuf]) -> Result<(), LogError> {
    match dirs {
        [] => Ok(()),
        [d] => sync_dir(d),
        _ => std::thread::scope(|s| {
            let hs: Vec<_> = dirs
                .chunks(dirs.len().div_ceil(WRITERS))
                .map(|part| s.spawn(move || part.iter().try_for_each(|d| sync_dir(d))))
                .collect();
            hs.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LogError::OutOfRange("fsync thread panicked".into())))
            })
        }),
    }
}

/// Fsyncs a directory, so that the names it holds survive a crash.
pub fn sync_dir(d: &Path) -> Result<(), LogError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}
