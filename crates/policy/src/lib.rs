//! Admission policy: an [`Agreement`] says whom an operator trusts (the log, its witnesses, the
//! vendor, the evaluators) and what a manifest must satisfy; [`verify`] decides whether an
//! artifact may run, from a checkpoint and the log entries about it, reporting every check in
//! the order DESIGN.md §4 gives; [`fleet`] gives every device of a fleet its standing from
//! those verdicts. No I/O: the caller reads files and supplies the clock.

#![forbid(unsafe_code)]

mod agreement;
pub mod breach;
pub mod fleet;
mod logged;
mod verify;

pub use agreement::{
    Agreement, AgreementError, EvaluatorMember, ManifestRules, MinimumVersion, Monitors, OnBreach,
    PeerPattern, Vendor,
};
pub use logged::LoggedEntry;
pub use verify::{
    compare_versions, verify, Check, CheckName, Evidence, LoggedRelease, Outcome, State,
    StateError, Verdict, Verifier, Why,
};
