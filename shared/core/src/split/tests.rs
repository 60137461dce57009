use super::*;
use crate::job::{OutputOptions, ProbeStream, Trim};
use crate::presets::Catalog;

fn probe(seconds: Option<f64>, video: bool) -> Probe {
    let mut streams = vec![ProbeStream {
        index: 0,
        kind: StreamKind::Audio,
        codec: "aac".into(),
        ..Default::default()
    }];
    if video {
        streams.push(ProbeStream {
            index: 1,
            kind: StreamKind::Video,
            codec: "h264".into(),
            width: Some(1280),
            height: Some(720),
            ..Default::default()
        });
    }
    Probe {
        container: "mov".into(),
        duration_seconds: seconds,
        size: 1,
        bit_rate: None,
        streams,
        interlacing: None,
    }
}

fn outputs(presets: &[&str]) -> Vec<(OutputSpec, Preset)> {
    let c = Catalog::builtin();
    presets
        .iter()
        .map(|p| (OutputSpec::new(*p, *p), c.find(p).unwrap().clone()))
        .collect()
}

const ON: SplitSettings = SplitSettings {
    after_seconds: 600.0,
    chunk_seconds: 60.0,
};

#[test]
fn a_long_source_with_video_files_and_a_ladder_splits_on_segment_multiples() {
    let s = shape(&outputs(&["mp4-720p", "hls"]), &probe(Some(7200.0), true), &ON).unwrap();
    assert_eq!(s.segment_seconds, Some(4.0));
    assert_eq!(s.chunk_seconds, 60.0);
    let odd = SplitSettings {
        chunk_seconds: 45.0,
        ..ON
    };
    // 45 s is not a multiple of the ladder's 4 s segments: 44 s is
    assert_eq!(
        shape(&outputs(&["hls"]), &probe(Some(7200.0), true), &odd)
            .unwrap()
            .chunk_seconds,
        44.0
    );
    assert_eq!(
        shape(&outputs(&["mp4-720p"]), &probe(Some(7200.0), true), &odd)
            .unwrap()
            .chunk_seconds,
        45.0
    );
}

#[test]
fn short_unknown_or_off_is_whole() {
    let out = outputs(&["mp4-720p"]);
    assert!(matches!(
        shape(&out, &probe(Some(600.0), true), &ON),
        Err(Whole::Short { .. })
    ));
    assert_eq!(shape(&out, &probe(None, true), &ON), Err(Whole::Unknown));
    assert_eq!(shape(&out, &probe(Some(7200.0), false), &ON), Err(Whole::Unknown));
    let off = SplitSettings {
        after_seconds: 0.0,
        ..ON
    };
    assert_eq!(shape(&out, &probe(Some(7200.0), true), &off), Err(Whole::Off));
}

#[test]
fn outputs_that_need_the_whole_source_keep_the_job_whole() {
    let long = probe(Some(7200.0), true);
    for preset in ["poster", "audio-aac", "sprite"] {
        let e = shape(&outputs(&["hls", preset]), &long, &ON).unwrap_err();
        assert!(matches!(&e, Whole::Output { output, .. } if output == preset), "{e}");
    }
    let options = [
        OutputOptions {
            trim: Some(Trim {
                start_seconds: 1.0,
                end_seconds: None,
            }),
            ..Default::default()
        },
        OutputOptions {
            two_pass: true,
            video_bitrate_kbps: Some(1000),
            ..Default::default()
        },
        OutputOptions {
            max_frame_rate: Some(30.0),
            ..Default::default()
        },
    ];
    for o in options {
        let mut out = outputs(&["mp4-720p"]);
        out[0].0.options = o.clone();
        assert!(matches!(shape(&out, &long, &ON), Err(Whole::Output { .. })), "{o:?}");
    }
    // a constant-quality or bit-rate override is the same in every chunk: split
    let mut out = outputs(&["mp4-720p"]);
    out[0].0.options.video_bitrate_kbps = Some(2000);
    assert!(shape(&out, &long, &ON).is_ok());
}

#[test]
fn ladders_of_different_segment_lengths_keep_the_job_whole() {
    let mut out = outputs(&["hls", "dash"]);
    if let PresetKind::Ladder { segment_seconds, .. } = &mut out[1].1.kind {
        *segment_seconds = 6;
    }
    assert!(matches!(
        shape(&out, &probe(Some(7200.0), true), &ON),
        Err(Whole::Output { .. })
    ));
}
