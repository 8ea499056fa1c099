//! The `workflows/` folder: each `NAME.manifest.json` with its API-format workflow
//! (`NAME.json` unless the manifest's `"workflow"` names another file).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::manifest::{CheckProblem, Manifest, ManifestError};
use crate::object_info::ObjectInfo;
use crate::workflow::{Workflow, WorkflowError};

const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Workflow and manifest files above this size are refused rather than read.
pub const MAX_WORKFLOW_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// One usable workflow.
#[derive(Debug, Clone)]
pub struct WorkflowDef {
    pub name: String,
    pub manifest: Manifest,
    pub workflow: Workflow,
    pub manifest_path: PathBuf,
    pub workflow_path: PathBuf,
}

impl WorkflowDef {
    pub fn check(&self, info: &ObjectInfo) -> Vec<CheckProblem> {
        self.manifest.check(&self.workflow, info)
    }
}

/// Why one workflow of the folder was skipped.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the workflows folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is {size} bytes; the limit is {MAX_WORKFLOW_FILE_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: {source}")]
    Workflow {
        path: PathBuf,
        #[source]
        source: WorkflowError,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: the name {name:?} must be 1–32 characters of a-z, 0-9, - and _")]
    BadName { path: PathBuf, name: String },
}

/// All loaded workflows, by name, in file-name order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    defs: IndexMap<String, WorkflowDef>,
}

fn read_limited(path: &Path) -> Result<String, CatalogError> {
    let meta = std::fs::metadata(path).map_err(|source| CatalogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_WORKFLOW_FILE_BYTES {
        return Err(CatalogError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Catalog {
    /// Loads every manifest in `dir`. A broken workflow is reported and skipped, so one bad
    /// file does not take the others down; only an unreadable folder is fatal.
    pub fn load_dir(dir: &Path) -> Result<(Catalog, Vec<CatalogError>), CatalogError> {
        let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut manifests: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(MANIFEST_SUFFIX))
            })
            .collect();
        manifests.sort();
        let mut catalog = Catalog::default();
        let mut errors = Vec::new();
        for path in manifests {
            match Self::load_one(&path) {
                Ok(def) => {
                    catalog.defs.insert(def.name.clone(), def);
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((catalog, errors))
    }

    /// Loads one `NAME.manifest.json` and its workflow.
    pub fn load_one(manifest_path: &Path) -> Result<WorkflowDef, CatalogError> {
        let file_name = manifest_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name = file_name
            .strip_suffix(MANIFEST_SUFFIX)
            .unwrap_or(file_name)
            .to_string();
        if !valid_name(&name) {
            return Err(CatalogError::BadName {
                path: manifest_path.to_path_buf(),
                name,
            });
        }
        let manifest_text = read_limited(manifest_path)?;
        // Peek at the workflow file name before the full parse, which needs the workflow.
        let workflow_file = serde_json::from_str::<serde_json::Value>(&manifest_text)
            .ok()
            .and_then(|v| v.get("workflow")?.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{name}.json"));
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let workflow_path = dir.join(workflow_file);
        let workflow = Workflow::from_json(&read_limited(&workflow_path)?).map_err(|source| {
            CatalogError::Workflow {
                path: workflow_path.clone(),
                source,
            }
        })?;
        let manifest = Manifest::from_json(&manifest_text, &workflow).map_err(|source| {
            CatalogError::Manifest {
                path: manifest_path.to_path_buf(),
                source,
            }
        })?;
        Ok(WorkflowDef {
            name,
            manifest,
            workflow,
            manifest_path: manifest_path.to_path_buf(),
            workflow_path,
        })
    }

    pub fn get(&self, name: &str) -> Option<&WorkflowDef> {
        self.defs.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &WorkflowDef> {
        self.defs.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Workflows that can run on a server with this `/object_info` (no blocking problem).
    pub fn runnable(&self, info: &ObjectInfo) -> Vec<String> {
        self.defs
            .iter()
            .filter(|(_, def)| !def.check(info).iter().any(|p| p.blocking))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Problems of every workflow against one server, by workflow name (clean ones omitted).
    pub fn check(&self, info: &ObjectInfo) -> IndexMap<String, Vec<CheckProblem>> {
        self.defs
            .iter()
            .map(|(name, def)| (name.clone(), def.check(info)))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("comfycord-catalog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_good_and_reports_bad() {
        let dir = temp_dir("mixed");
        std::fs::write(
            dir.join("ok.json"),
            r#"{"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a"}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("ok.manifest.json"),
            r#"{"params": {"prefix": {"type": "string", "node": "1", "input": "filename_prefix"}}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("ui.json"), r#"{"nodes": [], "links": []}"#).unwrap();
        std::fs::write(dir.join("ui.manifest.json"), r#"{"params": {}}"#).unwrap();
        std::fs::write(dir.join("orphan.manifest.json"), r#"{"params": {}}"#).unwrap();
        let (catalog, errors) = Catalog::load_dir(&dir).unwrap();
        assert_eq!(catalog.names().collect::<Vec<_>>(), vec!["ok"]);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2);
        assert!(messages[0].contains("orphan.json"), "{messages:?}");
        assert!(messages[1].contains("Save (API Format)"), "{messages:?}");
        assert!(Catalog::load_dir(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
