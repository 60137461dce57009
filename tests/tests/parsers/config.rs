//! The config file (shared/core/src/config.rs `Config::parse`, `check_key_template`) and
//! what it holds of webhooks (events.rs `check_url`, `SigningSecret::parse`).

use crate::gen::{apply, broken_lines, config, odd_text, Edit};
use nommer_core::config::{check_key_template, render_key_template, Config, ConfigError};
use nommer_core::events::{check_url, SigningSecret, Webhooks};
use proptest::prelude::*;

/// Every part of a config file, as the README shows them.
const FULL: &str = r#"
[outputs]
key_template = "{date}/{job_id}/{output_name}/{source_stem}"

[limits]
max_duration_seconds = 600
max_pixels = 35389440
max_streams = 4

[presets.mp4-540p]
description = "MP4, H.264 up to 540p"
kind = "file"
container = "mp4"
video = { codec = "h264", max_height = 540, crf = 23, max_bitrate_kbps = 3000 }
audio = { codec = "aac", bitrate_kbps = 128 }

[presets.hls-small]
kind = "ladder"
format = "hls"
codec = "h264"
rungs = [{ height = 360, video_kbps = 800 }, { height = 240, video_kbps = 400 }]
audio = { codec = "aac", bitrate_kbps = 96 }
segment_seconds = 6

[presets.contact-sheet]
kind = "thumbnails"
mode = "sprite"
count = 24
width = 120
columns = 6

[backends.fleet]
kind = "ffmpeg"
prices = { audio = 0.0004, sd = 0.0015, hd = 0.0030, uhd = 0.0090, image = 0.0001 }

[backends.encodingcom]
kind = "encodingcom"
prices = { audio = 0.0050, sd = 0.0100, hd = 0.0200, uhd = 0.0400, image = 0.0010 }
fallback = "fleet"
secret = "nommer/encodingcom"
endpoint = "https://manage.encoding.com/"
poll_seconds = 60

[routing]
default = "fleet"

[[routing.rules]]
name = "partner uploads"
backend = "encodingcom"
match = { key_prefix = "inbox/partner/", extensions = ["mov"], min_size_bytes = 1, max_size_bytes = 99 }

[[routing.rules]]
name = "long HD ladders"
backend = "encodingcom"
match = { presets = ["hls-small"], min_duration_seconds = 1800, min_height = 720, max_height = 2160 }

[[routing.rules]]
name = "budget customers"
backend = "cheapest"
match = { metadata = { tier = "budget" }, containers = ["mov"] }

[webhooks]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
job_progress = false
allow_http = false
allow_private = false
retry_seconds = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]

[[webhooks.endpoints]]
name = "ops"
url = "https://ops.example.com/nommer"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
states = ["complete", "failed"]
progress = false
"#;

/// The config as a JSON-shaped tree, broken by edits and written back as TOML (values
/// TOML cannot hold, such as null, make the edit moot), or the text broken line by line.
fn broken_config() -> impl Strategy<Value = String> {
    let tree: serde_json::Value = toml::from_str(FULL).unwrap();
    let edits = prop::collection::vec(
        prop_oneof![
            (any::<usize>(), crate::gen::any_json()).prop_map(|(at, v)| Edit::Set(at, v)),
            any::<usize>().prop_map(Edit::Drop),
            (any::<usize>(), odd_text(), crate::gen::any_json()).prop_map(|(at, k, v)| Edit::Add(at, k, v)),
        ],
        1..4,
    );
    prop_oneof![
        edits.prop_map(move |e| toml::to_string(&apply(&tree, &e)).unwrap_or_else(|_| FULL.to_string())),
        broken_lines(FULL),
    ]
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn config_files_are_read_or_refused_with_where(text in broken_config()) {
        match Config::parse(&text, "nommer.toml") {
            Ok(c) => {
                prop_assert!(c.catalog.find("mp4-720p").is_some(), "built-ins stay");
                prop_assert!(check_key_template(&c.key_template).is_ok());
                prop_assert!(c.limits.max_streams > 0 && c.limits.max_duration_seconds >= 1.0);
                prop_assert!(!c.webhooks.retry_seconds.is_empty());
                for e in &c.webhooks.endpoints {
                    prop_assert!(check_url(&e.url, &c.webhooks).is_ok());
                }
            }
            Err(ConfigError::Invalid { origin, line, problem }) => {
                prop_assert_eq!(origin, "nommer.toml");
                prop_assert!(line >= 1 && line <= text.lines().count().max(1), "line {} of {}", line, text.lines().count());
                prop_assert!(!problem.is_empty());
            }
            Err(ConfigError::Syntax { origin, problem }) => {
                prop_assert_eq!(origin, "nommer.toml");
                prop_assert!(!problem.is_empty());
            }
            Err(e @ ConfigError::Unreadable { .. }) => prop_assert!(false, "parse never reads a file: {}", e),
        }
    }

    #[test]
    fn key_templates_are_checked_and_render(t in prop_oneof![
        odd_text(),
        "(\\{(job_id|output_name|preset|source_stem|date|x)\\}|[a-z./]{0,3}|\\{|\\}){0,8}",
    ]) {
        if check_key_template(&t).is_ok() {
            prop_assert!(t.contains("{job_id}"), "{}", t);
            let k = render_key_template(&t, "j1", "web", "mp4-720p", "clip", "2026-11-25");
            prop_assert!(!k.contains("{job_id}") && !k.starts_with('/'), "{}", k);
        }
    }

    #[test]
    fn webhook_urls_are_checked(url in prop_oneof![
        odd_text(),
        "(https?|ftp|file)://([a-z0-9.-]{0,20}|\\[[0-9a-f:.]{0,40}\\]|[0-9.]{0,16})(:[0-9]{0,6})?(/[\\PC]{0,20})?",
        "https://[a-z]{1,5}:[a-z]{0,5}@[a-z.]{1,20}/",
    ], allow_http in any::<bool>()) {
        let policy = Webhooks { allow_http, ..Webhooks::default() };
        match check_url(&url, &policy) {
            Ok((host, port)) => {
                // the URL parser drops tabs and newlines anywhere, and spaces and controls
                // around the URL, and reads the scheme case-blind
                let seen: String = url.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
                let seen = seen.trim_matches(|c: char| c <= ' ').to_ascii_lowercase();
                prop_assert!(!host.is_empty(), "{} -> {:?}", url, (host, port));
                prop_assert!(seen.starts_with("https:") || (allow_http && seen.starts_with("http:")), "{}", url);
                prop_assert!(host.bytes().all(|b| !b.is_ascii_uppercase()));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn signing_secrets_parse_or_say_why(s in prop_oneof![
        odd_text(),
        odd_text().prop_map(|t| format!("whsec_{t}")),
        "whsec_[A-Za-z0-9+/=]{0,64}",
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|k| {
            use base64::Engine;
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(k))
        }),
    ]) {
        match SigningSecret::parse(&s) {
            Ok(secret) => {
                // a secret that parses signs, and never prints
                prop_assert!(secret.sign("msg_1", 1, b"[]").starts_with("v1,"));
                prop_assert_eq!(format!("{secret:?}"), "SigningSecret(***)");
            }
            Err(e) => prop_assert!(e.contains("signing secret")),
        }
    }
}

#[test]
fn the_full_file_reads() {
    let c = Config::parse(FULL, "nommer.toml").unwrap();
    assert!(c.catalog.find("hls-small").is_some());
    assert_eq!(c.routing.rules.len(), 3);
    assert_eq!(c.webhooks.endpoints[0].name, "ops");
    assert_eq!(c.limits.max_streams, 4);
}
