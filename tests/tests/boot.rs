//! The workers' first-boot script (the launch template's user data in
//! infra/template.yaml) waits for apt's locks instead of failing under `set -e`.
//!
//! What runs here: the script's own helpers (the lines between its "boot helpers" markers,
//! cut out of the template) and its update step, `apt_get update`, with the real apt-get,
//! pointed by APT_CONFIG at lists, cache and dpkg folders of the test's own (an empty
//! sources list, so no network), while another process holds the lists lock the way apt
//! holds it (a POSIX fcntl lock, which is what makes a second apt-get fail: holding it
//! with flock(1) does not stop apt-get update at all). Not run: the rest of the boot
//! (packages, snap, systemd), which needs an EC2 instance. Also run: the step installing
//! the scoring FFmpeg, with an `aws` of the test's own standing in for the S3 download.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The user data's helper functions, as the instance's shell sees them.
fn boot_helpers() -> String {
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let begin = lines
        .iter()
        .position(|l| l.trim_start().starts_with("# --- boot helpers: begin"))
        .expect("the user data marks its helpers with `# --- boot helpers: begin`");
    let end = lines[begin..]
        .iter()
        .position(|l| l.trim_start().starts_with("# --- boot helpers: end"))
        .expect("... and `# --- boot helpers: end`")
        + begin;
    let indent = lines[begin].len() - lines[begin].trim_start().len();
    let text: String = lines[begin..=end]
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    // !Sub would replace ${...} in them: what runs here must be what runs on the instance
    assert!(
        !text.contains("${"),
        "the boot helpers use ${{...}}, which !Sub rewrites; write $name"
    );
    text
}

/// A private apt configuration: its folders, and APT_CONFIG's file.
struct Apt {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    lists_lock: std::path::PathBuf,
}

fn private_apt() -> Apt {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "dpkg",
        "sources.list.d",
        "state",
    ] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("dpkg/status"), "").unwrap();
    std::fs::write(d.join("sources.list"), "").unwrap();
    let config = d.join("apt.conf");
    let p = |s: &str| d.join(s).display().to_string();
    std::fs::write(
        &config,
        format!(
            "Dir::State \"{}\";\nDir::State::Lists \"{}\";\nDir::State::status \"{}\";\nDir::Cache \"{}\";\n\
             Dir::Etc::SourceList \"{}\";\nDir::Etc::SourceParts \"{}\";\n",
            p("state"),
            p("lists"),
            p("dpkg/status"),
            p("cache"),
            p("sources.list"),
            p("sources.list.d"),
        ),
    )
    .unwrap();
    // apt creates its lock files; the holder below needs the lists one to exist first
    std::fs::write(d.join("lists/lock"), "").unwrap();
    Apt {
        lists_lock: d.join("lists/lock"),
        config,
        _dir: dir,
    }
}

/// Another process holding `path` as apt holds it (fcntl), until its stdin closes.
fn hold_lock(path: &Path) -> std::process::Child {
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl, sys\nf = open(sys.argv[1], 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (the lint venv needs it too)");
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held", "the holder took the lock");
    holder
}

#[test]
fn the_boot_script_waits_for_a_held_apt_lists_lock_then_updates() {
    let apt = private_apt();
    let helpers = boot_helpers();
    let mut holder = hold_lock(&apt.lists_lock);

    // The control: with the lock held, apt-get update as the old user data ran it fails at
    // once (dpkg's lock timeout does not cover the lists lock), which `set -e` made fatal.
    let old = Command::new("apt-get")
        .args([
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=600",
            "-o",
            "Acquire::Retries=5",
            "update",
        ])
        .env("APT_CONFIG", &apt.config)
        .output()
        .expect("apt-get runs");
    let old_err = String::from_utf8_lossy(&old.stderr);
    assert!(
        !old.status.success() && old_err.contains("Could not get lock") && old_err.contains("lists/lock"),
        "apt-get update should fail on the held lists lock: {:?} {old_err}",
        old.status
    );

    // The script's update step waits instead...
    let mut boot = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\n{helpers}\napt_get update\necho boot: updated\n"
        ))
        .env("APT_CONFIG", &apt.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = boot.stderr.take().unwrap();
    let err_tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(format!("stderr: {line}"));
        }
    });
    let stdout = boot.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(format!("stdout: {line}"));
        }
    });
    let mut seen = Vec::new();
    let waiting = format!("boot: waiting for {}", apt.lists_lock.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the boot script never said it was waiting for the lists lock: {seen:#?}"));
        let found = line.contains(&waiting);
        seen.push(line);
        if found {
            break;
        }
    }
    // ...and is still waiting, not failed: the lock is held, so it cannot have gone on
    assert!(
        boot.try_wait().unwrap().is_none(),
        "the boot script ended while the lock was held: {seen:#?}"
    );

    // the other apt finishes: the script goes on, runs apt-get update, and succeeds
    holder.stdin.take().unwrap().flush().unwrap();
    holder.wait().unwrap();
    let status = boot.wait().unwrap();
    seen.extend(rx.try_iter());
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        seen.push(line);
    }
    assert!(
        status.success(),
        "the boot script failed after the lock was freed: {seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("Reading package lists")),
        "apt-get update did not run: {seen:#?}"
    );
    assert!(seen.iter().any(|l| l == "stdout: boot: updated"), "{seen:#?}");
}

