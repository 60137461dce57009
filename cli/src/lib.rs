//! The `nommer` command's library: the local stack (emulator, resources, event sources,
//! workers), the demo, and a small client for the API.

pub mod client;
pub mod commands;
pub mod demo;
pub mod emulator;
pub mod event_sources;
pub mod media;
pub mod resources;
pub mod stack;
pub mod standin;
pub mod watch;

pub use stack::{LocalStack, StackOptions};
