use super::*;
use crate::job::{ProbeStream, Trim};
use crate::presets::display_size;
use crate::presets::Catalog;

fn probe(w: u32, h: u32, rotation: Option<i32>, audio: bool, dur: f64) -> Probe {
    let mut streams = vec![ProbeStream {
        index: 0,
        kind: crate::job::StreamKind::Video,
        codec: "h264".into(),
        width: Some(w),
        height: Some(h),
        rotation,
        ..Default::default()
    }];
    if audio {
        streams.push(ProbeStream {
            index: 1,
            kind: crate::job::StreamKind::Audio,
            codec: "aac".into(),
            ..Default::default()
        });
    }
    Probe {
        container: "mov".into(),
        duration_seconds: Some(dur),
        size: 1,
        bit_rate: None,
        streams,
        interlacing: None,
    }
}

fn plan_for(preset: &str, p: &Probe, options: &OutputOptions) -> Plan {
    try_plan(preset, p, options).unwrap()
}

fn try_plan(preset: &str, p: &Probe, options: &OutputOptions) -> Result<Plan, PlanError> {
    let c = Catalog::builtin();
    let limits = Limits::default();
    plan(&PlanInput {
        preset: c.find(preset).unwrap(),
        options,
        probe: p,
        input: Path::new("/w/in.mov"),
        watermark: None,
        out_dir: Path::new("/w/out"),
        stem: "clip",
        limits: &limits,
    })
}

#[test]
fn refusals_say_what_the_source_lacks() {
    let mut audio_only = probe(640, 360, None, true, 10.0);
    audio_only.streams.remove(0);
    let none = OutputOptions::default();
    assert_eq!(try_plan("hls", &audio_only, &none).unwrap_err(), PlanError::NoVideo);
    assert_eq!(try_plan("poster", &audio_only, &none).unwrap_err(), PlanError::NoVideo);
    let mut timeless = probe(640, 360, None, false, 10.0);
    timeless.duration_seconds = None;
    assert_eq!(try_plan("sprite", &timeless, &none).unwrap_err(), PlanError::NoDuration);
    // a poster needs no duration: it takes the first frame
    assert!(try_plan("poster", &timeless, &none).is_ok());
}

#[test]
fn file_argv_caps_height_and_guards_input() {
    let p = plan_for(
        "mp4-720p",
        &probe(1920, 1080, None, true, 10.0),
        &OutputOptions::default(),
    );
    assert_eq!(p.passes.len(), 1);
    let a = &p.passes[0];
    let s = a.join(" ");
    assert!(s.contains("-protocol_whitelist file -format_whitelist mov,"), "{s}");
    assert!(!s.contains("hls") && !s.contains("concat"), "{s}");
    assert!(
        s.contains("scale=w=1280:h=720:") && s.contains("-c:v libx264") && s.contains("-c:a aac"),
        "{s}"
    );
    assert!(s.ends_with("file:/w/out/clip.mp4"), "{s}");
    let i = a.iter().position(|x| x == "-i").unwrap();
    assert_eq!(a[i + 1], "file:/w/in.mov");
    assert!(
        a.iter().position(|x| x == "-protocol_whitelist").unwrap() < i,
        "guard is an input option"
    );
    let silent = plan_for(
        "mp4-720p",
        &probe(1920, 1080, None, false, 10.0),
        &OutputOptions::default(),
    )
    .passes[0]
        .join(" ");
    assert!(silent.contains("-an") && !silent.contains("0:a:0"), "{silent}");
}

