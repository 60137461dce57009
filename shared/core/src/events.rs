//! Job events: one per state change, derived from the table's change feed (each write's
//! old and new image), never from a second write. An event's id comes from the job id and
//! the position of the transition in the job's history, so it is the same on every
//! redelivery. Webhooks are signed per the Standard Webhooks spec; URLs are checked
//! against SSRF at delivery time. The event format is documented in
//! `docs/events.schema.json`.

use crate::job::{Job, JobError, OutputFile};
use crate::state::JobState;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const EVENT_VERSION: &str = "1";
pub const STATE_CHANGED: &str = "job.state_changed";
pub const PROGRESS: &str = "job.progress";

/// What subscribers receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub version: String,
    /// Stable across redelivery: the same transition always has the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: DateTime<Utc>,
    pub job: EventJob,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventJob {
    pub id: String,
    pub state: JobState,
    pub previous_state: Option<JobState>,
    pub progress: u8,
    pub backend: Option<String>,
    pub presets: Vec<String>,
    pub source: String,
    pub outputs: Vec<OutputFile>,
    pub error: Option<JobError>,
    pub user_metadata: BTreeMap<String, String>,
    /// Why this state (the history note), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn event_id(job_id: &str, what: &str) -> String {
    let h = Sha256::digest(format!("{job_id}#{what}").as_bytes());
    format!("evt_{}", &hex::encode(h)[..32])
}

fn event(
    job: &Job,
    kind: &str,
    id: String,
    time: DateTime<Utc>,
    state: JobState,
    previous: Option<JobState>,
    note: Option<String>,
) -> Event {
    Event {
        version: EVENT_VERSION.into(),
        id,
        kind: kind.into(),
        time,
        job: EventJob {
            id: job.id.clone(),
            state,
            previous_state: previous,
            progress: if state == job.state { job.progress } else { 0 },
            backend: job.backend.clone(),
            presets: job.outputs.iter().map(|o| o.preset.clone()).collect(),
            source: job.source.to_string(),
            outputs: if state == JobState::Complete {
                job.manifest.clone()
            } else {
                Vec::new()
            },
            error: if state == JobState::Failed {
                job.error.clone()
            } else {
                None
            },
            user_metadata: job.user_metadata.clone(),
            note,
        },
    }
}

/// The events one write made: one `job.state_changed` per history entry the write added
/// (a write may add several, e.g. Encoding.com news that skips ahead), and a
/// `job.progress` when only the progress moved.
pub fn from_change(old: Option<&Job>, new: &Job) -> Vec<Event> {
    let before = old.map(|o| o.history.len()).unwrap_or(0);
    let mut out = Vec::new();
    let mut previous = old.map(|o| o.state);
    if new.history.len() > before {
        for (i, h) in new.history.iter().enumerate().skip(before) {
            // a history entry that repeats the state (a note, e.g. a fallback) is no transition
            let prior = if i == 0 { None } else { Some(new.history[i - 1].state) };
            if prior == Some(h.state) {
                continue;
            }
            out.push(event(
                new,
                STATE_CHANGED,
                event_id(&new.id, &format!("h{i}")),
                h.at,
                h.state,
                prior.or(previous),
                h.note.clone(),
            ));
            previous = Some(h.state);
        }
    } else if let Some(o) = old {
        if o.state == new.state && o.progress != new.progress && !new.state.is_terminal() {
            out.push(event(
                new,
                PROGRESS,
                event_id(&new.id, &format!("p{}-{}", new.history.len(), new.progress)),
                new.updated_at,
                new.state,
                Some(o.state),
                None,
            ));
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// A Standard Webhooks signing secret: `whsec_` + base64 of the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    pub fn parse(s: &str) -> Result<SigningSecret, String> {
        let b64 = s.strip_prefix("whsec_").ok_or("a signing secret starts with whsec_")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "a signing secret is whsec_ followed by base64".to_string())?;
        if key.len() < 24 {
            return Err("a signing secret needs at least 24 bytes of key".into());
        }
        Ok(SigningSecret(key))
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut msg = format!("{id}.{timestamp}.").into_bytes();
        msg.extend_from_slice(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&self.0, &msg))
        )
    }
}

/// A webhook endpoint from the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub secret: SigningSecret,
    /// Only these states (empty: all).
    pub states: Vec<JobState>,
    /// Also `job.progress` events.
    pub progress: bool,
}

/// The `[webhooks]` part of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhooks {
    /// Signs deliveries to jobs' own `notify_url` (`NOMMER_WEBHOOK_SECRET` overrides).
    pub secret: Option<SigningSecret>,
    /// Send `job.progress` events to jobs' `notify_url`.
    pub job_progress: bool,
    pub endpoints: Vec<Endpoint>,
    /// `http://` URLs allowed (local use only).
    pub allow_http: bool,
    /// Private, loopback, link-local and unique-local addresses allowed (local use only).
    pub allow_private: bool,
    /// Delay before each attempt, seconds; its length is the number of attempts.
    pub retry_seconds: Vec<u64>,
}

