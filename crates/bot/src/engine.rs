//! The engine the bot and `comfycord run` share: the workflows folder, the job kinds, and the
//! scheduler with one generator per backend.

use std::sync::Arc;

use anyhow::Context as _;
use core_comfyui::{Catalog, ComfyClient};
use generators::cosmos::family::CosmosFamily;
use generators::cosmos::CosmosGenerator;
use generators::kinds::{CatalogFamily, JobFamily};
use generators::{stable_client_id, ComfyGenerator, Generator, Journal, Kinds, Notice, Scheduler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// Everything `serve` starts; kept together so tests can drive it.
pub struct Engine {
    pub scheduler: Scheduler,
    pub notices: mpsc::Receiver<Notice>,
    pub journal: Arc<dyn Journal>,
    pub catalog: Arc<Catalog>,
    pub generators: Vec<ComfyGenerator>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("generators", &self.generators.len())
            .finish_non_exhaustive()
    }
}

/// Every job family the config runs: the catalog's workflows, and Cosmos when a host is
/// configured. A new kind of job is added here and in `generators`, nowhere in `discord/`.
pub fn job_kinds(config: &Config, catalog: Arc<Catalog>) -> Kinds {
    let mut families: Vec<Arc<dyn JobFamily>> = vec![Arc::new(CatalogFamily::new(catalog))];
    if config.cosmos.is_some() {
        families.push(Arc::new(CosmosFamily));
    }
    Kinds::new(families)
}

/// Loads the workflows folder; a broken workflow is logged and skipped.
pub fn load_catalog(config: &Config) -> anyhow::Result<Arc<Catalog>> {
    let (catalog, errors) = Catalog::load_dir(&config.workflows_dir)
        .with_context(|| format!("loading workflows from {}", config.workflows_dir.display()))?;
    for e in &errors {
        tracing::error!(error = %e, "workflow skipped");
    }
    tracing::info!(workflows = ?catalog.names().collect::<Vec<_>>(), "workflows loaded");
    Ok(Arc::new(catalog))
}

/// The styles and wildcards beside the workflows; a file that cannot be used is logged and
/// left out.
pub fn load_library(config: &Config) -> Arc<generators::styles::Library> {
    let (library, errors) = generators::styles::Library::load(&config.workflows_dir);
    for e in &errors {
        tracing::error!(error = %e, "style or wildcard file skipped");
    }
    tracing::info!(
        styles = library.styles().count(),
        wildcards = library.wildcard_names().count(),
        "styles and wildcards loaded"
    );
    Arc::new(library)
}

/// Starts the scheduler with one generator per
/// backend, owned by `tracker` and stopped by `cancel`.
pub fn start_engine(
    config: &Config,
    catalog: Arc<Catalog>,
    journal: Arc<dyn Journal>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Engine> {
    let mut generators = Vec::new();
    for b in &config.backends {
        let mut client_config = config.client_config(b);
        client_config.client_id = Some(stable_client_id(journal.as_ref(), &b.name)?);
        let client =
            ComfyClient::new(client_config).with_context(|| format!("backend {}", b.name))?;
        generators.push(ComfyGenerator::new(
            b.name.clone(),
            client,
            catalog.clone(),
            &config.outputs.dir,
        ));
    }
    let mut gens: Vec<Arc<dyn Generator>> = generators
        .iter()
        .map(|g| Arc::new(g.clone()) as Arc<dyn Generator>)
        .collect();
    if let Some(settings) = config.cosmos_settings() {
        gens.push(Arc::new(CosmosGenerator::new(settings)));
    }
    let (scheduler, notices) = Scheduler::start(
        config.scheduler(),
        gens,
        journal.clone(),
        cancel.clone(),
        tracker,
    )?;
    Ok(Engine {
        scheduler,
        notices,
        journal,
        catalog,
        generators,
    })
}
