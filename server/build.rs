//! Builds the browser terminal (web/ → static/dist/) with npm when it is missing or older than its
//! sources, so `cargo run --bin hardlab -- serve` on a fresh clone serves a working lab page. The
//! bundle is an asset served from disk, not part of the binary: without npm the build goes on
//! with a warning and the lab page says the terminal is unavailable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = root.join("web");
    let bundle = root.join("static/dist/terminal.js");
    for input in ["src", "package.json", "package-lock.json"] {
        println!("cargo::rerun-if-changed={}", web.join(input).display());
    }
    println!("cargo::rerun-if-changed={}", bundle.display());
    if !web.join("package.json").exists() {
        return;
    }
    let newest_source = newest(&web.join("src"))
        .into_iter()
        .chain(modified(&web.join("package-lock.json")))
        .max();
    let up_to_date = match (modified(&bundle), newest_source) {
        (Some(built), Some(source)) => built >= source,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if up_to_date {
        return;
    }
    if let Err(problem) = build_bundle(&web) {
        println!(
            "cargo::warning=the browser terminal was not built ({problem}); run `npm ci && npm run build` in web/"
        );
    }
}

fn build_bundle(web: &Path) -> Result<(), String> {
    if !web.join("node_modules").exists() {
        run(web, &["ci", "--no-audit", "--no-fund", "--loglevel=error"])?;
    }
    run(web, &["run", "build", "--silent"])
}

fn run(dir: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("npm could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm {} exited with {status}", args.join(" ")))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of any file under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest(&path)
            } else {
                modified(&path)
            }
        })
        .max()
}
