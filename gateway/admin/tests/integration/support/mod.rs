//! Test support: a checker for the Prometheus text exposition format 0.0.4
//! and small HTTP client helpers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gateway_admin::names::{self, Kind, Scope};

/// `# HELP` and `# TYPE` of one family.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub(crate) help: Option<String>,
    pub(crate) kind: Option<String>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    /// Family the sample belongs to (name without `_bucket`/`_sum`/`_count`
    /// for histograms).
    pub(crate) family: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    pub(crate) families: BTreeMap<String, Meta>,
    pub(crate) samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
    }

    /// Samples of one series name.
    pub(crate) fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) && !text.is_empty() => {
            text.parse().map_err(|e| format!("bad value {text:?}: {e}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// `name{a="b",c="d"} value [timestamp]` → (name, labels, value).
fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
    let end = line.find(['{', ' ']).ok_or("sample without value")?;
    let name = &line[..end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // label name, or the closing brace (empty set / trailing comma)
            let start = chars.peek().map(|&(i, _)| i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..].find('=').ok_or("label without '='")? + start;
            let key = &after[start..eq];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '\n' => return Err("newline in label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => {}
                (i, '}') => {
                    rest = &after[i + 1..];
                    break;
                }
                (_, c) => return Err(format!("unexpected {c:?} after label")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before value")?;
    let mut words = rest.split(' ');
    let value = parse_value(words.next().ok_or("no value")?)?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if words.next().is_some() {
        return Err("trailing text after sample".into());
    }
    Ok((name.to_string(), labels, value))
}

/// Parses `text` and checks the format rules: HELP/TYPE syntax, at most one
/// of each per family and before its samples, every sample's family declared
/// with both, a family's lines contiguous, no duplicate series, counters
/// non-negative, histograms with `le` buckets increasing and cumulative,
/// ending in `+Inf` equal to `_count`, and a `_sum`.
pub(crate) fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("output does not end with a newline".into());
    }
    let mut expo = Exposition::default();
    let mut current: Option<String> = None;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut seen_sample: BTreeSet<String> = BTreeSet::new();
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();

    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if done.contains(family) {
                return Err(format!("lines of {family} are not contiguous"));
            }
            if let Some(previous) = current.take() {
                done.insert(previous);
            }
            *current = Some(family.to_string());
        }
        Ok(())
    };

    for (number, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = words.next().ok_or_else(|| at("no metric name".into()))?;
            if !valid_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let rest = words.next().ok_or_else(|| at(format!("{keyword} without text")))?;
            enter(name, &mut current).map_err(at)?;
            if seen_sample.contains(name) {
                return Err(at(format!("{keyword} after samples of {name}")));
            }
            let meta = expo.families.entry(name.to_string()).or_default();
            if keyword == "HELP" {
                if meta.help.is_some() {
                    return Err(at("second HELP".into()));
                }
                let mut help = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('\\') => help.push('\\'),
                            Some('n') => help.push('\n'),
                            other => return Err(at(format!("bad HELP escape {other:?}"))),
                        },
                        c => help.push(c),
                    }
                }
                meta.help = Some(help);
            } else {
                if meta.kind.is_some() {
                    return Err(at("second TYPE".into()));
                }
                if !matches!(rest, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    return Err(at(format!("unknown type {rest:?}")));
                }
                meta.kind = Some(rest.to_string());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(at)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| expo.families.get(*base).and_then(|m| m.kind.as_deref()) == Some("histogram"))
            .unwrap_or(&name)
            .to_string();
        let meta = expo.families.get(&family).ok_or_else(|| at(format!("no HELP/TYPE for {family}")))?;
        let kind = meta.kind.clone().ok_or_else(|| at(format!("no TYPE for {family}")))?;
        if meta.help.is_none() {
            return Err(at(format!("no HELP for {family}")));
        }
        if kind == "histogram" && name == family {
            return Err(at("histogram sample without _bucket/_sum/_count".into()));
        }
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        enter(&family, &mut current).map_err(at)?;
        seen_sample.insert(family.clone());
        let key = (name.clone(), labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        expo.samples.push(Sample { name, family, labels, value });
    }
    check_histograms(&expo)?;
    Ok(expo)
}

