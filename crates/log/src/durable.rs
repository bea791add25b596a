//! Replacing a small file whole or not at all, durably: the one way nospy rewrites a file that
//! must survive a crash intact (a witness's state, a verifier's state, a collector's templates,
//! any file a command writes for its user). Tiles are written by [`crate::storage`] instead,
//! which never replaces a file it has published.

use std::io::Write as _;
use std::path::Path;

/// Replaces file `p` with `data`: a temporary file beside it, fsynced, renamed over it, and the
/// directory fsynced so that the rename survives a crash. A reader sees the old file or the new
/// one, never a part; on any error the temporary file is removed and `p` is untouched.
pub fn replace(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".nospy-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(p).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        super::replace(&p, b"one").unwrap();
        super::replace(&p, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two, longer");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A directory where the file should be: the rename fails, nothing is left behind.
        let q = d.path().join("sub");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(q.join("x"), b"x").unwrap();
        assert!(super::replace(&q, b"data").is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
