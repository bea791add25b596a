//! The operator's side of nospy: its fleet ([`Inventory`], DESIGN.md §5 and §12) and its network
//! configuration ([`OperatorConfig`], which resolves a manifest's abstractions).
//!
//! Both are written by people, so parsing is strict: every column or field must be known and
//! well formed, and errors name the line (CSV), the device or the field, and the problem.

#![forbid(unsafe_code)]

mod csv;
mod inventory;
mod operator;

pub use inventory::*;
pub use operator::*;
