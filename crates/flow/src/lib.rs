//! Traffic as flow records, from the sources an operator has: packet captures (pcap and pcapng)
//! and flow exports (NetFlow v5, NetFlow v9, IPFIX).
//!
//! Every source is normalised into [`Flow`]; captures also give the DNS answers they carry
//! ([`DnsSeen`]), which tie addresses to names for a while. Nothing here decides what is allowed:
//! that is the monitor's matcher.
//!
//! Every parser treats its input as hostile: malformed input is an error naming the byte offset
//! and the problem, or a counted skip, never a panic; memory is bounded by declared limits
//! ([`capture::MAX_PACKET`], the flow table's size, [`netflow::MAX_TEMPLATES`]).

#![forbid(unsafe_code)]

pub mod addrmap;
pub mod capture;
pub mod conntrack;
pub mod dns;
pub mod fasthash;
pub mod netflow;
pub mod packet;
mod record;
pub mod source;

pub use record::{looks_like_reply, DnsSeen, Flow};
