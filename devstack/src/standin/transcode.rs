//! The FFmpeg runs that make one Encoding.com `format` (mp4, webm, m4a, mp3, thumbnail,
//! advanced HLS and DASH ladders).

use super::storage::Put;
use super::Ctx;
use anyhow::Context;
use nommer_encodingcom::parse_destination;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Makes one `format` of `input` in `out` (a fresh folder): the FFmpeg runs, then the
/// files to write where its destination says (one tar for a packed HLS or DASH set).
pub(super) async fn make_format(
    ctx: &Ctx,
    f: &Value,
    input: &Path,
    out: &Path,
    has_audio: bool,
) -> anyhow::Result<Vec<Put>> {
    tokio::fs::create_dir_all(out).await?;
    let d = f["destination"].as_str().unwrap_or_default();
    let dest = parse_destination(d).context("Wrong destination")?;
    let params = nommer_encodingcom::destination_params(d);
    let acl = params
        .get("acl")
        .cloned()
        .unwrap_or_else(|| "authenticated-read".into());
    let canonical_id = params.get("canonical_id").cloned();
    let file = dest.file_name().to_string();
    for args in ffmpeg_args(f, input, out, &file, has_audio)? {
        let o = tokio::process::Command::new(&ctx.ffmpeg)
            .args(&args)
            .kill_on_drop(true)
            .output()
            .await
            .context("running FFmpeg")?;
        anyhow::ensure!(
            o.status.success(),
            "Processing failed: {}",
            nommer_core::ffmpeg::reason_from_stderr(&String::from_utf8_lossy(&o.stderr))
        );
    }
    let folder = dest
        .key
        .rsplit_once('/')
        .map(|(p, _)| format!("{p}/"))
        .unwrap_or_default();
    let output = field(f, "output").unwrap_or("");
    let packed = ["advanced_hls", "advanced_dash"].contains(&output)
        && !field(f, "pack_files").is_some_and(|p| p.eq_ignore_ascii_case("no"));
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    if packed {
        // documented default `pack_files: yes`: the whole rendition set as one tar
        let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(&file).to_string();
        let tar = out.with_extension("tar");
        let st = tokio::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(out)
            .arg(".")
            .status()
            .await
            .context("running tar")?;
        anyhow::ensure!(st.success(), "Processing failed: packing the files");
        files.push((tar, format!("{stem}.tar")));
    } else {
        for entry in std::fs::read_dir(out)? {
            let p = entry?.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            files.push((p, name));
        }
    }
    let puts = files.into_iter().map(|(path, name)| Put {
        path,
        bucket: dest.bucket.clone(),
        key: format!("{folder}{name}"),
        acl: acl.clone(),
        canonical_id: canonical_id.clone(),
    });
    Ok(puts.collect())
}

pub(super) fn field<'a>(f: &'a Value, k: &str) -> Option<&'a str> {
    f.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

fn audio_encoder(name: &str) -> &str {
    match name {
        "dolby_aac" | "libfaac" | "dolby_heaac" | "dolby_heaacv2" | "libfdk_aac" | "aac" => "aac",
        "libvorbis" => "libvorbis",
        "libopus" => "libopus",
        "libmp3lame" => "libmp3lame",
        _ => "aac",
    }
}

fn video_args(f: &Value, a: &mut Vec<String>) -> anyhow::Result<()> {
    let codec = field(f, "video_codec").unwrap_or("libx264");
    anyhow::ensure!(
        ["libx264", "libx265", "libvpx-vp9", "libvpx"].contains(&codec),
        "Wrong video codec: {codec}"
    );
    a.extend(["-c:v".into(), codec.into()]);
    match codec {
        "libx264" => a.extend(["-preset".into(), "veryfast".into(), "-pix_fmt".into(), "yuv420p".into()]),
        "libx265" => a.extend(["-preset".into(), "ultrafast".into(), "-tag:v".into(), "hvc1".into()]),
        _ => a.extend(["-deadline".into(), "realtime".into(), "-cpu-used".into(), "8".into()]),
    }
    if let Some(b) = field(f, "bitrate") {
        a.extend(["-b:v".into(), b.into()]);
    }
    if let Some(s) = field(f, "size") {
        let (w, h) = s.split_once('x').context("Wrong size")?;
        let w: i64 = w.parse().context("Wrong size")?;
        let h: i64 = h.parse().context("Wrong size")?;
        let scale = match (w, h) {
            (0, h) => format!("scale=-2:{h}"),
            (w, 0) => format!("scale={w}:-2"),
            (w, h) => format!("scale={w}:{h}"),
        };
        a.extend(["-vf".into(), scale]);
    }
    if let Some(r) = field(f, "framerate") {
        a.extend(["-r".into(), r.into()]);
    }
    if let Some(k) = field(f, "keyframe") {
        a.extend(["-g".into(), k.into()]);
    }
    Ok(())
}

