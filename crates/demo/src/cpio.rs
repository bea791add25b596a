//! A cpio archive in the "newc" format (what Linux initramfs images use), as firmware images
//! often are: members in order, then the trailer.

/// The archive of `members` (path, contents): regular files, mode 0644, times zero.
pub fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, data)) in members.iter().enumerate() {
        member(&mut out, ino as u32 + 1, 0o100_644, name, data);
    }
    member(&mut out, 0, 0, "TRAILER!!!", b"");
    out
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn member(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}
