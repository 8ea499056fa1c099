//! Deleting old outputs so the output folder does not fill the disk.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What [`apply_retention`] did, counting outputs (a sidecar goes with its output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub removed: usize,
    pub kept: usize,
}

/// One output file and its sidecar, if it has one.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    modified: SystemTime,
    sidecar: Option<PathBuf>,
}

/// Removes outputs under `dir` (subfolders included) beyond the newest `keep_count` and
/// those modified more than `max_age` before `now`, each with its `<output>.json` sidecar.
///
/// Every regular file counts as an output except a sidecar whose output exists (a sidecar
/// left without one is itself removed in time), so `dir` must hold only outputs. Symbolic
/// links are neither followed nor removed: a link to elsewhere cannot make this delete
/// files outside `dir`. `dir` itself may be a link. A missing `dir` is nothing to do; a file
/// that cannot be removed is logged and counted as kept.
pub fn apply_retention(
    dir: &Path,
    keep_count: Option<usize>,
    max_age: Option<Duration>,
    now: SystemTime,
) -> io::Result<RetentionReport> {
    if keep_count.is_none() && max_age.is_none() {
        return Ok(RetentionReport {
            removed: 0,
            kept: collect(dir)?.len(),
        });
    }
    let mut entries = collect(dir)?;
    // Newest first; the path breaks ties so the result does not depend on listing order.
    entries.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then_with(|| b.path.cmp(&a.path))
    });
    let mut report = RetentionReport::default();
    for (rank, entry) in entries.iter().enumerate() {
        let over_count = keep_count.is_some_and(|keep| rank >= keep);
        let too_old = max_age.is_some_and(|max| {
            now.duration_since(entry.modified)
                .is_ok_and(|age| age > max)
        });
        if !(over_count || too_old) {
            report.kept += 1;
            continue;
        }
        match remove(&entry.path) {
            Ok(()) => {
                if let Some(sidecar) = &entry.sidecar {
                    if let Err(e) = remove(sidecar) {
                        tracing::warn!(path = %sidecar.display(), error = %e, "cannot remove sidecar");
                    }
                }
                tracing::debug!(path = %entry.path.display(), "old output removed");
                report.removed += 1;
            }
            Err(e) => {
                tracing::warn!(path = %entry.path.display(), error = %e, "cannot remove old output");
                report.kept += 1;
            }
        }
    }
    Ok(report)
}

