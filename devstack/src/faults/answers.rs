//! Which AWS call a request is (service and action, from its signature and protocol),
//! and the error each service answers when it fails or throttles, in its own protocol,
//! so the SDK classifies it as it would AWS's.

use super::{Fault, PRESIGNED};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

/// One AWS call, as the proxy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub service: String,
    pub action: String,
    protocol: Protocol,
}

/// How a service frames its errors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    /// awsJson 1.0/1.1 (DynamoDB, SQS, Secrets Manager): `__type` and `x-amzn-ErrorType`.
    Json,
    /// restXml (S3): `<Error><Code>`.
    RestXml,
    /// awsQuery (SNS, CloudFormation, IAM, STS): `<ErrorResponse><Error>`.
    Query,
    /// ec2Query: `<Response><Errors><Error>`.
    Ec2,
}

impl Call {
    /// The call a request makes; `None` for what is not a signed AWS call (the
    /// emulator's own API, say).
    pub fn of(method: &Method, uri: &http::Uri, headers: &HeaderMap, body: &[u8]) -> Option<Call> {
        let query = uri.query().unwrap_or("");
        let signed_by = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| scope_service(a.split("Credential=").nth(1)?));
        let service = match signed_by {
            Some(s) => s,
            None if param(query, "X-Amz-Credential").is_some() => PRESIGNED.to_string(),
            None => return None,
        };
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
        let (protocol, action) = if let Some(t) = target {
            (Protocol::Json, t.rsplit('.').next().unwrap_or(t).to_string())
        } else if service == "s3" || service == PRESIGNED {
            (Protocol::RestXml, s3_action(method, uri.path(), query, headers))
        } else {
            let form = std::str::from_utf8(body).unwrap_or("");
            let action = param(form, "Action")
                .or_else(|| param(query, "Action"))
                .unwrap_or_default();
            let protocol = if service == "ec2" {
                Protocol::Ec2
            } else {
                Protocol::Query
            };
            (protocol, action)
        };
        Some(Call {
            service,
            action,
            protocol,
        })
    }

    /// A DynamoDB call that writes (and may carry a condition).
    pub fn is_dynamodb_write(&self) -> bool {
        self.service == "dynamodb"
            && matches!(
                self.action.as_str(),
                "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
            )
    }

    /// The answer for an error fault (500, 503 or throttling); `pick` chooses between
    /// DynamoDB's two throttling errors.
    pub fn error_answer(&self, fault: Fault, pick: u64) -> Response<Full<Bytes>> {
        let (status, code) = match fault {
            Fault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, self.internal_code()),
            Fault::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            _ => self.throttling(pick),
        };
        let message = format!("{code}: injected by the local stack's fault proxy");
        let (content_type, body) = match self.protocol {
            Protocol::Json => {
                let prefix = match self.service.as_str() {
                    "dynamodb" => "com.amazonaws.dynamodb.v20120810#",
                    "sqs" => "com.amazonaws.sqs#",
                    _ => "",
                };
                let body = serde_json::json!({"__type": format!("{prefix}{code}"), "message": message});
                ("application/x-amz-json-1.0", body.to_string())
            }
            Protocol::RestXml => (
                "application/xml",
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"),
            ),
            Protocol::Query => (
                "text/xml",
                format!("<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"),
            ),
            Protocol::Ec2 => (
                "text/xml",
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"),
            ),
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        if self.protocol == Protocol::Json {
            if let Ok(v) = http::HeaderValue::from_str(code) {
                h.insert("x-amzn-errortype", v);
            }
        }
        r
    }

    fn internal_code(&self) -> &'static str {
        match (self.protocol, self.service.as_str()) {
            (Protocol::RestXml, _) => "InternalError",
            (_, "dynamodb") => "InternalServerError",
            (_, "secretsmanager") => "InternalServiceError",
            _ => "InternalFailure",
        }
    }

    fn throttling(&self, pick: u64) -> (StatusCode, &'static str) {
        match (self.protocol, self.service.as_str()) {
            (Protocol::RestXml, _) => (StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
            (Protocol::Ec2, _) => (StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded"),
            (_, "dynamodb") if pick % 2 == 0 => (StatusCode::BAD_REQUEST, "ProvisionedThroughputExceededException"),
            (_, "dynamodb") => (StatusCode::BAD_REQUEST, "ThrottlingException"),
            (_, "sqs") => (StatusCode::BAD_REQUEST, "RequestThrottled"),
            (Protocol::Json, _) => (StatusCode::BAD_REQUEST, "ThrottlingException"),
            _ => (StatusCode::BAD_REQUEST, "Throttling"),
        }
    }
}

/// The service of a SigV4 credential scope: `AKID/20261201/us-east-1/sqs/aws4_request`.
fn scope_service(credential: &str) -> Option<String> {
    let scope = credential.split([',', ' ']).next()?;
    let service = scope.split('/').nth(3)?;
    (!service.is_empty()).then(|| service.to_string())
}

/// A form or query parameter, decoded.
fn param(form: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The S3 action a path-style REST request makes (the names of S3's API).
fn s3_action(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> String {
    let has = |p: &str| url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == p);
    let object = path.trim_start_matches('/').contains('/');
    let action = match (method.as_str(), object) {
        ("PUT", true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) if has("acl") => "PutObjectAcl",
        ("PUT", true) => "PutObject",
        ("PUT", false) => "PutBucket",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("POST", _) if has("delete") => "DeleteObjects",
        ("GET", true) => "GetObject",
        ("GET", false) if has("versions") => "ListObjectVersions",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) => "GetBucket",
        ("HEAD", true) => "HeadObject",
        ("HEAD", false) => "HeadBucket",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("DELETE", false) => "DeleteBucket",
        (m, _) => m,
    };
    action.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Option<Call> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        Call::of(&method.parse().unwrap(), &uri.parse().unwrap(), &h, body.as_bytes())
    }

    const AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/SERVICE/aws4_request, SignedHeaders=host, Signature=00";

    fn auth(service: &str) -> String {
        AUTH.replace("SERVICE", service)
    }

    #[test]
    fn calls_are_named_as_the_services_name_them() {
        let c = call(
            "POST",
            "/",
            &[
                ("authorization", &auth("dynamodb")),
                ("x-amz-target", "DynamoDB_20120810.PutItem"),
            ],
            "{}",
        )
        .unwrap();
        assert_eq!(
            (c.service.as_str(), c.action.as_str(), c.is_dynamodb_write()),
            ("dynamodb", "PutItem", true)
        );
        let c = call(
            "POST",
            "/",
            &[
                ("authorization", &auth("sqs")),
                ("x-amz-target", "AmazonSQS.ReceiveMessage"),
            ],
            "{}",
        )
        .unwrap();
        assert_eq!(c.action, "ReceiveMessage");
        let c = call(
            "POST",
            "/",
            &[("authorization", &auth("sns"))],
            "Action=Publish&Version=2010-03-31",
        )
        .unwrap();
        assert_eq!((c.service.as_str(), c.action.as_str()), ("sns", "Publish"));
        let c = call("POST", "/", &[("authorization", &auth("ec2"))], "Action=RunInstances").unwrap();
        assert_eq!(c.protocol, Protocol::Ec2);
        let s3 = |m: &str, u: &str| call(m, u, &[("authorization", &auth("s3"))], "").unwrap().action;
        assert_eq!(s3("PUT", "/outbox/a/b.mp4"), "PutObject");
        assert_eq!(s3("PUT", "/outbox/a/b.mp4?partNumber=2&uploadId=x"), "UploadPart");
        assert_eq!(s3("POST", "/outbox/a/b.mp4?uploads"), "CreateMultipartUpload");
        assert_eq!(s3("GET", "/outbox?list-type=2&prefix=a"), "ListObjectsV2");
        assert_eq!(s3("HEAD", "/outbox/k"), "HeadObject");
        let p = call(
            "GET",
            "/inbox/k?X-Amz-Credential=testing%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0",
            &[],
            "",
        )
        .unwrap();
        assert_eq!((p.service.as_str(), p.action.as_str()), (PRESIGNED, "GetObject"));
        assert_eq!(call("GET", "/moto-api/", &[], ""), None, "not an AWS call");
    }

    #[test]
    fn errors_are_framed_in_each_protocol_with_the_retryable_codes() {
        let dynamo = call(
            "POST",
            "/",
            &[
                ("authorization", &auth("dynamodb")),
                ("x-amz-target", "DynamoDB_20120810.GetItem"),
            ],
            "",
        )
        .unwrap();
        let r = dynamo.error_answer(Fault::Throttled, 0);
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()["x-amzn-errortype"],
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            dynamo.error_answer(Fault::Throttled, 1).headers()["x-amzn-errortype"],
            "ThrottlingException"
        );
        let s3 = call("GET", "/b/k", &[("authorization", &auth("s3"))], "").unwrap();
        assert_eq!(s3.error_answer(Fault::Throttled, 0).status(), 503);
        assert_eq!(s3.error_answer(Fault::ServerError, 0).status(), 500);
        let sns = call("POST", "/", &[("authorization", &auth("sns"))], "Action=Publish").unwrap();
        assert_eq!(sns.error_answer(Fault::Unavailable, 0).status(), 503);
    }
}
