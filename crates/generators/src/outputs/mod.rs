//! What happens to a job's files once the backend made them: a readable name
//! ([`output_stem`], [`unique_path`]), an all-or-nothing save ([`save_output`]), a JSON
//! sidecar to reproduce them ([`write_sidecar`]), fitting them under Discord's upload limit
//! ([`fit_image`], [`fit_file_for_upload`]) and deleting old ones ([`apply_retention`]).

mod fit;
mod grid;
mod naming;
mod retention;
mod save;
mod sidecar;

use std::path::{Path, PathBuf};

pub use fit::{
    fit_file_for_upload, fit_image, FitError, Fitted, FittedFormat, Upload, MAX_ALLOC, MAX_SIDE,
};
pub use grid::{compose_grid, GridError, GRID_IMAGES};
pub use naming::{output_stem, unique_path, utc_timestamp};
pub use retention::{apply_retention, RetentionReport};
pub use save::{kind_of, save_output, OutputError};
pub use sidecar::{read_sidecar, sidecar_path, write_sidecar, Sidecar};

/// A hidden temporary name next to `name` in `dir`, unique per call, for writing a file
/// before it is renamed or linked into place.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// A fresh, empty folder for one test.
#[cfg(test)]
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "comfycord-outputs-{name}-{:016x}",
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
