//! Parsers that never panic (issue 13): every parser of untrusted or external bytes,
//! fed thousands of well-shaped inputs with one part broken, odd text and random bytes.
//! Each must answer with a value or its error type, never a panic; what it accepts must
//! hold what it was given. Needs no emulator and runs in seconds.
//!
//! Private parsers are tested in their own modules: the API's list query and cursor
//! (functions/api/src/listing.rs), its Idempotency-Key (jobs.rs). The three riskiest
//! also have coverage-guided targets in `fuzz/`.

mod api;
mod config;
mod encodingcom;
mod gen;
mod jobs;
mod media;
mod queue;
