//! The Cosmos test host: a real OpenSSH server on 127.0.0.1 whose sessions find stand-in
//! `docker`, `sudo` and `nvidia-smi` first on their PATH, and a fake cosmos-transfer1 image
//! whose `torchrun` behaves like transfer.py (see `tests/fixtures/cosmos/README.md` and
//! `shared/notes/cosmos-backend.md` §5). A Cosmos backend runs its unchanged production commands
//! against it: `sudo docker run -d … bash -lc "…"`, `docker logs -f`, `docker wait`, SFTP.
//!
//! ```no_run
//! use tests::cosmos_host::{CosmosHost, CosmosHostOptions};
//! let host = CosmosHost::start(CosmosHostOptions::default());
//! // connect to 127.0.0.1:host.port() as host.user() with host.client_key_path(),
//! // pinning host.host_public_key() ("ssh-ed25519 AAAA…"); remote_dir is host.remote_dir().
//! ```
//!
//! Needs `/usr/sbin/sshd` (`scripts/test-deps.sh` installs it) and `/usr/bin/python3`.
//! Everything lives in a temp dir that is removed on drop, with sshd and every container.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The image the fake Docker knows unless told otherwise.
pub const DEFAULT_IMAGE: &str = "nvcr.io/test/cosmos-transfer1:latest";

const SSHD: &str = "/usr/sbin/sshd";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Checkpoint files a cosmos-transfer1 checkout has after `download_checkpoints.py`; the fake
/// `torchrun` fails like `torch.load` when one it needs is missing.
const CHECKPOINT_FILES: [&str; 8] = [
    "nvidia/Cosmos-Transfer1-7B/base_model.pt",
    "nvidia/Cosmos-Transfer1-7B/vis_control.pt",
    "nvidia/Cosmos-Transfer1-7B/edge_control.pt",
    "nvidia/Cosmos-Transfer1-7B/edge_control_distilled.pt",
    "nvidia/Cosmos-Transfer1-7B/depth_control.pt",
    "nvidia/Cosmos-Transfer1-7B/seg_control.pt",
    "nvidia/Cosmos-Transfer1-7B/keypoint_control.pt",
    "nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt",
];
const CHECKPOINT_DIRS: [&str; 4] = [
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p",
    "nvidia/Cosmos-Guardrail1",
    "google-t5/t5-11b",
    "meta-llama/Llama-Guard-3-8B",
];

/// How to set the host up.
#[derive(Debug, Clone)]
pub struct CosmosHostOptions {
    /// Images the fake Docker has (`docker images`, `run`, `image inspect`).
    pub images: Vec<String>,
    /// Knobs (`FAKE_*`) written to the knobs file at start; see [`CosmosHost::set_knob`].
    pub knobs: Vec<(String, String)>,
    /// Extra variables every SSH session gets (sshd `SetEnv`), e.g. a knob fixed for the
    /// host's life.
    pub session_env: Vec<(String, String)>,
}

impl Default for CosmosHostOptions {
    fn default() -> Self {
        CosmosHostOptions {
            images: vec![DEFAULT_IMAGE.to_string()],
            knobs: Vec::new(),
            session_env: Vec::new(),
        }
    }
}

/// A container of the fake Docker, as its state files say.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// As given to `docker run`.
    pub image: String,
    /// `created`, `running` or `exited`.
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// The container's main process (its process group), 0 when not running.
    pub pid: i64,
    /// Host-side argv after mount rewriting.
    pub command: Vec<String>,
    pub auto_remove: bool,
    /// Removed (`docker rm`, or `--rm` after exit): `docker` no longer finds it.
    pub removed: bool,
}

#[derive(Debug)]
struct Sshd {
    child: Child,
    log: Arc<Mutex<String>>,
}

/// The running test host. Dropping it stops sshd, kills its sessions and every container,
/// and removes its files (set `COSMOS_HOST_KEEP=1` to keep them for a post-mortem).
#[derive(Debug)]
pub struct CosmosHost {
    root: PathBuf,
    port: u16,
    user: String,
    image: String,
    opts: CosmosHostOptions,
    sshd: Option<Sshd>,
    /// Logs of sshd runs that were stopped.
    old_logs: String,
}

