//! The demo's capture: a pcap (microsecond, Ethernet) of a morning's traffic at a site.

use nospy_testkit::rng::Rng;

/// Where the beacon of 4.2.1 phones home: an address (TEST-NET-3) and TCP port.
pub const PHONE_HOME: ([u8; 4], u16) = ([203, 0, 113, 66], 8443);

/// The operator's management host and controller (time server).
const CONTROLLER: [u8; 4] = [10, 0, 0, 10];

struct Pcap {
    out: Vec<u8>,
    /// Microseconds since the capture began.
    at: u64,
}

impl Pcap {
    fn new() -> Pcap {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        for v in [0u32, 0, 65_535, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Pcap { out, at: 0 }
    }

    /// One IPv4 packet, `step` microseconds after the previous one.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        step: u64,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        tcp_flags: Option<u8>,
        payload: usize,
    ) {
        self.at += step;
        let l4 = if tcp_flags.is_some() { 20 } else { 8 };
        let ip_len = 20 + l4 + payload;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(ip_len as u16).to_be_bytes());
        let proto = if tcp_flags.is_some() { 6 } else { 17 };
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        match tcp_flags {
            Some(flags) => {
                f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0])
            }
            None => {
                f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0]);
            }
        }
        f.resize(14 + ip_len, 0x5a);
        let secs = crate::CAPTURE_START + self.at / 1_000_000;
        self.out.extend_from_slice(&(secs as u32).to_le_bytes());
        self.out
            .extend_from_slice(&((self.at % 1_000_000) as u32).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&f);
    }

    /// A TCP conversation opened by `client`: handshake, a request and an answer, close.
    fn tcp(&mut self, client: [u8; 4], server: [u8; 4], cport: u16, sport: u16, bytes: usize) {
        for (forward, flags, len) in [
            (true, 0x02, 0),
            (false, 0x12, 0),
            (true, 0x10, 0),
            (true, 0x18, bytes / 4),
            (false, 0x18, bytes),
            (true, 0x11, 0),
            (false, 0x11, 0),
        ] {
            if forward {
                self.packet(1_500, client, server, cport, sport, Some(flags), len);
            } else {
                self.packet(1_500, server, client, sport, cport, Some(flags), len);
            }
        }
    }
}

/// Twenty minutes of traffic of `radios`: each fetches updates, takes time from the controller
/// and is reached over SSH from the management network, every few minutes; the radios from
/// `phoning` on also open a connection to [`PHONE_HOME`] every five minutes.
pub fn morning(seed: u64, radios: &[[u8; 4]], phoning: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x6361_7074);
    let mut p = Pcap::new();
    for minute in 0..20u64 {
        for (i, &radio) in radios.iter().enumerate() {
            let port = 40_000 + (rng.below(20_000) as u16);
            if minute % 4 == i as u64 % 4 {
                p.tcp(radio, crate::UPDATE_ADDR, port, 443, 1_200);
            }
            p.packet(3_000, radio, CONTROLLER, 123, 123, None, 48);
            p.packet(2_000, CONTROLLER, radio, 123, 123, None, 48);
            if minute % 10 == 5 {
                p.tcp(CONTROLLER, radio, port.wrapping_add(1), 22, 600);
            }
            if i >= phoning && minute % 5 == 2 {
                let (home, home_port) = PHONE_HOME;
                p.tcp(radio, home, port.wrapping_add(2), home_port, 300);
            }
        }
        // The rest of the minute passes.
        p.at = (minute + 1) * 60_000_000 + rng.below(1_000_000);
    }
    p.out
}
