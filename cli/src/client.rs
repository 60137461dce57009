//! A small client for Nommer's HTTP API.

use anyhow::{bail, Context};
use nommer_core::Job;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str) -> Self {
        Self::with_key(base, None)
    }

    /// A client that sends `key` in `x-api-key` with every request.
    pub fn with_key(base: &str, key: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = key {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(k) {
                headers.insert("x-api-key", v);
            }
        }
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Any call; returns the status and the JSON body (null when it is not JSON).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("calling {method} {path} on {}; is the API up?", self.base))?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }

    pub async fn get_job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        let r = self
            .http
            .get(format!("{}/jobs/{id}", self.base))
            .send()
            .await
            .context("calling GET /jobs/{id}")?;
        match r.status().as_u16() {
            200 => Ok(Some(r.json().await?)),
            404 => Ok(None),
            s => bail!("GET /jobs/{id} answered {s}: {}", r.text().await.unwrap_or_default()),
        }
    }

    /// `POST /jobs`; returns the status and the JSON body.
    pub async fn create_job(
        &self,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self.http.post(format!("{}/jobs", self.base)).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.context("calling POST /jobs")?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }

    /// Polls a job until it is terminal, calling `on_change` whenever its state or
    /// progress changes. A job that does not exist yet is waited for too.
    pub async fn wait(&self, id: &str, limit: Duration, mut on_change: impl FnMut(&Job)) -> anyhow::Result<Job> {
        let started = Instant::now();
        let mut last: Option<(nommer_core::JobState, u8)> = None;
        loop {
            if let Some(job) = self.get_job(id).await? {
                let now = (job.state, job.progress);
                if last != Some(now) {
                    on_change(&job);
                    last = Some(now);
                }
                if job.state.is_terminal() {
                    return Ok(job);
                }
            }
            if started.elapsed() > limit {
                bail!("job {id} is not finished after {limit:?} (last seen: {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
