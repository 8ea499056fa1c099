//! Saving output files: all or nothing under the final name, never over another file, and
//! errors that say which path and why in words an operator can act on.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::naming::{file_name, MAX_COLLISIONS};
use crate::job::OutputKind;

/// Why an output could not be saved. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("no space left on the disk (or quota exceeded) while saving {path}")]
    DiskFull {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("permission denied saving {path}: the output folder must be writable by the bot")]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot save {path}: part of that path is a file, not a folder")]
    NotADirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot save {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl OutputError {
    /// Sorts an I/O error into the cases an operator fixes differently.
    pub fn from_io(path: impl Into<PathBuf>, source: io::Error) -> OutputError {
        let path = path.into();
        // ENOSPC and EDQUOT on Linux; the portable kinds cover the rest where known.
        let raw = source.raw_os_error();
        match source.kind() {
            io::ErrorKind::StorageFull => OutputError::DiskFull { path, source },
            _ if cfg!(target_os = "linux") && matches!(raw, Some(28 | 122)) => {
                OutputError::DiskFull { path, source }
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                OutputError::PermissionDenied { path, source }
            }
            io::ErrorKind::NotADirectory => OutputError::NotADirectory { path, source },
            _ => OutputError::Io { path, source },
        }
    }

    /// The file or folder that could not be written.
    pub fn path(&self) -> &Path {
        match self {
            OutputError::DiskFull { path, .. }
            | OutputError::PermissionDenied { path, .. }
            | OutputError::NotADirectory { path, .. }
            | OutputError::Io { path, .. } => path,
        }
    }
}

/// Saves output number `index` of a job (counting from 1) as `dir/stem[_N][-M].ext` (see
/// [`super::unique_path`]) and returns its path.
///
/// The bytes go to a hidden temporary file first (flushed to disk), which is then hard-linked
/// under the first free name: the link fails instead of replacing a file another job saved a
/// moment ago, and a crash leaves at worst a hidden `.tmp` file, never half an image under
/// the final name. Where hard links are not supported the name is checked, then renamed to.
pub async fn save_output(
    dir: &Path,
    stem: &str,
    index: usize,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, OutputError> {
    let target = dir.join(file_name(stem, index, ext, 1));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| OutputError::from_io(dir, e))?;
    let tmp = super::temp_path(dir, &file_name(stem, index, ext, 1));
    let saved = match write_new(&tmp, bytes).await {
        Ok(()) => claim_name(&tmp, dir, stem, index, ext).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(path) => {
            tracing::debug!(path = %path.display(), bytes = bytes.len(), "output saved");
            Ok(path)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(OutputError::from_io(target, e))
        }
    }
}

async fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    // tokio's File finishes writes in the background: only `flush` reports a failed one (a
    // full disk); `sync_data` alone would report success for a file left empty.
    file.flush().await?;
    file.sync_data().await
}

/// Gives the finished temporary file its final, unused name.
async fn claim_name(
    tmp: &Path,
    dir: &Path,
    stem: &str,
    index: usize,
    ext: &str,
) -> io::Result<PathBuf> {
    let mut links = true;
    for n in 1..=MAX_COLLISIONS {
        let candidate = dir.join(file_name(stem, index, ext, n));
        if links {
            match tokio::fs::hard_link(tmp, &candidate).await {
                Ok(()) => {
                    let _ = tokio::fs::remove_file(tmp).await;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // We could create the temporary file here, so this is a file system without
                // hard links (FAT, some network shares): fall back to check-then-rename.
                Err(e) => {
                    tracing::debug!(error = %e, "hard link failed; renaming instead");
                    links = false;
                }
            }
        }
        if tokio::fs::symlink_metadata(&candidate).await.is_err() {
            tokio::fs::rename(tmp, &candidate).await?;
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_COLLISIONS} files with this name already exist"),
    ))
}

