//! Reading input files into documents: multi-document YAML, JSON, `List` kinds, stdin, directories.
//!
//! Every document keeps the file it came from and the 1-based line where its content starts, so
//! findings can point at the object (SARIF locations). `List` kinds stay one document here;
//! [`crate::inputs::objects`] expands them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::InputDocument;
use crate::{Error, Result};

/// The name documents read from standard input carry as their file.
pub const STDIN_NAME: &str = "<stdin>";

/// The documents read from the given paths, and notes about what was left out and why.
#[derive(Debug, Default)]
pub struct ReadDocuments {
    pub documents: Vec<InputDocument>,
    /// For a person: files in directories that were skipped (not Kubernetes, templates, ...).
    pub notes: Vec<String>,
}

/// Reads files, directories (recursively, in name order, hidden entries skipped) and `-` (stdin).
///
/// A file named explicitly must parse and every document in it with content must be an object;
/// in a directory, files that are not YAML or JSON, unrendered templates and documents without a
/// `kind` are skipped with a note, because directories usually hold more than manifests.
pub fn read_paths(paths: &[PathBuf]) -> Result<ReadDocuments> {
    let mut read = ReadDocuments::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Io {
                    path: PathBuf::from(STDIN_NAME),
                    source,
                })?;
            read.documents.extend(parse_text(STDIN_NAME, &text)?);
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            read_dir(path, &mut read)?;
        } else {
            let text = read_text(path)?;
            read.documents
                .extend(parse_text(&path.display().to_string(), &text)?);
        }
    }
    Ok(read)
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("{}:1", path.display()), "not UTF-8 text"))
}

fn read_dir(dir: &Path, read: &mut ReadDocuments) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        // symlink_metadata: a symlinked directory is not followed, so a link loop cannot recurse forever.
        let metadata = std::fs::symlink_metadata(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            read_dir(&path, read)?;
            continue;
        }
        let is_manifest = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(is_manifest_name);
        if !is_manifest {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        add_directory_file(&path.display().to_string(), bytes, read)?;
    }
    Ok(())
}

/// Whether a file found in a directory is read as a manifest: by its extension, as kubectl does.
pub fn is_manifest_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"))
}

/// Adds the Kubernetes documents of one manifest file found in a directory, named `name` in
/// findings. Text that is not UTF-8, unrendered templates and documents without a `kind` are
/// left out with a note (a directory holds more than manifests); a syntax error is an error.
/// Shared with checks that read a folder on the node, so that they judge what a static scan would.
pub fn add_directory_file(name: &str, bytes: Vec<u8>, read: &mut ReadDocuments) -> Result<()> {
    let Ok(text) = String::from_utf8(bytes) else {
        read.notes.push(format!("{name}: skipped, not UTF-8 text"));
        return Ok(());
    };
    if text.contains("{{") {
        read.notes.push(format!(
            "{name}: skipped, an unrendered template (render it first, e.g. `helm template`)"
        ));
        return Ok(());
    }
    let documents = parse_text(name, &text)?;
    let total = documents.len();
    let kubernetes: Vec<InputDocument> = documents
        .into_iter()
        .filter(|document| document.value.get("kind").is_some_and(Value::is_string))
        .collect();
    if kubernetes.len() < total {
        read.notes.push(format!(
            "{name}: skipped {} document(s) without a `kind` (not Kubernetes objects)",
            total - kubernetes.len()
        ));
    }
    read.documents.extend(kubernetes);
    Ok(())
}

/// Parses one file's text: JSON when it starts with `{` or `[`, otherwise (multi-document) YAML.
/// Empty and comment-only documents (Helm leaves those) are dropped.
pub fn parse_text(file: &str, text: &str) -> Result<Vec<InputDocument>> {
    let trimmed = text.trim_start_matches('\u{feff}');
    let first = trimmed.trim_start();
    if first.starts_with('{') || first.starts_with('[') {
        return parse_json(file, trimmed);
    }
    let mut documents = Vec::new();
    for chunk in split_yaml_documents(trimmed) {
        let Some(content_line) = chunk.content_line else {
            continue;
        };
        let value: Value = serde_yaml::from_str(&chunk.text).map_err(|error| {
            let line = error.location().map_or(content_line, |location| {
                chunk.first_line + location.line() - 1
            });
            Error::invalid(format!("{file}:{line}"), yaml_message(&error))
        })?;
        match value {
            Value::Null => {}
            Value::Object(_) => documents.push(InputDocument {
                file: file.to_owned(),
                line: content_line,
                value,
            }),
            other => {
                return Err(Error::invalid(
                    format!("{file}:{content_line}"),
                    format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        json_type(&other)
                    ),
                ));
            }
        }
    }
    Ok(documents)
}

