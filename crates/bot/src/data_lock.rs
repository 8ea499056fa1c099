//! One process per data folder. Two bots on one journal would both dispatch every waiting job
//! and share the backends' client ids (so one of them hears no progress); the second refuses
//! to start instead, naming the first.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lock file inside `data_dir`.
pub const LOCK_FILE: &str = "comfycord.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another comfycord is already using the data folder {dir} ({holder}); stop it first, or give this one its own data_dir"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock the data folder {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on the data folder, released when dropped (or when the process dies: the
/// kernel drops the lock with the file, so a crash never leaves a stale lock behind).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".into())
}

/// "pid 1234 on host gpu-box, started 15 s ago", from what the holder wrote.
fn describe_holder(text: &str) -> String {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut parts = Vec::new();
    match field("pid") {
        Some(pid) => parts.push(format!("pid {pid}")),
        None => parts.push("pid unknown".into()),
    }
    if let Some(host) = field("host") {
        parts.push(format!("on host {host}"));
    }
    if let Some(started) = field("started_unix").and_then(|s| s.parse::<u64>().ok()) {
        parts.push(format!(
            "started {} s ago",
            now_secs().saturating_sub(started)
        ));
    }
    parts.join(" ")
}

impl DataDirLock {
    /// Creates `dir` if needed and takes its lock, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: describe_holder(&text),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = format!(
            "pid={}\nhost={}\nstarted_unix={}\n",
            std::process::id(),
            hostname(),
            now_secs()
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_has_it() {
        let dir =
            std::env::temp_dir().join(format!("comfycord-lock-{:08x}", rand::random::<u32>()));
        let first = DataDirLock::acquire(&dir).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        let e = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains("another comfycord is already using the data folder")
                && e.contains(&format!("pid {}", std::process::id()))
                && e.contains("started"),
            "{e}"
        );
        drop(first);
        let again = DataDirLock::acquire(&dir);
        assert!(again.is_ok(), "the lock is free once dropped: {again:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn holder_text_is_described_even_when_partial() {
        assert_eq!(describe_holder(""), "pid unknown");
        assert_eq!(
            describe_holder("pid=42\nhost=gpu-box\n"),
            "pid 42 on host gpu-box"
        );
    }
}
