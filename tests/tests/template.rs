//! The SAM template and the code agree on configuration: every variable a function or the
//! worker requires is set by the template, every variable the code reads is either set or
//! deliberately left to its documented default, and the template sets nothing the code
//! no longer reads.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `"NOMMER_…"` literals in the Rust sources under these folders.
fn names_in_code(dirs: &[&str]) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("\"NOMMER_").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if part[name.len()..].starts_with('"') {
                        out.insert(format!("NOMMER_{name}"));
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for d in dirs {
        walk(&root().join(d), &mut out);
    }
    out
}

/// The variables `settings.rs` reads with `required(src, CONST, …)`, by value.
fn required_names() -> BTreeSet<String> {
    let settings = read("shared/src/settings.rs");
    let value_of = |ident: &str| -> String {
        let decl = format!("pub const {ident}: &str = \"");
        let at = settings.find(&decl).unwrap_or_else(|| panic!("no const {ident}")) + decl.len();
        settings[at..].split('"').next().unwrap().to_string()
    };
    settings
        .split("required(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix("src,")?.trim_start();
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!ident.is_empty()).then(|| value_of(&ident))
        })
        .collect()
}

/// Read by the code but not set by the template, each for a reason.
const DEFAULTS_SUFFICE: &[(&str, &str)] = &[
    ("NOMMER_ENCODE_TIMEOUT_SECS", "worker: 6 h"),
    ("NOMMER_MAX_ATTEMPTS", "worker: 3"),
    ("NOMMER_POLL_WAIT_SECS", "worker: 20 s long poll"),
    (
        "NOMMER_VISIBILITY_TIMEOUT_SECS",
        "worker: 120 s, extended while it works",
    ),
    ("NOMMER_HEARTBEAT_SECS", "worker: 20 s"),
    (
        "NOMMER_FFMPEG",
        "worker: ffmpeg on the PATH (installed by the user data)",
    ),
    ("NOMMER_FORMAT_WHITELIST", "worker: the built-in list of media demuxers"),
    (
        "NOMMER_MAX_DURATION_SECS",
        "limits: the config file's [limits], else 6 h",
    ),
    (
        "NOMMER_MAX_PIXELS",
        "limits: the config file's [limits], else 8192x4320",
    ),
    ("NOMMER_MAX_STREAMS", "limits: the config file's [limits], else 16"),
    ("NOMMER_SCALE_IN_COOLDOWN_SECS", "scaler: 120 s"),
    ("NOMMER_SCALE_OUT_COOLDOWN_SECS", "scaler: 60 s"),
    ("NOMMER_SOURCE_BUCKETS", "api: the inbox only"),
    ("NOMMER_INTERRUPTION_FILE", "local stack only (EC2 uses IMDS)"),
    (
        "NOMMER_ENCODINGCOM_ENDPOINT",
        "local stack only (the stand-in); the config file has the endpoint",
    ),
    (
        "NOMMER_ENCODINGCOM_USERID",
        "local stack only; AWS reads the Secrets Manager secret",
    ),
    (
        "NOMMER_ENCODINGCOM_USERKEY",
        "local stack only; AWS reads the Secrets Manager secret",
    ),
];

#[test]
fn every_variable_the_code_reads_is_set_by_the_template_or_left_to_a_documented_default() {
    let template = read("infra/template.yaml");
    let readme = read("README.md");
    let code = names_in_code(&["shared/src", "functions", "worker/src"]);
    assert!(code.len() > 30, "found the code's variables: {code:?}");

    let required = required_names();
    assert!(required.contains("NOMMER_TABLE") && required.len() >= 8, "{required:?}");
    for name in &required {
        assert!(
            template.contains(name.as_str()),
            "{name} is required by the code but the template never sets it"
        );
    }
    let allowed: BTreeSet<&str> = DEFAULTS_SUFFICE.iter().map(|(n, _)| *n).collect();
    for name in &code {
        if template.contains(name.as_str()) {
            continue;
        }
        assert!(
            allowed.contains(name.as_str()),
            "{name} is read by the code but neither set by the template nor listed with a reason in DEFAULTS_SUFFICE"
        );
        assert!(
            readme.contains(name.as_str()),
            "{name} is not documented in the README's settings table"
        );
    }
    for (name, _) in DEFAULTS_SUFFICE {
        assert!(code.contains(*name), "{name} is listed but no code reads it any more");
    }

    // and the template sets nothing stale
    let mut in_template = BTreeSet::new();
    for part in template.split("NOMMER_").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // the user data's here-document marker is not a variable
        if !name.is_empty() && !name.ends_with("_END") {
            in_template.insert(format!("NOMMER_{name}"));
        }
    }
    for name in &in_template {
        assert!(code.contains(name), "the template sets {name}, which no code reads");
    }
}

#[test]
fn the_template_has_every_function_the_workspace_builds() {
    let template = read("infra/template.yaml");
    for binary in [
        "ingest",
        "api",
        "dispatch",
        "scaler",
        "encodingcom-callback",
        "encodingcom-poller",
        "notify",
        "notify-deliver",
    ] {
        let built = template.contains(&format!("Binary: {binary}\n"))
            || template.contains(&format!("Binary: {binary}\r\n"))
            || template.contains(&format!("CodeUri: ../functions/{binary}\n"));
        assert!(built, "no function in the template runs the `{binary}` binary");
    }
}
