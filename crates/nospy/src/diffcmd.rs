//! `nospy diff`: reads the two builds (files, or directories as trees of members) and prints
//! where they differ; the comparison is `nospy_diff`'s.

use crate::util::print_json;
use anyhow::{bail, Context as _, Result};
use nospy_diff::{Limits, Report, Tree};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Compares two files or directories.
pub fn compare(a: &Path, b: &Path) -> Result<Report> {
    let limits = Limits::default();
    match (a.is_dir(), b.is_dir()) {
        (true, true) => {
            let (ta, tb) = (read_tree(a, &limits)?, read_tree(b, &limits)?);
            Ok(nospy_diff::compare_trees(&ta, &tb, limits)?)
        }
        (false, false) => {
            let (da, db) = (read_limited(a, &limits)?, read_limited(b, &limits)?);
            let name = a
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            nospy_diff::compare_files(&name, &da, &db, limits)
                .with_context(|| format!("comparing {} with {}", a.display(), b.display()))
        }
        _ => bail!(
            "{} and {} are not both files or both directories",
            a.display(),
            b.display()
        ),
    }
}

fn read_limited(p: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut v = Vec::new();
    f.take(limits.member + 1)
        .read_to_end(&mut v)
        .with_context(|| format!("reading {}", p.display()))?;
    if v.len() as u64 > limits.member {
        bail!("{} is over {} bytes", p.display(), limits.member);
    }
    Ok(v)
}

fn read_tree(root: &Path, limits: &Limits) -> Result<Tree> {
    let mut t = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.is_dir() {
                t.insert(rel, None);
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p)?;
                t.insert(
                    rel,
                    Some(format!("symlink -> {}", target.display()).into_bytes()),
                );
            } else {
                t.insert(rel, Some(read_limited(&p, limits)?));
            }
        }
    }
    Ok(t)
}

/// `nospy diff SHIPPED REBUILT [--json]`.
pub fn run(a: &Path, b: &Path, json: bool) -> Result<ExitCode> {
    let r = compare(a, b)?;
    if json {
        print_json(&serde_json::json!({
            "identical": r.identical,
            "digests": r.digests.as_ref().map(|(x, y)| serde_json::json!({"shipped": x, "rebuilt": y})),
            "differences": r.differences,
        }))?;
    } else if r.identical {
        println!("identical");
    } else {
        if let Some((x, y)) = &r.digests {
            println!("digests differ: sha256 {x} (shipped), {y} (rebuilt)");
        }
        for d in &r.differences {
            match &d.detail {
                Some(det) => println!("{:<8} {}  ({det})", d.change, d.path),
                None => println!("{:<8} {}", d.change, d.path),
            }
        }
    }
    Ok(if r.identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
