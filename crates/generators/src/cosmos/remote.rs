//! The remote side of a Cosmos job: where its files live on the host, the container's name and
//! the exact shell commands run there. Pure: every command is built here and tested here.

use super::spec::{CosmosKind, INPUT_VIDEO};

/// Our wrapper script, uploaded before every job.
pub const WRAPPER_SCRIPT: &str = include_str!("comfycord_cosmos.sh");
/// Where the wrapper goes, relative to the checkout.
pub const WRAPPER_PATH: &str = "bashscripts/comfycord_cosmos.sh";
/// What the wrapper appends to run.log when torchrun ends.
pub const COMPLETE_MARKER: &str = "[COSMOS_COMPLETE]";
/// Prefix of every container comfycord starts.
pub const CONTAINER_PREFIX: &str = "comfycord_cosmos_";

/// How the host is laid out and driven (from config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// The cosmos-transfer1 checkout, mounted at /workspace.
    pub remote_dir: String,
    pub image: String,
    /// How docker is invoked, e.g. `sudo docker`.
    pub docker: String,
    /// Mounted at /root/.cache/huggingface; `$HOME/...` is expanded by the remote shell.
    pub hf_cache: String,
    pub num_gpu: u32,
    pub cuda_devices: String,
    pub checkpoint_dir: String,
}

/// Single-quotes a word for a POSIX shell.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A path that may start with `$HOME/`, quoted so the remote shell expands only `$HOME`.
fn quote_home(path: &str) -> String {
    match path.strip_prefix("$HOME/") {
        Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
        None => quote(path),
    }
}

/// Whether a job id is safe to use whole in paths and container names.
pub fn valid_job_id(job: &str) -> bool {
    !job.is_empty() && job.len() <= 64 && job.chars().all(|c| c.is_ascii_alphanumeric())
}

impl HostLayout {
    pub fn container(&self, kind: CosmosKind, job: &str) -> String {
        format!("{CONTAINER_PREFIX}{}_{job}", kind.word())
    }

    fn abs(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote_dir.trim_end_matches('/'))
    }

    pub fn run_dir(&self, job: &str) -> String {
        self.abs(&format!("runs/{job}"))
    }

    pub fn inputs_dir(&self, job: &str) -> String {
        self.abs(&format!("runs/{job}/inputs/videos"))
    }

    pub fn input_video(&self, job: &str) -> String {
        format!("{}/{INPUT_VIDEO}", self.inputs_dir(job))
    }

    pub fn spec_path(&self, job: &str) -> String {
        self.abs(&format!("runs/{job}/inputs/spec.json"))
    }

    pub fn output_dir(&self, job: &str) -> String {
        self.abs(&format!("outputs/run_{job}"))
    }

    pub fn wrapper(&self) -> String {
        self.abs(WRAPPER_PATH)
    }

    /// Checks that the checkout, its checkpoints and the image are there; prints what is
    /// missing, one per line, and exits 3 if anything is.
    pub fn preflight_command(&self) -> String {
        let d = quote(&self.remote_dir);
        format!(
            "missing=0; \
             [ -d {d}/cosmos_transfer1 ] || {{ echo \"no cosmos_transfer1 checkout in {rd}\"; missing=1; }}; \
             [ -d {d}/checkpoints ] || {{ echo \"no checkpoints folder in {rd}\"; missing=1; }}; \
             {docker} image inspect {img} >/dev/null 2>&1 || {{ echo \"docker image {rdimg} is not on the host\"; missing=1; }}; \
             mkdir -p {d}/bashscripts {d}/runs {d}/outputs; \
             [ $missing = 0 ] || exit 3",
            rd = self.remote_dir.replace('"', ""),
            docker = self.docker,
            img = quote(&self.image),
            rdimg = self.image.replace('"', ""),
        )
    }

    /// Names of running containers of the image (the GPU is busy when any is listed).
    pub fn busy_command(&self) -> String {
        format!(
            "{} ps --filter ancestor={} --format '{{{{.Names}}}}'",
            self.docker,
            quote(&self.image)
        )
    }

    pub fn mkdirs_command(&self, job: &str) -> String {
        format!(
            "mkdir -p {} {}",
            quote(&self.inputs_dir(job)),
            quote(&self.output_dir(job))
        )
    }

    /// Starts the job's container detached; the SSH session can end while it runs.
    pub fn run_command(&self, kind: CosmosKind, job: &str) -> String {
        let inner = format!(
            "bash /workspace/{WRAPPER_PATH} {} {job} {} {} {}",
            kind.word(),
            self.num_gpu,
            quote(&self.cuda_devices),
            quote(&self.checkpoint_dir)
        );
        format!(
            "{docker} run -d --name {name} --gpus all --ipc=host --shm-size=8g \
             -v {dir}:/workspace -v {hf}:/root/.cache/huggingface -w /workspace {img} bash -lc {inner}",
            docker = self.docker,
            name = self.container(kind, job),
            dir = quote(&self.remote_dir),
            hf = quote_home(&self.hf_cache),
            img = quote(&self.image),
            inner = quote(&inner),
        )
    }

    /// Follows the container's output from `since_lines` lines in (0: from the start).
    pub fn logs_command(&self, kind: CosmosKind, job: &str, since_lines: u64) -> String {
        let name = self.container(kind, job);
        if since_lines == 0 {
            format!("{} logs -f {name} 2>&1", self.docker)
        } else {
            // Replays everything and skips what was already read: `docker logs` has no line
            // offset, and a restart must not show old phases again.
            format!(
                "{} logs -f {name} 2>&1 | tail -n +{}",
                self.docker,
                since_lines + 1
            )
        }
    }

    pub fn wait_command(&self, kind: CosmosKind, job: &str) -> String {
        format!("{} wait {}", self.docker, self.container(kind, job))
    }

    /// `{"Running":…,"ExitCode":…,"OOMKilled":…}` of the container, or exit 1 if it is gone.
    pub fn inspect_command(&self, kind: CosmosKind, job: &str) -> String {
        format!(
            "{} inspect {} --format '{{{{json .State}}}}'",
            self.docker,
            self.container(kind, job)
        )
    }

    pub fn kill_command(&self, kind: CosmosKind, job: &str) -> String {
        format!("{} kill {}", self.docker, self.container(kind, job))
    }

    /// The last line of run.log (the completion marker when the wrapper ended).
    pub fn marker_command(&self, job: &str) -> String {
        format!(
            "tail -n 1 {}/run.log 2>/dev/null",
            quote(&self.output_dir(job))
        )
    }

    /// Removes the container and only this job's folders.
    pub fn cleanup_command(&self, kind: CosmosKind, job: &str) -> String {
        format!(
            "{} rm -f {} >/dev/null 2>&1; rm -rf {} {}",
            self.docker,
            self.container(kind, job),
            quote(&self.run_dir(job)),
            quote(&self.output_dir(job))
        )
    }

    pub fn gpu_command(&self) -> &'static str {
        "nvidia-smi --query-gpu=name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw,power.limit,clocks.current.graphics,clocks.max.graphics,driver_version --format=csv,noheader,nounits"
    }
}

