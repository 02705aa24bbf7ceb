//! One YAML document decoded the way kubectl decodes it, into the JSON the API server receives.
//!
//! kubectl turns YAML into JSON with sigs.k8s.io/yaml, whose parser (a fork of go-yaml v2)
//! resolves plain scalars by YAML 1.1's rules: `on`, `yes`, `y` are `true` and `off`, `no`, `n`
//! `false`; `0755` is an octal integer; `<<` merges mappings. A YAML 1.2 reader sees strings in
//! the first, so `privileged: on` would read as "not true" and pass a check that kubectl's cluster
//! fails: a bypass. Quoted scalars, block scalars and `!!str` stay strings, as they do for kubectl.
//! Mapping keys become strings the way sigs.k8s.io/yaml writes them (`true`, `1`, `null`).

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Why a document could not be decoded, with the 1-based line in the text given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub line: usize,
    pub message: String,
}

/// A node being built: a sequence, or a mapping waiting for its next key or value.
enum Frame {
    Sequence {
        anchor: usize,
        items: Vec<Value>,
    },
    Mapping {
        anchor: usize,
        entries: Map<String, Value>,
        /// Merged-in entries (`<<`), applied at the end so explicit keys win wherever they are.
        merged: Vec<Map<String, Value>>,
        /// The key read, waiting for its value; `None` between entries.
        key: Option<Key>,
    },
}

enum Key {
    Plain(String),
    Merge,
}

/// Decodes one YAML document (no `---` inside). An empty or comment-only text is `Null`.
pub fn decode(text: &str) -> Result<Value, DecodeError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: Vec<Option<Value>> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Value> = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|error| DecodeError {
            line: error.marker().line().max(1),
            message: error.info().to_owned(),
        })?;
        let finished = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {
                continue;
            }
            Event::Alias(id) => match anchors.get(id).cloned().flatten() {
                Some(value) => value,
                None => return Err(error_at(mark, "an alias to an unknown anchor")),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let is_merge_key = style == TScalarStyle::Plain
                    && tag.is_none()
                    && text == "<<"
                    && matches!(stack.last(), Some(Frame::Mapping { key: None, .. }));
                if is_merge_key {
                    if let Some(Frame::Mapping { key, .. }) = stack.last_mut() {
                        *key = Some(Key::Merge);
                    }
                    continue;
                }
                let value = resolve(text, style, tag.as_ref());
                remember(&mut anchors, anchor, &value);
                value
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Sequence {
                    anchor,
                    items: Vec::new(),
                });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Mapping {
                    anchor,
                    entries: Map::new(),
                    merged: Vec::new(),
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Sequence { anchor, items }) => {
                    let value = Value::Array(items);
                    remember(&mut anchors, anchor, &value);
                    value
                }
                _ => return Err(error_at(mark, "unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Mapping {
                    anchor,
                    mut entries,
                    merged,
                    ..
                }) => {
                    for map in merged {
                        for (key, value) in map {
                            entries.entry(key).or_insert(value);
                        }
                    }
                    let value = Value::Object(entries);
                    remember(&mut anchors, anchor, &value);
                    value
                }
                _ => return Err(error_at(mark, "unbalanced mapping")),
            },
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return Err(error_at(mark, "more than one document"));
                }
                root = Some(finished);
            }
            Some(Frame::Sequence { items, .. }) => items.push(finished),
            Some(Frame::Mapping {
                entries,
                merged,
                key,
                ..
            }) => match key.take() {
                None => match key_text(&finished) {
                    Some(text) => *key = Some(Key::Plain(text)),
                    // sigs.k8s.io/yaml refuses these too; in a template it is `{{ ... }}` unrendered.
                    None => return Err(error_at(mark, "a mapping or list used as a mapping key")),
                },
                Some(Key::Plain(name)) => {
                    // A repeated key: the later value wins, as for kubectl.
                    entries.insert(name, finished);
                }
                Some(Key::Merge) => merge_into(merged, finished, mark)?,
            },
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

fn error_at(mark: Marker, message: &str) -> DecodeError {
    DecodeError {
        line: mark.line().max(1),
        message: message.to_owned(),
    }
}

fn remember(anchors: &mut Vec<Option<Value>>, anchor: usize, value: &Value) {
    if anchor == 0 {
        return;
    }
    if anchors.len() <= anchor {
        anchors.resize(anchor + 1, None);
    }
    anchors[anchor] = Some(value.clone());
}

/// `<<: *map` or `<<: [*a, *b]`; earlier mappings of a list win over later ones.
fn merge_into(
    merged: &mut Vec<Map<String, Value>>,
    value: Value,
    mark: Marker,
) -> Result<(), DecodeError> {
    match value {
        Value::Object(map) => merged.push(map),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(map) => merged.push(map),
                    _ => return Err(error_at(mark, "a merge key (<<) takes mappings only")),
                }
            }
        }
        _ => {
            return Err(error_at(
                mark,
                "a merge key (<<) takes a mapping or a list of them",
            ));
        }
    }
    Ok(())
}

