//! Faults on purpose: a reverse proxy on loopback between every component of the local
//! stack and the emulator ([`proxy::FaultProxy`]) that answers a chosen share of AWS
//! calls, per service and action, the way AWS does when it misbehaves: a 500 or 503, the
//! service's own throttling error, a reset connection, a delay, or "done but the answer
//! lost" (the call reaches the emulator, then the connection is reset before the
//! answer). The plan is seeded, so a failing run can be replayed, and the proxy counts
//! what it did.
//!
//! The proxy also makes the emulator's DynamoDB writes atomic: moto checks a condition
//! and then writes, without a lock, on a threaded server, so two concurrent conditional
//! writes can both "succeed" inside it. The proxy sends DynamoDB writes to it one at a
//! time, so a lost race in a test is always Nommer's own.

mod answers;
pub mod proxy;

pub use proxy::FaultProxy;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The variable that turns faults on for a local stack, in [`FaultPlan`]'s syntax.
pub const FAULTS_VAR: &str = "NOMMER_FAULTS";

/// One way an AWS call can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// HTTP 500, the service's internal error.
    ServerError,
    /// HTTP 503, the service unavailable.
    Unavailable,
    /// The service's own throttling error (DynamoDB's
    /// `ProvisionedThroughputExceededException` or `ThrottlingException`, SQS's
    /// `RequestThrottled`, S3's `SlowDown`, EC2's `RequestLimitExceeded`, …).
    Throttled,
    /// The connection reset before the call reached the service.
    Reset,
    /// The call held for the plan's delay, then sent on.
    Delay,
    /// The call done by the service, then its connection reset instead of the answer.
    Lost,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Throttled,
        Fault::Reset,
        Fault::Delay,
        Fault::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::ServerError => "500",
            Fault::Unavailable => "503",
            Fault::Throttled => "throttle",
            Fault::Reset => "reset",
            Fault::Delay => "delay",
            Fault::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to fault, how, and the seed that makes it repeatable.
///
/// Written as `;`-separated `key=value`s, e.g.
/// `seed=7;share=0.1;kinds=500,503,throttle,reset,delay,lost;delay_ms=6000;dynamodb:PutItem=0.5;sqs=0`:
/// - `seed`: the seed of every decision (default 0);
/// - `share`: the share of AWS calls faulted where no narrower share is given (default 0);
/// - `kinds`: the faults to choose from, evenly (default: all six);
/// - `delay_ms`: how long a `delay` holds a call (default 6000);
/// - `SERVICE=SHARE` or `SERVICE:ACTION=SHARE`: the share for one service (as it signs
///   its calls: `s3`, `sqs`, `dynamodb`, `sns`, `ec2`, `secretsmanager`) or one action of
///   it; the narrowest wins. Presigned S3 requests (a user's upload, Encoding.com's
///   fetch) are service `s3-presigned`, faulted only when named.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub share: f64,
    pub targets: Vec<Target>,
    pub kinds: Vec<Fault>,
    pub delay: Duration,
}

/// The share of one service's calls, or one action's, that is faulted.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub service: String,
    pub action: Option<String>,
    pub share: f64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            seed: 0,
            share: 0.0,
            targets: Vec::new(),
            kinds: Fault::ALL.to_vec(),
            delay: Duration::from_secs(6),
        }
    }
}

/// A fault plan that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{FAULTS_VAR}: `{part}`: {problem}")]
pub struct PlanError {
    pub part: String,
    pub problem: String,
}

impl FromStr for FaultPlan {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<FaultPlan, PlanError> {
        let mut plan = FaultPlan::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |problem: &str| PlanError {
                part: part.to_string(),
                problem: problem.to_string(),
            };
            let (key, value) = part.split_once('=').ok_or_else(|| bad("write key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let share = || match value.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                _ => Err(bad("a share is a number from 0 to 1")),
            };
            match key {
                "seed" => plan.seed = value.parse().map_err(|_| bad("the seed is a whole number"))?,
                "share" => plan.share = share()?,
                "delay_ms" => {
                    plan.delay = Duration::from_millis(value.parse().map_err(|_| bad("milliseconds, a whole number"))?)
                }
                "kinds" => {
                    plan.kinds = value
                        .split(',')
                        .map(|k| Fault::parse(k.trim()))
                        .collect::<Option<Vec<_>>>()
                        .filter(|k| !k.is_empty())
                        .ok_or_else(|| bad("kinds are some of 500,503,throttle,reset,delay,lost"))?
                }
                _ => {
                    let (service, action) = match key.split_once(':') {
                        Some((s, a)) => (s, Some(a.to_string())),
                        None => (key, None),
                    };
                    let known = service
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                    if service.is_empty() || !known {
                        return Err(bad("known keys: seed, share, kinds, delay_ms, SERVICE, SERVICE:Action"));
                    }
                    plan.targets.push(Target {
                        service: service.to_string(),
                        action,
                        share: share()?,
                    });
                }
            }
        }
        Ok(plan)
    }
}

