//! Crash consistency beyond SIGKILL (the method of ALICE and CrashMonkey): the sequencer runs
//! over a storage that records every write, fsync, rename, directory fsync and unlink; then,
//! for every prefix of the recorded operations, crash states are built on a model of a file
//! system that keeps only what was made durable, and the log is opened from each. In every
//! state: recovery succeeds, every acknowledged entry is there, the log audits clean, and
//! appends go on.
//!
//! The states of a prefix: what a power loss guarantees (names as of each directory's last
//! fsync, contents as of each file's last fsync); everything that was written (a process
//! crash); writes not yet fsynced torn at a 512-byte sector; and seeded mixes of these, one
//! choice per directory and per file. This is not every reordering a file system may do; it
//! is every crash point, each with the extremes and a sample between them.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::storage::{Op, Recorder};
use nospy_log::{audit, Log, Sequencer};
use nospy_testkit::Rng;
use nospy_tlog::note::SignerKey;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const ORIGIN: &str = "crash.nospy.example/log";
const SECTOR: usize = 512;

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [6; 32]).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    let mut e = format!("entry {i} ").into_bytes();
    e.extend(std::iter::repeat_n(b'x', (i * 37 % 700) as usize));
    e
}

#[derive(Clone, Debug)]
struct Inode {
    dir: bool,
    /// What a reader sees now.
    cur: Vec<u8>,
    /// What survives a power loss (`None`: never fsynced).
    dur: Option<Vec<u8>>,
}

/// A model file system: inodes, the names they have now, and the names each directory's last
/// fsync made durable. Paths are relative to the log directory ("" is the log directory).
#[derive(Clone, Debug, Default)]
struct Fs {
    inodes: Vec<Inode>,
    cur: BTreeMap<String, usize>,
    dur: BTreeMap<String, BTreeMap<String, usize>>,
    acked: u64,
}

fn parent(p: &str) -> String {
    Path::new(p)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Fs {
    /// The directory `root` as it is on disk, all of it durable.
    fn scan(root: &Path) -> Fs {
        let mut fs = Fs::default();
        fs.dur.insert(String::new(), BTreeMap::new());
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for e in std::fs::read_dir(root.join(&rel)).unwrap() {
                let e = e.unwrap();
                let p = rel.join(e.file_name());
                let key = p.to_string_lossy().into_owned();
                let dir = e.file_type().unwrap().is_dir();
                let data = if dir {
                    Vec::new()
                } else {
                    std::fs::read(e.path()).unwrap()
                };
                fs.inodes.push(Inode {
                    dir,
                    cur: data.clone(),
                    dur: Some(data),
                });
                let id = fs.inodes.len() - 1;
                fs.cur.insert(key.clone(), id);
                fs.dur
                    .entry(rel.to_string_lossy().into_owned())
                    .or_default()
                    .insert(key.clone(), id);
                if dir {
                    fs.dur.entry(key).or_default();
                    stack.push(p);
                }
            }
        }
        fs
    }

    fn new_inode(&mut self, dir: bool, data: Vec<u8>) -> usize {
        self.inodes.push(Inode {
            dir,
            cur: data,
            dur: None,
        });
        self.inodes.len() - 1
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Mkdir(p) => {
                let id = self.new_inode(true, Vec::new());
                self.cur.insert(p.clone(), id);
            }
            Op::Write(p, data) => match self.cur.get(p) {
                Some(&id) => self.inodes[id].cur = data.clone(),
                None => {
                    let id = self.new_inode(false, data.clone());
                    self.cur.insert(p.clone(), id);
                }
            },
            Op::Append(p, data) => match self.cur.get(p) {
                Some(&id) => self.inodes[id].cur.extend_from_slice(data),
                None => {
                    let id = self.new_inode(false, data.clone());
                    self.cur.insert(p.clone(), id);
                }
            },
            Op::Fsync(p) => {
                let id = self.cur[p];
                self.inodes[id].dur = Some(self.inodes[id].cur.clone());
            }
            Op::FsyncDir(d) => {
                let children: BTreeMap<String, usize> = self
                    .cur
                    .iter()
                    .filter(|(p, _)| parent(p) == *d)
                    .map(|(p, id)| (p.clone(), *id))
                    .collect();
                self.dur.insert(d.clone(), children);
            }
            Op::Rename(a, b) => {
                let id = self.cur.remove(a).unwrap();
                self.cur.insert(b.clone(), id);
            }
            Op::Exchange(a, b) => {
                let (x, y) = (self.cur[a], self.cur[b]);
                self.cur.insert(a.clone(), y);
                self.cur.insert(b.clone(), x);
            }
            Op::Unlink(p) => {
                self.cur.remove(p);
            }
            Op::Mark(n) => self.acked = *n,
        }
    }

    /// Writes one crash state into `out`: for each directory, `names` says whether its current
    /// names survive or only its durable ones; for each file, `content` picks what survives.
    fn materialize(
        &self,
        out: &Path,
        names: &mut dyn FnMut(&str) -> bool,
        content: &mut dyn FnMut(&Inode) -> Vec<u8>,
    ) {
        let mut stack = vec![String::new()];
        while let Some(d) = stack.pop() {
            let children: BTreeMap<String, usize> = if names(&d) {
                self.cur
                    .iter()
                    .filter(|(p, _)| parent(p) == d)
                    .map(|(p, id)| (p.clone(), *id))
                    .collect()
            } else {
                self.dur.get(&d).cloned().unwrap_or_default()
            };
            for (p, id) in children {
                let node = &self.inodes[id];
                if node.dir {
                    std::fs::create_dir_all(out.join(&p)).unwrap();
                    stack.push(p);
                } else {
                    std::fs::write(out.join(&p), content(node)).unwrap();
                }
            }
        }
    }
}