impl CosmosHost {
    /// Sets the host up and starts sshd; panics (with sshd's output) if it cannot.
    pub fn start(opts: CosmosHostOptions) -> CosmosHost {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run scripts/test-deps.sh (installs openssh-server)"
        );
        assert!(!opts.images.is_empty(), "the host needs at least one image");
        let fixtures = fixtures_dir();
        for script in [
            "fakebin/docker",
            "fakebin/sudo",
            "fakebin/nvidia-smi",
            "image/bin/torchrun",
            "image/bin/python",
            "image/bin/python3",
        ] {
            ensure_executable(&fixtures.join(script));
        }

        let root = temp_dir();
        for dir in [
            "ssh",
            "home/.cache/huggingface",
            "docker",
            "remote/bashscripts",
        ] {
            std::fs::create_dir_all(root.join(dir)).expect("host dirs");
        }
        let remote = root.join("remote");
        let inference = remote.join("cosmos_transfer1/diffusion/inference");
        std::fs::create_dir_all(&inference).expect("checkout dirs");
        std::fs::write(
            inference.join("transfer.py"),
            "# Stand-in: the image's fake torchrun plays this script.\n",
        )
        .expect("transfer.py");
        for f in CHECKPOINT_FILES {
            let path = remote.join("checkpoints").join(f);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("checkpoint dir");
            std::fs::write(path, b"fake checkpoint\n").expect("checkpoint");
        }
        for d in CHECKPOINT_DIRS {
            std::fs::create_dir_all(remote.join("checkpoints").join(d)).expect("checkpoint dir");
        }

        let ssh = root.join("ssh");
        keygen(&ssh.join("host_ed25519"), "cosmos-test-host");
        keygen(&ssh.join("client_ed25519"), "comfycord-test-client");
        keygen(&ssh.join("impostor_ed25519"), "not-this-host");
        std::fs::copy(ssh.join("client_ed25519.pub"), ssh.join("authorized_keys"))
            .expect("authorized_keys");

        let images: String = opts.images.iter().map(|i| format!("{i}\n")).collect();
        std::fs::write(root.join("docker/images"), images).expect("images");
        let knobs: String = opts
            .knobs
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(root.join("docker/knobs"), knobs).expect("knobs");

