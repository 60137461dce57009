use super::*;
use crate::config::Config;

const CONFIG: &str = r#"
[backends.fleet]
kind = "ffmpeg"
prices = { audio = 0.0005, sd = 0.002, hd = 0.004, uhd = 0.012, image = 0.0001 }

[backends.ecom]
kind = "encodingcom"
prices = { audio = 0.001, sd = 0.001, hd = 0.003, uhd = 0.02, image = 0.001 }
fallback = "fleet"

[routing]
default = "fleet"

[[routing.rules]]
name = "partner folder"
backend = "ecom"
match = { key_prefix = "inbox/partner/" }

[[routing.rules]]
name = "long hd hls"
backend = "ecom"
match = { presets = ["hls"], min_duration_seconds = 600, min_height = 720 }

[[routing.rules]]
name = "big files"
backend = "ecom"
match = { min_size_bytes = 1000000000 }

[[routing.rules]]
name = "mkv from mobile"
backend = "ecom"
match = { extensions = ["mkv"], metadata = { source = "mobile" } }

[[routing.rules]]
name = "avi containers"
backend = "ecom"
match = { containers = ["avi"], max_duration_seconds = 30 }

[[routing.rules]]
name = "price shoppers"
backend = "cheapest"
match = { metadata = { tier = "budget" } }

[[routing.rules]]
name = "short clips"
backend = "ecom"
match = { max_height = 480, max_duration_seconds = 60 }
"#;

fn facts(key: &str) -> Facts {
    let mut f = Facts::for_key(key);
    f.container = Some("mov,mp4,m4a,3gp,3g2,mj2".into());
    f.size = Some(5_000_000);
    f.duration_seconds = Some(120.0);
    f.height = Some(1080);
    f.measured_by = Measured::Probe;
    f
}

fn outs(presets: &[&str]) -> Vec<OutputSpec> {
    presets.iter().map(|p| OutputSpec::new(*p, *p)).collect()
}

#[test]
fn a_table_of_routing_cases() {
    let c = Config::parse(CONFIG, "nommer.toml").unwrap();
    let r = &c.routing;
    let meta = |f: &mut Facts, k: &str, v: &str| {
        f.metadata.insert(k.into(), v.into());
    };
    type Case = (
        &'static str,
        &'static [&'static str],
        Box<dyn Fn(&mut Facts)>,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "key prefix",
            &["mp4-720p"],
            Box::new(|f| *f = facts("inbox/partner/a.mov")),
            "ecom",
            Some("partner folder"),
        ),
        ("no match: the default", &["mp4-720p"], Box::new(|_| {}), "fleet", None),
        (
            "preset + duration + height",
            &["hls"],
            Box::new(|f| f.duration_seconds = Some(900.0)),
            "ecom",
            Some("long hd hls"),
        ),
        (
            "preset list must hold every output",
            &["hls", "poster"],
            Box::new(|f| f.duration_seconds = Some(900.0)),
            "fleet",
            None,
        ),
        ("too short for the hls rule", &["hls"], Box::new(|_| {}), "fleet", None),
        (
            "height under the minimum",
            &["hls"],
            Box::new(|f| {
                f.duration_seconds = Some(900.0);
                f.height = Some(480);
            }),
            "fleet",
            None,
        ),
        (
            "size",
            &["mp4-720p"],
            Box::new(|f| f.size = Some(2_000_000_000)),
            "ecom",
            Some("big files"),
        ),
        (
            "extension and metadata",
            &["mp4-720p"],
            Box::new(move |f| {
                *f = facts("inbox/x.MKV");
                meta(f, "source", "mobile");
            }),
            "ecom",
            Some("mkv from mobile"),
        ),
        (
            "extension without the metadata",
            &["mp4-720p"],
            Box::new(|f| *f = facts("inbox/x.mkv")),
            "fleet",
            None,
        ),
        (
            "container",
            &["mp4-720p"],
            Box::new(|f| {
                f.container = Some("avi".into());
                f.duration_seconds = Some(20.0);
            }),
            "ecom",
            Some("avi containers"),
        ),
        (
            "unknown container never matches",
            &["mp4-720p"],
            Box::new(|f| {
                f.container = None;
                f.duration_seconds = Some(20.0);
            }),
            "fleet",
            None,
        ),
        (
            "max height and duration",
            &["mp4-480p"],
            Box::new(|f| {
                f.height = Some(360);
                f.duration_seconds = Some(30.0);
            }),
            "ecom",
            Some("short clips"),
        ),
        (
            "unknown duration never matches a duration rule",
            &["mp4-480p"],
            Box::new(|f| {
                f.height = Some(360);
                f.duration_seconds = None;
            }),
            "fleet",
            None,
        ),
        // sd is cheaper at ecom (0.001 vs 0.002), audio on the fleet (0.0005 vs 0.001)
        (
            "cheapest picks the lower estimate (sd: ecom)",
            &["mp4-480p"],
            Box::new(move |f| meta(f, "tier", "budget")),
            "ecom",
            Some("price shoppers"),
        ),
        (
            "cheapest picks the lower estimate (audio: fleet)",
            &["audio-aac"],
            Box::new(move |f| meta(f, "tier", "budget")),
            "fleet",
            Some("price shoppers"),
        ),
        (
            "cheapest skips backends unable to make it",
            &["sprite"],
            Box::new(move |f| meta(f, "tier", "budget")),
            "fleet",
            Some("price shoppers"),
        ),
        (
            "a chosen backend unable to make it is passed over",
            &["sprite"],
            Box::new(|f| *f = facts("inbox/partner/a.mov")),
            "fleet",
            None,
        ),
    ];
    for (what, presets, tweak, backend, rule) in cases {
        let mut f = facts("inbox/a.mov");
        tweak(&mut f);
        let d = route(r, &c.catalog, &outs(presets), &f);
        assert_eq!(d.backend, backend, "{what}: {}", d.reason);
        assert_eq!(d.rule.as_deref(), rule, "{what}: {}", d.reason);
    }
}