/// A write torn at a sector: the first sectors of what was written over what was durable.
fn torn(node: &Inode) -> Vec<u8> {
    let old = node.dur.clone().unwrap_or_default();
    let new = &node.cur;
    let keep = (new.len() / SECTOR / 2).max(1) * SECTOR;
    let mut out = new[..keep.min(new.len())].to_vec();
    if old.len() > out.len() {
        out.extend_from_slice(&old[out.len()..]);
    }
    out
}

/// Opens the log in `dir` as a crashed machine would find it, and checks everything.
fn check(dir: &Path, acked: u64, what: &str) {
    let mut seq =
        Sequencer::open(dir, key()).unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    let size = seq.size();
    assert!(
        size >= acked,
        "{what}: {size} entries, {acked} acknowledged"
    );
    let log = Log::open(dir).unwrap_or_else(|e| panic!("{what}: {e}"));
    for i in 0..acked {
        assert_eq!(
            log.entry(i)
                .unwrap_or_else(|e| panic!("{what}: entry {i}: {e}")),
            entry(i),
            "{what}: entry {i}"
        );
    }
    drop(log);
    audit(dir, &key().verifier(), |_, _| {}).unwrap_or_else(|e| panic!("{what}: audit: {e}"));
    let after = seq
        .append(&[b"after the crash".as_slice()])
        .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
    assert_eq!(after[0].index, size, "{what}");
}

/// Where crash states are built: memory-backed when the machine has it (their fsyncs cost
/// nothing there; the model, not the disk, decides what survived).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

#[test]
fn power_loss_at_every_recorded_operation_of_25_batches() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    Sequencer::init(&dir, ORIGIN, &key(), None).unwrap();
    let initial = Fs::scan(&dir);

    // 25 batches of 1 to 40 entries (across the first full tile and into the second), with
    // duplicates, recorded.
    let recorder: Recorder = Arc::new(Mutex::new(Vec::new()));
    let mut seq = Sequencer::open_recording(&dir, key(), recorder.clone()).unwrap();
    let mut next = 0u64;
    let mut rng = Rng::new(0x5eed_cafe);
    for b in 0..25 {
        let n = 1 + rng.below(40);
        let mut batch: Vec<Vec<u8>> = (next..next + n).map(entry).collect();
        if b % 5 == 4 && next > 0 {
            batch.push(entry(next - 1)); // a duplicate: no new entry
        }
        let refs: Vec<&[u8]> = batch.iter().map(|e| e.as_slice()).collect();
        seq.append(&refs).unwrap();
        next += n;
        recorder.lock().unwrap().push(Op::Mark(next));
    }
    drop(seq);
    let ops = recorder.lock().unwrap().clone();
    assert!(next > 256, "the run crosses a full tile");

    let scratch = scratch();
    let mut fs = initial;
    let mut states = 0;
    let mut rng = Rng::new(0xc4a5_11fe);
    for k in 0..=ops.len() {
        if k > 0 {
            fs.apply(&ops[k - 1]);
            // A mark changes nothing on disk: the state after it is the state before it.
            if matches!(ops[k - 1], Op::Mark(_)) {
                continue;
            }
        }
        let variants: Vec<(&str, u8)> = vec![
            ("durable", 0),
            ("everything written", 1),
            ("torn", 2),
            ("mixed", 3),
            ("mixed", 3),
            ("mixed", 3),
        ];
        let mut seen = BTreeSet::new();
        for (v, (name, kind)) in variants.into_iter().enumerate() {
            let out = scratch.path().join(format!("s{k}-{v}"));
            std::fs::create_dir_all(&out).unwrap();
            let (mut dirs, mut files) =
                (Rng::new(rng.below(u64::MAX)), Rng::new(rng.below(u64::MAX)));
            let mut pick_dir = |_: &str| match kind {
                1 => true,
                3 => dirs.below(2) == 0,
                _ => false,
            };
            let mut pick = |node: &Inode| match kind {
                1 => node.cur.clone(),
                2 => torn(node),
                3 => match files.below(3) {
                    0 => node.dur.clone().unwrap_or_default(),
                    1 => node.cur.clone(),
                    _ => torn(node),
                },
                _ => node.dur.clone().unwrap_or_default(),
            };
            fs.materialize(&out, &mut pick_dir, &mut pick);
            // Identical states are checked once.
            let files = snapshot(&out);
            if seen.insert(files) {
                check(
                    &out,
                    fs.acked,
                    &format!("after operation {k} of {}, {name} state", ops.len()),
                );
                states += 1;
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    eprintln!(
        "{} operations recorded over 25 batches ({next} entries); {states} distinct crash states checked",
        ops.len()
    );
    assert!(
        states > ops.len(),
        "{states} states for {} operations",
        ops.len()
    );
}

/// Every file under `dir` with its bytes, to tell states apart.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.insert(
                    e.path().strip_prefix(dir).unwrap().display().to_string() + "/",
                    Vec::new(),
                );
            } else {
                out.insert(
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
}
