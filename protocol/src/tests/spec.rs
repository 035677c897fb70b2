//! SPEC.md and the code agree: frame catalogue, field lists, error codes, close
//! codes, limits, decode errors, the JSON keys of nested records, and the
//! worked examples (which must also be vectors). The SPEC's tables are parsed,
//! not copied.

use std::collections::BTreeMap;

use crate::codes::{CloseCode, ErrorCode, Resume, Retry};
use crate::error::DecodeError;
use crate::frames::FrameKind;
use crate::limits;

const SPEC: &str = include_str!("../../SPEC.md");

/// Body text of the section whose heading starts with `heading`, up to the next
/// heading of the same or a higher level.
fn section(heading: &str) -> &'static str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = SPEC.find(&format!("\n{heading}")).unwrap_or_else(|| panic!("no section {heading}"));
    let body = &SPEC[start + 1..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body
        .match_indices("\n#")
        .find(|(i, _)| body[i + 1..].chars().take_while(|&c| c == '#').count() <= level)
        .map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// Cells of the data rows of the first table in `text`.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            line.trim_matches('|').split('|').map(|cell| cell.trim().trim_matches('`').to_owned()).collect()
        })
        .collect()
}

#[test]
fn frame_catalogue_matches_the_code() {
    let rows = table(section("## 8. Frame catalogue"));
    let spec: Vec<(String, String, String)> =
        rows.into_iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone())).collect();
    let code: Vec<(String, String, String)> = FrameKind::ALL
        .iter()
        .map(|k| (format!("0x{:02x}", k.tag()), k.name().to_owned(), k.direction().spec().to_owned()))
        .collect();
    assert_eq!(spec, code);
}

#[test]
fn every_frame_section_lists_the_fields_in_wire_order() {
    for kind in FrameKind::ALL {
        let heading = format!("### 0x{:02x} {}", kind.tag(), kind.name());
        let rows = table(section(&heading));
        let fields: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(fields, kind.fields(), "{heading}");
        let numbers: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
        let expected: Vec<String> = (1..=rows.len()).map(|i| i.to_string()).collect();
        assert_eq!(numbers, expected, "{heading} numbering");
    }
    // And no section for a kind that does not exist.
    let sections = SPEC.lines().filter(|l| l.starts_with("### 0x")).count();
    assert_eq!(sections, FrameKind::ALL.len());
}

/// Rows `| code | NAME | class | ... |` of a code table, against the code's list.
fn check_code_table(heading: &str, known: Vec<(u16, &str, &str)>) {
    let spec: Vec<(u16, String, String)> = table(section(heading))
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone(), r[2].clone()))
        .collect();
    let code: Vec<(u16, String, String)> =
        known.into_iter().map(|(c, name, class)| (c, name.to_owned(), class.to_owned())).collect();
    assert_eq!(spec, code, "{heading}");
}

#[test]
fn error_codes_match_the_code() {
    let known = ErrorCode::KNOWN.iter().map(|(c, name, retry)| {
        let class = match retry {
            Retry::Retryable => "retryable",
            Retry::Terminal => "terminal",
            Retry::NewToken => "new token",
        };
        (c.0, *name, class)
    });
    check_code_table("## 10. Error codes", known.collect());
}

#[test]
fn close_codes_match_the_code() {
    let known = CloseCode::KNOWN.iter().map(|(c, name, resume)| {
        let action = match resume {
            Resume::Resumable => "resumable",
            Resume::Terminal => "terminal",
            Resume::NewToken => "new token",
        };
        (c.0, *name, action)
    });
    check_code_table("## 11. Close codes", known.collect());
}

#[test]
fn limits_match_the_code() {
    let spec: Vec<(String, usize)> = table(section("## 12. Limits"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].replace(',', "").parse().unwrap()))
        .collect();
    let code: Vec<(String, usize)> = limits::ALL.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
    assert_eq!(spec, code);
}