/// The exit code in a `[COSMOS_COMPLETE] exit_code=N` line (a marker without one means 0).
pub fn marker_exit_code(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix(COMPLETE_MARKER)?;
    match rest.trim().strip_prefix("exit_code=") {
        Some(n) => n.trim().parse().ok(),
        None => Some(0),
    }
}

/// A GPU line of the nvidia-smi query, for `/status`.
pub fn describe_gpu(csv: &str) -> Option<String> {
    let line = csv.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() < 5 {
        return None;
    }
    let num = |s: &str| s.parse::<f64>().ok();
    let mib = |s: &str| {
        num(s)
            .map(|m| format!("{:.1} GiB", m / 1024.0))
            .unwrap_or_else(|| s.to_string())
    };
    Some(format!(
        "{} · {} free of {} · {}% busy",
        f[0],
        mib(f[3]),
        mib(f[1]),
        f[4]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> HostLayout {
        HostLayout {
            remote_dir: "/srv/cosmos transfer1".into(),
            image: "nvcr.io/me/cosmos-transfer1:latest".into(),
            docker: "sudo docker".into(),
            hf_cache: "$HOME/.cache/huggingface".into(),
            num_gpu: 1,
            cuda_devices: "0".into(),
            checkpoint_dir: "./checkpoints".into(),
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc-1.0"), "abc-1.0");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $(x)"), r"'it'\''s $(x)'");
        assert_eq!(quote(""), "''");
        assert!(valid_job_id("0123abcd"));
        assert!(!valid_job_id("../x") && !valid_job_id(""));
    }

    #[test]
    fn run_command_is_exact() {
        let l = layout();
        assert_eq!(
            l.run_command(CosmosKind::Transfer, "0123456789abcdef"),
            "sudo docker run -d --name comfycord_cosmos_transfer_0123456789abcdef --gpus all --ipc=host --shm-size=8g \
             -v '/srv/cosmos transfer1':/workspace -v \"$HOME\"/.cache/huggingface:/root/.cache/huggingface -w /workspace \
             nvcr.io/me/cosmos-transfer1:latest bash -lc 'bash /workspace/bashscripts/comfycord_cosmos.sh transfer 0123456789abcdef 1 0 ./checkpoints'"
        );
        assert_eq!(
            l.logs_command(CosmosKind::Upscale, "j", 12),
            "sudo docker logs -f comfycord_cosmos_upscale_j 2>&1 | tail -n +13"
        );
        assert_eq!(
            l.cleanup_command(CosmosKind::Transfer, "j"),
            "sudo docker rm -f comfycord_cosmos_transfer_j >/dev/null 2>&1; rm -rf '/srv/cosmos transfer1/runs/j' '/srv/cosmos transfer1/outputs/run_j'"
        );
    }

    #[test]
    fn markers_and_gpu() {
        assert_eq!(
            marker_exit_code("[COSMOS_COMPLETE] exit_code=137"),
            Some(137)
        );
        assert_eq!(marker_exit_code("[COSMOS_COMPLETE]"), Some(0));
        assert_eq!(marker_exit_code("Saved video"), None);
        assert_eq!(
            describe_gpu("NVIDIA H100 80GB HBM3, 81559, 1024, 80535, 3, 31, 70.1, 700.0, 345, 1980, 550.54\n").as_deref(),
            Some("NVIDIA H100 80GB HBM3 · 78.6 GiB free of 79.6 GiB · 3% busy")
        );
    }
}
