//! The JSON sidecar kept next to every output, so a picture can be reproduced (or audited)
//! long after the job left the journal: every parameter, the exact API workflow that ran,
//! the seed, and where and when it ran.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::job::JobId;

/// What `<output>.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub job_id: JobId,
    /// The manifest workflow's name.
    pub workflow: String,
    /// Every parameter's final value (defaults and the seed resolved).
    pub values: Map<String, Value>,
    /// The full ComfyUI API-format workflow that was submitted.
    pub workflow_json: Value,
    #[serde(default)]
    pub seed: Option<u64>,
    /// The backend that ran the job.
    #[serde(default)]
    pub backend: Option<String>,
    /// The backend's id for the job (ComfyUI's prompt_id).
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub finished_ms: i64,
}

/// Where the sidecar of `output` goes: the output's file name plus `.json`
/// (`fox.png` → `fox.png.json`), so sidecars of `fox.png` and `fox.webp` never clash.
pub fn sidecar_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    output.with_file_name(name)
}

/// Writes `sidecar` to `<output>.json` and returns that path.
///
/// Written to a temporary file and renamed into place, so a reader (or a crash) never sees
/// half a JSON document; an older sidecar under the same name is replaced.
pub fn write_sidecar(path_of_output: &Path, sidecar: &Sidecar) -> io::Result<PathBuf> {
    let path = sidecar_path(path_of_output);
    let json = serde_json::to_vec_pretty(sidecar).map_err(io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = super::temp_path(dir, &name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

/// Reads a sidecar written by [`write_sidecar`]; `path` is the sidecar's own path.
pub fn read_sidecar(path: &Path) -> io::Result<Sidecar> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Sidecar {
        let values = json!({"prompt": "a red fox", "steps": 20, "cfg": 7.5, "seed": 42u64})
            .as_object()
            .cloned()
            .unwrap();
        Sidecar {
            job_id: JobId("00112233aabbccdd".into()),
            workflow: "txt2img".into(),
            values,
            workflow_json: json!({"3": {"class_type": "KSampler", "inputs": {"seed": 42}}}),
            seed: Some(u64::MAX),
            backend: Some("gpu-1".into()),
            remote_id: Some("5f7c".into()),
            created_ms: 1_700_000_000_000,
            finished_ms: 1_700_000_012_345,
        }
    }

    #[test]
    fn sidecar_path_appends_json() {
        assert_eq!(
            sidecar_path(Path::new("/o/fox.png")),
            PathBuf::from("/o/fox.png.json")
        );
    }

    #[test]
    fn sidecar_round_trips_and_leaves_no_temp_file() {
        let dir = crate::outputs::test_dir("sidecar");
        let output = dir.join("fox.png");
        let sidecar = sample();
        let path = write_sidecar(&output, &sidecar).unwrap();
        assert_eq!(path, dir.join("fox.png.json"));
        assert_eq!(read_sidecar(&path).unwrap(), sidecar);

        // Every field is in the JSON under its own name, for people and other tools.
        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["job_id"], "00112233aabbccdd");
        assert_eq!(raw["seed"], json!(u64::MAX));
        assert_eq!(raw["values"]["cfg"], 7.5);
        assert_eq!(raw["workflow_json"]["3"]["class_type"], "KSampler");
        assert_eq!(raw["finished_ms"], 1_700_000_012_345i64);

        // Rewriting replaces it.
        let mut second = sidecar.clone();
        second.seed = None;
        write_sidecar(&output, &second).unwrap();
        assert_eq!(read_sidecar(&path).unwrap(), second);

        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("fox.png.json")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_sidecar_reports_a_missing_folder() {
        let dir = crate::outputs::test_dir("sidecar-missing");
        let err = write_sidecar(&dir.join("nope/fox.png"), &sample()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