/// (`le`, cumulative count) of one bucket sample.
type Bucket = (f64, f64);

fn check_histograms(expo: &Exposition) -> Result<(), String> {
    for (family, meta) in &expo.families {
        if meta.kind.as_deref() != Some("histogram") {
            continue;
        }
        let bucket = format!("{family}_bucket");
        // Label set without `le` → (le, cumulative count) in render order.
        let mut groups: BTreeMap<Vec<(String, String)>, Vec<Bucket>> = BTreeMap::new();
        for sample in expo.series(&bucket) {
            let le = sample.labels.get("le").ok_or(format!("{bucket} without le"))?;
            let le = parse_value(le)?;
            let rest = sample.labels.iter().filter(|(k, _)| *k != "le");
            groups
                .entry(rest.map(|(k, v)| (k.clone(), v.clone())).collect())
                .or_default()
                .push((le, sample.value));
        }
        for (labels, buckets) in groups {
            for pair in buckets.windows(2) {
                if pair[0].0.partial_cmp(&pair[1].0) != Some(std::cmp::Ordering::Less) {
                    return Err(format!("{family}{labels:?}: le not increasing"));
                }
                if pair[0].1 > pair[1].1 {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
            }
            let last = buckets.last().ok_or("no buckets")?;
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: last bucket is not +Inf"));
            }
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count =
                expo.value(&format!("{family}_count"), &pairs).ok_or(format!("{family}: no _count"))?;
            if count != last.1 {
                return Err(format!("{family}{labels:?}: _count {count} != +Inf bucket {}", last.1));
            }
            expo.value(&format!("{family}_sum"), &pairs).ok_or(format!("{family}: no _sum"))?;
        }
        for suffix in ["_sum", "_count"] {
            if expo.series(&format!("{family}{suffix}")).iter().any(|s| s.labels.contains_key("le")) {
                return Err(format!("{family}{suffix} has an le label"));
            }
        }
    }
    Ok(())
}

/// Checks a parsed render against `names::ALL`: the same families, types and
/// help, every family with samples (the process family on Linux only), and
/// each sample labelled exactly as its family's label, scope and type say.
pub(crate) fn check_against_names(expo: &Exposition) {
    let rendered: BTreeSet<&str> = expo.families.keys().map(String::as_str).collect();
    let declared: BTreeSet<&str> = names::ALL.iter().map(|f| f.name).collect();
    assert_eq!(rendered, declared, "rendered families differ from names::ALL");
    for family in names::ALL {
        let meta = &expo.families[family.name];
        assert_eq!(meta.kind.as_deref(), Some(family.kind.as_str()), "{}", family.name);
        assert_eq!(meta.help.as_deref(), Some(family.help), "{}", family.name);
        let samples: Vec<&Sample> = expo.samples.iter().filter(|s| s.family == family.name).collect();
        if family.scope != Scope::Process || cfg!(target_os = "linux") {
            assert!(!samples.is_empty(), "no samples for {}", family.name);
        }
        for sample in samples {
            let mut want: BTreeSet<&str> = family.label.into_iter().collect();
            if family.scope == Scope::PerWorker {
                want.insert("worker");
            }
            if family.kind == Kind::Histogram && sample.name.ends_with("_bucket") {
                want.insert("le");
            }
            let got: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "labels of {}", sample.name);
        }
    }
}

/// Sends `request` as is and reads the whole response (the server closes).
/// Returns (status, head, body).
pub(crate) fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    split_response(&response)
}

/// `GET path` with the usual headers.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n"))
}

pub(crate) fn split_response(response: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8(response.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head end in {text:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}
