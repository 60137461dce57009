//! A minimal Lambda Runtime API (the interface Lambda offers a function's bootstrap), to
//! run each function's real binary for one invocation.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the function reported.
#[derive(Debug)]
pub enum Reply {
    Response(serde_json::Value),
    Error(serde_json::Value),
    InitError(serde_json::Value),
}

struct Shared {
    pending: Mutex<Option<(String, serde_json::Value)>>,
    tx: mpsc::UnboundedSender<Reply>,
}

const PREFIX: &str = "/2018-06-01/runtime";

async fn next(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let event = s.pending.lock().unwrap().take();
    match event {
        Some((id, ev)) => {
            let mut h = HeaderMap::new();
            h.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            h.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from_str(&deadline.to_string()).unwrap(),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:nommer-test"),
            );
            h.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-5e9f0c65-1de4d666d4dd26aced652b6c;Sampled=0"),
            );
            (StatusCode::OK, h, ev.to_string()).into_response()
        }
        None => {
            // no more events: hold the long poll, as Lambda does between invocations
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(s): State<Arc<Shared>>, Path(_id): Path<String>, body: Bytes) -> StatusCode {
    let _ = s.tx.send(Reply::Response(json(&body)));
    StatusCode::ACCEPTED
}

async fn error(State(s): State<Arc<Shared>>, Path(_id): Path<String>, body: Bytes) -> StatusCode {
    let _ = s.tx.send(Reply::Error(json(&body)));
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = s.tx.send(Reply::InitError(json(&body)));
    StatusCode::ACCEPTED
}

/// Runs `binary` as Lambda would, hands it `event`, and returns what it replied (or
/// its exit and stderr if it died first).
pub async fn invoke_binary(
    binary: &FsPath,
    env: &HashMap<String, String>,
    event: serde_json::Value,
) -> Result<Reply, String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pending: Mutex::new(Some((uuid::Uuid::new_v4().to_string(), event))),
        tx,
    });
    let app = Router::new()
        .route(&format!("{PREFIX}/invocation/next"), get(next))
        .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(response))
        .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
        .route(&format!("{PREFIX}/init/error"), post(init_error))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "nommer-test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/nommer-test")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let result = tokio::select! {
        reply = rx.recv() => Ok(reply.expect("a reply")),
        status = child.wait() => {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_string(&mut err).await;
            }
            Err(format!("{} exited ({:?}) before replying: {err}", binary.display(), status))
        }
        _ = tokio::time::sleep(Duration::from_secs(60)) => Err("no reply within 60 s".into()),
    };
    let _ = child.kill().await;
    server.abort();
    result
}
