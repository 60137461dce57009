//! The webhook receiver the tests deliver to: a Python process
//! (tests/support/webhook_receiver.py) that verifies each delivery with the Standard
//! Webhooks algorithm on its own, independent of Nommer's code.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Python receiver (tests/support/webhook_receiver.py), verifying with the spec's
/// algorithm on its own.
pub struct Receiver {
    child: std::process::Child,
    pub url: String,
    log: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Receiver {
    pub fn start(dir: &Path, secret: &str, fail_first: u32) -> Receiver {
        Self::start_with(dir, secret, fail_first, None, None)
    }

    /// Answers every delivery with a 307 to `to`.
    pub fn start_redirecting(dir: &Path, secret: &str, to: &str) -> Receiver {
        Self::start_with(dir, secret, 0, None, Some(to))
    }

    /// Down until [`Receiver::open`]: its port is bound, so no one else takes it, but
    /// not listening, so every connection is refused.
    pub fn start_closed(dir: &Path, secret: &str) -> Receiver {
        Self::start_with(dir, secret, 0, Some(dir.join("open")), None)
    }

    /// Starts listening (a receiver that was down is back).
    pub fn open(&self) {
        std::fs::write(self.log.with_file_name("open"), "").unwrap();
    }

    pub fn start_with(
        dir: &Path,
        secret: &str,
        fail_first: u32,
        closed_until: Option<PathBuf>,
        redirect: Option<&str>,
    ) -> Receiver {
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/webhook_receiver.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg(secret)
            .arg(fail_first.to_string())
            .arg(&log)
            .arg("0")
            .args(closed_until.iter())
            .envs(redirect.map(|to| ("RECEIVER_REDIRECT", to)))
            .spawn()
            .expect("python3 runs the receiver");
        let started = std::time::Instant::now();
        while !port_file.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        Receiver {
            child,
            url: format!("http://127.0.0.1:{}/hook", port.trim()),
            log,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
