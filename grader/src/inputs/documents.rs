//! Reading input files into documents: multi-document YAML, JSON, `List` kinds, stdin, directories.
//!
//! Every document keeps the file it came from and the 1-based line where its content starts, so
//! findings can point at the object (SARIF locations). `List` kinds stay one document here;
//! [`crate::inputs::objects`] expands them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::InputDocument;
use crate::{Error, Result};

/// The name documents read from standard input carry as their file.
pub const STDIN_NAME: &str = "<stdin>";

/// Why a file, or a document in one, was not graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipCause {
    /// Matched an `--exclude` pattern.
    Excluded,
    /// Not UTF-8 text, or could not be read at all.
    Unreadable,
    /// A YAML or JSON syntax error: kubectl would refuse it too.
    Invalid,
    /// An unrendered template whose text is not YAML until it is rendered.
    Template,
    /// A document that is YAML but not a mapping (a kustomize JSON6902 patch is a list).
    NotAnObject,
    /// A mapping without a `kind` (values files, configuration of other tools).
    NoKind,
}

impl SkipCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipCause::Excluded => "excluded",
            SkipCause::Unreadable => "unreadable",
            SkipCause::Invalid => "invalid",
            SkipCause::Template => "template",
            SkipCause::NotAnObject => "not-an-object",
            SkipCause::NoKind => "no-kind",
        }
    }
}

/// A file, or one document of a file (with its line), that was left out of the grading, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedInput {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub cause: SkipCause,
    pub reason: String,
}

impl std::fmt::Display for SkippedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// The documents read from the given paths, and what was left out and why.
#[derive(Debug, Default)]
pub struct ReadDocuments {
    pub documents: Vec<InputDocument>,
    /// Files and documents in directories that were not graded, each with why; reports print them.
    pub skipped: Vec<SkippedInput>,
}

impl ReadDocuments {
    fn skip(&mut self, file: &str, line: Option<usize>, cause: SkipCause, reason: String) {
        self.skipped.push(SkippedInput {
            file: file.to_owned(),
            line,
            cause,
            reason,
        });
    }
}

/// How paths are read: which files and directories to leave out.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Glob patterns (`*`, `**`, `?`) matched against each path below a scanned directory,
    /// relative to it; a pattern without `/` also matches any single file or directory name.
    pub exclude: Vec<String>,
}

/// Reads files, directories (recursively, in name order, hidden entries skipped) and `-` (stdin).
pub fn read_paths(paths: &[PathBuf]) -> Result<ReadDocuments> {
    read_paths_with(paths, &ReadOptions::default())
}

/// [`read_paths`] with options.
///
/// A file named explicitly must parse and every document in it with content must be an object
/// (the user asked for that file); in a directory, nothing stops the scan: files that are not
/// YAML or JSON by name are passed over, and each document that cannot be graded (a syntax error,
/// a list, an unrendered template, no `kind`) is recorded in [`ReadDocuments::skipped`] with why,
/// while the file's other documents are graded.
pub fn read_paths_with(paths: &[PathBuf], options: &ReadOptions) -> Result<ReadDocuments> {
    let mut read = ReadDocuments::default();
    for pattern in &options.exclude {
        if pattern.trim().is_empty() {
            return Err(Error::Usage("--exclude: an empty pattern".into()));
        }
    }
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
            let mut files = Vec::new();
            walk_dir(path, Path::new(""), options, &mut files, &mut read);
            parse_files(&files, &mut read);
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

/// Reads and parses the manifest files a directory walk found, on every core: each worker takes
/// the next file, reads it, parses it and keeps only what it decoded, so a file's text is dropped
/// as soon as it is parsed. Results are put back in walk order, so reports do not depend on timing.
fn parse_files(files: &[(String, PathBuf)], read: &mut ReadDocuments) {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parse_one = |(shown, path): &(String, PathBuf)| {
        let mut one = ReadDocuments::default();
        match std::fs::read(path) {
            Ok(bytes) => add_directory_file(shown, bytes, &mut one),
            Err(error) => one.skip(
                shown,
                None,
                SkipCause::Unreadable,
                format!("not read: {error}"),
            ),
        }
        one
    };
    let mut results: Vec<(usize, ReadDocuments)> = if workers <= 1 {
        files.iter().map(parse_one).enumerate().collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(index) else { break };
                            done.push((index, parse_one(file)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                // A worker cannot panic on input (parsing returns errors); if one did, the count
                // below says so rather than losing its files silently.
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect()
        })
    };
    results.sort_by_key(|(index, _)| *index);
    if results.len() < files.len() {
        read.skip(
            "<scan>",
            None,
            SkipCause::Unreadable,
            format!(
                "{} file(s) were lost to a failed worker",
                files.len() - results.len()
            ),
        );
    }
    for (_, one) in results {
        read.documents.extend(one.documents);
        read.skipped.extend(one.skipped);
    }
}

/// Walks one directory below a scanned root, collecting the manifest files to parse; `relative`
/// is its path below that root, which `--exclude` patterns match. An entry that cannot be read
/// is recorded and passed over.
fn walk_dir(
    dir: &Path,
    relative: &Path,
    options: &ReadOptions,
    files: &mut Vec<(String, PathBuf)>,
    read: &mut ReadDocuments,
) {
    let dir_name = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            read.skip(
                &dir_name,
                None,
                SkipCause::Unreadable,
                format!("directory not read: {error}"),
            );
            return;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with('.') {
                    names.push(name);
                }
            }
            Err(error) => read.skip(
                &dir_name,
                None,
                SkipCause::Unreadable,
                format!("an entry not read: {error}"),
            ),
        }
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let relative = relative.join(&name);
        let shown = path.display().to_string();
        if let Some(pattern) = excluded_by(&relative, &options.exclude) {
            read.skip(
                &shown,
                None,
                SkipCause::Excluded,
                format!("excluded by --exclude {pattern:?}"),
            );
            continue;
        }
        // symlink_metadata: a symlinked directory is not followed, so a link loop cannot recurse forever.
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) => {
                read.skip(
                    &shown,
                    None,
                    SkipCause::Unreadable,
                    format!("not read: {error}"),
                );
                continue;
            }
        };
        if metadata.is_dir() {
            walk_dir(&path, &relative, options, files, read);
            continue;
        }
        if !name.to_str().is_some_and(is_manifest_name) {
            continue;
        }
        files.push((shown, path));
    }
}

