//! The line of an offending field in a manifest, from the field's path as a check names it
//! (`spec.template.spec.containers[1].securityContext.privileged`).
//!
//! Manifests are block-style YAML almost always, so this follows indentation rather than parsing
//! again: keys at one indent form a mapping, `- ` items a sequence. Where the path leaves what it
//! can follow (flow style, JSON, a field that is absent), the deepest part of the path it found is
//! the answer, which for a missing field is the block the field belongs in.

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A file's lines with each line's indent worked out once: every finding in the file walks them.
pub struct Source<'a> {
    lines: Vec<&'a str>,
    /// [`indent_of`] of each line.
    indents: Vec<Option<usize>>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let indents = lines.iter().map(|line| indent_of(line)).collect();
        Self { lines, indents }
    }
}

/// The 1-based line a finding should point at: the deepest line of the first field path named in
/// `problems` inside the object at `doc_line` (item `item` of a `List` document), or the object's
/// own line.
pub fn field_line(
    source: &Source<'_>,
    doc_line: usize,
    item: Option<usize>,
    problems: &[String],
) -> usize {
    let lines = &source.lines;
    let mut path = Vec::new();
    if let Some(item) = item {
        path.push(Step::Key("items".into()));
        path.push(Step::Index(item));
    }
    let field = problems.iter().find_map(|problem| field_path(problem));
    let start = doc_line.saturating_sub(1);
    if start >= lines.len() {
        return doc_line;
    }
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.starts_with("---"))
        .map_or(lines.len(), |offset| start + 1 + offset);
    // Without a field path, a List item still gets its own line rather than the List's.
    path.extend(field.unwrap_or_default());
    if path.is_empty() {
        return doc_line;
    }
    match deepest(source, start, end, &path) {
        Some(index) => index + 1,
        None => doc_line,
    }
}

/// The first dotted path starting at `spec`, `metadata` or `items` in a problem's text.
pub fn field_path(problem: &str) -> Option<Vec<Step>> {
    let bytes = problem.as_bytes();
    for prefix in ["spec.", "metadata.", "items["] {
        let mut from = 0;
        while let Some(found) = problem[from..].find(prefix) {
            let at = from + found;
            from = at + prefix.len();
            let boundary =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'.');
            if !boundary {
                continue;
            }
            let path_text: String = problem[at..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-' | '/')
                })
                .collect();
            if let Some(steps) = parse_path(path_text.trim_end_matches('.')) {
                return Some(steps);
            }
        }
    }
    None
}

fn parse_path(text: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        if key.is_empty() && steps.is_empty() {
            return None;
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']')?;
            steps.push(Step::Index(inner[..close].parse().ok()?));
            rest = &inner[close + 1..];
        }
    }
    (!steps.is_empty()).then_some(steps)
}

/// Leading spaces, and whether what follows is blank or a comment.
fn indent_of(line: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.is_empty() || trimmed.starts_with('#') {
        None
    } else {
        Some(line.len() - trimmed.len())
    }
}

