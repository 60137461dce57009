//! The allow list for per-pass FFmpeg options (media-nommer parity): each flag with the
//! values it may take. Anything else is refused before it reaches FFmpeg.

use crate::job::PassOptions;

/// At most this many passes, and options per list.
pub const MAX_PASSES: usize = 2;
pub const MAX_OPTIONS: usize = 16;

enum Value {
    OneOf(&'static [&'static str]),
    Int(i64, i64),
    Num(f64, f64),
    /// An integer followed by `k` (kbit/s), within a range.
    Kbps(u32, u32),
    /// `N:M`
    Ratio,
    /// `key=value`, key from the list, value plain text
    Metadata(&'static [&'static str]),
}

const INPUT: &[(&str, Value)] = &[
    ("-r", Value::Num(1.0, 240.0)),
    ("-itsoffset", Value::Num(-3600.0, 3600.0)),
];

const OUTPUT: &[(&str, Value)] = &[
    (
        "-tune",
        Value::OneOf(&[
            "film",
            "animation",
            "grain",
            "stillimage",
            "fastdecode",
            "zerolatency",
            "psnr",
            "ssim",
        ]),
    ),
    (
        "-profile:v",
        Value::OneOf(&["baseline", "main", "high", "high10", "main10"]),
    ),
    (
        "-level",
        Value::OneOf(&["3.0", "3.1", "4.0", "4.1", "4.2", "5.0", "5.1", "5.2"]),
    ),
    (
        "-preset",
        Value::OneOf(&[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ]),
    ),
    ("-g", Value::Int(1, 1000)),
    ("-keyint_min", Value::Int(1, 1000)),
    ("-bf", Value::Int(0, 16)),
    ("-refs", Value::Int(1, 16)),
    ("-sc_threshold", Value::Int(0, 100)),
    (
        "-pix_fmt",
        Value::OneOf(&["yuv420p", "yuv420p10le", "yuv422p", "yuv444p"]),
    ),
    ("-ac", Value::Int(1, 8)),
    (
        "-ar",
        Value::OneOf(&["8000", "11025", "16000", "22050", "32000", "44100", "48000", "96000"]),
    ),
    ("-b:a", Value::Kbps(8, 1024)),
    ("-maxrate", Value::Kbps(50, 200_000)),
    ("-bufsize", Value::Kbps(50, 400_000)),
    ("-aspect", Value::Ratio),
    (
        "-metadata",
        Value::Metadata(&["title", "artist", "album", "comment", "copyright", "description"]),
    ),
];

fn check_value(v: &Value, s: &str) -> Result<(), String> {
    let ok = match v {
        Value::OneOf(list) => list.contains(&s),
        Value::Int(lo, hi) => s.parse::<i64>().map(|n| (*lo..=*hi).contains(&n)).unwrap_or(false),
        Value::Num(lo, hi) => s
            .parse::<f64>()
            .map(|n| n.is_finite() && (*lo..=*hi).contains(&n))
            .unwrap_or(false),
        Value::Kbps(lo, hi) => s
            .strip_suffix('k')
            .and_then(|n| n.parse::<u32>().ok())
            .map(|n| (*lo..=*hi).contains(&n))
            .unwrap_or(false),
        Value::Ratio => s
            .split_once(':')
            .map(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|x| x.parse::<u32>().map(|n| (1..=10_000).contains(&n)).unwrap_or(false))
            })
            .unwrap_or(false),
        Value::Metadata(keys) => s
            .split_once('=')
            .map(|(k, val)| keys.contains(&k) && val.len() <= 256 && val.chars().all(|c| !c.is_control()))
            .unwrap_or(false),
    };
    if ok {
        return Ok(());
    }
    Err(match v {
        Value::OneOf(list) => format!("`{s}` is not one of {}", list.join(", ")),
        Value::Int(lo, hi) => format!("`{s}` is not an integer within {lo}-{hi}"),
        Value::Num(lo, hi) => format!("`{s}` is not a number within {lo}-{hi}"),
        Value::Kbps(lo, hi) => format!("`{s}` is not a rate like 128k within {lo}k-{hi}k"),
        Value::Ratio => format!("`{s}` is not a ratio like 16:9"),
        Value::Metadata(keys) => format!("`{s}` is not key=value with a key among {}", keys.join(", ")),
    })
}

fn check_list(list: &[String], allowed: &[(&str, Value)], where_: &str) -> Result<(), (String, String)> {
    if list.len() > MAX_OPTIONS * 2 {
        return Err((where_.to_string(), format!("at most {MAX_OPTIONS} options")));
    }
    let mut i = 0;
    while i < list.len() {
        let flag = &list[i];
        let field = format!("{where_}[{i}]");
        let Some((_, v)) = allowed.iter().find(|(f, _)| f == flag) else {
            let names: Vec<&str> = allowed.iter().map(|(f, _)| *f).collect();
            return Err((
                field,
                format!("`{flag}` is not an allowed option here; allowed: {}", names.join(" ")),
            ));
        };
        let Some(value) = list.get(i + 1) else {
            return Err((field, format!("`{flag}` needs a value")));
        };
        check_value(v, value).map_err(|m| (format!("{where_}[{}]", i + 1), format!("{flag}: {m}")))?;
        i += 2;
    }
    Ok(())
}

/// Checks the per-pass options; the error names the offending element
/// (`advanced[0].output[2]`) and says what is allowed.
pub fn check(passes: &[PassOptions]) -> Result<(), (String, String)> {
    if passes.len() > MAX_PASSES {
        return Err(("advanced".into(), format!("at most {MAX_PASSES} passes")));
    }
    for (n, p) in passes.iter().enumerate() {
        check_list(&p.input, INPUT, &format!("advanced[{n}].input"))?;
        check_list(&p.output, OUTPUT, &format!("advanced[{n}].output"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(input: &[&str], output: &[&str]) -> Vec<PassOptions> {
        vec![PassOptions {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: output.iter().map(|s| s.to_string()).collect(),
        }]
    }

    #[test]
    fn allowed_options_pass() {
        assert_eq!(
            check(&pass(
                &["-r", "25"],
                &[
                    "-tune",
                    "film",
                    "-g",
                    "50",
                    "-b:a",
                    "96k",
                    "-metadata",
                    "title=My film",
                    "-aspect",
                    "16:9"
                ]
            )),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_element_named() {
        let e = check(&pass(&[], &["-vf", "movie=/etc/passwd"])).unwrap_err();
        assert_eq!(e.0, "advanced[0].output[0]");
        assert!(e.1.contains("`-vf` is not an allowed option"));
        let e = check(&pass(&["-i", "http://x"], &[])).unwrap_err();
        assert_eq!(e.0, "advanced[0].input[0]");
        let e = check(&pass(&[], &["-g", "50; rm -rf /"])).unwrap_err();
        assert_eq!(e.0, "advanced[0].output[1]");
        assert!(e.1.contains("integer"));
        let e = check(&pass(&[], &["-tune"])).unwrap_err();
        assert!(e.1.contains("needs a value"));
        let e = check(&pass(&[], &["-metadata", "comment=a\nb"])).unwrap_err();
        assert!(e.1.contains("key=value"));
        let e = check(&pass(&[], &["-b:a", "99999k"])).unwrap_err();
        assert!(e.1.contains("8k-1024k"));
        let three = vec![PassOptions::default(), PassOptions::default(), PassOptions::default()];
        assert_eq!(check(&three).unwrap_err().0, "advanced");
    }
}
