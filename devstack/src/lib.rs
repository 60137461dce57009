//! Nommer's local stack: the emulator, the stack's resources, the functions in-process
//! behind Lambda-like event sources, worker processes (fixed or a fleet), the Encoding.com
//! stand-in, and the demo. The `nommer-devstack` binary runs `up` and `demo`; the user's
//! `nommer` hands those two over to it.

pub mod checks;
pub mod demo;
pub mod emulator;
pub mod event_sources;
pub mod faults;
pub mod fleet;
pub mod local_split;
pub mod media;
pub mod procs;
pub mod resources;
pub mod stack;
pub mod standin;
pub mod stream;
pub mod sweeps;
pub mod workers;

pub use stack::{LocalStack, StackOptions};
