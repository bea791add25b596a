//! Test fixtures shared by the tests of every crate (not published): a raw HTTP client, keys.
//! Test code: a panic here is a failing test.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

pub mod http;
