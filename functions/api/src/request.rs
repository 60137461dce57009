//! A `POST /jobs` body read and checked: the JSON typed (serde names the field at fault),
//! the source in an accepted bucket, each output's preset, name and options, the
//! notify URL, metadata and source hints within bounds. Every refusal names its field.

use crate::options::check_options;
use crate::Problem;
use nommer_core::job::{OutputOptions, OutputSpec, S3Uri, SourceHints};
use nommer_core::settings::ApiSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAX_OUTPUTS: usize = 20;
const MAX_METADATA_ENTRIES: usize = 20;
const MAX_BODY: usize = 64 * 1024;

/// `POST /jobs` body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// `s3://bucket/key` in a bucket the API accepts sources from.
    pub source: String,
    /// One preset for one output (default: the configured default preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Several outputs, each with a preset and an optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<OutputRequest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// What the caller knows of the source (duration, height), for routing rules when
    /// the source cannot be probed before routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceHints>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    pub preset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Typed options on top of the preset (trim, frame-rate cap, bit rate or quality,
    /// two-pass, loudness, watermark, thumbnail count/time/width, allow-listed advanced
    /// flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<OutputOptions>,
}

pub(crate) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem::invalid_field(field, detail)
}

/// Parses and checks a body; every refusal names the field.
pub fn parse_request(
    body: &[u8],
    settings: &ApiSettings,
) -> Result<(CreateJobRequest, S3Uri, Vec<OutputSpec>), Problem> {
    let req = read_body(body)?;
    let source = S3Uri::parse(req.source.trim()).map_err(|e| invalid("source", e))?;
    if !settings.source_buckets.contains(&source.bucket) {
        return Err(invalid(
            "source",
            format!(
                "sources are accepted only from these buckets: {}",
                settings.source_buckets.join(", ")
            ),
        ));
    }
    let outputs = outputs(settings, &req)?;
    check_extras(&req)?;
    Ok((req, source, outputs))
}

/// What a `POST /jobs` body looks like, shown when one is refused.
const JOB_EXAMPLE: &str = r#"{"source": "s3://bucket/key"}"#;

/// The body as a typed request: at most `MAX_BODY` bytes of one JSON object.
fn read_body(body: &[u8]) -> Result<CreateJobRequest, Problem> {
    if body.len() > MAX_BODY {
        return Err(invalid("", format!("the body is larger than {MAX_BODY} bytes")));
    }
    read_json(body, JOB_EXAMPLE)
}

/// A body as the JSON object `T`. Every refusal names the field serde stopped at and shows
/// `example`, a body that would do.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "",
            format!("the body is empty; send a JSON object such as {example}"),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid("", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid("", format!("the body must be a JSON object such as {example}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| serde_refusal(e, example))
}

/// A refusal naming the field serde stopped at, with an example of a body that would do.
fn serde_refusal(e: serde_path_to_error::Error<serde_json::Error>, example: &str) -> Problem {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let msg = inner.to_string();
    // serde names an unknown or missing field in its message, not in the path
    let field = if let Some(f) = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        if path.ends_with(f) {
            path
        } else {
            join(&path, f)
        }
    } else if let Some(f) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        join(&path, f)
    } else if path == "." {
        String::new()
    } else {
        path
    };
    invalid(field, format!("{msg}; a body looks like {example}"))
}

/// The outputs asked for: `preset` (or the default) for one, `outputs` for several.
fn outputs(settings: &ApiSettings, req: &CreateJobRequest) -> Result<Vec<OutputSpec>, Problem> {
    Ok(match (&req.preset, &req.outputs) {
        (Some(_), Some(_)) => return Err(invalid("outputs", "give either `preset` or `outputs`, not both")),
        (None, None) => vec![output(settings, &settings.default_preset, None, None, "preset")?],
        (Some(p), None) => vec![output(settings, p, None, None, "preset")?],
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid("outputs", "must list at least one output"));
            }
            if list.len() > MAX_OUTPUTS {
                return Err(invalid("outputs", format!("at most {MAX_OUTPUTS} outputs per job")));
            }
            let mut v: Vec<OutputSpec> = Vec::new();
            for (i, o) in list.iter().enumerate() {
                let spec = output(
                    settings,
                    &o.preset,
                    o.name.as_deref(),
                    o.options.as_ref(),
                    &format!("outputs[{i}]"),
                )?;
                if v.iter().any(|x| x.name == spec.name) {
                    return Err(invalid(
                        format!("outputs[{i}].name"),
                        format!("`{}` is used by another output; names must be unique", spec.name),
                    ));
                }
                v.push(spec);
            }
            v
        }
    })
}

