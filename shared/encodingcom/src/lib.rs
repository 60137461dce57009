//! A client for Encoding.com's API (`https://manage.encoding.com/`): every request is a
//! form POST whose `json` field holds `{"query": {"userid", "userkey", "action", …}}`.
//! Speaks `AddMedia`, `GetStatus` (extended) and `CancelMedia`, maps our presets onto its
//! `format` objects, and reads its answers leniently: errors come in
//! `response.errors.error`, a list of one is often sent as a bare object or string, and
//! `progress` can read 100 while a job still waits for an encoder.
//!
//! Credentials live in a [`UserKey`] that never prints; requests are never logged whole.

pub mod client;
pub mod encoder;
pub mod formats;

pub use client::*;
pub use encoder::{remotes, EncodingComEncoder};
pub use formats::*;
pub use nommer_core::settings::{UserKey, USERID_ENV, USERKEY_ENV};

#[cfg(test)]
mod tests;
