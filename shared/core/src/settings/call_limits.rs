//! The bounds on every AWS call, read like the other settings.

use super::{number, ProcessEnv, SettingsError, Source};
use std::time::Duration;

/// How long an AWS call may take and how often it is tried (see [`CallLimits`]).
pub const AWS_CONNECT_TIMEOUT_SECS: &str = "NOMMER_AWS_CONNECT_TIMEOUT_SECS";
pub const AWS_FIRST_BYTE_TIMEOUT_SECS: &str = "NOMMER_AWS_FIRST_BYTE_TIMEOUT_SECS";
pub const AWS_ATTEMPT_TIMEOUT_SECS: &str = "NOMMER_AWS_ATTEMPT_TIMEOUT_SECS";
pub const AWS_CALL_TIMEOUT_SECS: &str = "NOMMER_AWS_CALL_TIMEOUT_SECS";
pub const AWS_MAX_ATTEMPTS: &str = "NOMMER_AWS_MAX_ATTEMPTS";
pub const AWS_RETRY_BACKOFF_SECS: &str = "NOMMER_AWS_RETRY_BACKOFF_SECS";

/// The bounds on every AWS call: the SDK sets no read timeout by default, so a call
/// whose answer never comes would hang its handler. Every SDK config Nommer builds
/// carries these.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    /// To open a connection.
    pub connect: Duration,
    /// From sending a request to the first byte of its answer; above SQS's longest
    /// long poll (20 s).
    pub first_byte: Duration,
    /// One attempt, the request's body sent and the answer's head read (a 16 MiB PUT,
    /// the largest single upload, fits on a slow link).
    pub attempt: Duration,
    /// The whole call, every retry and its backoff included.
    pub call: Duration,
    /// Attempts per call, the first included (the SDK's standard retries, with backoff
    /// and a retry budget).
    pub max_attempts: u32,
    /// The first retry's backoff at most (then doubling, with jitter, up to 20 s).
    pub backoff: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(30),
            attempt: Duration::from_secs(60),
            call: Duration::from_secs(180),
            max_attempts: 4,
            backoff: Duration::from_secs(1),
        }
    }
}

impl CallLimits {
    pub fn from_source(src: &dyn Source) -> Result<Self, SettingsError> {
        let d = CallLimits::default();
        let secs = |name, default: Duration| -> Result<Duration, SettingsError> {
            Ok(Duration::from_secs_f64(number(src, name, default.as_secs_f64(), 0.05)?))
        };
        let limits = CallLimits {
            connect: secs(AWS_CONNECT_TIMEOUT_SECS, d.connect)?,
            first_byte: secs(AWS_FIRST_BYTE_TIMEOUT_SECS, d.first_byte)?,
            attempt: secs(AWS_ATTEMPT_TIMEOUT_SECS, d.attempt)?,
            call: secs(AWS_CALL_TIMEOUT_SECS, d.call)?,
            max_attempts: number(src, AWS_MAX_ATTEMPTS, d.max_attempts, 1)?,
            backoff: secs(AWS_RETRY_BACKOFF_SECS, d.backoff)?,
        };
        if limits.call < limits.attempt {
            return Err(SettingsError::Invalid {
                name: AWS_CALL_TIMEOUT_SECS,
                value: limits.call.as_secs_f64().to_string(),
                reason: format!(
                    "must be at least {AWS_ATTEMPT_TIMEOUT_SECS} ({} s)",
                    limits.attempt.as_secs_f64()
                ),
            });
        }
        Ok(limits)
    }

    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }

    /// The variables that give these limits to a child process.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (AWS_CONNECT_TIMEOUT_SECS, self.connect.as_secs_f64().to_string()),
            (AWS_FIRST_BYTE_TIMEOUT_SECS, self.first_byte.as_secs_f64().to_string()),
            (AWS_ATTEMPT_TIMEOUT_SECS, self.attempt.as_secs_f64().to_string()),
            (AWS_CALL_TIMEOUT_SECS, self.call.as_secs_f64().to_string()),
            (AWS_MAX_ATTEMPTS, self.max_attempts.to_string()),
            (AWS_RETRY_BACKOFF_SECS, self.backoff.as_secs_f64().to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_aws_call_is_bounded_and_the_bounds_travel_to_a_child() {
        let d = CallLimits::from_source(&env(&[])).unwrap();
        assert_eq!(d, CallLimits::default());
        assert!(d.first_byte > Duration::from_secs(20), "above SQS's longest long poll");
        let e = env(&[(AWS_FIRST_BYTE_TIMEOUT_SECS, "1.5"), (AWS_MAX_ATTEMPTS, "2")]);
        let l = CallLimits::from_source(&e).unwrap();
        assert_eq!((l.first_byte, l.max_attempts), (Duration::from_millis(1500), 2));
        let round: HashMap<String, String> = l.to_env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(CallLimits::from_source(&round).unwrap(), l);
        for (bad, name) in [
            (env(&[(AWS_MAX_ATTEMPTS, "0")]), AWS_MAX_ATTEMPTS),
            (env(&[(AWS_CONNECT_TIMEOUT_SECS, "soon")]), AWS_CONNECT_TIMEOUT_SECS),
            (
                env(&[(AWS_CALL_TIMEOUT_SECS, "5"), (AWS_ATTEMPT_TIMEOUT_SECS, "10")]),
                AWS_CALL_TIMEOUT_SECS,
            ),
        ] {
            let msg = CallLimits::from_source(&bad).unwrap_err().to_string();
            assert!(msg.contains(name), "{msg}");
        }
    }
}
