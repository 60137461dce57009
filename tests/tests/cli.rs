//! The `nommer` command against a local stack's API, as a user runs it.

use nommer_devstack::media;
use nommer_tests::spawn_stack_with;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

struct Cli {
    url: String,
    key: Option<String>,
    home: tempfile::TempDir,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        let bin = nommer_devstack::stack::locate_binary("nommer").unwrap();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env_remove("NOMMER_API_URL")
            .env_remove("NOMMER_API_KEY")
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME");
        if !self.url.is_empty() {
            cmd.env("NOMMER_API_URL", &self.url);
        }
        if let Some(k) = &self.key {
            cmd.env("NOMMER_API_KEY", k);
        }
        tokio::time::timeout(std::time::Duration::from_secs(240), cmd.output())
            .await
            .expect("the command ends")
            .unwrap()
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_status_list_cancel_and_retry_from_the_terminal() {
    let stack = spawn_stack_with("cli", 1, |o| o.api_key = Some("nk_cli_key".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("my talk.mp4");
    media::generate_clip(&file, 2, 320, 240, true).unwrap();
    let cli = Cli {
        url: stack.api_url.clone(),
        key: Some("nk_cli_key".into()),
        home: tempfile::tempdir().unwrap(),
    };
    let f = file.to_str().unwrap();

    // upload through a presigned PUT, create the job, follow it to the end
    let o = cli
        .run(&["submit", f, "--preset", "mp4-360p", "--metadata", "team=red", "--wait"])
        .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(id.starts_with('j') && id.len() == 33, "{out}");
    assert!(
        err.contains("uploading") && err.contains("encoding"),
        "progress is shown: {err}"
    );
    // stderr is not a terminal here: plain lines, not a bar redrawn with \r, a few a state
    assert!(!err.contains('\r'), "plain lines: {err:?}");
    assert!(
        err.lines().any(|l| l.contains("uploading") && l.contains("100%")),
        "the upload's last line: {err}"
    );
    let encoding = err.lines().filter(|l| l.trim_start().starts_with("encoding")).count();
    assert!((1..=11).contains(&encoding), "{encoding} lines for encoding: {err}");
    assert!(out.contains("state    complete"), "{out}");
    assert!(out.contains("/mp4-360p/"), "the output is listed: {out}");

    // a bigger file (lossless noise, over S3's 5 MiB minimum part) in parts, then watch it
    let big = dir.path().join("big.mkv");
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=2"])
        .args([
            "-vf",
            "noise=alls=60:allf=t",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-preset",
            "ultrafast",
        ])
        .arg(&big)
        .status()
        .unwrap();
    assert!(st.success());
    let big_size = std::fs::metadata(&big).unwrap().len();
    assert!(big_size > 6 * 1024 * 1024, "{big_size}");
    let o = cli
        .run(&["submit", big.to_str().unwrap(), "--preset", "mp4-360p", "--multipart"])
        .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.lines().any(|l| l.contains("uploading") && l.contains("100%")),
        "the parts' progress: {err}"
    );
    let id2 = out.lines().next().unwrap().trim().to_string();
    // S3 itself says how it was uploaded: a multipart object's ETag ends in -<parts>
    let o = cli.run(&["status", &id2, "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let source = nommer_core::S3Uri::parse(v["source"].as_str().unwrap()).unwrap();
    let head = nommer_aws::objects::S3ObjectStore::new(nommer_aws::sdk::s3_client(&stack.config))
        .head(&source.bucket, &source.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.size, big_size, "all of it arrived");
    let etag = head.etag.unwrap();
    let parts: u32 = etag
        .trim_matches('"')
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a multipart ETag: {etag}"));
    assert!(parts >= 2, "uploaded in {parts} parts: {etag}");
    let o = cli.run(&["watch", &id2]).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("state    complete"), "{out}");

    let o = cli.run(&["status", &id, "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "complete");
    assert_eq!(v["user_metadata"]["team"], "red");

    let o = cli.run(&["list", "--state", "complete"]).await;
    let (out, _) = text(&o);
    assert!(
        out.starts_with("ID") && out.contains(&id) && out.contains(&id2),
        "{out}"
    );

    // errors say what is wrong
    let o = cli.run(&["cancel", &id]).await;
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("409") && err.contains("complete"), "{err}");
    let o = cli.run(&["retry", &id]).await;
    assert!(!o.status.success());
    let o = cli.run(&["status", "j00000000000000000000000000000000"]).await;
    let (_, err) = text(&o);
    assert!(err.contains("404") && err.contains("nommer list"), "{err}");
    let o = cli.run(&["submit", "/no/such/file.mp4"]).await;
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("/no/such/file.mp4"), "{err}");

    // without the key, or without an API
    let nokey = Cli {
        url: stack.api_url.clone(),
        key: None,
        home: tempfile::tempdir().unwrap(),
    };
    let o = nokey.run(&["list"]).await;
    let (_, err) = text(&o);
    assert!(err.contains("401") && err.contains("NOMMER_API_KEY"), "{err}");
    let noapi = Cli {
        url: String::new(),
        key: None,
        home: tempfile::tempdir().unwrap(),
    };
    let o = noapi.run(&["list"]).await;
    let (_, err) = text(&o);
    assert!(err.contains("no API") && err.contains("NOMMER_API_URL"), "{err}");
    // the config file is read too
    let cfg = noapi.home.path().join(".config/nommer");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("cli.toml"),
        format!("api_url = \"{}\"\napi_key = \"nk_cli_key\"\n", stack.api_url),
    )
    .unwrap();
    let o = noapi.run(&["list"]).await;
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains(&id), "{out}\n{err}");
    stack.shutdown().await;
}

fn run_nommer(bin: &Path, args: &[&str], path: &OsStr) -> Output {
    std::process::Command::new(bin)
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

/// `nommer up` and `nommer demo` are the local stack's: the command hands them to
/// `nommer-devstack` (beside it, else on PATH) with the same arguments, and without it
/// exits 2 saying how to get it.
#[test]
fn up_and_demo_are_handed_to_the_local_stack_binary() {
    let bin = nommer_devstack::stack::locate_binary("nommer").unwrap();
    let devstack = nommer_devstack::stack::locate_binary("nommer-devstack").unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let o = run_nommer(&bin, &["--help"], &path);
    let (out, _) = text(&o);
    assert!(out.contains("\n  up ") && out.contains("\n  demo "), "{out}");
    // beside it, as a workspace build leaves them: the local stack's own help answers
    let o = run_nommer(&bin, &["up", "--help"], &path);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("nommer-devstack up") && out.contains("--workers"), "{out}");
    let o = run_nommer(&bin, &["demo", "--help"], &path);
    let (out, _) = text(&o);
    assert!(out.contains("--keep-running"), "{out}");
    // alone (a copy in a folder of its own), PATH empty: exit 2 and what to do
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("nommer");
    if std::fs::hard_link(&bin, &alone).is_err() {
        std::fs::copy(&bin, &alone).unwrap();
    }
    let empty = tempfile::tempdir().unwrap();
    let o = run_nommer(&alone, &["up", "--workers", "1"], empty.path().as_os_str());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nommer-devstack") && err.contains("scripts/nommer up") && err.contains("cargo build --workspace"),
        "{err}"
    );
    // on PATH
    let on_path = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&devstack, on_path.path().join("nommer-devstack")).unwrap();
    let o = run_nommer(&alone, &["demo", "--help"], on_path.path().as_os_str());
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("--keep-running"), "{out}\n{err}");
    // the other commands never need it
    let o = run_nommer(&alone, &["presets"], empty.path().as_os_str());
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("mp4-720p"), "{out}\n{err}");
}

