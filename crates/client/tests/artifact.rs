//! An artifact's digest is the SHA-256 of its bytes, whatever its size (around the read size
//! too), every time: a file of several MiB once hashed wrongly, and differently from run to
//! run, when a second thread read ahead.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use sha2::Digest as _;

#[test]
fn the_digest_is_the_sha256_of_the_bytes_at_every_size() {
    let p = std::env::temp_dir().join(format!("nospy-artifact-{}", std::process::id()));
    for len in [
        0usize,
        1,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        3 << 20,
        10_500_000,
    ] {
        let data: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let want: [u8; 32] = sha2::Sha256::digest(&data).into();
        for round in 0..5 {
            let mut seen = 0;
            let got = nospy_client::artifact::hash_file(&p, &mut |done, total| {
                assert_eq!(total, len as u64);
                seen = done;
            })
            .unwrap();
            assert_eq!(got.0, want, "{len} bytes, round {round}");
            assert_eq!(seen, len as u64);
        }
    }
    let _ = std::fs::remove_file(&p);
}
