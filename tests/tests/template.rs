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
    let settings = read("shared/core/src/settings.rs");
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
    ("NOMMER_MAX_SOURCE_BYTES", "api, ingest, worker: 50 GiB"),
    (
        "NOMMER_SCRATCH_HEADROOM_BYTES",
        "worker: 256 MiB beyond twice the source",
    ),
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
    ("NOMMER_AWS_CONNECT_TIMEOUT_SECS", "every AWS call: 3 s to connect"),
    (
        "NOMMER_AWS_FIRST_BYTE_TIMEOUT_SECS",
        "every AWS call: 30 s to the answer's first byte",
    ),
    ("NOMMER_AWS_ATTEMPT_TIMEOUT_SECS", "every AWS call: 60 s an attempt"),
    ("NOMMER_AWS_CALL_TIMEOUT_SECS", "every AWS call: 180 s with its retries"),
    ("NOMMER_AWS_MAX_ATTEMPTS", "every AWS call: 4 attempts"),
    (
        "NOMMER_AWS_RETRY_BACKOFF_SECS",
        "every AWS call: a first backoff of up to 1 s",
    ),
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
    let code = names_in_code(&["shared", "functions", "worker/src"]);
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

// ---------------------------------------------------------------- the translated template

mod sam;

use serde_json::Value;

