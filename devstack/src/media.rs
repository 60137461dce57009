//! Test and demo media made with FFmpeg's lavfi sources, and ffprobe summaries.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;

/// Makes an H.264/AAC MP4 clip of `seconds` at `width`x`height` (test pattern and tone).
pub fn generate_clip(path: &Path, seconds: u32, width: u32, height: u32, with_audio: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate=25:duration={seconds}"));
    if with_audio {
        cmd.args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:sample_rate=48000:duration={seconds}"));
        cmd.args(["-c:a", "aac", "-b:a", "96k"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-shortest",
    ])
    .arg(path);
    let out = cmd
        .output()
        .context("running ffmpeg; install it (apt-get install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffmpeg could not make the clip: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// ffprobe's view of a file, as JSON.
pub fn probe(path: &Path) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-show_streams", "-of", "json"])
        .arg(path)
        .output()
        .context("running ffprobe; install FFmpeg (apt-get install ffmpeg)")?;
    if !out.status.success() {
        bail!(
            "ffprobe could not read {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// One line per stream: what a person wants to see of an output.
pub fn summary(probe: &serde_json::Value) -> String {
    let mut lines = Vec::new();
    let f = &probe["format"];
    lines.push(format!(
        "container {} · {:.2} s · {} bytes",
        f["format_name"].as_str().unwrap_or("?"),
        f["duration"]
            .as_str()
            .and_then(|d| d.parse::<f64>().ok())
            .unwrap_or(0.0),
        f["size"].as_str().unwrap_or("?")
    ));
    for s in probe["streams"].as_array().into_iter().flatten() {
        match s["codec_type"].as_str() {
            Some("video") => lines.push(format!(
                "video {} {}x{} {} fps",
                s["codec_name"].as_str().unwrap_or("?"),
                s["width"],
                s["height"],
                s["avg_frame_rate"].as_str().unwrap_or("?")
            )),
            Some("audio") => lines.push(format!(
                "audio {} {} Hz {} ch",
                s["codec_name"].as_str().unwrap_or("?"),
                s["sample_rate"].as_str().unwrap_or("?"),
                s["channels"]
            )),
            Some(other) => lines.push(format!("{other} {}", s["codec_name"].as_str().unwrap_or("?"))),
            None => {}
        }
    }
    lines.join("\n")
}