/// A key as sigs.k8s.io/yaml writes it into JSON; `None` for a mapping or list, which it refuses.
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(text) => Some(text.clone()),
        Value::Null => Some("null".to_owned()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

/// A scalar's value: plain scalars by YAML 1.1's resolution, everything else a string.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
        match (core, tag.suffix.as_str()) {
            (true, "str" | "binary") => return Value::String(text),
            (true, "null") => return Value::Null,
            (true, "bool" | "int" | "float") => {}
            // A local tag (`!foo`) does not change how kubectl reads the value.
            _ => {}
        }
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    resolve_plain(text)
}

fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    let starts_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if !starts_numeric {
        return Value::String(text);
    }
    let plain = text.replace('_', "");
    if let Some(number) = integer(&plain) {
        return Value::Number(number);
    }
    if is_float_syntax(&plain)
        && let Ok(float) = plain.parse::<f64>()
    {
        // Go writes an integral float64 as an integer (`8`, not `8.0`), so the API server reads
        // `08` or `1e3` into an integer field; keep that.
        #[allow(clippy::cast_possible_truncation)]
        let whole = float as i64;
        #[allow(clippy::cast_precision_loss)]
        let integral = float.fract() == 0.0 && float.abs() < 9.0e15 && whole as f64 == float;
        if integral {
            return Value::Number(Number::from(whole));
        }
        if let Some(number) = Number::from_f64(float) {
            return Value::Number(number);
        }
    }
    // `.inf` and `.nan` have no JSON form; neither does a timestamp. They stay text.
    Value::String(text)
}

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` reads one (then unsigned): decimal, `0x`
/// hexadecimal, `0o` or leading-zero octal, `0b` binary, with an optional sign.
fn integer(text: &str) -> Option<Number> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        (2, binary)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        let value = i64::try_from(magnitude)
            .ok()
            .map(|v| -v)
            .or_else(|| (magnitude == 1u64 << 63).then_some(i64::MIN))?;
        Some(Number::from(value))
    } else {
        Some(Number::from(magnitude))
    }
}

/// go-yaml's float syntax: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_float_syntax(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(index) => (&body[..index], Some(&body[index + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            whole.chars().all(|c| c.is_ascii_digit())
                && fraction.chars().all(|c| c.is_ascii_digit())
                && (!whole.is_empty() || !fraction.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_1_1_booleans_are_booleans_unless_quoted() {
        let value = decode(
            "a: on\nb: yes\nc: Off\nd: n\ne: \"on\"\nf: 'yes'\ng: !!str on\nh: true\ni: |\n  on\n",
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"a": true, "b": true, "c": false, "d": false, "e": "on", "f": "yes",
                   "g": "on", "h": true, "i": "on\n"})
        );
    }

    #[test]
    fn numbers_follow_go_yaml_v2() {
        let value = decode(
            "a: 0755\nb: 0x1F\nc: 1_000\nd: -3\ne: 1.5\nf: .inf\ng: 1.2.3\nh: 0o17\ni: 08\n",
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"a": 493, "b": 31, "c": 1000, "d": -3, "e": 1.5, "f": ".inf",
                   "g": "1.2.3", "h": 15, "i": 8})
        );
    }

    #[test]
    fn merge_keys_merge_and_explicit_keys_win() {
        let text = "\
base: &secure
  privileged: false
  runAsNonRoot: true
other: &more
  readOnlyRootFilesystem: true
  privileged: true
ctx:
  privileged: true
  <<: [*secure, *more]
";
        let value = decode(text).unwrap();
        assert_eq!(
            value["ctx"],
            json!({"privileged": true, "runAsNonRoot": true, "readOnlyRootFilesystem": true})
        );
        let value = decode("a: &x {k: 1}\nb:\n  <<: *x\n").unwrap();
        assert_eq!(value["b"], json!({"k": 1}));
    }

    #[test]
    fn keys_become_strings_as_sigs_yaml_writes_them() {
        let value = decode("on: push\n1: one\n~: nothing\n\"on\": quoted\n").unwrap();
        assert_eq!(
            value,
            json!({"true": "push", "1": "one", "null": "nothing", "on": "quoted"})
        );
    }

    #[test]
    fn a_syntax_error_has_its_line() {
        let error = decode("a: 1\nb:\n  c: [unclosed\n").unwrap_err();
        assert!((3..=4).contains(&error.line), "{error:?}");
        let error = decode("a: *nowhere\n").unwrap_err();
        assert_eq!(error.line, 1, "{error:?}");
        let error = decode("a: 1\nname: {{ .Release.Name }}\n").unwrap_err();
        assert_eq!(error.line, 2, "{error:?}");
    }

    #[test]
    fn an_empty_document_is_null_and_a_list_is_a_list() {
        assert_eq!(decode("# only a comment\n").unwrap(), Value::Null);
        assert_eq!(
            decode("- op: add\n  path: /x\n").unwrap(),
            json!([{"op": "add", "path": "/x"}])
        );
    }
}