#[test]
fn a_preset_height_bounds_the_short_side() {
    let size = |w, h, rot| {
        let a = plan_for("mp4-720p", &probe(w, h, rot, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
        let i = a.find("scale=w=").unwrap();
        a[i..].split(':').take(2).collect::<Vec<_>>().join(":")
    };
    assert_eq!(size(720, 1280, None), "scale=w=720:h=1280");
    assert_eq!(size(1080, 1920, None), "scale=w=720:h=1280");
    assert_eq!(
        size(1280, 720, Some(90)),
        "scale=w=720:h=1280",
        "rotation applied first"
    );
    assert_eq!(size(1920, 1080, None), "scale=w=1280:h=720");
    assert_eq!(size(333, 199, None), "scale=w=332:h=198", "never upscaled, even");
    assert_eq!(output_size((640, 360), 240, true), (426, 240));
    assert_eq!(output_size((360, 640), 240, true), (240, 426));
    assert_eq!(output_size((480, 270), 720, false), (480, 270));
}

#[test]
fn an_attached_picture_is_never_mapped_as_video() {
    let mut p = probe(320, 240, None, true, 2.0);
    for st in &mut p.streams {
        st.index += 1;
    }
    p.streams.insert(
        0,
        ProbeStream {
            index: 0,
            kind: crate::job::StreamKind::Video,
            codec: "png".into(),
            width: Some(64),
            height: Some(64),
            attached_pic: true,
            ..Default::default()
        },
    );
    let a = plan_for("mp4-360p", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(a.contains("-map 0:1 -vf") && a.contains("scale=w=320:h=240:"), "{a}");
    let l = plan_for("hls", &p, &OutputOptions::default());
    assert_eq!(l.rungs.iter().map(|r| r.height).collect::<Vec<_>>(), [240]);
    assert!(l.passes[0].join(" ").contains("[0:1]split=1"), "{:?}", l.passes[0]);
    let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(t.contains("-map 0:1 "), "{t}");
}

#[test]
fn interlaced_sources_are_deinterlaced_first() {
    let mut p = probe(720, 576, None, true, 2.0);
    let plain = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(!plain.contains("bwdif"), "{plain}");
    p.interlacing = crate::ffmpeg::interlacing_from_field_order(Some("bb"));
    let a = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(
        a.contains("-vf bwdif=mode=send_frame:parity=bff:deint=all,scale="),
        "{a}"
    );
    let l = plan_for("hls", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(
        l.contains("[0:0]bwdif=mode=send_frame:parity=bff:deint=all,split=3"),
        "once, before the rungs: {l}"
    );
    assert_eq!(l.matches("bwdif=").count(), 1, "{l}");
    let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(t.contains("bwdif=mode=send_frame:parity=bff:deint=all,scale="), "{t}");
}

#[test]
fn hdr_is_tone_mapped_and_every_output_is_tagged_bt709() {
    let mut p = probe(1920, 1080, None, true, 2.0);
    let sdr = plan_for("mp4-720p", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(
        sdr.contains(":in_color_matrix=bt709:in_range=tv:out_color_matrix=bt709:out_range=tv,setsar=1,format=yuv420p")
            && !sdr.contains("tonemap"),
        "{sdr}"
    );
    let tags = "-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv";
    assert!(sdr.contains(tags), "{sdr}");
    let sd = plan_for("mp4-360p", &probe(640, 360, None, true, 2.0), &OutputOptions::default()).passes[0].join(" ");
    assert!(sd.contains(":in_color_matrix=bt601:"), "untagged SD is BT.601: {sd}");
    for (trc, name) in [("smpte2084", "PQ"), ("arib-std-b67", "HLG")] {
        let v = &mut p.streams[0];
        v.color_transfer = Some(trc.into());
        v.color_primaries = Some("bt2020".into());
        v.color_space = Some("bt2020nc".into());
        v.pix_fmt = Some("yuv420p10le".into());
        let a = plan_for("mp4-720p", &p, &OutputOptions::default()).passes[0].join(" ");
        assert!(
            a.contains(&format!("zscale=tin={trc}:pin=bt2020:min=bt2020nc:rin=tv:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"))
                && a.contains(tags)
                && !a.contains("in_color_matrix"),
            "{name}: {a}"
        );
        let l = plan_for("hls", &p, &OutputOptions::default()).passes[0].join(" ");
        assert_eq!(l.matches("tonemap=hable").count(), 5, "every rung: {l}");
        assert!(l.contains(tags), "{l}");
    }
}

#[test]
fn non_square_pixels_become_square_at_the_display_size() {
    let mut p = probe(720, 576, None, true, 2.0);
    p.streams[0].sample_aspect_ratio = Some("64:45".into());
    assert_eq!(display_size(&p), Some((1024, 576)));
    let a = plan_for("mp4-480p", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(a.contains("scale=w=854:h=480:"), "{a}");
    assert!(a.contains(",setsar=1,"), "{a}");
    p.streams[0].sample_aspect_ratio = Some("16:15".into());
    assert_eq!(display_size(&p), Some((768, 576)));
    let t = plan_for("poster", &p, &OutputOptions::default()).passes[0].join(" ");
    assert!(t.contains("scale=768:576:flags=bicubic,setsar=1"), "{t}");
}

#[test]
fn options_reach_the_argv() {
    let o = OutputOptions {
        trim: Some(Trim {
            start_seconds: 2.0,
            end_seconds: Some(5.0),
        }),
        max_frame_rate: Some(30.0),
        video_bitrate_kbps: Some(1500),
        two_pass: true,
        loudness: Some(crate::job::Loudness {
            integrated_lufs: -23.0,
            true_peak_db: -1.0,
            range_lu: 7.0,
        }),
        ..Default::default()
    };
    let p = plan_for("mp4-480p", &probe(1280, 720, None, true, 10.0), &o);
    assert_eq!(p.passes.len(), 2);
    assert_eq!(p.expected_duration, Some(3.0));
    let p1 = p.passes[0].join(" ");
    let p2 = p.passes[1].join(" ");
    assert!(
        p1.contains("-ss 2.000 -t 3.000 -i") && p1.contains("-pass 1") && p1.ends_with("-f null -"),
        "{p1}"
    );
    assert!(p1.contains("-an"), "no audio in the analysis pass");
    assert!(
        p2.contains("-pass 2") && p2.contains("-b:v 1500k") && !p2.contains("-crf"),
        "{p2}"
    );
    assert!(p2.contains("fps=fps='min(30,source_fps)'"), "{p2}");
    assert!(p2.contains("loudnorm=I=-23:TP=-1:LRA=7"), "{p2}");
}

#[test]
fn ladders_never_upscale_and_honour_rotation() {
    let rungs = |pr: &Probe| {
        plan_for("hls", pr, &OutputOptions::default())
            .rungs
            .iter()
            .map(|r| r.height)
            .collect::<Vec<_>>()
    };
    assert_eq!(rungs(&probe(1920, 1080, None, true, 10.0)), [1080, 720, 480, 360, 240]);
    assert_eq!(rungs(&probe(1280, 720, None, true, 10.0)), [720, 480, 360, 240]);
    // a rung bounds the short side: a portrait 720x1280 is a 720p source, stored
    // upright or as 1280x720 with rotation
    assert_eq!(rungs(&probe(720, 1280, None, true, 10.0)), [720, 480, 360, 240]);
    assert_eq!(rungs(&probe(1280, 720, Some(-90), true, 10.0)), [720, 480, 360, 240]);
    let portrait = plan_for("hls", &probe(360, 640, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
    assert!(
        portrait.contains("scale=w=360:h=640:") && portrait.contains("scale=w=240:h=426:"),
        "{portrait}"
    );
    assert_eq!(rungs(&probe(320, 181, None, true, 10.0)), [180]);
    let hls = plan_for("hls", &probe(640, 360, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
    assert!(
        hls.contains("split=2[s0][s1]") && hls.contains("-var_stream_map v:0,a:0,name:360p v:1,a:1,name:240p"),
        "{hls}"
    );
    assert!(
        hls.contains("-hls_segment_type fmp4") && hls.contains("-master_pl_name master.m3u8"),
        "{hls}"
    );
    let silent = plan_for("hls", &probe(640, 360, None, false, 10.0), &OutputOptions::default()).passes[0].join(" ");
    assert!(
        !silent.contains("0:a:0") && silent.contains("v:0,name:360p v:1,name:240p"),
        "{silent}"
    );
    let dash = plan_for("dash", &probe(640, 360, None, true, 10.0), &OutputOptions::default()).passes[0].join(" ");
    assert_eq!(dash.matches("-map 0:a:0").count(), 1, "{dash}");
    assert!(dash.ends_with("/w/out/manifest.mpd"), "{dash}");
}

#[test]
fn thumbnails_spread_and_tile() {
    let p = plan_for(
        "thumbnails",
        &probe(1920, 1080, None, false, 20.0),
        &OutputOptions {
            count: Some(4),
            width: Some(200),
            ..Default::default()
        },
    );
    assert_eq!(p.images, 4);
    let a = p.passes[0].join(" ");
    assert!(
        a.contains("fps=fps=0.200000") && a.contains("scale=200:112") && a.contains("-frames:v 4"),
        "{a}"
    );
    let s = plan_for(
        "sprite",
        &probe(1280, 720, None, false, 100.0),
        &OutputOptions::default(),
    );
    let l = s.sprite.unwrap();
    assert_eq!((l.tile_width, l.tile_height, l.columns, l.count), (160, 90, 10, 50));
    assert!(s.passes[0].join(" ").contains("tile=10x5"));
    let vtt = sprite_vtt(&l, "sprite.jpg");
    assert!(vtt.starts_with("WEBVTT\n"));
    assert_eq!(vtt.matches(" --> ").count(), 50);
    assert!(
        vtt.contains("00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90"),
        "{vtt}"
    );
    assert!(
        vtt.contains("00:01:38.000 --> 00:01:40.000\nsprite.jpg#xywh=1440,360,160,90"),
        "{vtt}"
    );
    let poster = plan_for("poster", &probe(640, 480, None, false, 30.0), &OutputOptions::default()).passes[0].join(" ");
    assert!(
        poster.contains("-ss 3.000 -i") && poster.contains("scale=640:480"),
        "poster at 10%, never upscaled: {poster}"
    );
}