/// What kind of output a file is, from its extension; `animated` is ComfyUI's flag for
/// animated WebP/PNG. GIFs count as animations: that is what workflows save them for, and
/// an animation must never be re-encoded as a still image.
pub fn kind_of(filename: &str, animated: bool) -> OutputKind {
    let ext = Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "gif" | "apng" => OutputKind::Animation,
        "png" | "webp" if animated => OutputKind::Animation,
        "png" | "jpg" | "jpeg" | "webp" | "bmp" | "tif" | "tiff" | "avif" => OutputKind::Image,
        "mp4" | "webm" | "mov" | "mkv" | "avi" | "m4v" => OutputKind::Video,
        "wav" | "mp3" | "flac" | "ogg" | "opus" | "m4a" | "aac" => OutputKind::Audio,
        "txt" => OutputKind::Text,
        _ => OutputKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::test_dir;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn saves_creating_the_folder_and_never_overwrites() {
        let root = test_dir("save");
        let dir = root.join("a/b");
        let first = save_output(&dir, "fox", 1, "png", b"one").await.unwrap();
        assert_eq!(first, dir.join("fox.png"));
        let second = save_output(&dir, "fox", 1, "png", b"two").await.unwrap();
        assert_eq!(second, dir.join("fox-2.png"));
        let batch = save_output(&dir, "fox", 2, ".PNG", b"three").await.unwrap();
        assert_eq!(batch, dir.join("fox_2.png"));
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
        assert_eq!(std::fs::read(&batch).unwrap(), b"three");
        // No temporary files left behind.
        assert_eq!(names_in(&dir), ["fox-2.png", "fox.png", "fox_2.png"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn concurrent_saves_get_distinct_names() {
        let dir = test_dir("save-concurrent");
        let saves = (0..8u8).map(|i| {
            let dir = dir.clone();
            tokio::spawn(async move { save_output(&dir, "same", 0, "png", &[i]).await })
        });
        let mut paths = Vec::new();
        for save in saves {
            paths.push(save.await.unwrap().unwrap());
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 8);
        let mut contents: Vec<u8> = paths.iter().map(|p| std::fs::read(p).unwrap()[0]).collect();
        contents.sort();
        assert_eq!(contents, (0..8).collect::<Vec<u8>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_path_under_a_file_is_a_typed_error() {
        let dir = test_dir("save-under-file");
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = save_output(&file.join("sub"), "fox", 0, "png", b"1")
            .await
            .unwrap_err();
        assert!(matches!(err, OutputError::NotADirectory { .. }), "{err:?}");
        assert_eq!(err.path(), file.join("sub"));
        let message = err.to_string();
        assert!(message.contains("not a folder"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_read_only_folder_is_a_permission_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = test_dir("save-read-only");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores permissions; then there is nothing to observe.
        let probe = dir.join("probe");
        let privileged = std::fs::write(&probe, b"").is_ok();
        let result = save_output(&dir, "fox", 0, "png", b"1").await;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !privileged {
            let err = result.unwrap_err();
            assert!(
                matches!(err, OutputError::PermissionDenied { .. }),
                "{err:?}"
            );
            assert_eq!(err.path(), dir.join("fox.png"));
            assert!(err.to_string().contains("permission denied"), "{err}");
            assert!(names_in(&dir).is_empty());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn io_errors_are_sorted_into_cases() {
        let full = OutputError::from_io("/o/x.png", io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(full, OutputError::DiskFull { .. }));
        assert_eq!(
            full.to_string(),
            "no space left on the disk (or quota exceeded) while saving /o/x.png"
        );
        #[cfg(target_os = "linux")]
        for raw in [28, 122] {
            let err = OutputError::from_io("/o", io::Error::from_raw_os_error(raw));
            assert!(matches!(err, OutputError::DiskFull { .. }), "{raw}");
        }
        let ro = OutputError::from_io("/o", io::Error::from(io::ErrorKind::ReadOnlyFilesystem));
        assert!(matches!(ro, OutputError::PermissionDenied { .. }));
        let other = OutputError::from_io("/o", io::Error::other("boom"));
        assert_eq!(other.to_string(), "cannot save /o: boom");
        assert_eq!(other.path(), Path::new("/o"));
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(kind_of("a.PNG", false), OutputKind::Image);
        assert_eq!(kind_of("a.png", true), OutputKind::Animation);
        assert_eq!(kind_of("a.webp", true), OutputKind::Animation);
        assert_eq!(kind_of("a.jpeg", false), OutputKind::Image);
        assert_eq!(kind_of("a.gif", false), OutputKind::Animation);
        assert_eq!(kind_of("dir.v2/a.mp4", false), OutputKind::Video);
        assert_eq!(kind_of("a.webm", true), OutputKind::Video);
        assert_eq!(kind_of("a.flac", false), OutputKind::Audio);
        assert_eq!(kind_of("a.glb", false), OutputKind::Other);
        assert_eq!(kind_of("png", false), OutputKind::Other);
    }
}