fn audio_args(f: &Value, a: &mut Vec<String>) {
    match field(f, "audio_codec") {
        Some("none") => a.push("-an".into()),
        c => {
            a.extend(["-c:a".into(), audio_encoder(c.unwrap_or("dolby_aac")).into()]);
            if let Some(b) = field(f, "audio_bitrate") {
                a.extend(["-b:a".into(), b.into()]);
            }
            if let Some(n) = field(f, "audio_channels_number") {
                a.extend(["-ac".into(), n.into()]);
            }
            if let Some(r) = field(f, "audio_sample_rate") {
                a.extend(["-ar".into(), r.into()]);
            }
        }
    }
}

/// FFmpeg runs for one `format`, writing into `out` (the destination's file is `file`).
pub(super) fn ffmpeg_args(
    f: &Value,
    input: &Path,
    out: &Path,
    file: &str,
    has_audio: bool,
) -> anyhow::Result<Vec<Vec<String>>> {
    let output = field(f, "output").context("Output format is not indicated")?;
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(s) = field(f, "start") {
        a.extend(["-ss".into(), s.into()]);
    }
    a.extend(["-i".into(), input.display().to_string()]);
    if let Some(d) = field(f, "duration") {
        a.extend(["-t".into(), d.into()]);
    }
    let target = out.join(file).display().to_string();
    match output {
        "mp4" | "webm" => {
            video_args(f, &mut a)?;
            audio_args(f, &mut a);
            if output == "mp4" {
                a.extend(["-movflags".into(), "+faststart".into()]);
            }
            if field(f, "two_pass") == Some("yes") {
                // a real second pass needs a log file per task; one pass is enough here
            }
            a.push(target);
            Ok(vec![a])
        }
        "m4a" | "mp3" => {
            a.push("-vn".into());
            audio_args(f, &mut a);
            a.push(target);
            Ok(vec![a])
        }
        "thumbnail" => {
            let t = field(f, "time").unwrap_or("5");
            let mut b: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", t, "-i"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            b.push(input.display().to_string());
            let w = field(f, "width").unwrap_or("640");
            b.extend([
                "-frames:v".into(),
                "1".into(),
                "-vf".into(),
                format!("scale={w}:-2"),
                target,
            ]);
            Ok(vec![b])
        }
        "advanced_hls" | "advanced_dash" => {
            ladder_args(f, output, &mut a, out, file, target, has_audio)?;
            Ok(vec![a])
        }
        other => anyhow::bail!("Wrong output format: {other}"),
    }
}

/// The rendition ladder of an `advanced_hls` or `advanced_dash` format, after the input.
fn ladder_args(
    f: &Value,
    output: &str,
    a: &mut Vec<String>,
    out: &Path,
    file: &str,
    target: String,
    has_audio: bool,
) -> anyhow::Result<()> {
    let streams: Vec<Value> = match f.get("stream") {
        Some(Value::Array(s)) => s.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => anyhow::bail!("No streams given for {output}"),
    };
    anyhow::ensure!(!streams.is_empty() && streams.len() <= 15, "1-15 streams are allowed");
    let seg = field(f, "segment_duration").unwrap_or("6").to_string();
    for (i, s) in streams.iter().enumerate() {
        a.extend(["-map".into(), "0:v:0".into()]);
        let codec = field(s, "video_codec").unwrap_or("libx264");
        a.extend([format!("-c:v:{i}"), codec.into()]);
        if let Some(b) = field(s, "bitrate") {
            a.extend([format!("-b:v:{i}"), b.into()]);
        }
        if let Some(sz) = field(s, "size") {
            let h = sz.split_once('x').map(|(_, h)| h).unwrap_or("360");
            a.extend([format!("-filter:v:{i}"), format!("scale=-2:{h}")]);
        }
    }
    a.extend(["-preset".into(), "veryfast".into(), "-g".into(), "48".into()]);
    // HLS: each rendition carries the audio; DASH: one audio adaptation set
    let audio_maps = if !has_audio {
        0
    } else if output == "advanced_hls" {
        streams.len()
    } else {
        1
    };
    for _ in 0..audio_maps {
        a.extend(["-map".into(), "0:a:0".into()]);
    }
    if audio_maps > 0 {
        a.extend(["-c:a".into(), "aac".into()]);
        if let Some(b) = streams.first().and_then(|s| field(s, "audio_bitrate")) {
            a.extend(["-b:a".into(), b.into()]);
        }
    }
    if output == "advanced_hls" {
        let vmap: Vec<String> = (0..streams.len())
            .map(|i| {
                if has_audio {
                    format!("v:{i},a:{i}")
                } else {
                    format!("v:{i}")
                }
            })
            .collect();
        a.extend([
            "-f".into(),
            "hls".into(),
            "-hls_time".into(),
            seg,
            "-hls_playlist_type".into(),
            "vod".into(),
            "-master_pl_name".into(),
            file.to_string(),
            "-var_stream_map".into(),
            vmap.join(" "),
            "-hls_segment_filename".into(),
            out.join("stream_%v_%03d.ts").display().to_string(),
            out.join("stream_%v.m3u8").display().to_string(),
        ]);
    } else {
        a.extend(["-f".into(), "dash".into(), "-seg_duration".into(), seg, target]);
    }
    Ok(())
}
