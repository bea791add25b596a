//! DNS answers in captured responses: which addresses a name resolved to, and for how long.
//!
//! Only what ties addresses to names is read: A and AAAA records, and CNAME records so that an
//! address is tied to every name whose alias chain (within the same response) leads to it. Names
//! are decompressed with a bound on pointer jumps; anything malformed is an error, and the
//! response is then ignored as a whole.

use std::net::IpAddr;

/// One address a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name asked for (lower case, no final dot); an alias chain is followed back to it.
    pub name: String,
    /// One address it resolved to.
    pub addr: IpAddr,
    /// How long the answer may be used, seconds.
    pub ttl: u32,
}

/// Why a DNS message was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsError(pub &'static str);

/// Reads the answers of a DNS response (`msg` is the UDP payload). A query, or a response with
/// an error code, gives no answers.
pub fn answers(msg: &[u8]) -> Result<Vec<Answer>, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError("shorter than a DNS header"));
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 || flags & 0x000f != 0 {
        return Ok(Vec::new());
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)?;
        at += 4;
    }
    let mut addrs: Vec<(String, IpAddr, u32)> = Vec::new();
    let mut aliases: Vec<(String, String)> = Vec::new();
    for _ in 0..an {
        let (owner, next) = name(msg, at)?;
        at = next;
        let h = msg
            .get(at..at + 10)
            .ok_or(DnsError("answer record header cut short"))?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let class = u16::from_be_bytes([h[2], h[3]]) & 0x7fff;
        let ttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
        let rd_at = at + 10;
        let rdata = msg
            .get(rd_at..rd_at + rdlen)
            .ok_or(DnsError("answer record data cut short"))?;
        at = rd_at + rdlen;
        if class != 1 {
            continue;
        }
        match (rtype, rdlen) {
            (1, 4) => addrs.push((
                owner,
                IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]]),
                ttl,
            )),
            (28, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                addrs.push((owner, IpAddr::from(a), ttl));
            }
            (5, _) => aliases.push((owner, name(msg, rd_at)?.0)),
            (1 | 28, _) => return Err(DnsError("address record of the wrong length")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (owner, addr, ttl) in addrs {
        // The owner, and every name whose alias chain leads to it (bounded: chains in one
        // response are short, and a loop stops at the bound).
        let mut names = vec![owner];
        let mut i = 0;
        while i < names.len() && names.len() <= 16 {
            let target = names[i].clone();
            for (alias, t) in &aliases {
                if *t == target && !names.contains(alias) {
                    names.push(alias.clone());
                }
            }
            i += 1;
        }
        for n in names {
            out.push(Answer { name: n, addr, ttl });
        }
    }
    Ok(out)
}

fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or(DnsError("name cut short"))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l if l & 0xc0 != 0 => return Err(DnsError("unknown label type")),
            l => at += 1 + l as usize,
        }
    }
}

/// The name at `at` (lower case, no final dot) and the offset after it where it was written.
fn name(msg: &[u8], at: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = at;
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or(DnsError("name cut short"))?;
        if len == 0 {
            return Ok((out, end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let lo = *msg
                .get(pos + 1)
                .ok_or(DnsError("compression pointer cut short"))?;
            end.get_or_insert(pos + 2);
            let target = (((len & 0x3f) as usize) << 8) | lo as usize;
            if target >= pos {
                return Err(DnsError("compression pointer does not point back"));
            }
            pos = target;
            continue;
        }
        if len & 0xc0 != 0 {
            return Err(DnsError("unknown label type"));
        }
        let label = msg
            .get(pos + 1..pos + 1 + len as usize)
            .ok_or(DnsError("label cut short"))?;
        if !out.is_empty() {
            out.push('.');
        }
        for &c in label {
            out.push(c.to_ascii_lowercase() as char);
        }
        if out.len() > 255 {
            return Err(DnsError("name over 255 characters"));
        }
        pos += 1 + len as usize;
    }
    Err(DnsError("too many labels or pointers"))
}
