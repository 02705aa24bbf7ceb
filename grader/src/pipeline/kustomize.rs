//! `--kustomize DIR`: an overlay rendered with `kubectl kustomize`, graded like files. Findings
//! point into the rendered stream, or, where the overlay asks kustomize to say where each object
//! came from (`buildMetadata: [originAnnotations]`), at the object in its source file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::inputs::InputDocument;
use crate::inputs::documents;
use crate::{Error, Result};

/// The annotation kustomize writes with `buildMetadata: [originAnnotations]`.
const ORIGIN: &str = "config.kubernetes.io/origin";

/// The documents of the overlay in `dir`, rendered by `kubectl` (or `$HARDLAB_KUBECTL`).
pub fn render(dir: &Path) -> Result<Vec<InputDocument>> {
    let kubectl = std::env::var_os("HARDLAB_KUBECTL").unwrap_or_else(|| "kubectl".into());
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|error| {
            Error::Usage(format!(
                "--kustomize {}: cannot run {} ({error}); install kubectl, or render the overlay \
                 yourself: `kustomize build {} | hardlab-grade static -`",
                dir.display(),
                PathBuf::from(&kubectl).display(),
                dir.display()
            ))
        })?;
    if !output.status.success() {
        return Err(Error::invalid(
            dir.display().to_string(),
            format!(
                "kubectl kustomize failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| {
        Error::invalid(
            dir.display().to_string(),
            "kubectl kustomize wrote no UTF-8 text",
        )
    })?;
    let name = format!("kustomize:{}", dir.display());
    let mut rendered = documents::parse_text(&name, &text)?;
    for document in &mut rendered {
        if let Some((file, line)) = origin(dir, &document.value) {
            document.file = file;
            document.line = line;
        }
    }
    Ok(rendered)
}

/// `overlay/../base/pod.yaml` as `base/pod.yaml`, so reports name the file as the repository does.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(normal.components().next_back(), Some(Component::Normal(_))) =>
            {
                normal.pop();
            }
            other => normal.push(other.as_os_str()),
        }
    }
    normal
}

/// The source file and line of a rendered object, from its origin annotation.
fn origin(dir: &Path, object: &Value) -> Option<(String, usize)> {
    let annotation = object
        .get("metadata")?
        .get("annotations")?
        .get(ORIGIN)?
        .as_str()?;
    let origin: Value = serde_yaml::from_str(annotation).ok()?;
    let path = normalize(&dir.join(origin.get("path")?.as_str()?));
    let file = path.display().to_string();
    let text = std::fs::read_to_string(&path).ok()?;
    let kind = object.get("kind")?.as_str()?;
    let name = object.get("metadata")?.get("name")?.as_str()?;
    let sources = documents::parse_text(&file, &text).ok()?;
    // A namePrefix or nameSuffix changes the name; the kind and a name containing the source's
    // name still find it, else the file's first object.
    let line = sources
        .iter()
        .find(|source| {
            source.value.get("kind").and_then(Value::as_str) == Some(kind)
                && source
                    .value
                    .get("metadata")
                    .and_then(|metadata| metadata.get("name"))
                    .and_then(Value::as_str)
                    .is_some_and(|source_name| name.contains(source_name))
        })
        .or_else(|| sources.first())
        .map_or(1, |source| source.line);
    Some((file, line))
}
