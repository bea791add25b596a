//! Fixtures shared by the tests and benchmarks of every crate (not published): signed
//! statements, a raw HTTP client, one seeded random generator, a real S3 server, a TCP proxy
//! that fails on command, a WebDriver client for a real browser.
//! Test code: a panic here is a failing test.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

pub mod fixtures;
pub mod http;
pub mod proxy;
pub mod rng;
pub mod s3;
pub mod webdriver;

pub use rng::Rng;
