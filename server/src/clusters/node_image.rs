//! The node image built on first need: when the configured node image is neither on the Docker
//! host nor pullable and the server runs from a hardlab checkout (or `--node-image-source` names
//! one), the server builds `docker/node/Dockerfile` through the Docker API, as
//! `docker/node/build.sh` does: the build context is the checkout's tracked files plus the lab
//! images of `docker/node/images.txt`, pulled and saved through the same API. README's run command
//! is then all a new user types on a connected machine.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A hardlab checkout to build the node image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImageSource {
    pub dir: PathBuf,
}

pub const DOCKERFILE: &str = "docker/node/Dockerfile";
pub const IMAGE_LIST: &str = "docker/node/images.txt";

impl NodeImageSource {
    /// The folder named in the settings, else the working directory when it is a hardlab
    /// checkout (it has `docker/node/Dockerfile`).
    pub fn discover(explicit: Option<&Path>) -> Option<Self> {
        let dir = match explicit {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().ok()?,
        };
        dir.join(DOCKERFILE)
            .is_file()
            .then_some(NodeImageSource { dir })
    }

    /// The images to carry: `docker/node/images.txt` without comments and `unloaded` lines.
    pub fn lab_images(&self) -> std::io::Result<Vec<String>> {
        let text = match std::fs::read_to_string(self.dir.join(IMAGE_LIST)) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|line| {
                !line.is_empty() && !line.starts_with('#') && !line.starts_with("unloaded ")
            })
            .map(|line| line.split_whitespace().next().unwrap_or(line).to_owned())
            .collect())
    }

    /// The files of the context: what git tracks (as build.sh takes it), else every file but
    /// build output, dependencies, databases and git's own.
    pub fn files(&self) -> std::io::Result<Vec<String>> {
        let tracked = std::process::Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["ls-files", "-z"])
            .output();
        if let Ok(output) = tracked
            && output.status.success()
        {
            return Ok(output
                .stdout
                .split(|byte| *byte == 0)
                .filter(|name| !name.is_empty())
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .filter(|name| self.dir.join(name).is_file())
                .collect());
        }
        let mut files = Vec::new();
        walk(&self.dir, &self.dir, &mut files)?;
        Ok(files)
    }

    /// Writes the context as a tar file: the checkout's files, then `docker/node/images/<name>.tar`
    /// for each saved image.
    pub fn write_context(
        &self,
        out: &mut impl Write,
        images: &[(String, PathBuf)],
    ) -> std::io::Result<()> {
        for name in self.files()? {
            let path = self.dir.join(&name);
            let metadata = std::fs::metadata(&path)?;
            let mode = if is_executable(&metadata) {
                0o755
            } else {
                0o644
            };
            write_entry(
                out,
                &name,
                metadata.len(),
                mode,
                &mut std::fs::File::open(&path)?,
            )?;
        }
        for (image, saved) in images {
            let name = format!("docker/node/images/{}.tar", image.replace(['/', ':'], "_"));
            let length = std::fs::metadata(saved)?.len();
            write_entry(out, &name, length, 0o644, &mut std::fs::File::open(saved)?)?;
        }
        // The images folder exists even with no images, for the Dockerfile's COPY.
        write_directory(out, "docker/node/images/")?;
        out.write_all(&[0u8; 1024])
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(
            name.to_str(),
            Some("target" | "node_modules" | ".git" | "data")
        ) {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, files)?;
        } else if kind.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            files.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// One ustar header (POSIX.1-1988): long names go into the 155-byte prefix field.
fn header(name: &str, size: u64, mode: u32, kind: u8) -> std::io::Result<[u8; 512]> {
    let mut block = [0u8; 512];
    let bytes = name.as_bytes();
    let (prefix, rest) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        let split = name[..bytes.len().min(156)]
            .rfind('/')
            .filter(|at| bytes.len() - at - 1 <= 100)
            .ok_or_else(|| {
                std::io::Error::other(format!("{name}: path too long for the build context"))
            })?;
        (&bytes[..split], &bytes[split + 1..])
    };
    block[..rest.len()].copy_from_slice(rest);
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    octal(&mut block[100..108], u64::from(mode));
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], 0);
    block[148..156].fill(b' ');
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[345..345 + prefix.len()].copy_from_slice(prefix);
    let sum: u32 = block.iter().map(|byte| u32::from(*byte)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
    Ok(block)
}

fn write_entry(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mode: u32,
    body: &mut impl std::io::Read,
) -> std::io::Result<()> {
    out.write_all(&header(name, size, mode, b'0')?)?;
    let copied = std::io::copy(&mut std::io::Read::take(body, size), out)?;
    if copied != size {
        return Err(std::io::Error::other(format!(
            "{name} changed while it was read"
        )));
    }
    let padding = (512 - (size % 512)) % 512;
    out.write_all(&vec![0u8; usize::try_from(padding).unwrap_or(0)])
}

fn write_directory(out: &mut impl Write, name: &str) -> std::io::Result<()> {
    out.write_all(&header(name, 0, 0o755, b'5')?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_a_tar_that_tar_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker/node")).unwrap();
        std::fs::write(dir.path().join(DOCKERFILE), "FROM scratch\n").unwrap();
        std::fs::write(
            dir.path().join(IMAGE_LIST),
            "# none\nbusybox:1.36\nunloaded x:1: never\n",
        )
        .unwrap();
        let long = format!("{}/file.txt", "d".repeat(120));
        std::fs::create_dir_all(dir.path().join("d".repeat(120))).unwrap();
        std::fs::write(dir.path().join(&long), "hello").unwrap();
        let source = NodeImageSource::discover(Some(dir.path())).unwrap();
        assert_eq!(source.lab_images().unwrap(), ["busybox:1.36"]);
        let out = tempfile::tempdir().unwrap();
        let tar_path = out.path().join("context.tar");
        source
            .write_context(&mut std::fs::File::create(&tar_path).unwrap(), &[])
            .unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&tar_path)
            .output()
            .unwrap();
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains(DOCKERFILE) && listing.contains(&long),
            "{listing}"
        );
        assert!(listing.contains("docker/node/images/"), "{listing}");
        assert!(NodeImageSource::discover(Some(&dir.path().join("nothing"))).is_none());
    }
}