#[test]
fn a_short_clip_costs_more_than_nothing() {
    let c = Config::parse(CONFIG, "nommer.toml").unwrap();
    let mut f = facts("inbox/a.mov");
    f.duration_seconds = Some(2.0);
    f.height = Some(360);
    let d = route(&c.routing, &c.catalog, &outs(&["audio-aac"]), &f);
    // 2 s of audio: fleet 0.0005 x 2/60 = 0.0000167, ecom 0.001 x 2/60 = 0.0000333
    assert!(
        (d.estimates["fleet"] - 0.0005 * 2.0 / 60.0).abs() < 1e-6,
        "{:?}",
        d.estimates
    );
    assert!(
        (d.estimates["ecom"] - 0.001 * 2.0 / 60.0).abs() < 1e-6,
        "{:?}",
        d.estimates
    );
    assert!(
        d.estimates["fleet"] < d.estimates["ecom"],
        "told apart: {:?}",
        d.estimates
    );
}

#[test]
fn decisions_carry_estimates_and_reasons() {
    let c = Config::parse(CONFIG, "nommer.toml").unwrap();
    let f = facts("inbox/partner/a.mov");
    let d = route(&c.routing, &c.catalog, &outs(&["mp4-720p"]), &f);
    // 2 minutes of hd: fleet 0.008, ecom 0.006
    assert_eq!(d.estimates["fleet"], 0.008);
    assert_eq!(d.estimates["ecom"], 0.006);
    assert_eq!(d.estimated_cost_usd, Some(0.006));
    assert!(d.reason.contains("partner folder"), "{}", d.reason);
    let d = route(&c.routing, &c.catalog, &outs(&["sprite"]), &f);
    assert!(
        d.reason.contains("passed over") && d.reason.contains("ecom"),
        "{}",
        d.reason
    );
    assert!(d.unable["ecom"].contains("sprite"), "{:?}", d.unable);
    let mut unknown = f.clone();
    unknown.duration_seconds = None;
    let d = route(&c.routing, &c.catalog, &outs(&["mp4-720p"]), &unknown);
    assert_eq!(d.estimated_cost_usd, None, "no duration, no estimate");
    // a ladder prices each rung the source can fill, plus audio
    let hls = route(&c.routing, &c.catalog, &outs(&["hls"]), &f);
    assert!(hls.estimates["fleet"] > d.estimates["fleet"], "{:?}", hls.estimates);
    // outputs made by VMAF add their trial encodes: a per-title ladder 3 trials of 6 s
    // a rung, a VMAF target 4 of 6 s; 2 minutes of source
    let auto = route(&c.routing, &c.catalog, &outs(&["hls-auto"]), &f);
    let (fixed, shaped) = (hls.estimates["fleet"], auto.estimates["fleet"]);
    let audio = 0.0005 * 2.0;
    let want = audio + (fixed - audio) * (2.0 + 3.0 * 0.1) / 2.0;
    assert!(
        (shaped - want).abs() < 1e-5,
        "{shaped} against {want}: {:?}",
        auto.estimates
    );
    let mp4 = route(&c.routing, &c.catalog, &outs(&["mp4-1080p"]), &f).estimates["fleet"];
    let searched = route(&c.routing, &c.catalog, &outs(&["mp4-auto"]), &f).estimates["fleet"];
    assert!(
        (searched - mp4 * (2.0 + 4.0 * 0.1) / 2.0).abs() < 1e-5,
        "{searched} against {mp4}"
    );
}

