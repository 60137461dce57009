//! Stand-ins for Lambda's event sources, feeding the real handlers the real event
//! shapes: an SQS poller (batches, partial batch failures, retries by visibility
//! timeout) and an HTTP server that turns each request into an API Gateway v2 event.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use axum::body::Body;
use base64::Engine;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use nommer_aws::queue::{Received, SqsQueue};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A function that takes an SQS batch, like an SQS-triggered Lambda.
pub type SqsHandler = Arc<dyn Fn(SqsEvent) -> BoxFut<Result<SqsBatchResponse, lambda_runtime::Error>> + Send + Sync>;

/// Builds the SQS event Lambda would deliver for these messages.
pub fn sqs_event(queue_arn: &str, region: &str, messages: &[Received]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .raw
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.raw.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("SQS event shape")
}

/// Polls `queue_url` forever like an SQS event source mapping with
/// `ReportBatchItemFailures`: messages the handler reports as failed (or all of them
/// when it errors) stay on the queue and come back after the visibility timeout; the
/// rest are deleted.
pub async fn poll_sqs(
    queue: SqsQueue,
    queue_url: String,
    queue_arn: String,
    region: String,
    batch: i32,
    handler: SqsHandler,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let messages = match queue.receive(&queue_url, batch, Duration::from_secs(2), None).await {
            Ok(m) => {
                backoff = Duration::from_millis(200);
                m
            }
            Err(e) => {
                tracing::warn!(queue = %queue_url, error = %e, "event source: receive failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let event = sqs_event(&queue_arn, &region, &messages);
        let all: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
        let failed: Vec<String> = match handler(event).await {
            // as Lambda does: a failure naming no message of the batch fails the whole batch
            Ok(resp)
                if resp
                    .batch_item_failures
                    .iter()
                    .any(|f| !all.contains(&f.item_identifier)) =>
            {
                tracing::error!(queue = %queue_url, "the function reported a failure for an unknown message id; the whole batch will be retried");
                all.clone()
            }
            Ok(resp) => resp
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(e) => {
                tracing::error!(queue = %queue_url, error = %e, "function failed; the whole batch will be retried");
                messages.iter().map(|m| m.message_id.clone()).collect()
            }
        };
        for m in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
            if let Err(e) = queue.delete(&queue_url, &m.receipt_handle).await {
                tracing::warn!(error = %e, "event source: delete failed; the message will be redelivered");
            }
        }
    }
}

/// Turns an HTTP request into the API Gateway HTTP API (payload v2.0) event.
pub fn apigw_v2_event(
    method: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    source_ip: &str,
) -> Value {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut hmap = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k == http::header::COOKIE {
            cookies.extend(v.split(';').map(|c| Value::String(c.trim().to_string())));
            continue;
        }
        match hmap.get_mut(k.as_str()) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                hmap.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    let mut qmap = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| percent_decode(&s.replace('+', " "));
        let (k, v) = (dec(k), dec(v));
        match qmap.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                qmap.insert(k, Value::String(v));
            }
        }
    }
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = chrono::Utc::now();
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let mut ev = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hmap,
        "requestContext": {
            "accountId": crate::emulator::ACCOUNT_ID,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": ua },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": b64,
    });
    if !cookies.is_empty() {
        ev["cookies"] = Value::Array(cookies);
    }
    if !qmap.is_empty() {
        ev["queryStringParameters"] = Value::Object(qmap);
    }
    if !body.is_empty() {
        ev["body"] = Value::String(body);
    }
    ev
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Turns the function's API Gateway v2 response JSON back into an HTTP response.
pub fn http_response(v: &Value) -> Response<Body> {
    let status = v
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = Response::builder().status(status);
    if let Some(h) = resp.headers_mut() {
        for (k, val) in v.get("headers").and_then(Value::as_object).into_iter().flatten() {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(k.as_str()),
                val.as_str().map(HeaderValue::from_str),
            ) {
                h.append(name, value);
            }
        }
        for (k, vals) in v
            .get("multiValueHeaders")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Ok(name) = HeaderName::try_from(k.as_str()) else {
                continue;
            };
            if h.contains_key(&name) {
                continue;
            }
            for val in vals.as_array().into_iter().flatten().filter_map(Value::as_str) {
                if let Ok(value) = HeaderValue::from_str(val) {
                    h.append(name.clone(), value);
                }
            }
        }
        for c in v
            .get("cookies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Ok(value) = HeaderValue::from_str(c) {
                h.append(http::header::SET_COOKIE, value);
            }
        }
    }
    let body = v.get("body").and_then(Value::as_str).unwrap_or("");
    let bytes = if v.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(b) => b,
            Err(_) => {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from("the function returned a body that is not valid base64"))
                    .expect("response")
            }
        }
    } else {
        body.as_bytes().to_vec()
    };
    resp.body(Body::from(bytes)).expect("valid response")
}