        let mut host = CosmosHost {
            root,
            port: 0,
            user: current_user(),
            image: opts.images[0].clone(),
            opts,
            sshd: None,
            old_logs: String::new(),
        };
        // A port freed by the OS may be taken again before sshd binds it: try a few.
        let mut last = String::new();
        for _ in 0..8 {
            host.port = free_port();
            host.write_config();
            match host.spawn_sshd() {
                Ok(sshd) => {
                    host.sshd = Some(sshd);
                    host.write_known_hosts();
                    return host;
                }
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("sshd did not start:\n{log}"),
            }
        }
        panic!("sshd found no free port:\n{last}");
    }

    /// Stops the listening sshd ("sshd down"): new connections are refused; sessions already
    /// open go on, as with a real `systemctl stop ssh`. See [`CosmosHost::kill_sessions`].
    pub fn stop_sshd(&mut self) {
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.child.kill();
            let _ = sshd.child.wait();
            self.old_logs
                .push_str(&sshd.log.lock().expect("sshd log").clone());
        }
    }

    /// Starts sshd again on the same port with the same keys.
    pub fn start_sshd(&mut self) {
        if self.sshd.is_some() {
            return;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_sshd() {
                Ok(sshd) => {
                    self.sshd = Some(sshd);
                    return;
                }
                Err(log) if log.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("sshd did not start again on port {}:\n{log}", self.port),
            }
        }
    }

    /// Whether sshd is listening.
    pub fn sshd_running(&self) -> bool {
        self.sshd.is_some()
    }

    /// Drops every open SSH connection (kills sshd's per-connection processes), as a network
    /// cut would; containers started with `docker run -d` keep running. Returns how many
    /// connection processes were killed.
    pub fn kill_sessions(&self) -> usize {
        let Some(sshd) = &self.sshd else {
            return 0;
        };
        let listener = sshd.child.id() as i32;
        let procs = processes();
        let mut victims = Vec::new();
        let mut queue = vec![listener];
        while let Some(pid) = queue.pop() {
            for (child, (ppid, comm)) in &procs {
                if *ppid == pid && comm == "sshd" {
                    victims.push(*child);
                    queue.push(*child);
                }
            }
        }
        if victims.is_empty() {
            return 0;
        }
        let mut cmd = Command::new("kill");
        cmd.arg("-KILL").arg("--");
        for v in &victims {
            cmd.arg(v.to_string());
        }
        let _ = cmd.stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let now = processes();
            if victims
                .iter()
                .all(|v| now.get(v).is_none_or(|(_, comm)| comm != "sshd"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        victims.len()
    }

    /// Everything sshd printed (`-e`), all runs.
    pub fn sshd_log(&self) -> String {
        let mut s = self.old_logs.clone();
        if let Some(sshd) = &self.sshd {
            s.push_str(&sshd.log.lock().expect("sshd log"));
        }
        s
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The SSH user: whoever runs the tests (root on the CI machines).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (OpenSSH format, ed25519, no passphrase).
    pub fn client_key_path(&self) -> PathBuf {
        self.root.join("ssh/client_ed25519")
    }

    /// The client's public key line.
    pub fn client_public_key(&self) -> String {
        read_key_line(&self.root.join("ssh/client_ed25519.pub"))
    }

    /// The host's public key as `ssh-ed25519 AAAA…` (no comment): what a client pins.
    pub fn host_public_key(&self) -> String {
        read_key_line(&self.root.join("ssh/host_ed25519.pub"))
    }

    /// A valid ed25519 public key that is *not* this host's, for mismatch tests.
    pub fn other_host_public_key(&self) -> String {
        read_key_line(&self.root.join("ssh/impostor_ed25519.pub"))
    }

    /// A known_hosts file pinning this host: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.root.join("ssh/known_hosts")
    }

    /// The cosmos-transfer1 checkout on the host (`cosmos_transfer1/`, `checkpoints/`,
    /// `bashscripts/`); the backend mounts it at `/workspace`.
    pub fn remote_dir(&self) -> PathBuf {
        self.root.join("remote")
    }

    /// `$HOME` of every SSH session (sshd `SetEnv HOME=…`), with `.cache/huggingface`.
    pub fn home_dir(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The first (default) image.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The fake Docker's state (`containers/`, `removed/`, `images`, `knobs`).
    pub fn docker_state_dir(&self) -> PathBuf {
        self.root.join("docker")
    }

    /// The host's temp dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `tests/fixtures/cosmos/fakebin`, first on every session's PATH.
    pub fn fakebin_dir() -> PathBuf {
        fixtures_dir().join("fakebin")
    }

    /// Small real MP4s: `input.mp4` (121 frames), `input_241f.mp4` (241 frames, two clips),
    /// `output.mp4` and `output_upscaled.mp4` (what the fake writes).
    pub fn media_dir() -> PathBuf {
        fixtures_dir().join("media")
    }

    /// A 121-frame input video (one clip).
    pub fn input_video() -> PathBuf {
        Self::media_dir().join("input.mp4")
    }

    /// Sets a knob in the knobs file; it applies to every stand-in started afterwards (a
    /// container takes its knobs when it starts).
    pub fn set_knob(&self, name: &str, value: &str) {
        let mut knobs = self.read_knobs();
        knobs.retain(|(k, _)| k != name);
        knobs.push((name.to_string(), value.to_string()));
        self.write_knobs(&knobs);
    }

    pub fn clear_knob(&self, name: &str) {
        let mut knobs = self.read_knobs();
        knobs.retain(|(k, _)| k != name);
        self.write_knobs(&knobs);
    }

    /// A system `ssh` command to this host with the pinned host key, ready for `.output()`.
    pub fn ssh(&self, remote_command: &str) -> Command {
        self.ssh_with_known_hosts(&self.known_hosts_path(), remote_command)
    }

    /// A system `ssh` command that trusts only the keys in `known_hosts`.
    pub fn ssh_with_known_hosts(&self, known_hosts: &Path, remote_command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(self.client_key_path())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote_command)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the fake `docker` here, with an SSH session's environment (no SSH involved).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(Self::fakebin_dir().join("docker"))
            .args(args)
            .env_clear()
            .envs(self.session_env())
            .stdin(Stdio::null())
            .output()
            .expect("run fake docker")
    }

    /// Starts a long-running container of the image with `--gpus all` ("GPU busy"); returns
    /// its id. `docker kill NAME` or the host's drop ends it.
    pub fn start_busy_container(&self, name: &str) -> String {
        let out = self.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--gpus",
            "all",
            &self.image,
            "sleep",
            "3600",
        ]);
        assert!(
            out.status.success(),
            "busy container: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Every container, live ones first (newest first), then removed ones.
    pub fn containers(&self) -> Vec<Container> {
        let mut live = self.read_containers("containers", false);
        live.extend(self.read_containers("removed", true));
        live
    }

    /// The live (not removed) container with this name.
    pub fn container(&self, name: &str) -> Option<Container> {
        let name = name.trim_start_matches('/');
        self.read_containers("containers", false)
            .into_iter()
            .find(|c| c.name == name)
    }

    /// The newest container with this name, live or removed.
    pub fn container_any(&self, name: &str) -> Option<Container> {
        let name = name.trim_start_matches('/');
        self.containers().into_iter().find(|c| c.name == name)
    }

    /// A container's whole output (stdout and stderr records in order), live or removed.
    pub fn container_log(&self, name: &str) -> Option<String> {
        let c = self.container_any(name)?;
        let dir = if c.removed { "removed" } else { "containers" };
        let text = std::fs::read_to_string(
            self.docker_state_dir()
                .join(dir)
                .join(&c.id)
                .join("log.jsonl"),
        )
        .ok()?;
        let mut out = String::new();
        for line in text.lines() {
            if let Ok(rec) = serde_json::from_str::<Value>(line) {
                out.push_str(rec["log"].as_str().unwrap_or(""));
            }
        }
        Some(out)
    }

    /// Waits until the named container has exited; its exit code, or None on timeout.
    pub fn wait_container_exit(&self, name: &str, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.container_any(name) {
                if c.status == "exited" {
                    return Some(c.exit_code);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills every running container (SIGKILL to its process group).
    pub fn kill_all_containers(&self) {
        for c in self.read_containers("containers", false) {
            if c.running && c.pid > 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", c.pid)])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    fn session_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_string(),
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    Self::fakebin_dir().display()
                ),
            ),
            ("HOME".to_string(), self.home_dir().display().to_string()),
            (
                "FAKE_DOCKER_STATE".to_string(),
                self.docker_state_dir().display().to_string(),
            ),
        ];
        env.extend(self.opts.session_env.iter().cloned());
        env
    }

    fn read_knobs(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.docker_state_dir().join("knobs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write_knobs(&self, knobs: &[(String, String)]) {
        let text: String = knobs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let path = self.docker_state_dir().join("knobs");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write knobs");
        std::fs::rename(tmp, path).expect("replace knobs");
    }

    fn read_containers(&self, sub: &str, removed: bool) -> Vec<Container> {
        let dir = self.docker_state_dir().join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let read = |f: &str| -> Option<Value> {
                serde_json::from_str(&std::fs::read_to_string(entry.path().join(f)).ok()?).ok()
            };
            let (Some(config), Some(state)) = (read("config.json"), read("state.json")) else {
                continue;
            };
            let created = config["created_ns"].as_i64().unwrap_or(0);
            out.push((
                created,
                Container {
                    id: config["Id"].as_str().unwrap_or("").to_string(),
                    name: config["Name"]
                        .as_str()
                        .unwrap_or("")
                        .trim_start_matches('/')
                        .to_string(),
                    image: config["Image"].as_str().unwrap_or("").to_string(),
                    status: state["Status"].as_str().unwrap_or("").to_string(),
                    running: state["Running"].as_bool().unwrap_or(false),
                    exit_code: state["ExitCode"].as_i64().unwrap_or(0),
                    oom_killed: state["OOMKilled"].as_bool().unwrap_or(false),
                    pid: state["Pid"].as_i64().unwrap_or(0),
                    command: config["fake"]["argv"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| s.as_str().unwrap_or("").to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    auto_remove: config["HostConfig"]["AutoRemove"]
                        .as_bool()
                        .unwrap_or(false),
                    removed,
                },
            ));
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        out.into_iter().map(|(_, c)| c).collect()
    }

    fn write_config(&self) {
        let ssh = self.root.join("ssh");
        let mut env = vec![format!(
            "PATH={}:/usr/local/bin:/usr/bin:/bin",
            Self::fakebin_dir().display()
        )];
        env.push(format!("HOME={}", self.home_dir().display()));
        env.push(format!(
            "FAKE_DOCKER_STATE={}",
            self.docker_state_dir().display()
        ));
        for (k, v) in &self.opts.session_env {
            env.push(format!("{k}={v}"));
        }
        let setenv: Vec<String> = env
            .into_iter()
            .map(|e| {
                assert!(!e.contains('"'), "SetEnv values cannot hold '\"': {e}");
                if e.contains(char::is_whitespace) {
                    format!("\"{e}\"")
                } else {
                    e
                }
            })
            .collect();
        let config = format!(
            "# The Cosmos test host's sshd (tests/src/cosmos_host).\n\
             Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {ssh}/host_ed25519\n\
             PidFile {ssh}/sshd.pid\n\
             AuthorizedKeysFile {ssh}/authorized_keys\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PermitUserEnvironment no\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             MaxStartups 64\n\
             MaxSessions 64\n\
             Subsystem sftp internal-sftp\n\
             SetEnv {setenv}\n",
            port = self.port,
            ssh = ssh.display(),
            setenv = setenv.join(" "),
        );
        std::fs::write(ssh.join("sshd_config"), config).expect("sshd_config");
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(ssh.join("sshd_config"))
            .output()
            .expect("run sshd -t");
        assert!(
            check.status.success(),
            "sshd -t rejected the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    fn write_known_hosts(&self) {
        std::fs::write(
            self.known_hosts_path(),
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_public_key()),
        )
        .expect("known_hosts");
    }

    /// Spawns `sshd -D -e` and waits for "Server listening"; on failure, its output.
    fn spawn_sshd(&self) -> Result<Sshd, String> {
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.root.join("ssh/sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {SSHD}: {e}"))?;
        let stderr = child.stderr.take().expect("sshd stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<bool>();
        let sink = Arc::clone(&log);
        // Drains sshd's log for its whole life (a full pipe would stall it).
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server listening on") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(true);
                    }
                }
                let mut log = sink.lock().expect("sshd log");
                log.push_str(&line);
                log.push('\n');
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(false);
            }
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(true) => Ok(Sshd { child, log }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                // let the reader take sshd's last words
                std::thread::sleep(Duration::from_millis(50));
                let text = log.lock().expect("sshd log").clone();
                Err(match other {
                    Err(_) => format!("no \"Server listening\" within {READY_TIMEOUT:?}\n{text}"),
                    _ => text,
                })
            }
        }
    }
}

impl Drop for CosmosHost {
    fn drop(&mut self) {
        self.kill_sessions();
        self.stop_sshd();
        self.kill_all_containers();
        if std::env::var_os("COSMOS_HOST_KEEP").is_none() {
            // supervisors may still be writing their last state: a second try settles it
            for _ in 0..3 {
                if std::fs::remove_dir_all(&self.root).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cosmos")
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("comfycord-cosmos-host-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A checkout may lose the executable bits (e.g. an archive); the stand-ins need them.
fn ensure_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stand-in {} missing: {e}", path.display()));
    let mode = meta.permissions().mode();
    if mode & 0o111 != 0o111 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755));
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `type base64` of an OpenSSH public key file, without the comment.
fn read_key_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("public key");
    let mut parts = text.split_whitespace();
    format!(
        "{} {}",
        parts.next().expect("key type"),
        parts.next().expect("key data")
    )
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "no user name from id -un");
    user
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// pid → (parent pid, comm) of every process, from /proc.
fn processes() -> HashMap<i32, (i32, String)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" {
            out.insert(pid, (ppid, comm));
        }
    }
    out
}
