//! The `riptide` binary's commands; `main.rs` only parses and dispatches.