/// Whether `text` (a line's content at the mapping's indent) is the key `key`.
fn is_key(text: &str, key: &str) -> bool {
    // Called for every line a path walk passes: compared in place, nothing allocated.
    ["", "\"", "'"].iter().any(|quote| {
        text.strip_prefix(quote)
            .and_then(|rest| rest.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix(quote))
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

/// The content of the line at `index` seen at column `column`: lines opening a sequence item
/// (`- key: v`) show their key at the column after the dash.
fn content_at(line: &str, column: usize) -> Option<&str> {
    let mut text = line;
    let mut at = 0;
    loop {
        let spaces = text.len() - text.trim_start_matches(' ').len();
        at += spaces;
        text = &text[spaces..];
        if at == column {
            return Some(text);
        }
        if at > column {
            return None;
        }
        text = text.strip_prefix("- ")?;
        at += 2;
    }
}

/// The index of the deepest line of `path` found in the mapping spanning lines `from..to` whose
/// keys sit at column `column`.
fn deepest(source: &Source<'_>, from: usize, to: usize, path: &[Step]) -> Option<usize> {
    let column = source.indents[from..to].iter().find_map(|indent| *indent)?;
    walk(source, from, to, column, path)
}

fn walk(
    source: &Source<'_>,
    from: usize,
    to: usize,
    column: usize,
    path: &[Step],
) -> Option<usize> {
    let (lines, indents) = (&source.lines, &source.indents);
    let (step, rest) = path.split_first()?;
    match step {
        Step::Key(key) => {
            // A line indented deeper than the mapping cannot hold one of its keys.
            let found = (from..to).find(|&index| {
                indents[index].is_some_and(|indent| indent <= column)
                    && content_at(lines[index], column).is_some_and(|text| is_key(text, key))
            })?;
            let child_end = (found + 1..to)
                .find(|&index| match indents[index] {
                    Some(indent) if indent < column => true,
                    Some(indent) if indent == column => !lines[index][indent..].starts_with('-'),
                    _ => false,
                })
                .unwrap_or(to);
            if rest.is_empty() {
                return Some(found);
            }
            let child_column = indents[found + 1..child_end]
                .iter()
                .find_map(|indent| *indent);
            let deeper = child_column
                .and_then(|child_column| walk(source, found + 1, child_end, child_column, rest));
            Some(deeper.unwrap_or(found))
        }
        Step::Index(wanted) => {
            // Items start with `-` at the sequence's column.
            let mut starts = (from..to).filter(|&index| {
                indents[index] == Some(column) && lines[index][column..].starts_with('-')
            });
            let start = starts.nth(*wanted)?;
            let end = starts.next().unwrap_or(to);
            if rest.is_empty() {
                return Some(start);
            }
            let deeper = walk(source, start, end, column + 2, rest);
            Some(deeper.unwrap_or(start))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      # a comment
      initContainers:
        - name: migrate
          securityContext:
            runAsUser: 0
      containers:
      - name: app
        image: web:1
      - name: sidecar
        securityContext:
          privileged: true
";

    fn field_line(text: &str, doc_line: usize, item: Option<usize>, problems: &[String]) -> usize {
        super::field_line(&Source::new(text), doc_line, item, problems)
    }

    fn problem(text: &str) -> Vec<String> {
        vec![text.to_owned()]
    }

    #[test]
    fn paths_are_read_out_of_problem_text() {
        assert_eq!(
            field_path("container \"a\": spec.containers[1].securityContext.privileged is true"),
            Some(vec![
                Step::Key("spec".into()),
                Step::Key("containers".into()),
                Step::Index(1),
                Step::Key("securityContext".into()),
                Step::Key("privileged".into()),
            ])
        );
        assert_eq!(field_path("nothing here"), None);
        assert_eq!(field_path("podspec.x"), None);
    }

    #[test]
    fn fields_are_found_in_both_sequence_styles() {
        let privileged = problem(
            "container \"sidecar\": spec.template.spec.containers[1].securityContext.privileged is true",
        );
        assert_eq!(field_line(DEPLOYMENT, 1, None, &privileged), 18);
        let root = problem(
            "init container \"migrate\": runs as root: spec.template.spec.initContainers[0].securityContext.runAsUser is 0",
        );
        assert_eq!(field_line(DEPLOYMENT, 1, None, &root), 12);
    }

    #[test]
    fn an_absent_field_points_at_the_deepest_block_that_exists() {
        let missing = problem(
            "container \"app\": spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation is not set",
        );
        assert_eq!(field_line(DEPLOYMENT, 1, None, &missing), 14);
        assert_eq!(field_line(DEPLOYMENT, 1, None, &[]), 1);
    }

    #[test]
    fn list_items_get_their_own_lines() {
        let list = "\
apiVersion: v1
kind: List
items:
- kind: Pod
  metadata:
    name: a
- kind: Pod
  metadata:
    name: b
  spec:
    hostNetwork: true
";
        assert_eq!(field_line(list, 1, Some(1), &[]), 7);
        assert_eq!(
            field_line(list, 1, Some(1), &problem("pod: spec.hostNetwork is true")),
            11
        );
    }

    #[test]
    fn documents_end_at_the_separator() {
        let two = "kind: A\nmetadata:\n  name: a\n---\nkind: B\nspec:\n  hostPID: true\n";
        assert_eq!(
            field_line(two, 1, None, &problem("spec.hostPID is true")),
            1
        );
        assert_eq!(
            field_line(two, 5, None, &problem("spec.hostPID is true")),
            7
        );
    }
}
