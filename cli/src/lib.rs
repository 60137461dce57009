//! The `nommer` command's library: a small client for the API, the commands over it,
//! their progress bars, the events watcher, and the hand-over of `up` and `demo` to the
//! local stack's own binary (`nommer-devstack`).

pub mod client;
pub mod commands;
pub mod handoff;
pub mod progress;
pub mod watch;
