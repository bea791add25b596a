//! The player's refusals, by kind: a directory with other things in it, another seed's world.

use nospy_demo::play::{prepare, PlayError, DONE};
use nospy_demo::World;

#[test]
fn a_world_is_written_once_and_only_where_nothing_else_is() {
    let t = tempfile::tempdir().unwrap();
    let w = World::new(1);
    let dir = t.path().join("world");
    assert!(
        prepare(&w, &dir).unwrap().is_none(),
        "a new directory is to be played"
    );
    for f in &w.files {
        assert_eq!(
            std::fs::read(dir.join(&f.path)).unwrap(),
            f.bytes,
            "{}",
            f.path
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.join(&w.vendor.key_file);
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a private key is the owner's only");
    }
    // Unfinished (no record): refused, nothing written over.
    assert!(matches!(prepare(&w, &dir), Err(PlayError::Occupied(d)) if d == dir));
    // Finished: found again with its record; another seed is refused.
    std::fs::write(dir.join(DONE), r#"{"seed": 1, "evidence": [7]}"#).unwrap();
    assert_eq!(prepare(&w, &dir).unwrap().unwrap()["evidence"][0], 7);
    assert!(matches!(
        prepare(&World::new(2), &dir),
        Err(PlayError::OtherSeed {
            found: Some(1),
            seed: 2,
            ..
        })
    ));
    std::fs::write(dir.join(DONE), "not json").unwrap();
    assert!(matches!(prepare(&w, &dir), Err(PlayError::Answer { .. })));
}
