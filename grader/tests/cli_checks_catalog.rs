//! `hardlab-grade checks`: the catalog in each format, and `docs/checks.md` kept in step with it.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

fn checks(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .arg("checks")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_committed_docs_checks_md_matches_the_catalog() {
    let output = checks(&["--format", "markdown"]);
    assert_eq!(output.status.code(), Some(0));
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/checks.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .position(|(old, new)| old != new)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    assert!(
        committed == generated,
        "docs/checks.md is stale (first difference at line {}): the check catalog changed. \
         Regenerate it from the workspace root with\n    {}\nand commit it.",
        first_difference + 1,
        hardlab_grader::report::catalog::REGENERATE
    );
}

#[test]
fn the_json_catalog_lists_every_check_with_its_published_facts() {
    let output = checks(&["--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let catalog: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(catalog["tool"], "hardlab-grade");
    let listed = catalog["checks"].as_array().unwrap();
    assert_eq!(listed.len(), hardlab_grader::catalog::all().len());
    for check in listed {
        for field in [
            "id",
            "title",
            "lab",
            "step",
            "severity",
            "remediation",
            "references",
        ] {
            assert!(check.get(field).is_some(), "{field} missing in {check}");
        }
        let id = check["id"].as_str().unwrap();
        assert!(
            hardlab_grader::Lab::from_id(check["lab"].as_str().unwrap()).is_some(),
            "{id}: unknown lab"
        );
    }
}

#[test]
fn check_ids_are_unique_and_kebab_case_area_dot_what() {
    let mut seen = std::collections::HashSet::new();
    for check in hardlab_grader::catalog::all() {
        let id = check.meta.id;
        assert!(seen.insert(id), "{id} is listed twice");
        let (area, what) = id
            .split_once('.')
            .unwrap_or_else(|| panic!("{id}: not area.what"));
        for part in [area, what] {
            assert!(
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '-'
                        || c == '.'),
                "{id}: not kebab case"
            );
        }
    }
}

#[test]
fn the_text_catalog_names_each_check_and_reports_cannot_use_markdown() {
    let output = checks(&[]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    for check in hardlab_grader::catalog::all() {
        assert!(text.contains(check.meta.id), "{} missing", check.meta.id);
    }
    let output = checks(&["--format", "sarif"]);
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(["static", "--format", "markdown", "-"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
