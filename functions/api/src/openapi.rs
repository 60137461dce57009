//! `GET /openapi.json`: the API's OpenAPI 3.1 document (open without an API key), which
//! lists exactly the routes served.

use crate::ApiState;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The API's OpenAPI 3.1 document (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new().route("/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modules whose `router()` the API merges, with their source.
    const ROUTERS: [(&str, &str); 5] = [
        ("jobs", include_str!("jobs.rs")),
        ("uploads", include_str!("uploads.rs")),
        ("presets", include_str!("presets.rs")),
        ("health", include_str!("health.rs")),
        ("openapi", include_str!("openapi.rs")),
    ];

    #[test]
    fn every_merged_router_is_read_for_its_routes() {
        let merged: std::collections::BTreeSet<&str> = include_str!("lib.rs")
            .split(".merge(")
            .skip(1)
            .filter_map(|m| m.split("::router()").next())
            .collect();
        let read: std::collections::BTreeSet<&str> = ROUTERS.iter().map(|(m, _)| *m).collect();
        assert_eq!(merged, read);
    }

    /// Every (method, path) the router serves, read from the routers' `.route(...)` calls.
    fn served() -> std::collections::BTreeSet<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for part in ROUTERS.iter().flat_map(|(_, src)| src.split(".route(\"").skip(1)) {
            let path = part.split('"').next().unwrap().to_string();
            let call = part.split(')').take(3).collect::<Vec<_>>().join(")");
            for m in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!(" {m}(")) || call.contains(&format!(".{m}(")) {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
        // the Encoding.com callback is served beside the API (functions/encodingcom)
        out.insert(("post".into(), "/callbacks/encodingcom".into()));
        out
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                documented.insert((m.clone(), path.clone()));
            }
        }
        let served = served();
        assert!(served.len() >= 11, "{served:?}");
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
