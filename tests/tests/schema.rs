//! The local API tested against its OpenAPI document by schemathesis (property-based:
//! it generates requests from the document and checks every answer against it).

use nommer_tests::spawn_stack_with;
use std::path::PathBuf;

const SCHEMATHESIS: &str = "4.32.5";

/// schemathesis in its own venv under `.nommer/`, installed once (pinned).
fn schemathesis() -> PathBuf {
    let venv = nommer_devstack::emulator::project_root()
        .unwrap()
        .join(".nommer")
        .join("venv-schemathesis");
    let bin = venv.join("bin").join("schemathesis");
    let stamp = venv.join(format!(".schemathesis-{SCHEMATHESIS}"));
    if bin.exists() && stamp.exists() {
        return bin;
    }
    let st = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv runs (apt-get install python3-venv)");
    assert!(st.success(), "creating {}", venv.display());
    let st = std::process::Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS}"))
        .status()
        .expect("pip runs");
    assert!(
        st.success(),
        "pip install schemathesis=={SCHEMATHESIS}; is PyPI reachable?"
    );
    std::fs::write(&stamp, SCHEMATHESIS).unwrap();
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let stack = spawn_stack_with("schema", 0, |o| o.api_key = Some("nk_schema".into())).await;
    // schemathesis keeps a cache in its working directory: not in the repository
    let scratch = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bin)
        .current_dir(scratch.path())
        .arg("run")
        .arg(format!("{}/openapi.json", stack.api_url))
        .args(["-H", "x-api-key: nk_schema"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--workers", "1", "--seed", "7", "--no-color"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    // it really exercised the API
    let generated: u64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" generated,")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .unwrap_or(0);
    assert!(generated >= 200, "too few cases ran ({generated}):\n{text}");
    stack.shutdown().await;
}
