//! Encoding.com: the notify callback's form (shared/encodingcom/src/client.rs
//! `parse_notify`), its status answers (`parse_media`, `errors_of`, `Status::parse`) and
//! the destinations they name (formats.rs `parse_destination`, `destination_params`).

use crate::gen::{any_json, broken_json, config, cut_at, odd_text};
use nommer_encodingcom::{destination_params, errors_of, parse_destination, parse_media, parse_notify, Status};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use serde_json::{json, Value};

const XML: &str = "<?xml version=\"1.0\"?>\n<result>\n <mediaid>1234</mediaid>\n <source>https://x/y</source>\n <status>Finished</status>\n <format><output>mp4</output><destination>https://b.s3.amazonaws.com/k.mp4</destination><status>Finished</status></format>\n</result>";

fn status_answer() -> Value {
    json!({"id": "77", "status": "Processing", "progress": "41.5", "description": "",
        "errors": {"error": ["late"]},
        "format": [{"output": "mp4", "status": "Processing", "destination": ["https://b.s3.amazonaws.com/j1/a.mp4?acl=public-read"]},
                   {"output": "thumbnail", "status": "New", "destination": "s3://b/j1/t.jpg", "description": "slow"}]})
}

/// The documented XML notification, cut short or with an odd media id.
fn xml_notification() -> impl Strategy<Value = String> {
    (any::<u16>(), odd_text()).prop_map(|(cut, odd)| {
        let x = cut_at(XML, cut as usize);
        if cut % 3 == 0 {
            x.replace("1234", &odd)
        } else {
            x
        }
    })
}

/// A notify body: a form with a `json` or `xml` field (its value broken or not), or the
/// document bare, or bytes.
fn notify_body() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    let ct = prop_oneof![
        Just(None),
        Just(Some("application/x-www-form-urlencoded".to_string())),
        Just(Some("application/json".to_string())),
        Just(Some("text/xml".to_string())),
        odd_text().prop_map(Some),
    ];
    let json_field = || broken_json(json!({"result": {"mediaid": "1234", "status": "Finished"}}));
    let body = prop_oneof![
        json_field().prop_map(|j: String| format!("json={}", utf8_percent_encode(&j, NON_ALPHANUMERIC)).into_bytes()),
        xml_notification()
            .prop_map(|x: String| format!("xml={}&x=1", utf8_percent_encode(&x, NON_ALPHANUMERIC)).into_bytes()),
        json_field().prop_map(String::into_bytes),
        xml_notification().prop_map(String::into_bytes),
        odd_text().prop_map(|t| format!("json={t}&xml={t}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    (ct, body)
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn notifications_give_a_media_id_or_say_why((ct, body) in notify_body()) {
        if let Err(e) = parse_notify(ct.as_deref(), &body) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn xml_notifications_give_a_plain_id_or_none(x in xml_notification(), form in any::<bool>()) {
        let body = if form { format!("xml={}", utf8_percent_encode(&x, NON_ALPHANUMERIC)) } else { x.clone() };
        let ct = if form { None } else { Some("text/xml") };
        match parse_notify(ct, body.as_bytes()) {
            // the XML's id is checked here (a JSON one by the callback route)
            Ok(id) => prop_assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{:?}", id),
            Err(e) => prop_assert!(e.contains("<mediaid>"), "{}", e),
        }
    }

    #[test]
    fn status_answers_are_read_or_refused(doc in broken_json(status_answer())) {
        let Ok(v) = serde_json::from_str::<Value>(&doc) else { return Ok(()) };
        let _ = errors_of(&v);
        match parse_media(&v) {
            Ok(m) => {
                prop_assert!(v.get("id").or(v.get("mediaid")).or(v.get("MediaID")).is_some());
                // whatever progress says, ours is within 0-100
                if let Some((_, pct)) = m.status.ours(m.progress) {
                    prop_assert!(pct <= 100);
                }
                for f in &m.formats {
                    for d in &f.destinations {
                        let _ = parse_destination(d);
                        let _ = destination_params(d);
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("cannot be read")),
        }
    }

    #[test]
    fn any_json_answer_is_read_or_refused(v in any_json()) {
        let _ = errors_of(&v);
        let _ = parse_media(&v);
    }

    #[test]
    fn status_words_fold_and_keep_their_text(w in odd_text()) {
        let s = Status::parse(&w);
        if let Status::Other(t) = &s {
            prop_assert_eq!(t.as_str(), w.trim());
            prop_assert_eq!(s.ours(50.0), None);
        } else {
            // a known word reads back as itself
            prop_assert_eq!(Status::parse(s.as_str()), s);
        }
    }

    #[test]
    fn destinations_read_back_or_are_refused(d in prop_oneof![
        odd_text(),
        (odd_text(), odd_text()).prop_map(|(k, q)| format!("https://b.s3.amazonaws.com/{k}?{q}")),
        odd_text().prop_map(|k| format!("s3://bucket/{k}")),
    ]) {
        if let Some(u) = parse_destination(&d) {
            prop_assert!(nommer_core::S3Uri::parse(&u.to_string()).is_ok());
        }
        let _ = destination_params(&d);
    }
}

#[test]
fn known_notifications_give_their_id() {
    let form = format!("xml={}", utf8_percent_encode(XML, NON_ALPHANUMERIC));
    assert_eq!(parse_notify(None, form.as_bytes()).unwrap(), "1234");
    assert_eq!(parse_notify(Some("text/xml"), XML.as_bytes()).unwrap(), "1234");
    assert_eq!(
        parse_notify(Some("application/json"), br#"{"result":{"mediaid":99}}"#).unwrap(),
        "99"
    );
    assert!(parse_notify(None, b"\xff\xfe").unwrap_err().contains("UTF-8"));
    assert!(parse_notify(None, b"xml=%3Cmediaid%3E")
        .unwrap_err()
        .contains("<mediaid>"));
}