/// The notify URL's form, the metadata's size and the source hints' ranges.
fn check_extras(req: &CreateJobRequest) -> Result<(), Problem> {
    if let Some(url) = &req.notify_url {
        if url.len() > 2048 || url.contains(char::is_whitespace) {
            return Err(invalid(
                "notify_url",
                "must be an http(s) URL of at most 2048 characters, without spaces",
            ));
        }
    }
    if let Some(meta) = &req.user_metadata {
        if meta.len() > MAX_METADATA_ENTRIES {
            return Err(invalid(
                "user_metadata",
                format!("at most {MAX_METADATA_ENTRIES} entries"),
            ));
        }
        for (k, v) in meta {
            if k.is_empty() || k.len() > 128 || v.len() > 1024 {
                return Err(invalid(
                    format!("user_metadata.{k}"),
                    "keys are 1-128 characters, values at most 1024",
                ));
            }
        }
    }
    if let Some(h) = &req.source_info {
        if h.duration_seconds
            .is_some_and(|d| !(d.is_finite() && d > 0.0 && d < 1e6))
        {
            return Err(invalid(
                "source_info.duration_seconds",
                "must be a positive number of seconds",
            ));
        }
        if h.height.is_some_and(|x| !(16..=8640).contains(&x)) {
            return Err(invalid("source_info.height", "must be within 16-8640"));
        }
    }
    Ok(())
}

