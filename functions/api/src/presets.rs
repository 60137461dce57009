//! `GET /presets`: the presets this deployment knows, and the default.

use crate::ApiState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use nommer_core::presets::Preset;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new().route("/presets", get(list_presets))
}

async fn list_presets(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let presets: Vec<&Preset> = state.settings.config.catalog.iter().collect();
    Json(serde_json::json!({ "default": state.settings.default_preset, "presets": presets }))
}
