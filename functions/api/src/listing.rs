//! `GET /jobs`: the jobs, newest first, filtered by state, creation time and metadata, a
//! page at a time.

use crate::request::invalid;
use crate::{ApiState, Problem};
use axum::extract::{RawQuery, State};
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Utc};
use nommer_core::JobState;
use std::sync::Arc;

/// What a listing asks for.
struct Query {
    /// In lifecycle order (the store's listing depends on it), each once.
    states: Vec<JobState>,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
    meta: Vec<(String, String)>,
    limit: usize,
    cursor: Option<String>,
}

impl Query {
    /// Reads `state=…&created_after=…&created_before=…&metadata.<key>=<value>&limit=…&cursor=…`;
    /// a refusal names the parameter.
    fn parse(query: Option<String>) -> Result<Query, Problem> {
        let mut q = Query {
            states: Vec::new(),
            after: DateTime::<Utc>::from_timestamp(0, 0).expect("epoch"),
            before: Utc::now() + chrono::Duration::days(1),
            meta: Vec::new(),
            limit: 20,
            cursor: None,
        };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            q.read(&dec(k), dec(v))?;
        }
        if q.after > q.before {
            return Err(invalid("created_after", "is after created_before"));
        }
        if q.states.is_empty() {
            q.states = JobState::ALL.to_vec();
        }
        q.states.sort_by_key(|s| JobState::ALL.iter().position(|x| x == s));
        q.states.dedup();
        Ok(q)
    }

    /// One parameter.
    fn read(&mut self, k: &str, v: String) -> Result<(), Problem> {
        let time = |field: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(field, "an RFC 3339 time such as 2026-11-25T10:00:00Z"))
        };
        match k {
            "state" => {
                for st in v.split(',').filter(|x| !x.is_empty()) {
                    self.states.push(JobState::parse(st).ok_or_else(|| {
                        invalid("state", format!("`{st}` is not a state; states: submitted, queued, downloading, encoding, uploading, complete, failed, cancelled"))
                    })?);
                }
            }
            "created_after" => self.after = time("created_after", &v)?,
            "created_before" => self.before = time("created_before", &v)?,
            "limit" => {
                self.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| invalid("limit", "a number from 1 to 100"))?
            }
            "cursor" => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|c| c.contains('#') && c.len() < 200)
                    .ok_or_else(|| invalid("cursor", "not a cursor this API gave; start again without it"))?;
                self.cursor = Some(raw);
            }
            other => {
                match other.strip_prefix("metadata.") {
                    Some(key) if !key.is_empty() => self.meta.push((key.to_string(), v)),
                    _ => return Err(invalid(
                        other,
                        "unknown parameter; known: state, created_after, created_before, metadata.<key>, limit, cursor",
                    )),
                }
            }
        }
        Ok(())
    }
}

/// `GET /jobs?state=…&created_after=…&created_before=…&metadata.<key>=<value>&limit=…&cursor=…`:
/// newest first. `state` may repeat or be comma-separated; `cursor` is the
/// `next_cursor` of the previous page.
pub(crate) async fn list_jobs(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Problem> {
    let q = Query::parse(query)?;
    let (jobs, next) = state
        .store
        .list_page(&q.states, q.after, q.before, q.cursor.as_deref(), q.limit, |j| {
            q.meta.iter().all(|(k, v)| j.user_metadata.get(k) == Some(v))
        })
        .await
        .map_err(Problem::internal)?;
    let next = next.map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c));
    Ok(Json(serde_json::json!({
        "jobs": jobs.into_iter().map(nommer_core::Job::public).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cursor_of(raw: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// One `k=v` pair: the known parameters with good, odd and hostile values.
    fn pair() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            any::<String>(),
            "[ -~]{0,30}",
            Just("2026-11-25T10:00:00Z".to_string()),
            Just("+262143-12-31T23:59:59-23:59".to_string()),
            Just("-262144-01-01T00:00:00+23:59".to_string()),
            Just("9999-12-31T23:59:60.999999999Z".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("%ZZ%%C3%28+".to_string()),
            "[a-z,]{0,40}",
            any::<String>().prop_map(|s| cursor_of(&s)),
            Just(cursor_of("2026-11-25T10:00:00+00:00#j0123")),
        ];
        let key = prop_oneof![
            Just("state".to_string()),
            Just("created_after".to_string()),
            Just("created_before".to_string()),
            Just("limit".to_string()),
            Just("cursor".to_string()),
            "metadata\\.[\\PC]{0,8}",
            any::<String>(),
        ];
        (key, value).prop_map(|(k, v)| {
            let enc =
                |x: &str| percent_encoding::utf8_percent_encode(x, percent_encoding::NON_ALPHANUMERIC).to_string();
            format!("{}={}", enc(&k), enc(&v))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any query string is read or refused naming a parameter, never a panic.
        #[test]
        fn list_queries_are_read_or_refused(pairs in prop::collection::vec(pair(), 0..6), raw in any::<String>(), plain in any::<bool>()) {
            let query = if plain { raw } else { pairs.join("&") };
            match Query::parse(Some(query)) {
                Ok(q) => {
                    prop_assert!((1..=100).contains(&q.limit));
                    prop_assert!(q.after <= q.before);
                    prop_assert!(!q.states.is_empty());
                    if let Some(c) = q.cursor {
                        prop_assert!(c.contains('#') && c.len() < 200);
                    }
                }
                Err(p) => prop_assert!(p.status == 400 && !p.detail.is_empty()),
            }
        }
    }

    #[test]
    fn a_cursor_this_api_gave_reads_back() {
        let raw = "2026-11-25T10:00:00+00:00#j0123456789abcdef0123456789abcdef";
        let q = Query::parse(Some(format!("cursor={}&limit=5&state=failed,queued", cursor_of(raw)))).unwrap();
        assert_eq!(q.cursor.as_deref(), Some(raw));
        assert_eq!(q.states, [JobState::Queued, JobState::Failed]);
        let e = Query::parse(Some("cursor=!!".into())).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("cursor"));
    }
}
