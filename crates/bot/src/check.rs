//! `comfycord check`: the config, every workflow, and every backend's `/object_info`.

use std::fmt::Write as _;

use core_comfyui::{Catalog, ComfyClient};

use crate::config::Config;

/// What one backend said.
#[derive(Debug)]
pub struct BackendReport {
    pub name: String,
    pub url: String,
    /// `Err` when the backend could not be asked.
    pub reachable: Result<String, String>,
    /// Problems per workflow on this backend.
    pub problems: Vec<(String, Vec<String>)>,
}

/// The result of a check. `ok()` decides the exit code.
#[derive(Debug)]
pub struct CheckReport {
    pub workflows: Vec<String>,
    pub catalog_errors: Vec<String>,
    pub backends: Vec<BackendReport>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.catalog_errors.is_empty()
            && !self.workflows.is_empty()
            && self
                .backends
                .iter()
                .all(|b| b.reachable.is_ok() && b.problems.is_empty())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workflows: {}",
            if self.workflows.is_empty() {
                "none loaded".into()
            } else {
                self.workflows.join(", ")
            }
        );
        for e in &self.catalog_errors {
            let _ = writeln!(out, "  ✗ {e}");
        }
        for b in &self.backends {
            match &b.reachable {
                Err(e) => {
                    let _ = writeln!(out, "backend {} ({}): ✗ unreachable: {e}", b.name, b.url);
                }
                Ok(about) => {
                    let _ = writeln!(out, "backend {} ({}): {about}", b.name, b.url);
                    for (workflow, problems) in &b.problems {
                        for p in problems {
                            let _ = writeln!(out, "  ✗ {workflow}: {p}");
                        }
                    }
                    if self.workflows.is_empty() {
                        // Nothing was checked, so nothing can be said to fit.
                        let _ = writeln!(out, "  ✗ no workflow loaded, so nothing can run here");
                    } else if b.problems.is_empty() {
                        let _ = writeln!(out, "  ✓ every workflow fits this backend");
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "{}",
            if self.ok() {
                "check passed"
            } else {
                "check FAILED"
            }
        );
        out
    }
}

/// Loads the workflows and asks every backend for `/system_stats` and `/object_info`.
pub async fn run_check(config: &Config) -> CheckReport {
    let (catalog, catalog_errors) = match Catalog::load_dir(&config.workflows_dir) {
        Ok((c, errors)) => (c, errors.iter().map(ToString::to_string).collect()),
        Err(e) => (Catalog::default(), vec![e.to_string()]),
    };
    let mut backends = Vec::new();
    for b in &config.backends {
        let report = match ComfyClient::new(config.client_config(b)) {
            Err(e) => BackendReport {
                name: b.name.clone(),
                url: b.url.clone(),
                reachable: Err(e.to_string()),
                problems: Vec::new(),
            },
            Ok(client) => check_backend(&client, &catalog, &b.name, &b.url).await,
        };
        backends.push(report);
    }
    CheckReport {
        workflows: catalog.names().map(str::to_string).collect(),
        catalog_errors,
        backends,
    }
}

async fn check_backend(
    client: &ComfyClient,
    catalog: &Catalog,
    name: &str,
    url: &str,
) -> BackendReport {
    let unreachable = |e: String| BackendReport {
        name: name.to_string(),
        url: url.to_string(),
        reachable: Err(e),
        problems: Vec::new(),
    };
    let stats = match client.system_stats().await {
        Ok(s) => s,
        Err(e) => return unreachable(e.to_string()),
    };
    let info = match client.object_info().await {
        Ok(i) => i,
        Err(e) => return unreachable(e.to_string()),
    };
    let about = format!(
        "ComfyUI {}, {} node classes, devices: {}",
        stats.system.comfyui_version.as_deref().unwrap_or("?"),
        info.len(),
        stats
            .devices
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let problems = catalog
        .check(&info)
        .into_iter()
        .map(|(w, p)| (w, p.iter().map(ToString::to_string).collect()))
        .collect();
    BackendReport {
        name: name.to_string(),
        url: url.to_string(),
        reachable: Ok(about),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reachable(problems: Vec<(String, Vec<String>)>) -> BackendReport {
        BackendReport {
            name: "gpu".into(),
            url: "http://127.0.0.1:8188".into(),
            reachable: Ok("ComfyUI 0.3.64".into()),
            problems,
        }
    }

    #[test]
    fn no_workflows_means_nothing_fits() {
        let report = CheckReport {
            workflows: Vec::new(),
            catalog_errors: vec!["cannot read the workflows folder ./nowhere".into()],
            backends: vec![reachable(Vec::new())],
        };
        let text = report.render();
        assert!(!report.ok());
        assert!(!text.contains('✓'), "{text}");
        assert!(
            text.contains("no workflow loaded, so nothing can run here"),
            "{text}"
        );
        assert!(text.ends_with("check FAILED\n"), "{text}");
    }

    #[test]
    fn a_clean_report_says_every_workflow_fits() {
        let report = CheckReport {
            workflows: vec!["txt2img".into()],
            catalog_errors: Vec::new(),
            backends: vec![reachable(Vec::new())],
        };
        assert!(report.ok());
        assert!(report
            .render()
            .contains("✓ every workflow fits this backend"));
    }
}