/// Removes a file; one already gone counts as removed.
fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The outputs under `dir`, found without following symbolic links (an explicit stack, so a
/// deep tree cannot overflow ours). Unreadable subfolders are logged and skipped.
fn collect(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let listing = match std::fs::read_dir(&folder) {
            Ok(listing) => listing,
            Err(e) if folder == dir && e.kind() == io::ErrorKind::NotFound => return Ok(entries),
            Err(e) if folder == dir => return Err(e),
            Err(e) => {
                tracing::warn!(path = %folder.display(), error = %e, "cannot list output folder");
                continue;
            }
        };
        let mut files = Vec::new();
        for item in listing {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    tracing::warn!(path = %folder.display(), error = %e, "cannot list output folder");
                    continue;
                }
            };
            // `DirEntry::file_type` and `metadata` describe a link itself, never its target.
            let Ok(file_type) = item.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                folders.push(item.path());
            } else if file_type.is_file() {
                // An unknown time counts as new: better to keep a file than to guess it old.
                let modified = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::now());
                files.push((item.file_name(), modified));
            }
        }
        let names: HashSet<_> = files.iter().map(|(name, _)| name.clone()).collect();
        for (name, modified) in &files {
            let is_sidecar = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(|output| names.contains(std::ffi::OsStr::new(output)));
            if is_sidecar {
                continue;
            }
            let mut sidecar_name = name.clone();
            sidecar_name.push(".json");
            entries.push(Entry {
                path: folder.join(name),
                modified: *modified,
                sidecar: names
                    .contains(&sidecar_name)
                    .then(|| folder.join(&sidecar_name)),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::test_dir;

    const DAY: Duration = Duration::from_secs(86_400);

    fn file(path: &Path, modified: SystemTime) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(path).unwrap();
        file.set_modified(modified).unwrap();
    }

    /// Outputs aged 10, 5, 1 days and 2 hours (the last in a subfolder); the oldest and the
    /// 1-day one have sidecars, written a moment after them.
    fn fixture(name: &str, now: SystemTime) -> PathBuf {
        let dir = test_dir(name);
        file(&dir.join("old.png"), now - 10 * DAY);
        file(
            &dir.join("old.png.json"),
            now - 10 * DAY + Duration::from_secs(1),
        );
        file(&dir.join("mid.webp"), now - 5 * DAY);
        file(&dir.join("recent.png"), now - DAY);
        file(&dir.join("recent.png.json"), now);
        file(&dir.join("2024/new.mp4"), now - Duration::from_secs(7200));
        dir
    }

    fn remaining(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(dir).unwrap().to_owned();
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn keeps_the_newest_by_count() {
        let now = SystemTime::now();
        let dir = fixture("keep-count", now);
        let report = apply_retention(&dir, Some(2), None, now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 2,
                kept: 2
            }
        );
        assert_eq!(
            remaining(&dir),
            ["2024/new.mp4", "recent.png", "recent.png.json"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removes_by_age() {
        let now = SystemTime::now();
        let dir = fixture("max-age", now);
        let report = apply_retention(&dir, None, Some(3 * DAY), now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 2,
                kept: 2
            }
        );
        assert_eq!(
            remaining(&dir),
            ["2024/new.mp4", "recent.png", "recent.png.json"]
        );
        // Again with a tighter age: only the 2-hour-old one is left.
        let report = apply_retention(&dir, None, Some(DAY / 2), now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 1,
                kept: 1
            }
        );
        assert_eq!(remaining(&dir), ["2024/new.mp4"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn both_rules_apply_and_none_removes_nothing() {
        let now = SystemTime::now();
        let dir = fixture("both", now);
        let report = apply_retention(&dir, None, None, now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 0,
                kept: 4
            }
        );
        let report = apply_retention(&dir, Some(3), Some(7 * DAY), now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 1,
                kept: 3
            }
        );
        assert!(!remaining(&dir).iter().any(|n| n.starts_with("old.png")));
        let report = apply_retention(&dir, Some(0), None, now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 3,
                kept: 0
            }
        );
        assert!(remaining(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_orphan_sidecar_ages_out_like_an_output() {
        let now = SystemTime::now();
        let dir = test_dir("orphan");
        file(&dir.join("gone.png.json"), now - 10 * DAY);
        file(&dir.join("kept.png"), now);
        let report = apply_retention(&dir, None, Some(DAY), now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 1,
                kept: 1
            }
        );
        assert_eq!(remaining(&dir), ["kept.png"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_nothing_to_do() {
        let dir = test_dir("missing").join("nope");
        let report = apply_retention(&dir, Some(0), None, SystemTime::now()).unwrap();
        assert_eq!(report, RetentionReport::default());
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_neither_followed_nor_removed() {
        let now = SystemTime::now();
        let root = test_dir("links");
        let dir = root.join("outputs");
        let outside = root.join("elsewhere");
        file(&outside.join("precious.png"), now - 100 * DAY);
        file(&dir.join("old.png"), now - 10 * DAY);
        std::os::unix::fs::symlink(&outside, dir.join("linked-folder")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious.png"), dir.join("linked.png")).unwrap();
        let report = apply_retention(&dir, Some(0), Some(DAY), now).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                removed: 1,
                kept: 0
            }
        );
        assert!(outside.join("precious.png").exists());
        assert!(dir.join("linked.png").symlink_metadata().is_ok());
        assert!(dir.join("linked-folder").symlink_metadata().is_ok());
        assert!(!dir.join("old.png").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
