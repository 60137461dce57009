//! A local stand-in for Encoding.com, for the local stack and the tests: a real HTTP
//! server that speaks the documented API (a form POST whose `json` field holds
//! `{"query": {userid, userkey, action, …}}`) for every action PyPI's `encodingcom`
//! client sends: `AddMedia`, `AddMediaBenchmark`, `ProcessMedia`, `UpdateMedia`,
//! `GetStatus` (plain and extended), `GetMediaInfo`, `GetMediaInfoEx`, `GetMediaList`,
//! `CancelMedia`, `StopMedia`, `RestartMedia`, `RestartMediaErrors`, `RestartMediaTask`.
//! Each task downloads its source URL, really transcodes each `format` with FFmpeg,
//! writes the results to their `https://BUCKET.s3.amazonaws.com/key` destinations (in
//! the emulator), and POSTs the `notify` URL.
//!
//! It keeps Encoding.com's documented defaults, which Nommer must cope with:
//! - every S3 write carries a canned ACL: `authenticated-read` unless the destination
//!   says `?acl=…` (plus FULL_CONTROL for `canonical_id=…`). moto stores Block Public
//!   Access and Object Ownership settings but enforces neither, so before each write the
//!   stand-in reads the target bucket's settings from the emulator and refuses what S3
//!   would: any ACL but `bucket-owner-full-control` under `BucketOwnerEnforced` (S3's
//!   default for new buckets), a public ACL (`public-read`, `authenticated-read`) under
//!   `BlockPublicAcls` (on by default too);
//! - `advanced_hls` / `advanced_dash` deliver ONE tar unless `pack_files` is `no`;
//! - notifications are XML in a form field `xml` unless `notify_format` is `json`.
//!
//! It answers like Encoding.com does: errors in `response.errors.error`, one-item lists
//! as bare objects, `progress` reading 100 while "Waiting for encoder".
//!
//! [`Switches`] inject failures: an error response to `AddMedia`, slow processing, lost
//! callbacks, tasks that end in `Error`.

//!
//! Its parts: [`api`] the HTTP front (one form POST, an action each), [`model`] the tasks
//! it holds and how their status reads in Encoding.com's words, [`task`] one task's run
//! (download, probe, the status steps, the notify POST), [`transcode`] the FFmpeg runs for
//! a `format`, [`storage`] the S3 writes under S3's ownership and ACL rules.

mod api;
mod model;
mod storage;
mod task;
mod transcode;

use axum::routing::post;
use axum::Router;
use model::Inner;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const USERID: &str = "nommer-local";
pub const USERKEY: &str = "local-stand-in-key";

/// The stand-in's own canonical user id: the template's EncodingComCanonicalUserId in
/// the local stack, so the delivery bucket's policy names it as it names Encoding.com's.
pub const CANONICAL_USER_ID: &str = "5e1c0d1a9b6f4e2c8d3a7b0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5";

/// Failure injection, changeable while it runs.
#[derive(Debug, Default)]
pub struct Switches {
    /// `AddMedia` answers with an error.
    pub refuse_add: AtomicBool,
    /// Pause at each status, milliseconds (slow processing).
    pub step_delay_ms: AtomicU64,
    /// Never POST the notify URL.
    pub lose_callbacks: AtomicBool,
    /// Tasks end in `Error` after downloading.
    pub fail_tasks: AtomicBool,
}

/// A running stand-in.
pub struct StandIn {
    pub url: String,
    pub switches: Arc<Switches>,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every request and task shares.
#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    switches: Arc<Switches>,
    s3: aws_sdk_s3::Client,
    http: reqwest::Client,
    work: PathBuf,
    ffmpeg: String,
    ffprobe: String,
}

impl StandIn {
    /// Starts it on a free local port. `s3` writes the outputs; `work` holds its files.
    pub async fn start(sdk: &aws_config::SdkConfig, work: &Path) -> anyhow::Result<StandIn> {
        std::fs::create_dir_all(work)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let switches = Arc::new(Switches::default());
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1000,
            ..Default::default()
        }));
        let ctx = Ctx {
            inner: inner.clone(),
            switches: switches.clone(),
            s3: nommer_aws::sdk::s3_client(sdk),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            work: work.to_path_buf(),
            ffmpeg: std::env::var("NOMMER_FFMPEG").unwrap_or_else(|_| "ffmpeg".into()),
            ffprobe: std::env::var("NOMMER_FFPROBE").unwrap_or_else(|_| "ffprobe".into()),
        };
        let app = Router::new().route("/", post(api::handle)).with_state(ctx);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Encoding.com stand-in stopped");
            }
        });
        Ok(StandIn {
            url,
            switches,
            inner,
            task,
        })
    }

    /// Every action received so far.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// A task's status word.
    pub fn status(&self, media_id: &str) -> Option<String> {
        self.inner.lock().unwrap().media.get(media_id).map(|m| m.status.clone())
    }

    /// The source URL a task was added with.
    pub fn source(&self, media_id: &str) -> Option<String> {
        self.inner.lock().unwrap().media.get(media_id).map(|m| m.source.clone())
    }
}
