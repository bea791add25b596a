//! Behaviour manifests: what a device may send and receive, as a vendor declares it.
//!
//! A [`Manifest`] names the device (vendor, model), its declared capabilities (vendor remote
//! access) and a list of allow [`Rule`]s. Each rule names a direction, a [`Peer`] (an IP prefix,
//! a DNS name, or an abstraction the operator resolves: operator networks, its controllers, the
//! same vendor's devices, local networks, a MUD controller class), a protocol, the peer's ports,
//! the device's ports, and for TCP which side opens the connection.
//!
//! The same model is written by people as TOML (`manifest.toml`, DESIGN.md §12), carried as JSON
//! inside release statements, and imported from RFC 8520 MUD files ([`mud`]). Parsing is strict:
//! unknown fields and malformed values are errors naming the rule and the field.

#![forbid(unsafe_code)]

pub mod judge;
mod model;
pub mod mud;

pub use model::*;