impl FaultPlan {
    /// The plan in `NOMMER_FAULTS`, if set.
    pub fn from_env() -> Result<Option<FaultPlan>, PlanError> {
        match std::env::var(FAULTS_VAR) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// The share of `service`'s `action` calls that is faulted.
    pub fn share_for(&self, service: &str, action: &str) -> f64 {
        let exact = self
            .targets
            .iter()
            .find(|t| t.service == service && t.action.as_deref() == Some(action));
        let whole = self.targets.iter().find(|t| t.service == service && t.action.is_none());
        match (exact, whole) {
            (Some(t), _) | (None, Some(t)) => t.share,
            // presigned requests come from outside Nommer: faulted only when named
            (None, None) if service == PRESIGNED => 0.0,
            (None, None) => self.share,
        }
    }

    /// The fault for the `n`th call of `service`'s `action` (counted from 0), if any: the
    /// same seed gives the same answer for the same call.
    pub fn decide(&self, service: &str, action: &str, n: u64) -> Option<Fault> {
        let share = self.share_for(service, action);
        if share <= 0.0 || self.kinds.is_empty() {
            return None;
        }
        let h = mix(self.seed ^ fnv(service) ^ fnv(action).rotate_left(17), n);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u >= share {
            return None;
        }
        let pick = mix(h, 1) % self.kinds.len() as u64;
        Some(self.kinds[pick as usize])
    }
}

/// The service name presigned S3 requests are counted (and faulted) under.
pub const PRESIGNED: &str = "s3-presigned";

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// splitmix64 of `a` and `b`: well-spread bits from a counter.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_add(b.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the proxy did to one service's action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionCounts {
    pub calls: u64,
    pub faults: BTreeMap<Fault, u64>,
}

/// Every call the proxy saw, by service and action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(pub BTreeMap<(String, String), ActionCounts>);

impl Counts {
    pub fn calls(&self) -> u64 {
        self.0.values().map(|c| c.calls).sum()
    }

    /// Faults of `kind` across every call.
    pub fn faults(&self, kind: Fault) -> u64 {
        self.0.values().map(|c| c.faults.get(&kind).copied().unwrap_or(0)).sum()
    }

    pub fn all_faults(&self) -> u64 {
        Fault::ALL.iter().map(|k| self.faults(*k)).sum()
    }

    /// One line per action that was faulted, then the totals.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for ((service, action), c) in &self.0 {
            if c.faults.is_empty() {
                continue;
            }
            let faults: Vec<String> = c.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
            out.push_str(&format!(
                "  {service} {action}: {} calls; {}\n",
                c.calls,
                faults.join(", ")
            ));
        }
        let totals: Vec<String> = Fault::ALL.iter().map(|k| format!("{k} {}", self.faults(*k))).collect();
        out.push_str(&format!(
            "  all: {} calls, {} faulted ({})\n",
            self.calls(),
            self.all_faults(),
            totals.join(", ")
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_read_with_their_defaults_and_refused_with_a_reason() {
        let p: FaultPlan = "seed=7; share=0.1; kinds=500,lost; delay_ms=250; dynamodb:PutItem=0.5; sqs=0"
            .parse()
            .unwrap();
        assert_eq!((p.seed, p.share, p.delay), (7, 0.1, Duration::from_millis(250)));
        assert_eq!(p.kinds, vec![Fault::ServerError, Fault::Lost]);
        assert_eq!(p.share_for("dynamodb", "PutItem"), 0.5);
        assert_eq!(p.share_for("dynamodb", "GetItem"), 0.1);
        assert_eq!(p.share_for("sqs", "SendMessage"), 0.0);
        assert_eq!(p.share_for(PRESIGNED, "GET"), 0.0, "presigned only when named");
        assert_eq!("".parse::<FaultPlan>().unwrap(), FaultPlan::default());
        for (bad, why) in [
            ("share=2", "from 0 to 1"),
            ("kinds=500,flood", "kinds are"),
            ("seed", "key=value"),
            ("Bad Key=0.1", "known keys"),
            ("delay_ms=-1", "milliseconds"),
        ] {
            let e = bad.parse::<FaultPlan>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(FAULTS_VAR), "{bad}: {e}");
        }
    }

    #[test]
    fn the_seed_replays_the_same_faults_and_the_share_holds() {
        let p: FaultPlan = "seed=42;share=0.1".parse().unwrap();
        let run = |p: &FaultPlan| {
            (0..10_000)
                .map(|n| p.decide("sqs", "ReceiveMessage", n))
                .collect::<Vec<_>>()
        };
        let a = run(&p);
        assert_eq!(a, run(&p), "same seed, same faults");
        let faulted = a.iter().flatten().count();
        assert!((800..1200).contains(&faulted), "{faulted} of 10000 at 10 %");
        for k in Fault::ALL {
            let n = a.iter().flatten().filter(|f| **f == k).count();
            assert!(n > 100, "{k} chosen {n} times of {faulted}");
        }
        let other: FaultPlan = "seed=43;share=0.1".parse().unwrap();
        assert_ne!(a, run(&other), "another seed, other faults");
        // a different action does not share the first one's sequence
        let b: Vec<_> = (0..10_000).map(|n| p.decide("sqs", "SendMessage", n)).collect();
        assert_ne!(a, b);
    }
}
