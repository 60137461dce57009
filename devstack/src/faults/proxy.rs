//! The proxy itself: HTTP/1.1 on a loopback port, each call forwarded to the emulator
//! unless the plan faults it.

use super::answers::Call;
use super::{Counts, Fault, FaultPlan};
use anyhow::Context;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The path the proxy answers itself, with its counts as JSON (for runs by hand).
pub const COUNTS_PATH: &str = "/__nommer/faults";

/// A running proxy in front of an emulator; stopped when dropped.
pub struct FaultProxy {
    /// Where components send their AWS calls (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

struct State {
    upstream: String,
    plan: FaultPlan,
    http: reqwest::Client,
    counts: Mutex<Counts>,
    /// One DynamoDB write at a time reaches the emulator (see the module's doc).
    dynamodb_writes: tokio::sync::Mutex<()>,
}

/// The connection is to be reset instead of answered.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset by the fault plan")
    }
}

impl std::error::Error for Reset {}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: &str, plan: FaultPlan) -> anyhow::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy's port")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            plan,
            // the emulator's answers can take a while (a long poll is 20 s); never forever
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            counts: Mutex::default(),
            dynamodb_writes: tokio::sync::Mutex::new(()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fd = stream.as_raw_fd();
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), fd, req));
                    // a connection reset on purpose ends here with an error: nothing to report
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy { endpoint, state, task })
    }

    /// What the proxy has seen and done so far.
    pub fn counts(&self) -> Counts {
        self.state.counts.lock().unwrap().clone()
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.state.plan
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(st: Arc<State>, fd: RawFd, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Reset> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    if parts.uri.path() == COUNTS_PATH {
        return Ok(counts_answer(&st.counts.lock().unwrap()));
    }
    let call = Call::of(&parts.method, &parts.uri, &parts.headers, &body);
    let fault = call.as_ref().and_then(|c| st.record(c));
    match fault {
        Some(Fault::Reset) => return Err(reset(fd)),
        Some(f @ (Fault::ServerError | Fault::Unavailable | Fault::Throttled)) => {
            let c = call.as_ref().expect("only calls are faulted");
            return Ok(c.error_answer(f, st.plan.seed ^ body.len() as u64));
        }
        Some(Fault::Delay) => tokio::time::sleep(st.plan.delay).await,
        _ => {}
    }
    let serialise = call.as_ref().is_some_and(Call::is_dynamodb_write);
    let guard = if serialise {
        Some(st.dynamodb_writes.lock().await)
    } else {
        None
    };
    let answer = forward(&st, &parts, body).await;
    drop(guard);
    if fault == Some(Fault::Lost) {
        return Err(reset(fd));
    }
    Ok(answer)
}

impl State {
    /// Counts the call and returns the plan's fault for it.
    fn record(&self, c: &Call) -> Option<Fault> {
        let mut counts = self.counts.lock().unwrap();
        let entry = counts.0.entry((c.service.clone(), c.action.clone())).or_default();
        let fault = self.plan.decide(&c.service, &c.action, entry.calls);
        entry.calls += 1;
        if let Some(f) = fault {
            *entry.faults.entry(f).or_default() += 1;
        }
        fault
    }
}

/// Makes the connection's close a reset (RST, not FIN) and says to close it.
fn reset(fd: RawFd) -> Reset {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the socket of the connection this request came on; hyper owns it
    // until this request's future ends, so it is open. SO_LINGER only changes how the
    // kernel closes it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    Reset
}

/// Hop-by-hop headers, never forwarded (the body is forwarded whole).
fn hop(name: &header::HeaderName) -> bool {
    name == header::CONNECTION || name == header::TRANSFER_ENCODING || name.as_str() == "keep-alive"
}

async fn forward(st: &State, parts: &http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = st.http.request(parts.method.clone(), format!("{}{path}", st.upstream));
    for (k, v) in &parts.headers {
        // reqwest sets the length of the whole body itself
        if !hop(k) && k != header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let upstream = async {
        let r = req.body(body).send().await?;
        let (status, headers) = (r.status(), r.headers().clone());
        Ok::<_, reqwest::Error>((status, headers, r.bytes().await?))
    };
    match upstream.await {
        Ok((status, headers, bytes)) => {
            let mut answer = Response::new(Full::new(bytes));
            *answer.status_mut() = status;
            for (k, v) in &headers {
                if !hop(k) {
                    answer.headers_mut().append(k, v.clone());
                }
            }
            answer
        }
        Err(e) => {
            let mut answer = Response::new(Full::new(Bytes::from(format!("the emulator did not answer: {e}"))));
            *answer.status_mut() = StatusCode::BAD_GATEWAY;
            answer
        }
    }
}

fn counts_answer(counts: &Counts) -> Response<Full<Bytes>> {
    let rows: Vec<serde_json::Value> = counts
        .0
        .iter()
        .map(|((service, action), c)| {
            let faults: serde_json::Map<String, serde_json::Value> =
                c.faults.iter().map(|(k, n)| (k.to_string(), (*n).into())).collect();
            serde_json::json!({"service": service, "action": action, "calls": c.calls, "faults": faults})
        })
        .collect();
    let mut r = Response::new(Full::new(Bytes::from(serde_json::Value::from(rows).to_string())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}