/// The physical name property of each resource type that has one, with AWS's rule for it.
fn name_rule(kind: &str) -> Option<(&'static str, fn(&str) -> Result<(), String>)> {
    fn limit(name: &str, max: usize, allowed: fn(char) -> bool) -> Result<(), String> {
        if name.is_empty() || name.chars().count() > max {
            return Err(format!("{} characters, the limit is {max}", name.chars().count()));
        }
        match name.chars().find(|c| !allowed(*c)) {
            Some(c) => Err(format!("{c:?} is not allowed")),
            None => Ok(()),
        }
    }
    Some(match kind {
        // S3: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit
        "AWS::S3::Bucket" => ("BucketName", |n| {
            limit(n, 63, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
            })?;
            let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if n.len() < 3 || !edge(n.chars().next()) || !edge(n.chars().last()) {
                return Err("must be 3 or more characters and start and end with a letter or digit".into());
            }
            Ok(())
        }),
        "AWS::Lambda::Function" => ("FunctionName", |n| {
            limit(n, 64, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }),
        "AWS::SQS::Queue" => ("QueueName", |n| {
            limit(n, 80, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }),
        "AWS::DynamoDB::Table" => ("TableName", |n| {
            limit(n, 255, |c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }),
        "AWS::SNS::Topic" => ("TopicName", |n| {
            limit(n, 256, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }),
        "AWS::EC2::LaunchTemplate" => ("LaunchTemplateName", |n| {
            limit(n, 128, |c| c.is_ascii_alphanumeric() || "()./_-".contains(c))
        }),
        "AWS::Logs::LogGroup" => ("LogGroupName", |n| {
            limit(n, 512, |c| c.is_ascii_alphanumeric() || "_-/.#".contains(c))
        }),
        "AWS::IAM::Role" => ("RoleName", |n| {
            limit(n, 64, |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        }),
        "AWS::IAM::InstanceProfile" => ("InstanceProfileName", |n| {
            limit(n, 128, |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        }),
        _ => return None,
    })
}

/// Every physical name the template sets, evaluated for this stack.
fn physical_names(doc: &Value, p: &sam::Pseudo) -> Vec<(String, String, Result<String, String>)> {
    let mut out = Vec::new();
    for (id, r) in doc["Resources"].as_object().unwrap() {
        let kind = r["Type"].as_str().unwrap();
        let Some((prop, _)) = name_rule(kind) else { continue };
        if let Some(v) = r["Properties"].get(prop) {
            let name = sam::eval(v, p).and_then(|v| v.as_str().map(String::from).ok_or("not a string".into()));
            out.push((id.clone(), kind.to_string(), name));
        }
    }
    out
}

const UUID_A: &str = "4f6c1a2e-8b3d-11ef-9a4c-0a1b2c3d4e5f";
const UUID_B: &str = "0d9e8f7a-6b5c-4d3e-a2f1-ffeeddccbbaa";

#[test]
fn any_stack_name_cloudformation_accepts_gives_names_within_aws_limits() {
    let doc = sam::translated();
    // CloudFormation: 1-128 characters, a letter first, then letters, digits and dashes
    let longest = format!("Nommer-Production-{}", "X".repeat(110));
    assert_eq!(longest.len(), 128);
    for stack in ["n", "MyStack", longest.as_str()] {
        let p = sam::Pseudo::new(stack, UUID_A);
        let names = physical_names(doc, &p);
        assert!(
            names.iter().any(|(_, k, _)| k == "AWS::S3::Bucket"),
            "found no bucket names: {names:?}"
        );
        for (id, kind, name) in &names {
            let name = name
                .as_ref()
                .unwrap_or_else(|e| panic!("{id}'s name cannot be known before deploying: it {e}"));
            let (prop, rule) = name_rule(kind).unwrap();
            if let Err(why) = rule(name) {
                panic!("stack {stack:?}: {id} {prop} {name:?} is refused by AWS: {why}");
            }
        }
    }
}

#[test]
fn the_http_api_names_the_functions_by_the_names_they_are_given() {
    let doc = sam::translated();
    let p = sam::Pseudo::new("MyStack", UUID_A);
    let names: std::collections::BTreeMap<String, String> = physical_names(doc, &p)
        .into_iter()
        .filter(|(_, k, _)| k == "AWS::Lambda::Function")
        .map(|(id, _, n)| (id, n.unwrap()))
        .collect();
    let api = &doc["Resources"]["HttpApi"]["Properties"]["Body"]["paths"];
    let mut integrations = 0;
    for (path, methods) in api.as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let uri = sam::eval(&op["x-amazon-apigateway-integration"]["uri"], &p)
                .unwrap_or_else(|e| panic!("{method} {path}: the integration's URI {e}"));
            let uri = uri.as_str().unwrap();
            let target = uri
                .split(":function:")
                .nth(1)
                .and_then(|s| s.strip_suffix("/invocations"))
                .unwrap_or_else(|| panic!("{method} {path}: {uri} names no function"));
            assert!(
                names.values().any(|n| n == target),
                "{method} {path} invokes {target}, which no function is named: {names:?}"
            );
            integrations += 1;
        }
    }
    assert!(integrations >= 10, "{integrations} integrations");
}

#[test]
fn a_stack_made_again_after_a_delete_collides_with_nothing_it_retained() {
    let doc = sam::translated();
    let first = physical_names(doc, &sam::Pseudo::new("nommer", UUID_A));
    let again = physical_names(doc, &sam::Pseudo::new("nommer", UUID_B));
    let mut retained = Vec::new();
    for (id, r) in doc["Resources"].as_object().unwrap() {
        let kind = r["Type"].as_str().unwrap();
        if matches!(kind, "AWS::S3::Bucket" | "AWS::DynamoDB::Table") {
            assert_eq!(r["DeletionPolicy"], "Retain", "{id} is deleted with the stack");
            assert_eq!(
                r["UpdateReplacePolicy"], "Retain",
                "{id} is deleted when an update replaces it"
            );
        }
        if r["DeletionPolicy"] != "Retain" {
            continue;
        }
        retained.push(id.clone());
        let old = first.iter().find(|(i, _, _)| i == id);
        let new = again.iter().find(|(i, _, _)| i == id);
        if let (Some((_, _, Ok(old))), Some((_, _, Ok(new)))) = (old, new) {
            assert_ne!(
                old, new,
                "{id} is named {old} by both stacks: the second cannot create it"
            );
        } // else CloudFormation names it, uniquely
    }
    assert!(retained.len() >= 3, "retained: {retained:?}");
}

#[test]
fn every_function_logs_to_its_own_group_kept_for_the_log_retention_parameter() {
    let doc = sam::translated();
    let param = &doc["Parameters"]["LogRetentionDays"];
    assert_eq!(param["Default"], 30, "LogRetentionDays: {param}");
    let functions = sam::resources_of(doc, "AWS::Lambda::Function");
    assert!(functions.len() >= 8);
    let mut groups = BTreeSet::new();
    for (id, f) in functions {
        let group = sam::referenced(&f["Properties"]["LoggingConfig"]["LogGroup"])
            .unwrap_or_else(|| panic!("{id} names no log group of the stack's (LoggingConfig.LogGroup)"));
        let g = &doc["Resources"][group];
        assert_eq!(g["Type"], "AWS::Logs::LogGroup", "{id}: {group}");
        assert_eq!(
            sam::referenced(&g["Properties"]["RetentionInDays"]),
            Some("LogRetentionDays"),
            "{group} keeps logs for {}",
            g["Properties"]["RetentionInDays"]
        );
        assert!(groups.insert(group), "{group} is shared by two functions");
    }
}

#[test]
fn every_path_of_the_openapi_document_is_routed_to_its_function() {
    let doc = sam::translated();
    let openapi: Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    let documented: BTreeSet<(String, String)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (path.clone(), m.clone())))
        .collect();
    assert!(documented.contains(&("/openapi.json".into(), "get".into())));
    let body = &doc["Resources"]["HttpApi"]["Properties"]["Body"]["paths"];
    let routed: BTreeSet<(String, String)> = body
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (path.clone(), m.clone())))
        .collect();
    for (path, method) in &documented {
        assert!(
            routed.contains(&(path.clone(), method.clone())),
            "{} {path} is in docs/openapi.json but HttpApi does not route it (404 on AWS)",
            method.to_uppercase()
        );
        // and API Gateway may invoke the function for it (the permission SAM makes from
        // the function's HttpApi event)
        let arn_tail = format!("/{}{}", method.to_uppercase(), path.replace("{id}", "*"));
        let allowed = sam::resources_of(doc, "AWS::Lambda::Permission")
            .into_iter()
            .any(|(_, p)| {
                p["Properties"]["SourceArn"]["Fn::Sub"][0]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&arn_tail))
            });
        assert!(
            allowed,
            "no function has an HttpApi event for {arn_tail}: API Gateway may not invoke it"
        );
    }
    for (path, method) in &routed {
        assert!(
            documented.contains(&(path.clone(), method.clone())),
            "HttpApi routes {method} {path}, which docs/openapi.json does not document"
        );
    }
}