/// `nommer up --workers 1`, as the README has a newcomer run it: the stack comes up, says
/// where its API is and with which key, answers `nommer list`, and stops on Ctrl-C.
/// `.nommer/` goes where NOMMER_HOME says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nommer_up_runs_the_local_stack_until_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let bin = nommer_devstack::stack::locate_binary("nommer").unwrap();
    let moto = tokio::task::spawn_blocking(nommer_devstack::emulator::ensure_installed)
        .await
        .unwrap()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let stack = nommer_tests::unique_stack("up");
    let mut child = tokio::process::Command::new(&bin)
        .args(["up", "--workers", "1", "--port", "0", "--stack", &stack])
        .env("NOMMER_HOME", home.path())
        .env("NOMMER_MOTO_SERVER", &moto)
        .env("NOMMER_API_KEY", "nk_up_key")
        .env_remove("NOMMER_API_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            seen.push(l.clone());
            if let Some(rest) = l.trim().strip_prefix("export NOMMER_API_URL=") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("no API line: {seen:#?}")
    })
    .await
    .expect("the stack comes up");
    assert!(seen[0].contains("is up") && seen[0].contains(&stack), "{seen:#?}");
    assert!(
        home.path().join(".nommer/logs").join(&stack).is_dir(),
        "logs under NOMMER_HOME"
    );
    let cli = Cli {
        url,
        key: Some("nk_up_key".into()),
        home: tempfile::tempdir().unwrap(),
    };
    let o = cli.run(&["list"]).await;
    let (out, err) = text(&o);
    assert!(o.status.success() && out.starts_with("ID"), "{out}\n{err}");
    // Ctrl-C
    let pid = child.id().unwrap() as i32;
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let st = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("it stops")
        .unwrap();
    assert!(st.success(), "{st}");
}
