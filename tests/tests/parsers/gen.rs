//! Generators of hostile input: well-shaped documents with one part broken (a field
//! replaced, dropped or added, the text cut short), plus odd text of every kind. A parser
//! sees mostly almost-right input this way, which reaches deeper than random bytes.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The cases each parser gets: thousands, yet the whole suite stays well under a minute
/// in a debug build.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // the generators are shallow; shrinking long inputs only wastes CI time
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

/// Text that trips parsers: unicode of every plane, controls, escapes, huge and odd
/// numbers, separators the parsers split on.
pub fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[\\PC]{0,20}",
        Just(String::new()),
        Just("\u{feff}\u{0}\u{202e}é\u{1F600}".to_string()),
        Just("99999999999999999999999999999".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1e999".to_string()),
        Just("NaN".to_string()),
        Just("-0".to_string()),
        Just("%ZZ%%e9%C3%28+&=#".to_string()),
        Just("../../../etc/passwd".to_string()),
        Just("s3://".to_string()),
        Just("j".repeat(33)),
        (0usize..5000).prop_map(|n| "a".repeat(n)),
    ]
}

/// Numbers at and past the edges of every integer and float type.
pub fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u32::MAX as u64 + 1)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-1e-308)),
    ]
}

/// Any JSON value, a few levels deep.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        odd_number(),
        odd_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(odd_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a document.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the value at the chosen spot.
    Set(usize, Value),
    /// Drop the chosen key or element.
    Drop(usize),
    /// Add a key to the chosen object.
    Add(usize, String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(at, v)| Edit::Set(at, v)),
        any::<usize>().prop_map(Edit::Drop),
        (any::<usize>(), odd_text(), any_json()).prop_map(|(at, k, v)| Edit::Add(at, k, v)),
    ]
}

/// Every spot in a document (its path as keys and indices), the root first.
fn spots(v: &Value, here: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let mut p = here.clone();
                p.push(k.clone());
                spots(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let mut p = here.clone();
                p.push(i.to_string());
                spots(c, p, out);
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Applies the edits to a copy of `doc`.
pub fn apply(doc: &Value, edits: &[Edit]) -> Value {
    let mut doc = doc.clone();
    for e in edits {
        let mut all = Vec::new();
        spots(&doc, Vec::new(), &mut all);
        let pick = |at: usize| all[at % all.len()].clone();
        match e {
            Edit::Set(at, v) => {
                if let Some(slot) = at_mut(&mut doc, &pick(*at)) {
                    *slot = v.clone();
                }
            }
            Edit::Drop(at) => {
                let path = pick(*at);
                if let Some((last, parent)) = path.split_last() {
                    match at_mut(&mut doc, parent) {
                        Some(Value::Object(m)) => {
                            m.remove(last);
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(i) = last.parse::<usize>() {
                                if i < a.len() {
                                    a.remove(i);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Edit::Add(at, k, v) => {
                if let Some(Value::Object(m)) = at_mut(&mut doc, &pick(*at)) {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
    doc
}

/// The text of `doc` with up to three edits, sometimes cut short or wrapped in deep
/// nesting.
pub fn broken_json(doc: Value) -> impl Strategy<Value = String> {
    (prop::collection::vec(edit(), 0..4), any::<u16>(), 0u8..8).prop_map(move |(edits, cut, how)| {
        let text = apply(&doc, &edits).to_string();
        match how {
            0 => cut_at(&text, cut as usize),
            1 => format!(
                "{}{text}{}",
                "[".repeat(cut as usize % 300),
                "]".repeat(cut as usize % 300)
            ),
            2 => text.replacen(':', ":1e999,\"x\":", 1),
            _ => text,
        }
    })
}

/// `text` cut at a byte, and mended to UTF-8 where the cut split a character.
pub fn cut_at(text: &str, at: usize) -> String {
    let b = text.as_bytes();
    String::from_utf8_lossy(&b[..at % (b.len() + 1)]).into_owned()
}

/// A text document (TOML, XML, a playlist) with lines dropped, doubled, swapped for odd
/// text or cut short.
pub fn broken_lines(doc: &'static str) -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = doc.lines().collect();
    let n = lines.len();
    (
        prop::collection::vec((0..n, 0u8..4, odd_text()), 0..4),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(move |(edits, cut, cut_it)| {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            for (i, op, t) in edits {
                if out.is_empty() {
                    break;
                }
                let i = i % out.len();
                match op {
                    0 => drop(out.remove(i)),
                    1 => {
                        let line = out[i].clone();
                        out.insert(i, line)
                    }
                    2 => out[i] = t,
                    // keep the line's key, break its value
                    _ => {
                        let key = out[i].split(['=', ':']).next().unwrap_or("").to_string();
                        out[i] = format!("{key}={t}");
                    }
                }
            }
            let text = out.join("\n");
            if cut_it {
                cut_at(&text, cut as usize)
            } else {
                text
            }
        })
}

/// Random bytes, and random bytes after a plausible start.
pub fn bytes_after(start: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(any::<u8>(), 0..512).prop_map(move |tail| [start, &tail].concat()),
    ]
}