fn parse_json(file: &str, text: &str) -> Result<Vec<InputDocument>> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        Error::invalid(
            format!("{file}:{}:{}", error.line(), error.column()),
            format!("invalid JSON: {error}"),
        )
    })?;
    let line = text
        .lines()
        .position(|line| !line.trim().is_empty())
        .map_or(1, |index| index + 1);
    match value {
        Value::Object(_) => Ok(vec![InputDocument {
            file: file.to_owned(),
            line,
            value,
        }]),
        // A bare JSON array of objects, as some tools print them: each element is a document.
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Object(_) => Ok(InputDocument {
                    file: file.to_owned(),
                    line,
                    value: item,
                }),
                other => Err(Error::invalid(
                    format!("{file}:{line}"),
                    format!(
                        "element {index}: expected a Kubernetes object, found {}",
                        json_type(&other)
                    ),
                )),
            })
            .collect(),
        other => Err(Error::invalid(
            format!("{file}:{line}"),
            format!("expected a Kubernetes object, found {}", json_type(&other)),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// serde_yaml's message without its own " at line N column M" suffix (we print file:line first).
fn yaml_message(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    match message.find(" at line ") {
        Some(index) => format!("invalid YAML: {}", &message[..index]),
        None => format!("invalid YAML: {message}"),
    }
}

/// One YAML document's text and where it sits in the file.
#[derive(Debug)]
struct YamlChunk {
    text: String,
    /// 1-based line in the file of the chunk's first line.
    first_line: usize,
    /// 1-based line of the first line that is neither blank nor a comment; `None` when there is none.
    content_line: Option<usize>,
}

/// Splits a YAML stream at document markers (`---` and `...` at the start of a line), keeping
/// line numbers. Content after `---` on the same line (`--- !tag` or `--- {a: 1}`) stays with the
/// new document. Splitting by hand, rather than with the YAML parser's own multi-document
/// iterator, is what tells us the line each document starts on.
fn split_yaml_documents(text: &str) -> Vec<YamlChunk> {
    let mut chunks = Vec::new();
    let mut current = YamlChunk {
        text: String::new(),
        first_line: 1,
        content_line: None,
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let marker_rest = marker_rest(line, "---").or_else(|| {
            // `...` ends a document; what follows is the next one.
            marker_rest(line, "...").map(|_| "")
        });
        if let Some(rest) = marker_rest {
            chunks.push(std::mem::replace(
                &mut current,
                YamlChunk {
                    text: String::new(),
                    first_line: number,
                    content_line: None,
                },
            ));
            // Keep the line count aligned: the marker line becomes the rest after the marker.
            push_line(&mut current, rest, number);
            continue;
        }
        push_line(&mut current, line, number);
    }
    chunks.push(current);
    chunks
}

fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    if rest.is_empty() || rest.starts_with([' ', '\t']) {
        Some(rest.trim_start())
    } else {
        None
    }
}

fn push_line(chunk: &mut YamlChunk, line: &str, number: usize) {
    let trimmed = line.trim_start();
    if chunk.content_line.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
        chunk.content_line = Some(number);
    }
    chunk.text.push_str(line);
    chunk.text.push('\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn helm_output_gives_each_document_the_line_of_its_first_key() {
        let text = "---\n# Source: app/templates/sa.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n---\n# Source: app/templates/empty.yaml\n---\n# Source: app/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: app\n";
        let documents = parse_text("rendered.yaml", text).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].line, 3);
        assert_eq!(documents[0].value["kind"], "ServiceAccount");
        assert_eq!(documents[1].line, 11);
        assert_eq!(documents[1].value["kind"], "Service");
    }

    #[test]
    fn a_yaml_syntax_error_names_the_file_and_the_line_in_the_file() {
        let text = "kind: A\n---\nkind: B\nmetadata:\n  name: [unclosed\n";
        let error = parse_text("bad.yaml", text).unwrap_err().to_string();
        assert!(error.starts_with("bad.yaml:"), "{error}");
        let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
        assert!((5..=6).contains(&line), "{error}");
    }

    #[test]
    fn json_is_one_document_and_a_list_kind_stays_whole() {
        let text =
            "\n{\"kind\": \"List\", \"items\": [{\"kind\": \"Pod\"}, {\"kind\": \"Service\"}]}";
        let documents = parse_text("list.json", text).unwrap();
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].line, 2);
        assert_eq!(documents[0].value["items"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_scalar_document_is_refused_with_its_line() {
        let error = parse_text("x.yaml", "kind: A\n---\njust text\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "x.yaml:3: expected a Kubernetes object (a mapping), found a string"
        );
    }

    #[test]
    fn a_marker_with_content_on_the_same_line_starts_a_document_there() {
        let documents = parse_text("x.yaml", "--- {kind: A}\n--- \nkind: B\n").unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].line, 1);
        assert_eq!(documents[1].line, 3);
    }
}