/// Attempts and their delays: at once, then over about 27 hours (as Standard Webhooks
/// suggests).
pub const DEFAULT_RETRY_SECONDS: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            secret: None,
            job_progress: false,
            endpoints: Vec::new(),
            allow_http: false,
            allow_private: false,
            retry_seconds: DEFAULT_RETRY_SECONDS.to_vec(),
        }
    }
}

impl Endpoint {
    pub fn wants(&self, e: &Event) -> bool {
        if e.kind == PROGRESS && !self.progress {
            return false;
        }
        self.states.is_empty() || self.states.contains(&e.job.state)
    }
}

/// Why a URL may not be called; else its host (as the HTTP client will see it) and port.
/// Parsed with the same URL parser the HTTP client uses, so the host checked is the host
/// connected to (a `\\` or other oddity cannot make them differ).
pub fn check_url(url: &str, policy: &Webhooks) -> Result<(String, u16), String> {
    let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err("webhook URLs must be https (http is allowed only by config, for local use)".into()),
        other => return Err(format!("scheme `{other}` is not allowed")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("URLs with credentials are not allowed".into());
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = u.port_or_known_default().ok_or("no port")?;
    Ok((host, port))
}

/// Whether an address is one a webhook may reach (unless the config allows private ones).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 to anywhere
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Origin, OutputSpec, S3Uri};
    use crate::state::Transition;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(!format!("{s:?}").contains("MfKQ"));
        assert!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // test case 2
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // test case 6: a key longer than the block
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn job() -> Job {
        Job::new(
            crate::ids::random(),
            Origin::Api,
            S3Uri::new("inbox", "a.mov"),
            vec![OutputSpec::new("web", "mp4-720p")],
            Utc::now(),
        )
    }

    #[test]
    fn one_event_per_transition_with_stable_ids() {
        let created = job();
        let first = from_change(None, &created);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].job.state, first[0].job.previous_state),
            (JobState::Submitted, None)
        );
        let mut j = created.clone();
        j.apply(Transition::Dispatch, Utc::now(), None).unwrap();
        let e = from_change(Some(&created), &j);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].job.state, e[0].job.previous_state),
            (JobState::Queued, Some(JobState::Submitted))
        );
        assert_eq!(from_change(Some(&created), &j), e, "redelivery gives the same ids");
        // a write that walks three states gives three events, in order
        let mut k = j.clone();
        for t in [
            Transition::StartDownload,
            Transition::StartEncode,
            Transition::StartUpload,
        ] {
            k.apply(t, Utc::now(), None).unwrap();
        }
        let e = from_change(Some(&j), &k);
        let states: Vec<_> = e.iter().map(|e| (e.job.previous_state.unwrap(), e.job.state)).collect();
        assert_eq!(
            states,
            [
                (JobState::Queued, JobState::Downloading),
                (JobState::Downloading, JobState::Encoding),
                (JobState::Encoding, JobState::Uploading)
            ]
        );
        let ids: std::collections::BTreeSet<_> = e.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        // progress alone: a progress event; a heartbeat alone: nothing
        let mut p = k.clone();
        p.progress = 40;
        assert_eq!(from_change(Some(&k), &p)[0].kind, PROGRESS);
        let mut h = p.clone();
        h.heartbeat_at = Some(Utc::now());
        assert!(from_change(Some(&p), &h).is_empty());
    }

    #[test]
    fn urls_and_addresses_are_checked() {
        let strict = Webhooks::default();
        assert_eq!(
            check_url("https://hooks.example.com/x", &strict).unwrap(),
            ("hooks.example.com".into(), 443)
        );
        assert!(check_url("http://hooks.example.com/x", &strict)
            .unwrap_err()
            .contains("https"));
        assert!(check_url("ftp://x/y", &strict).is_err());
        assert!(check_url("https://user:pw@x.example/", &strict).is_err());
        assert_eq!(
            check_url("https://[::1]:8443/x", &strict).unwrap(),
            ("::1".into(), 8443)
        );
        // the host checked is the host the client connects to
        assert_eq!(
            check_url("https://10.0.0.5\\x.attacker.example/", &strict).unwrap().0,
            "10.0.0.5"
        );
        assert_eq!(check_url("https://0x7f.1/", &strict).unwrap().0, "127.0.0.1");
        let local = Webhooks {
            allow_http: true,
            ..Webhooks::default()
        };
        assert_eq!(
            check_url("http://127.0.0.1:9000/h", &local).unwrap(),
            ("127.0.0.1".into(), 9000)
        );
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }
}
