//! The `comfycord` binary itself: exit codes and messages of its subcommands, and the JSON log
//! format operators parse.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_comfycord"))
}

fn temp_config(body: &serde_json::Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "comfycord-cli-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let workflows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let config = temp_config(&serde_json::json!({
        "backends": [{"name": "gone", "url": format!("http://127.0.0.1:{}", closed_port())}],
        "workflows_dir": workflows,
        "comfyui": {"connect_timeout_secs": 1, "request_timeout_secs": 1, "give_up_after_secs": 1},
    }));
    let png = config.with_file_name("in.png");
    image::RgbImage::new(8, 8).save(&png).unwrap();
    // The backend is down: the run logs its attempts, then gives up.
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_comfycord"))
        .arg("--config")
        .arg(&config)
        .args(["run", "-w", "scale_image", "--image"])
        .arg(&png)
        .env_clear()
        .env("COMFYCORD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .output()
        .expect("comfycord runs");
    assert_eq!(out.status.code(), Some(1), "fails (not a timeout): {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let objects: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!objects.is_empty(), "JSON log lines: {stderr}");
    for o in &objects {
        assert!(o["level"].is_string() && o["fields"].is_object(), "{o}");
    }
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn healthcheck_says_when_the_endpoint_is_off_or_down() {
    let config = temp_config(&serde_json::json!({
        "backends": [{"name": "a", "url": "http://127.0.0.1:9"}],
    }));
    let off = bin()
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(off.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&off.stderr).contains("health.listen"));
    let down = bin()
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .env_clear()
        .env(
            "COMFYCORD_HEALTH__LISTEN",
            format!("127.0.0.1:{}", closed_port()),
        )
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

// ---- the binary against the fakes: logs, locks, env-only start, shutdown ----

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::bot_harness::{
    base_config, copy_workflows, generate, has_result, is_sampling, registered_since, slow_comfy,
    temp_dir,
};
use tests::fake_comfyui::{FakeComfy, FakeOptions};
use tests::fake_discord::{self, FakeDiscord, GUILD_ID};

const WAIT: Duration = Duration::from_secs(30);
/// Docker sends SIGKILL this long after SIGTERM.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary running in the background, its stderr collected.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("comfycord starts");
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process to end by itself, up to `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM (what `docker stop` sends); the exit status and how long the stop took.
    fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(ok.success());
        let status = self.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("comfycord did not stop after SIGTERM:\n{}", self.stderr())
        });
        (status, sent.elapsed())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fakes and a folder with workflows, for one binary run.
async fn fakes(tag: &str, token: &str) -> (FakeDiscord, FakeComfy, PathBuf) {
    fakes_with(tag, token, FakeOptions::default()).await
}

async fn fakes_with(
    tag: &str,
    token: &str,
    comfy: FakeOptions,
) -> (FakeDiscord, FakeComfy, PathBuf) {
    let discord = FakeDiscord::start_with(fake_discord::FakeOptions {
        token: token.into(),
        ..fake_discord::FakeOptions::default()
    })
    .await;
    let comfy = FakeComfy::start_with(comfy).await;
    let dir = temp_dir(tag);
    copy_workflows(&dir.join("workflows"));
    (discord, comfy, dir)
}

fn write_config(dir: &Path, config: &serde_json::Value) -> PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    path
}

async fn wait_registered(discord: &FakeDiscord, since: std::time::Instant, bot: &Running) {
    assert!(
        registered_since(discord, since).await,
        "the bot registers its commands:\n{}",
        bot.stderr()
    );
}

#[test]
fn version_is_the_workspace_version() {
    let out = bin().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("comfycord {}", env!("CARGO_PKG_VERSION"))
    );
    assert_ne!(env!("CARGO_PKG_VERSION"), "0.0.0", "a real version number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_a_workflows_folder_says_nothing_fits() {
    let comfy = FakeComfy::start_with(FakeOptions::default()).await;
    let config = temp_config(&serde_json::json!({
        "backends": [{"name": "a", "url": comfy.url()}],
        "workflows_dir": "/nonexistent/workflows",
    }));
    let out = bin()
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains('✓'), "{text}");
    assert!(
        text.contains("no workflow loaded, so nothing can run here"),
        "{text}"
    );
    comfy.shutdown().await;
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_a_whole_job_never_show_a_token() {
    let token = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.Gtrace.bot-token-that-must-never-be-logged";
    let (discord, comfy, dir) = fakes("trace", token).await;
    let config = write_config(&dir, &base_config(&discord, &comfy.url(), &dir));
    let since = std::time::Instant::now();
    let mut cmd = bin();
    cmd.arg("--config")
        .arg(&config)
        .env_clear()
        .env("RUST_LOG", "trace");
    let mut bot = Running::start(cmd);
    wait_registered(&discord, since, &bot).await;
    let mut sent = Vec::new();
    for prompt in ["a lighthouse", "a harbour"] {
        let s = discord.send_interaction(generate(prompt)).unwrap();
        discord
            .wait_for_message(|m| m.interaction_id == Some(s.id) && has_result(m), WAIT)
            .await
            .unwrap_or_else(|| panic!("{prompt}: a result"));
        sent.push(s);
    }
    let (status, _) = bot.terminate();
    assert!(status.success(), "{status:?}");
    let logs = bot.stderr();
    // Trace level really ran (so the check below means something), and tokens were there to
    // hide: serenity traces every request route, interaction tokens included.
    let trace_lines = logs.lines().filter(|l| l.contains("TRACE")).count();
    assert!(trace_lines >= 20, "trace lines: {trace_lines}");
    assert!(
        logs.contains("[redacted token]"),
        "interaction tokens were scrubbed"
    );
    assert!(!logs.contains(token), "the bot token is in the logs");
    assert!(!logs.contains("bot-token-that-must-never-be-logged"));
    for s in &sent {
        assert!(
            !logs.contains(&s.token),
            "interaction token of {} is in the logs",
            s.id
        );
    }
    discord.shutdown().await;
    comfy.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bot_on_the_same_data_folder_refuses_to_start() {
    let (discord, comfy, dir) = fakes("lock", "lock-test-bot-token").await;
    let config = write_config(&dir, &base_config(&discord, &comfy.url(), &dir));
    let since = std::time::Instant::now();
    let mut cmd = bin();
    cmd.arg("--config").arg(&config).env_clear();
    let mut first = Running::start(cmd);
    wait_registered(&discord, since, &first).await;
    let mut cmd = bin();
    cmd.arg("--config").arg(&config).env_clear();
    let mut second = Running::start(cmd);
    let status = second
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("the second bot exits:\n{}", second.stderr()));
    let text = second.stderr();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("another comfycord is already using the data folder")
            && text.contains(&format!("pid {}", first.child.id())),
        "{text}"
    );
    let (status, _) = first.terminate();
    assert!(status.success());
    discord.shutdown().await;
    comfy.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The final stage's `ENV` pairs, `WORKDIR` and `ENTRYPOINT` of the repo's Dockerfile.
fn dockerfile_runtime() -> (Vec<(String, String)>, String, Vec<String>) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Dockerfile"))
            .unwrap();
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    // Join continued lines.
    let joined = last_stage.replace("\\\n", " ");
    let mut env = Vec::new();
    let mut workdir = String::new();
    let mut entrypoint = Vec::new();
    for line in joined.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV key=value");
                env.push((k.to_string(), v.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("WORKDIR ") {
            workdir = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT is a JSON list");
        }
    }
    (env, workdir, entrypoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_entrypoint_runs_from_env_alone_and_stops_within_dockers_timeout() {
    let (env, workdir, entrypoint) = dockerfile_runtime();
    assert_eq!(entrypoint.first().map(String::as_str), Some("comfycord"));
    let token = "docker-env-only-bot-token";
    // Slow sampling: the job is still running when the stop comes.
    let (discord, comfy, dir) = fakes_with("docker", token, slow_comfy(200)).await;
    // The container's folders, here: the image's workflows, empty volumes, no config file.
    let volume = dir.join("config-volume");
    std::fs::create_dir_all(&volume).unwrap();
    let health = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let map = |v: &str| -> String {
        let v = v
            .replace("/app/workflows", &dir.join("workflows").to_string_lossy())
            .replace("/data", &dir.join("data").to_string_lossy())
            .replace("/outputs", &dir.join("outputs").to_string_lossy())
            .replace("0.0.0.0:9100", &health.to_string());
        assert!(
            !v.starts_with('/') || v.starts_with(&*dir.to_string_lossy()),
            "a container path this test does not map: {v}"
        );
        v
    };
    assert_eq!(
        workdir, "/config",
        "the mounted config folder is the working folder"
    );
    let mut cmd = bin();
    cmd.args(&entrypoint[1..])
        .current_dir(&volume)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.clone(), map(v))))
        .env("DISCORD_TOKEN", token)
        .env("COMFYUI_URL", comfy.url())
        .env("COMFYCORD_DISCORD__REGISTER_IN_GUILD", GUILD_ID.to_string())
        // Test-only: reach the fake Discord, serenity's rate limiter on.
        .env("DISCORD_API_BASE", discord.rest_url())
        .env(
            "COMFYCORD_DISCORD__TLS_OVERRIDE",
            format!(
                "{{address=\"{}\",ca_file=\"{}\"}}",
                discord.tls_address(),
                fake_discord::tls::ca_file().display()
            ),
        )
        // What Kubernetes adds for a service named comfycord: ignored, not fatal.
        .env("COMFYCORD_PORT", "tcp://10.0.0.7:9100")
        .env("COMFYCORD_SERVICE_HOST", "10.0.0.7")
        // One member queues six jobs.
        .env("COMFYCORD_LIMITS__USER_BURST", "10")
        .env("COMFYCORD_LIMITS__MAX_PENDING_PER_USER", "10");
    let since = std::time::Instant::now();
    let mut bot = Running::start(cmd);
    wait_registered(&discord, since, &bot).await;
    // A job runs, and SIGTERM arrives while it does, with Discord answering slowly.
    let s = discord
        .send_interaction(generate("stop me").option("steps", 40))
        .unwrap();
    discord
        .wait_for_message(|m| m.interaction_id == Some(s.id) && is_sampling(m), WAIT)
        .await
        .unwrap_or_else(|| panic!("the job runs:\n{}", bot.stderr()));
    // More members waiting: each is told about the restart, while Discord is slow.
    for i in 0..5 {
        let w = discord
            .send_interaction(generate(&format!("waiting {i}")))
            .unwrap();
        discord
            .wait_for_message(
                |m| m.interaction_id == Some(w.id) && m.payload.contains_key("embeds"),
                WAIT,
            )
            .await
            .unwrap_or_else(|| panic!("job {i} is queued:\n{}", bot.stderr()));
    }
    discord.faults().set_latency(Duration::from_secs(3));
    let (status, took) = bot.terminate();
    let logs = bot.stderr();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        took < DOCKER_STOP_TIMEOUT,
        "stopped in {took:?}, past Docker's stop timeout\n{logs}"
    );
    // Everyone waiting was told, within the budget.
    let told = discord
        .messages()
        .iter()
        .filter(|m| {
            m.payload.get("embeds").and_then(|e| e[0]["title"].as_str())
                == Some("Paused: restarting")
        })
        .count();
    assert_eq!(told, 6, "every member with a job was told\n{logs}");
    assert!(logs.contains("ignoring an environment variable that names no config key"));
    assert!(logs.contains("COMFYCORD_PORT"));
    discord.shutdown().await;
    comfy.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
