//! The check catalog as text, JSON and Markdown (`docs/checks.md` is the Markdown, generated).

use std::fmt::Write;

use serde::Serialize;

use super::{TOOL, VERSION};
use crate::catalog::{CheckDef, CheckKind, CheckMeta, Lab};

/// The command that regenerates `docs/checks.md` (the staleness test prints it).
pub const REGENERATE: &str = "cargo run -q -p hardlab-grader --bin hardlab-grade -- checks --format markdown --output docs/checks.md";

pub fn text(checks: &[CheckDef]) -> String {
    let id_width = checks
        .iter()
        .map(|check| check.meta.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<id_width$}  {:<16}  {:<8}  TITLE",
        "ID", "LAB", "SEVERITY"
    );
    for check in checks {
        let meta = &check.meta;
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<16}  {:<8}  {}",
            meta.id,
            meta.lab.id(),
            meta.severity.as_str(),
            meta.title
        );
    }
    let _ = writeln!(out, "\n{} checks", checks.len());
    out
}

#[derive(Serialize)]
struct JsonCatalog<'a> {
    tool: &'static str,
    version: &'static str,
    checks: Vec<&'a CheckMeta>,
}

pub fn json(checks: &[CheckDef]) -> String {
    let catalog = JsonCatalog {
        tool: TOOL,
        version: VERSION,
        checks: checks.iter().map(|check| &check.meta).collect(),
    };
    let mut text = serde_json::to_string_pretty(&catalog).unwrap_or_default();
    text.push('\n');
    text
}

/// The catalog as Markdown. Deterministic (no version, no date) so the committed file only
/// changes when a check does.
pub fn markdown(checks: &[CheckDef]) -> String {
    let mut out = String::new();
    out.push_str("# hardlab check catalog\n\n");
    let _ = writeln!(
        out,
        "<!-- Generated from the grader's catalog; do not edit. Regenerate with:\n     {REGENERATE} -->\n"
    );
    let _ = writeln!(
        out,
        "{} checks. `hardlab-grade checks` lists them; `--check ID` runs one, `--lab ID` a lab's; \
         with neither, every hardening check runs (not the lab-exercise ones).\n",
        checks.len()
    );
    out.push_str(
        "Statuses: `pass`; `warn` (passes, but weaker than it should be; fails the run only with \
         `--fail-on warn`); `fail`; `skip` (its inputs are not among those given, with the reason); \
         `error` (its inputs could not be read, e.g. `forbidden`); `not-applicable` (what it judges \
         does not exist here, e.g. a flag the cluster's release removed: not a pass, with the \
         reason; JUnit shows it as a skipped case, SARIF as a `notApplicable` result). Exit codes: 0 when nothing \
         failed, 1 when a check reports `fail` or `error` (or `warn` with `--fail-on warn`), 2 when \
         the grader could not grade at all (bad input, unreachable cluster, unknown check or lab ID).\n",
    );
    for lab in Lab::ALL {
        let in_lab: Vec<&CheckDef> = checks.iter().filter(|c| c.meta.lab == lab).collect();
        if in_lab.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## Lab `{}`\n", lab.id());
        out.push_str("| ID | Title | Step | Severity |\n|---|---|---|---|\n");
        for check in &in_lab {
            let meta = &check.meta;
            let _ = writeln!(
                out,
                "| [`{}`](#{}) | {} | {} | {} |",
                meta.id,
                anchor(meta.id),
                cell(meta.title),
                cell(meta.step),
                meta.severity.as_str()
            );
        }
        for check in &in_lab {
            let meta = &check.meta;
            let _ = writeln!(out, "\n### `{}`\n", meta.id);
            let _ = writeln!(out, "{}\n", meta.title);
            let _ = writeln!(
                out,
                "- Lab: `{}`, step `{}`; severity {}",
                lab.id(),
                meta.step,
                meta.severity.as_str()
            );
            if meta.kind == CheckKind::Exercise {
                out.push_str(
                    "- Lab exercise: judges the lab's own setup, so it runs only with `--lab` or `--check`\n",
                );
            }
            let _ = writeln!(out, "- Remediation: {}", one_line(meta.remediation));
            if !meta.references.is_empty() {
                let _ = writeln!(out, "- References: {}", meta.references.join("; "));
            }
        }
    }
    out
}

/// GitHub's heading anchor for `### \`etcd.encryption-provider\``.
fn anchor(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .to_lowercase()
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Multi-line remediation text on one Markdown list item.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