/// How long the API waits for DNS when it checks a `notify_url`.
const NOTIFY_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Refuses a `notify_url` that no delivery would ever call: the very check each delivery
/// runs ([`nommer_aws::notify::vet_url`]: scheme, credentials, and every address the
/// host resolves to). A host that does not resolve now (or not within 3 s) is let
/// through: DNS may fail for a while, and each delivery checks again.
pub async fn check_notify_url(url: &str, settings: &ApiSettings) -> Result<(), String> {
    match tokio::time::timeout(
        NOTIFY_LOOKUP_TIMEOUT,
        nommer_aws::notify::vet_url(url, &settings.config.webhooks),
    )
    .await
    {
        Ok(Err((why, true))) => Err(why),
        Ok(Err((why, false))) => {
            tracing::info!(url, reason = %why, "notify_url not resolvable now; accepted, checked again at delivery");
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
        Err(_) => {
            tracing::info!(url, "notify_url lookup timed out; accepted, checked again at delivery");
            Ok(())
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn output(
    settings: &ApiSettings,
    preset: &str,
    name: Option<&str>,
    options: Option<&OutputOptions>,
    field: &str,
) -> Result<OutputSpec, Problem> {
    let pfield = if field == "preset" {
        "preset".to_string()
    } else {
        format!("{field}.preset")
    };
    let Some(p) = settings.config.catalog.find(preset) else {
        return Err(invalid(pfield, settings.config.catalog.unknown(preset)));
    };
    let name = name.unwrap_or(preset).to_string();
    let safe = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if !safe {
        return Err(invalid(
            format!("{field}.name"),
            "1-64 characters of A-Z a-z 0-9 - _ . (not starting with .)",
        ));
    }
    let options = options.cloned().unwrap_or_default();
    check_options(settings, p, &options).map_err(|(f, m)| invalid(format!("{field}.options.{f}"), m))?;
    Ok(OutputSpec {
        name,
        preset: preset.to_string(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ApiSettings {
        ApiSettings {
            table: "t".into(),
            jobs_queue_url: "q".into(),
            default_preset: "mp4-720p".into(),
            source_buckets: vec!["inbox".into()],
            config: Default::default(),
            api_key_hashes: Vec::new(),
            max_source_bytes: nommer_core::settings::DEFAULT_MAX_SOURCE_BYTES,
        }
    }

    fn field_of(body: &str) -> Option<String> {
        parse_request(body.as_bytes(), &settings())
            .err()
            .map(|p| p.field.unwrap_or_default())
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(field_of(""), Some("".into()));
        assert_eq!(field_of("[1]"), Some("".into()));
        assert_eq!(field_of("{}"), Some("source".into()));
        assert_eq!(field_of(r#"{"source":"s3://inbox/a","x":1}"#), Some("x".into()));
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p","size":1}]}"#),
            Some("outputs[0].size".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[]}"#),
            Some("outputs".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","preset":"mp4-720p","outputs":[{"preset":"mp4-720p"}]}"#),
            Some("outputs".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p"},{"preset":"mp4-720p"}]}"#),
            Some("outputs[1].name".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-720p","name":"../x"}]}"#),
            Some("outputs[0].name".into())
        );
        assert_eq!(
            field_of(r#"{"source":"s3://inbox/a","user_metadata":{"k":5}}"#),
            Some("user_metadata.k".into())
        );
    }

    #[test]
    fn any_body_is_refused_with_its_field_and_an_example() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Upload {
            #[allow(dead_code)]
            size: u64,
        }
        let refusal = |body: &str| read_json::<Upload>(body.as_bytes(), r#"{"size": 1}"#).unwrap_err();
        for (body, field) in [
            ("", ""),
            ("[]", ""),
            ("{}", "size"),
            (r#"{"size":"big"}"#, "size"),
            (r#"{"size":1,"x":1}"#, "x"),
        ] {
            let p = refusal(body);
            assert_eq!(p.field.as_deref().unwrap_or_default(), field, "{body}");
            assert!(p.detail.contains(r#"{"size": 1}"#), "{body}: {}", p.detail);
        }
    }

    #[test]
    fn options_are_typed_and_range_checked() {
        let f = |o: &str| {
            field_of(&format!(
                r#"{{"source":"s3://inbox/a","outputs":[{{"preset":"mp4-720p","options":{o}}}]}}"#
            ))
        };
        assert_eq!(
            f(r#"{"trim":{"start_seconds":5,"end_seconds":2}}"#),
            Some("outputs[0].options.trim.end_seconds".into())
        );
        assert_eq!(
            f(r#"{"max_frame_rate":1000}"#),
            Some("outputs[0].options.max_frame_rate".into())
        );
        assert_eq!(f(r#"{"two_pass":true}"#), Some("outputs[0].options.two_pass".into()));
        assert_eq!(
            f(r#"{"crf":20,"video_bitrate_kbps":1000}"#),
            Some("outputs[0].options.crf".into())
        );
        assert_eq!(f(r#"{"count":3}"#), Some("outputs[0].options.count".into()));
        assert_eq!(
            f(r#"{"loudness":{"integrated_lufs":3}}"#),
            Some("outputs[0].options.loudness.integrated_lufs".into())
        );
        assert_eq!(
            f(r#"{"watermark":{"image":"s3://other-bucket/logo.png"}}"#),
            Some("outputs[0].options.watermark.image".into())
        );
        assert_eq!(
            f(r#"{"advanced":[{"output":["-vf","movie=/etc/passwd"]}]}"#),
            Some("outputs[0].options.advanced[0].output[0]".into())
        );
        assert_eq!(f(r#"{"colour":"red"}"#), Some("outputs[0].options.colour".into()));
        assert_eq!(
            f(
                r#"{"trim":{"start_seconds":1},"two_pass":true,"video_bitrate_kbps":900,"loudness":{},"watermark":{"image":"s3://inbox/logo.png"},"advanced":[{"output":["-tune","film"]}]}"#
            ),
            None
        );
        let t = |o: &str| {
            field_of(&format!(
                r#"{{"source":"s3://inbox/a","outputs":[{{"preset":"sprite","options":{o}}}]}}"#
            ))
        };
        assert_eq!(t(r#"{"count":20,"width":120}"#), None);
        assert_eq!(t(r#"{"count":0}"#), Some("outputs[0].options.count".into()));
    }

    #[test]
    fn a_good_request_gets_its_outputs() {
        let (_, src, outs) = parse_request(br#"{"source":"s3://inbox/a/b.mov"}"#, &settings()).unwrap();
        assert_eq!(src.key, "a/b.mov");
        assert_eq!(outs, [OutputSpec::new("mp4-720p", "mp4-720p")]);
        let (_, _, outs) = parse_request(
            br#"{"source":"s3://inbox/a","outputs":[{"preset":"mp4-360p","name":"small"},{"preset":"mp4-1080p"}]}"#,
            &settings(),
        )
        .unwrap();
        assert_eq!(
            outs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            ["small", "mp4-1080p"]
        );
    }
}