#[test]
fn a_probed_height_is_the_short_side() {
    use crate::job::{Probe, ProbeStream};
    let p = |w, h, rotation| Probe {
        streams: vec![ProbeStream {
            kind: crate::job::StreamKind::Video,
            width: Some(w),
            height: Some(h),
            rotation,
            ..Default::default()
        }],
        ..Probe::default()
    };
    assert_eq!(
        crate::presets::short_side(&p(720, 1280, None)),
        Some(720),
        "portrait is 720p"
    );
    assert_eq!(crate::presets::short_side(&p(1280, 720, Some(90))), Some(720));
    assert_eq!(crate::presets::short_side(&p(1920, 1080, None)), Some(1080));
    // a portrait SD clip (480x854) is a short clip of at most 480 lines
    let c = Config::parse(CONFIG, "nommer.toml").unwrap();
    let mut f = facts("inbox/a.mov");
    f.duration_seconds = Some(30.0);
    f.height = crate::presets::short_side(&p(480, 854, None));
    let d = route(&c.routing, &c.catalog, &outs(&["mp4-720p"]), &f);
    assert_eq!(d.rule.as_deref(), Some("short clips"), "{}", d.reason);
}

#[test]
fn no_config_means_everything_to_the_fleet() {
    let c = Config::default();
    let d = route(&c.routing, &c.catalog, &outs(&["sprite", "hls"]), &facts("inbox/a.mov"));
    assert_eq!(d.backend, DEFAULT_BACKEND);
    assert_eq!(d.rule, None);
}

#[test]
fn bad_routing_config_names_the_line_and_the_problem() {
    let cases = [
        ("[backends.a]\nkind = \"ffmpeg\"\n\n[routing]\ndefault = \"b\"\n", "line 5", "routing.default `b`"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[backends.e]\nkind = \"encodingcom\"\nfallback = \"z\"\n[routing]\ndefault = \"a\"\n", "line 3", "fallback `z`"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[routing]\ndefault = \"a\"\n[[routing.rules]]\nname = \"r1\"\nbackend = \"x\"\n", "line 6", "backend `x`"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[routing]\ndefault = \"a\"\n[[routing.rules]]\nname = \"r1\"\nbackend = \"a\"\nmatch = { presets = [\"nope\"] }\n", "line 6", "`nope` is not a preset"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[routing]\ndefault = \"a\"\n[[routing.rules]]\nname = \"r1\"\nbackend = \"a\"\nmatch = { key_prefx = \"x\" }\n", "line 8", "key_prefx"),
        ("[backends.a]\nkind = \"gpu\"\n", "line 2", "gpu"),
        ("[backends.a]\nkind = \"ffmpeg\"\nprices = { hd = -1.0 }\n", "line 1", "prices.hd"),
        ("[backends.a]\nkind = \"ffmpeg\"\nsecret = \"s\"\n", "line 1", "encodingcom"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[backends.b]\nkind = \"ffmpeg\"\n", "line 1", "default is required"),
        ("[routing]\ndefault = \"a\"\n", "line 1", "[backends.<name>]"),
        ("[backends.a]\nkind = \"encodingcom\"\nfallback = \"b\"\n[backends.b]\nkind = \"encodingcom\"\nfallback = \"a\"\n[routing]\ndefault = \"a\"\n", "line 1", "cycle"),
        ("[backends.a]\nkind = \"ffmpeg\"\n[routing]\ndefault = \"a\"\n[[routing.rules]]\nname = \"r1\"\nbackend = \"a\"\nmatch = { min_height = 900, max_height = 100 }\n", "line 6", "min_height"),
    ];
    for (text, line, what) in cases {
        let e = Config::parse(text, "bad.toml").unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains(line) && e.contains(what),
            "{text}\n→ {e}"
        );
    }
}
