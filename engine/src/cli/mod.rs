//! The subcommands, one file each; `main.rs` parses and dispatches.

pub(crate) mod chat;
pub(crate) mod check;
pub(crate) mod dial;
pub(crate) mod serve;
pub(crate) mod speech;
pub(crate) mod store;