#[test]
fn decode_errors_match_the_code() {
    let spec: Vec<String> =
        table(section("## 13. Decode errors")).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(spec, DecodeError::NAMES);
}

/// `<!-- vector: NAME -->` followed by a fenced block of hex.
fn examples() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = SPEC;
    while let Some(at) = rest.find("<!-- vector: ") {
        rest = &rest[at + "<!-- vector: ".len()..];
        let name = rest[..rest.find(" -->").unwrap()].to_owned();
        let fence = rest.find("```").unwrap();
        let block = &rest[fence + 3..];
        let block = &block[block.find('\n').unwrap() + 1..];
        let hex: String = block[..block.find("```").unwrap()].split_whitespace().collect();
        out.insert(name, hex);
    }
    out
}

#[test]
fn worked_examples_are_vectors() {
    let vectors = super::vectors::load();
    let frames: BTreeMap<&str, &str> = vectors["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["hex"].as_str().unwrap()))
        .collect();
    let malformed: BTreeMap<&str, &str> = vectors["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["hex"].as_str().unwrap()))
        .collect();
    let examples = examples();
    let decodable = examples.keys().filter(|name| frames.contains_key(name.as_str())).count();
    assert!(decodable >= 5, "SPEC must show at least five frame kinds, has {decodable}");
    for (name, hex) in &examples {
        match (frames.get(name.as_str()), malformed.get(name.as_str())) {
            (Some(vector), _) => {
                assert_eq!(hex, vector, "example {name} differs from its vector");
                super::vectors::decode_all(hex).unwrap_or_else(|e| panic!("example {name}: {e}"));
            }
            (None, Some(vector)) => {
                assert_eq!(hex, vector, "example {name} differs from its vector");
                assert!(super::vectors::decode_all(hex).is_err(), "malformed example {name} decodes");
            }
            (None, None) => panic!("example {name} is not in vectors.json"),
        }
    }
}

#[test]
fn nested_record_keys_match_the_code() {
    use crate::json::Json;
    use crate::types::{Blob, ConvSeq, Conversation, DeviceId, MessageId, Role, Seq, Timestamp, UserId};
    use crate::{Deliver, DeviceBundle, Header, Member, Note, OneTimePrekey, SignedPrekey};

    let signed = SignedPrekey { id: 1, key: Blob::default(), signature: Blob::default() };
    let one_time = OneTimePrekey { id: 2, key: Blob::default() };
    let bundle = DeviceBundle {
        device: DeviceId(1),
        identity_key: Blob::default(),
        signed_prekey: signed.clone(),
        one_time: Some(one_time.clone()),
    };
    let deliver = Deliver {
        seq: Seq(1),
        message_id: MessageId(1),
        conversation: Conversation::Direct(UserId(1)),
        conv_seq: ConvSeq(1),
        sender: UserId(1),
        sender_device: DeviceId(1),
        server_time: Timestamp(1),
        payload: Blob::default(),
    };
    let code: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("member", Member { user: UserId(1), role: Role::Admin }.to_json()),
        ("signed_prekey", signed.to_json()),
        ("one_time_prekey", one_time.to_json()),
        ("header", Header { name: Note::truncated("a"), value: Note::truncated("b") }.to_json()),
        ("device_bundle", bundle.to_json()),
        ("DELIVER body", deliver.to_json()),
    ]);
    let rows = table(section("## 15. Test vectors"));
    assert_eq!(rows.len(), code.len(), "one row per nested record");
    for row in rows {
        let json = code.get(row[0].as_str()).unwrap_or_else(|| panic!("no record {}", row[0]));
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut spec: Vec<&str> = row[2].split(", ").collect();
        keys.sort_unstable();
        spec.sort_unstable();
        assert_eq!(spec, keys, "JSON keys of {}", row[0]);
    }
    // DELIVER's keys are its §9 fields.
    assert_eq!(
        table(section("## 15. Test vectors")).last().unwrap()[2].split(", ").collect::<Vec<_>>(),
        FrameKind::Deliver.fields()
    );
}