/// The first `--exclude` pattern that matches a path below a scanned directory.
fn excluded_by<'a>(relative: &Path, patterns: &'a [String]) -> Option<&'a str> {
    let path = relative.to_string_lossy().replace('\\', "/");
    let name = relative
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    patterns.iter().map(String::as_str).find(|pattern| {
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        glob_matches(pattern, &path) || (!pattern.contains('/') && glob_matches(pattern, &name))
    })
}

/// Whether `text` matches a glob: `*` any run of characters but `/`, `**` any run at all (a
/// `**/` also matches nothing), `?` one character but `/`.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_at(&pattern, &text)
}

fn glob_at(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') if pattern.get(1) == Some(&'*') => {
            let mut rest = &pattern[2..];
            if rest.first() == Some(&'/') {
                // `**/x` matches `x` too.
                if glob_at(&rest[1..], text) {
                    return true;
                }
                rest = &pattern[2..];
            }
            (0..=text.len()).any(|skip| glob_at(rest, &text[skip..]))
        }
        Some('*') => {
            let rest = &pattern[1..];
            for skip in 0..=text.len() {
                if glob_at(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => text.first().is_some_and(|c| *c != '/') && glob_at(&pattern[1..], &text[1..]),
        Some(c) => text.first() == Some(c) && glob_at(&pattern[1..], &text[1..]),
    }
}

/// Whether a file found in a directory is read as a manifest: by its extension, as kubectl does.
pub fn is_manifest_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"))
}

/// Adds the Kubernetes documents of one manifest file found in a directory, named `name` in
/// findings, and records each document left out with why (not UTF-8, a syntax error, a list, an
/// unrendered template that does not parse, no `kind`): a directory holds more than manifests,
/// and one bad file must not hide the others. Shared with checks that read a folder on the node,
/// so that they judge what a static scan would.
pub fn add_directory_file(name: &str, bytes: Vec<u8>, read: &mut ReadDocuments) {
    let Ok(text) = String::from_utf8(bytes) else {
        read.skip(name, None, SkipCause::Unreadable, "not UTF-8 text".into());
        return;
    };
    for parsed in parse_documents(name, &text) {
        match parsed {
            Parsed::Document(document) => {
                if document.value.get("kind").is_some_and(Value::is_string) {
                    read.documents.push(document);
                } else {
                    read.skip(
                        name,
                        Some(document.line),
                        SkipCause::NoKind,
                        "a document without a `kind` (not a Kubernetes object)".into(),
                    );
                }
            }
            Parsed::Skipped(skipped) => read.skipped.push(skipped),
        }
    }
}