/// Serves `router` on `listener` the way API Gateway and Lambda would: each request
/// becomes an API Gateway v2 event, goes through `lambda_http`'s adapter, and its
/// response event becomes the HTTP response.
pub async fn serve_api(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    let gateway = axum::Router::new().fallback(
        move |axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
              req: Request<Body>| {
            let router = router.clone();
            async move { invoke_api(router, addr, req).await }
        },
    );
    axum::serve(
        listener,
        gateway.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

async fn invoke_api(router: axum::Router, addr: std::net::SocketAddr, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // API Gateway's payload limit
    let bytes = match axum::body::to_bytes(body, 10 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body over 10 MB").into_response_body(),
    };
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let event = apigw_v2_event(
        parts.method.as_str(),
        pq,
        &parts.headers,
        &bytes,
        &addr.ip().to_string(),
    );
    let request: LambdaRequest = match serde_json::from_value(event) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("event shape: {e}")).into_response_body(),
    };
    let mut ctx = Context::default();
    ctx.request_id = uuid::Uuid::new_v4().to_string();
    let response = {
        let mut adapter: Adapter<'static, _, _> = Adapter::from(router);
        adapter.call(LambdaEvent::new(request, ctx))
    };
    match response.await {
        Ok(resp) => match serde_json::to_value(&resp) {
            Ok(v) => http_response(&v),
            Err(e) => (StatusCode::BAD_GATEWAY, format!("response shape: {e}")).into_response_body(),
        },
        Err(e) => {
            // API Gateway hides the function's error from the client, as here; it is logged
            tracing::error!(error = ?e, "the API function failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal Server Error"}"#,
            )
                .into_response_body()
        }
    }
}

trait IntoResponseBody {
    fn into_response_body(self) -> Response<Body>;
}
impl<S: Into<String>> IntoResponseBody for (StatusCode, S) {
    fn into_response_body(self) -> Response<Body> {
        Response::builder()
            .status(self.0)
            .body(Body::from(self.1.into()))
            .expect("response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_event_is_a_v2_event_lambda_http_accepts() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("cookie", HeaderValue::from_static("a=1; b=2"));
        let ev = apigw_v2_event("POST", "/jobs?x=1&y=a%20b&x=2", &h, b"{\"a\":1}", "127.0.0.1");
        assert_eq!(ev["rawPath"], "/jobs");
        assert_eq!(ev["queryStringParameters"]["y"], "a b");
        assert_eq!(ev["queryStringParameters"]["x"], "1,2");
        assert_eq!(ev["cookies"][1], "b=2");
        let req: LambdaRequest = serde_json::from_value(ev).unwrap();
        assert!(matches!(req, LambdaRequest::ApiGatewayV2(_)));
        let binary = apigw_v2_event("PUT", "/", &h, &[0xff, 0x00], "127.0.0.1");
        assert_eq!(binary["isBase64Encoded"], true);
    }

    #[test]
    fn response_event_becomes_http() {
        let r = http_response(
            &json!({"statusCode": 201, "headers": {"location": "/jobs/x"}, "body": "{}", "isBase64Encoded": false, "cookies": []}),
        );
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["location"], "/jobs/x");
    }
}