#[test]
fn the_boot_script_goes_straight_on_when_no_apt_lock_is_held() {
    let apt = private_apt();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{}\napt_get update\n", boot_helpers()))
        .env("APT_CONFIG", &apt.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("waiting for"), "it waited for a lock nobody held: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reading package lists"));
}

/// The user data's step installing the scoring FFmpeg, with the template's values put
/// in as `!Sub` would and its paths moved under `root`.
fn score_step(uri: &str, root: &Path) -> String {
    let template = std::fs::read_to_string(self::root().join("infra/template.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let begin = lines
        .iter()
        .position(|l| l.trim_start().starts_with("# The scoring FFmpeg"))
        .expect("the user data installs the scoring FFmpeg");
    let indent = lines[begin].len() - lines[begin].trim_start().len();
    let end = lines[begin..]
        .iter()
        .position(|l| l.get(indent..) == Some("fi"))
        .expect("... in one `if` block")
        + begin;
    let text: String = lines[begin..=end]
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    let root = root.display().to_string();
    text.replace("${ScoreFfmpegS3Uri}", uri)
        .replace("${AWS::Region}", "eu-west-1")
        .replace("/usr/local/bin/", &format!("{root}/bin/"))
        .replace("/etc/nommer-worker.env", &format!("{root}/worker.env"))
}

/// Runs the scoring step with an `aws` on the PATH that copies `s3://bucket/KEY` from
/// `root/s3/KEY`; returns the worker's environment file afterwards.
fn run_score_step(uri: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["bin", "fake", "s3"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("s3/ffmpeg-vmaf"), "#!/bin/sh\necho scoring ffmpeg\n").unwrap();
    let aws = root.join("fake/aws");
    std::fs::write(
        &aws,
        format!(
            "#!/bin/bash\n# aws s3 cp --only-show-errors --region R SRC DEST\nset -eu\n[ \"$1 $2\" = \"s3 cp\" ]\nsrc=\"${{@: -2:1}}\"; dest=\"${{@: -1}}\"\ncp \"{}/s3/${{src#s3://*/}}\" \"$dest\"\n",
            root.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&aws).status().unwrap();
    std::fs::write(root.join("worker.env"), "NOMMER_TABLE=jobs\n").unwrap();
    let script = format!("set -euo pipefail\n{}\n{}", boot_helpers(), score_step(uri, root));
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env(
            "PATH",
            format!("{}:{}", root.join("fake").display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let env = std::fs::read_to_string(root.join("worker.env")).unwrap();
    (dir, env)
}

#[test]
fn the_boot_installs_the_scoring_ffmpeg_it_is_given_and_none_otherwise() {
    let (dir, env) = run_score_step("s3://artifacts/ffmpeg-vmaf");
    let installed = dir.path().join("bin/nommer-score-ffmpeg");
    let line = format!("NOMMER_SCORE_FFMPEG={}", installed.display());
    assert!(env.lines().any(|l| l == line), "{env}");
    let ran = Command::new(&installed)
        .output()
        .expect("the scoring FFmpeg is executable");
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "scoring ffmpeg");
    assert!(!dir.path().join("bin/nommer-score-ffmpeg.part").exists());

    let (dir, env) = run_score_step("");
    assert!(!env.contains("NOMMER_SCORE_FFMPEG"), "{env}");
    assert!(!dir.path().join("bin/nommer-score-ffmpeg").exists());
}