/// One document of a file: decoded, or left out with why.
enum Parsed {
    Document(InputDocument),
    Skipped(SkippedInput),
}

/// Parses one file's text: JSON when it starts with `{` or `[`, otherwise (multi-document) YAML,
/// decoded as kubectl decodes it. Empty and comment-only documents (Helm leaves those) are
/// dropped. The first document that cannot be graded is the error, naming file and line.
pub fn parse_text(file: &str, text: &str) -> Result<Vec<InputDocument>> {
    let mut documents = Vec::new();
    for parsed in parse_documents(file, text) {
        match parsed {
            Parsed::Document(document) => documents.push(document),
            Parsed::Skipped(skipped) => {
                let place = format!("{file}:{}", skipped.line.unwrap_or(1));
                return Err(Error::invalid(place, skipped.reason));
            }
        }
    }
    Ok(documents)
}

fn parse_documents(file: &str, text: &str) -> Vec<Parsed> {
    let trimmed = text.trim_start_matches('\u{feff}');
    let first = trimmed.trim_start();
    // `{{` opens a template action (Helm), not a JSON object.
    if (first.starts_with('{') && !first.starts_with("{{")) || first.starts_with('[') {
        return match parse_json(file, trimmed) {
            Ok(documents) => documents.into_iter().map(Parsed::Document).collect(),
            Err(skipped) => vec![Parsed::Skipped(skipped)],
        };
    }
    let mut parsed = Vec::new();
    for chunk in split_yaml_documents(trimmed) {
        let Some(content_line) = chunk.content_line else {
            continue;
        };
        let skipped = |line: usize, cause: SkipCause, reason: String| {
            Parsed::Skipped(SkippedInput {
                file: file.to_owned(),
                line: Some(line),
                cause,
                reason,
            })
        };
        let templated = chunk.text.contains("{{");
        let mut content_line = content_line;
        let decoded = if templated {
            let text = without_template_lines(&chunk.text);
            // The object starts after the control lines (`{{- if ... }}`) that were blanked.
            if let Some(index) = text.lines().position(|line| {
                let line = line.trim_start();
                !line.is_empty() && !line.starts_with('#')
            }) {
                content_line = chunk.first_line + index;
            }
            super::yaml::decode(&text)
        } else {
            super::yaml::decode(&chunk.text)
        };
        match decoded {
            Err(error) if templated => parsed.push(skipped(
                content_line,
                SkipCause::Template,
                format!(
                    "an unrendered template that is not YAML until rendered ({} at line {}); render it \
                     first, e.g. `helm template`",
                    error.message,
                    chunk.first_line + error.line - 1
                ),
            )),
            Err(error) => parsed.push(skipped(
                chunk.first_line + error.line - 1,
                SkipCause::Invalid,
                format!("invalid YAML: {}", error.message),
            )),
            Ok(Value::Null) => {}
            Ok(value @ Value::Object(_)) => parsed.push(Parsed::Document(InputDocument {
                file: file.to_owned(),
                line: content_line,
                value,
            })),
            Ok(other) => parsed.push(skipped(
                content_line,
                SkipCause::NotAnObject,
                format!(
                    "expected a Kubernetes object (a mapping), found {}{}",
                    json_type(&other),
                    if other.is_array() {
                        " (a kustomize JSON6902 patch is a list)"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
    parsed
}

/// A template's text with its control lines (`{{- if .Values.x }}`, `{{ end }}`: a line that is
/// only template actions) blanked, keeping the line count, so the object around them parses.
/// Template actions inside values stay and are graded as the text they are.
fn without_template_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim();
        let only_actions = trimmed.starts_with("{{")
            && trimmed.ends_with("}}")
            && trimmed.matches("{{").count() == trimmed.matches("}}").count();
        if !only_actions {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn parse_json(file: &str, text: &str) -> std::result::Result<Vec<InputDocument>, SkippedInput> {
    let line = text
        .lines()
        .position(|line| !line.trim().is_empty())
        .map_or(1, |index| index + 1);
    let skipped = |line: usize, cause: SkipCause, reason: String| SkippedInput {
        file: file.to_owned(),
        line: Some(line),
        cause,
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|error| {
        skipped(
            error.line(),
            SkipCause::Invalid,
            format!("invalid JSON: {error}"),
        )
    })?;
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
                other => Err(skipped(
                    line,
                    SkipCause::NotAnObject,
                    format!(
                        "element {index}: expected a Kubernetes object, found {}",
                        json_type(&other)
                    ),
                )),
            })
            .collect(),
        other => Err(skipped(
            line,
            SkipCause::NotAnObject,
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
