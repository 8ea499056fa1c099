//! The Cosmos test host, driven with the system `ssh` client exactly as a backend would drive
//! the real one: detached containers outlive their SSH session, logs stream, exit codes come
//! from `docker wait`, the fake transfer.py runs its phases, and the host key is pinned.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tests::cosmos_host::{CosmosHost, CosmosHostOptions};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a command to its end within `TIMEOUT`, killing it otherwise.
fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(child, TIMEOUT)
}

/// Waits for a child within `timeout` (killing it then), collecting what is left of its
/// piped stdout and stderr.
fn finish(mut child: Child, timeout: Duration) -> Output {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Waits (within `TIMEOUT`) until a process whose arguments include every one of `words`
/// runs: the remote end of an SSH command has started. The local `ssh` client holds the
/// remote command as one argument, so it never matches.
fn await_remote(words: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let running = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    words.iter().all(|w| args.contains(&w.as_bytes()))
                })
            });
        if running {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no process with {words:?} after {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ssh(host: &CosmosHost, command: &str) -> Output {
    run(host.ssh(command))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(host: &CosmosHost, command: &str) -> String {
    let out = ssh(host, command);
    assert!(
        out.status.success(),
        "`{command}` failed ({:?}): {}\nsshd:\n{}",
        out.status.code(),
        text(&out.stderr),
        host.sshd_log()
    );
    text(&out.stdout)
}

/// A stand-in for the backend's wrapper script (notes §1.5): torchrun's line, tee to run.log,
/// PIPESTATUS, the completion marker.
fn write_wrapper(host: &CosmosHost) {
    let script = r#"#!/bin/bash
set -u
RUN_ID=$1
mkdir -p outputs/run_$RUN_ID
export PYTHONPATH=$(pwd) CHECKPOINT_DIR=./checkpoints
torchrun --nproc_per_node=1 --nnodes=1 --node_rank=0 cosmos_transfer1/diffusion/inference/transfer.py \
  --checkpoint_dir $CHECKPOINT_DIR --video_save_folder outputs/run_$RUN_ID \
  --controlnet_specs runs/$RUN_ID/inputs/spec.json --guidance 5 --seed 1 \
  --offload_text_encoder_model --offload_guardrail_models --num_gpus 1 2>&1 | tee outputs/run_$RUN_ID/run.log
rc=${PIPESTATUS[0]}
echo "[COSMOS_COMPLETE] exit_code=$rc" >> outputs/run_$RUN_ID/run.log
exit $rc
"#;
    std::fs::write(host.remote_dir().join("bashscripts/inference.sh"), script).expect("wrapper");
}

fn write_run(host: &CosmosHost, run_id: &str, prompt: &str) {
    let inputs = host.remote_dir().join(format!("runs/{run_id}/inputs"));
    std::fs::create_dir_all(inputs.join("videos")).expect("inputs");
    std::fs::copy(CosmosHost::input_video(), inputs.join("videos/color.mp4")).expect("video");
    let spec = serde_json::json!({
        "prompt": prompt,
        "negative_prompt": "low quality, blurry, distorted",
        "input_video_path": format!("runs/{run_id}/inputs/videos/color.mp4"),
        "num_steps": 35,
        "guidance": 5.0,
        "sigma_max": 70.0,
        "seed": 1,
        "fps": 24,
        "vis": {"control_weight": 0.25},
        "edge": {"control_weight": 0.25},
    });
    std::fs::write(inputs.join("spec.json"), spec.to_string()).expect("spec");
}

/// The transfer `docker run` of notes §6 (detached, no `--rm`: the exit code must survive a
/// fast failure until `docker wait` asks for it).
fn transfer_command(host: &CosmosHost, run_id: &str) -> String {
    format!(
        "sudo docker run -d --name cosmos_transfer_{run_id} --gpus all --ipc=host --shm-size=8g \
         -v {remote}:/workspace -v $HOME/.cache/huggingface:/root/.cache/huggingface -w /workspace {image} \
         bash -lc \"bash /workspace/bashscripts/inference.sh {run_id} 1 0 prompt 5 1\"",
        remote = host.remote_dir().display(),
        image = host.image(),
    )
}

/// The loguru messages, in order, without their `[time|level|site]` prefix.
fn messages(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let start = l.find("[")?;
            let rest = &l[start..];
            let close = rest.find("] ")?;
            let head = &rest[1..close];
            (head.split('|').count() == 3).then(|| rest[close + 2..].to_string())
        })
        .collect()
}

fn position(msgs: &[String], needle: &str) -> usize {
    msgs.iter()
        .position(|m| m.starts_with(needle))
        .unwrap_or_else(|| panic!("no {needle:?} among:\n{}", msgs.join("\n")))
}

#[test]
fn detached_container_outlives_its_session_and_wait_returns_its_code() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let id = ok(
        &host,
        &format!(
            "sudo docker run -d --name slow {} bash -lc 'echo started; sleep 1; echo done; exit 7'",
            host.image()
        ),
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "a 64-hex id: {id:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    // the session that started it has ended; the container goes on
    let c = host.container("slow").expect("container");
    assert!(c.running, "{c:?}");
    let ps = ok(
        &host,
        &format!(
            "sudo docker ps --filter ancestor={} --format '{{{{.ID}}}}|{{{{.Names}}}}|{{{{.Status}}}}|{{{{.Image}}}}|{{{{.CreatedAt}}}}'",
            host.image()
        ),
    );
    let fields: Vec<&str> = ps.trim().split('|').collect();
    assert_eq!(fields.len(), 5, "{ps}");
    assert_eq!(fields[0], &id[..12]);
    assert_eq!(fields[1], "slow");
    assert!(fields[2].starts_with("Up "), "{ps}");
    assert_eq!(fields[3], host.image());
    assert!(fields[4].ends_with("+0000 UTC"), "{ps}");

    assert_eq!(ok(&host, "sudo docker wait slow").trim(), "7");
    let state: serde_json::Value = serde_json::from_str(&ok(
        &host,
        "sudo docker inspect slow --format '{{json .State}}'",
    ))
    .expect("state json");
    assert_eq!(state["Running"], false);
    assert_eq!(state["ExitCode"], 7);
    assert_eq!(state["OOMKilled"], false);
    assert_eq!(state["Status"], "exited");
    assert_eq!(ok(&host, "sudo docker logs slow"), "started\ndone\n");
    // without --rm it stays until removed
    assert_eq!(ok(&host, "sudo docker rm slow").trim(), "slow");
    assert!(host.container("slow").is_none());
}

#[test]
fn logs_follow_streams_until_the_container_exits() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    ok(
        &host,
        &format!(
            "sudo docker run -d --name ticker {} bash -lc 'for i in 1 2 3 4 5; do echo tick $i; echo warn $i >&2; sleep 0.3; done'",
            host.image()
        ),
    );
    let mut child = host
        .ssh("sudo docker logs -f ticker")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh logs -f");
    // the first line arrives while the container still runs
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 7];
    stdout.read_exact(&mut first).expect("first bytes");
    assert_eq!(&first, b"tick 1\n");
    assert!(
        host.container("ticker").expect("ticker").running,
        "streamed before the end"
    );
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("rest");
    let out = finish(child, TIMEOUT);
    assert!(out.status.success());
    assert_eq!(text(&rest), "tick 2\ntick 3\ntick 4\ntick 5\n");
    // stderr of the container comes back on stderr (SSH extended data)
    assert_eq!(
        text(&out.stderr),
        "warn 1\nwarn 2\nwarn 3\nwarn 4\nwarn 5\n"
    );
    assert_eq!(host.container("ticker").expect("ticker").exit_code, 0);

    // --since with a timestamp from -t replays only what came at or after it
    let stamped = ok(&host, "sudo docker logs -t ticker");
    let third = stamped.lines().nth(2).expect("third line");
    let (ts, _) = third.split_once(' ').expect("timestamp");
    let since = ok(&host, &format!("sudo docker logs --since {ts} ticker"));
    assert_eq!(since, "tick 3\ntick 4\ntick 5\n");
}

#[test]
fn kill_gives_137_and_a_dropped_session_leaves_the_container_running() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    ok(
        &host,
        &format!(
            "sudo docker run -d --rm --name victim --gpus all {} bash -lc 'echo up; sleep 600'",
            host.image()
        ),
    );
    // a follower whose connection is cut: the container does not notice
    let follower = host
        .ssh("sudo docker logs -f victim")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("follower");
    // Cut only once `docker logs -f` runs on the host: before that, the only session to cut
    // may be the previous command's, closing (a loaded machine shows it).
    await_remote(&["logs", "-f", "victim"]);
    assert!(host.kill_sessions() > 0, "no session to cut");
    let out = finish(follower, TIMEOUT);
    assert_eq!(out.status.code(), Some(255), "ssh sees the drop");
    assert!(host.container("victim").expect("victim").running);

    // a waiter started before the kill gets 137 even though --rm removes the container
    let waiter = host
        .ssh("sudo docker wait victim")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("waiter");
    await_remote(&["wait", "victim"]);
    assert_eq!(ok(&host, "sudo docker kill victim").trim(), "victim");
    let waited = finish(waiter, TIMEOUT);
    assert_eq!(
        text(&waited.stdout).trim(),
        "137",
        "{}",
        text(&waited.stderr)
    );
    assert_eq!(
        host.wait_container_exit("victim", TIMEOUT),
        Some(137),
        "state records 137"
    );
    // --rm: gone afterwards, like the real engine
    let deadline = Instant::now() + TIMEOUT;
    while host.container("victim").is_some() {
        assert!(Instant::now() < deadline, "--rm did not remove it");
        std::thread::sleep(Duration::from_millis(20));
    }
    let late = ssh(&host, "sudo docker wait victim");
    assert_eq!(late.status.code(), Some(1));
    assert!(text(&late.stderr).contains("No such container: victim"));
}

#[test]
fn unknown_image_and_name_clash_exit_125() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let out = ssh(
        &host,
        "sudo docker run -d --name nothing nvcr.io/nobody/nothing:latest true",
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("Unable to find image 'nvcr.io/nobody/nothing:latest' locally"),
        "{}",
        text(&out.stderr)
    );
    assert!(host.containers().is_empty());

    host.start_busy_container("busy");
    let out = ssh(
        &host,
        &format!("sudo docker run -d --name busy {} true", host.image()),
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("Conflict. The container name \"/busy\" is already in use"),
        "{}",
        text(&out.stderr)
    );
    let out = ssh(&host, "sudo docker image inspect nvcr.io/nobody/nothing");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("No such image"));
    let out = ssh(
        &host,
        &format!(
            "sudo docker image inspect {} --format '{{{{.Id}}}}'",
            host.image()
        ),
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("sha256:"));
}

#[test]
fn transfer_runs_its_phases_and_writes_the_outputs() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    write_wrapper(&host);
    write_run(&host, "rs_happy", "a red car on a wet road");
    let started = Instant::now();
    let id = ok(&host, &transfer_command(&host, "rs_happy"));
    assert_eq!(id.trim().len(), 64);
    let code = ok(&host, "sudo docker wait cosmos_transfer_rs_happy");
    assert_eq!(code.trim(), "0");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "quick: {:?}",
        started.elapsed()
    );

    let out = host.remote_dir().join("outputs/run_rs_happy");
    let video = std::fs::read(out.join("output.mp4")).expect("output.mp4");
    assert_eq!(&video[4..8], b"ftyp");
    assert_eq!(
        std::fs::read_to_string(out.join("output.txt")).expect("output.txt"),
        "a red car on a wet road"
    );
    for hint in ["vis", "edge"] {
        assert!(out.join(format!("{hint}_input_control_0.mp4")).exists());
    }
    let run_log = std::fs::read_to_string(out.join("run.log")).expect("run.log");
    assert!(
        run_log.ends_with("[COSMOS_COMPLETE] exit_code=0\n"),
        "{run_log}"
    );

    // what `docker logs` showed (the container was --rm'd; the host keeps its record)
    let log = host
        .container_log("cosmos_transfer_rs_happy")
        .expect("container log");
    assert!(
        !log.contains("COSMOS_COMPLETE"),
        "the marker is in run.log only"
    );
    let msgs = messages(&log);
    let order = [
        "control_inputs: {",
        "args in json: {",
        "final args: {",
        "No checkpoint path specified for vis",
        "Start creating base model",
        "Loading ctrl model from ckpt_path: ./checkpoints/nvidia/Cosmos-Transfer1-7B/vis_control.pt",
        "running preprocessor",
        "no input_control provided for vis",
        "Running batch generation with batch_size=1",
        "Running guardrail checks on all prompts",
        "Starting T5 compute",
        "Finish text embedding on prompt",
        "Run generation",
        "Starting data augmentation",
        "Making all control and input videos to be length of 121 frames.",
        "Completed data augmentation",
        "Starting latent encoding",
        "Starting diffusion sampling",
        "Completed diffusion sampling",
        "Completed VAE decode",
        "Finish generation",
        "Run guardrail on generated videos",
        "Saved video to outputs/run_rs_happy/output.mp4",
        "Saved prompt to outputs/run_rs_happy/output.txt",
    ];
    let positions: Vec<usize> = order.iter().map(|m| position(&msgs, m)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "phases out of order: {positions:?}\n{log}"
    );
    // the exact loguru line shape, and the tqdm clip bar (one clip for 121 frames)
    let line = log
        .lines()
        .find(|l| l.contains("Run generation"))
        .expect("line");
    let shape = regex_like_loguru(line);
    assert!(shape, "not loguru-shaped: {line:?}");
    assert!(log.contains("\r  0%|          | 0/1 ["), "{log:?}");
    assert!(log.contains("| 1/1 ["), "{log:?}");
    // the JSON dumps span lines; --guidance on the command line wins over the spec's
    assert!(
        log.contains("final args: {\n    \"prompt\": \"a red car on a wet road\",\n"),
        "{log}"
    );
    assert!(log.contains("\n    \"guidance\": 5.0,\n"), "{log}");
}

/// `[MM-DD HH:mm:ss|INFO|path.py:LINE:function] message`
fn regex_like_loguru(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((head, msg)) = rest.split_once("] ") else {
        return false;
    };
    let parts: Vec<&str> = head.split('|').collect();
    if parts.len() != 3 || msg.is_empty() {
        return false;
    }
    let ts = parts[0].as_bytes();
    let ts_ok = ts.len() == 14
        && ts.iter().enumerate().all(|(i, b)| match i {
            2 => *b == b'-',
            5 => *b == b' ',
            8 | 11 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    let site: Vec<&str> = parts[2].split(':').collect();
    ts_ok
        && parts[1] == "INFO"
        && site.len() == 3
        && site[0].ends_with(".py")
        && site[1].parse::<u32>().is_ok()
        && !site[2].is_empty()
}

#[test]
fn guardrail_block_exits_1_with_the_critical_lines_and_no_output() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    write_wrapper(&host);
    write_run(&host, "rs_blocked", "something [[guardrail]]");
    ok(&host, &transfer_command(&host, "rs_blocked"));
    assert_eq!(
        ok(&host, "sudo docker wait cosmos_transfer_rs_blocked").trim(),
        "1"
    );
    let log = host
        .container_log("cosmos_transfer_rs_blocked")
        .expect("log");
    assert!(
        log.contains("|CRITICAL|cosmos_transfer1/diffusion/inference/transfer.py:377:demo] Guardrail blocked generation for entire batch."),
        "{log}"
    );
    assert!(log.contains("|CRITICAL|") && log.contains("Input text prompt 1 is not safe"));
    assert!(log.contains("TypeError: cannot unpack non-iterable NoneType object"));
    assert!(log.contains("ChildFailedError"));
    let out = host.remote_dir().join("outputs/run_rs_blocked");
    assert!(!out.join("output.mp4").exists());
    let run_log = std::fs::read_to_string(out.join("run.log")).expect("run.log");
    assert!(run_log.ends_with("[COSMOS_COMPLETE] exit_code=1\n"));
}

#[test]
fn nvidia_smi_answers_the_health_query() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let csv = ok(
        &host,
        "nvidia-smi --query-gpu=name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw,power.limit,clocks.current.graphics,clocks.max.graphics,driver_version --format=csv,noheader,nounits",
    );
    let fields: Vec<&str> = csv.trim().split(", ").collect();
    assert_eq!(fields.len(), 11, "{csv}");
    assert_eq!(fields[0], "NVIDIA H100 80GB HBM3");
    assert!(fields[1..10]
        .iter()
        .all(|f| f.parse::<f64>().is_ok() || *f == "[N/A]"));
    assert_eq!(fields[2], "1", "idle");
    let plain = ok(&host, "nvidia-smi");
    assert!(plain.contains("CUDA Version: 12."), "{plain}");

    // a running GPU container makes it look busy; a knob can break the driver
    host.start_busy_container("busy");
    let busy = ok(
        &host,
        "nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits",
    );
    assert_eq!(busy.trim(), "71234, 97");
    host.set_knob("FAKE_NVIDIA_SMI_FAIL", "1");
    assert_eq!(ssh(&host, "nvidia-smi").status.code(), Some(9));
}

#[test]
fn a_host_key_mismatch_is_refused_and_a_stopped_sshd_refuses_connections() {
    let mut host = CosmosHost::start(CosmosHostOptions::default());
    assert_eq!(ok(&host, "echo pinned").trim(), "pinned");
    assert!(host.host_public_key().starts_with("ssh-ed25519 AAAA"));

    let wrong = host.root().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {}\n",
            host.port(),
            host.other_host_public_key()
        ),
    )
    .expect("known_hosts");
    let out = run(host.ssh_with_known_hosts(&wrong, "echo should-not-run"));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || text(&out.stderr).contains("Host key verification failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("should-not-run"));

    host.stop_sshd();
    let out = ssh(&host, "echo down");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
    host.start_sshd();
    assert_eq!(ok(&host, "echo back").trim(), "back");
}

#[test]
fn sftp_puts_and_gets_files_byte_for_byte() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let local = host.root().join("local");
    std::fs::create_dir_all(&local).expect("local dir");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(local.join("up.bin"), &payload).expect("payload");
    let remote_file = host.remote_dir().join("runs/rs_sftp/inputs/spec.json");
    std::fs::create_dir_all(remote_file.parent().expect("parent")).expect("remote dir");
    let batch = local.join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {local}/up.bin {remote}/runs/rs_sftp/inputs/up.bin\nget {remote}/runs/rs_sftp/inputs/up.bin {local}/down.bin\n",
            local = local.display(),
            remote = host.remote_dir().display()
        ),
    )
    .expect("batch");
    let mut sftp = Command::new("sftp");
    sftp.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(host.client_key_path())
        .arg("-P")
        .arg(host.port().to_string())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            host.known_hosts_path().display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-b",
        ])
        .arg(&batch)
        .arg(format!("{}@127.0.0.1", host.user()))
        .stdin(Stdio::null());
    let out = run(sftp);
    assert!(out.status.success(), "sftp: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read(local.join("down.bin")).expect("downloaded"),
        payload
    );
}

#[test]
fn failure_knobs_hang_until_killed_and_oom_kill_the_container() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    write_wrapper(&host);
    write_run(&host, "rs_hang", "waits forever");
    host.set_knob("FAKE_COSMOS_FAIL", "hang");
    ok(&host, &transfer_command(&host, "rs_hang"));
    host.clear_knob("FAKE_COSMOS_FAIL");
    let deadline = Instant::now() + TIMEOUT;
    while !host
        .container_log("cosmos_transfer_rs_hang")
        .unwrap_or_default()
        .contains("Starting diffusion sampling")
    {
        assert!(Instant::now() < deadline, "never reached diffusion");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the knob was read at the container's start: clearing it changes nothing for this run
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        host.container("cosmos_transfer_rs_hang")
            .expect("hang")
            .running
    );
    ok(&host, "sudo docker kill cosmos_transfer_rs_hang");
    assert_eq!(
        ok(&host, "sudo docker wait cosmos_transfer_rs_hang").trim(),
        "137"
    );

    write_run(&host, "rs_oom", "too big [[oom-killed]]");
    ok(&host, &transfer_command(&host, "rs_oom"));
    assert_eq!(
        ok(&host, "sudo docker wait cosmos_transfer_rs_oom").trim(),
        "137"
    );
    let c = host.container("cosmos_transfer_rs_oom").expect("oom");
    assert!(c.oom_killed, "{c:?}");
    assert_eq!(
        ok(
            &host,
            "sudo docker inspect cosmos_transfer_rs_oom --format '{{.State.OOMKilled}} {{.State.ExitCode}}'"
        )
        .trim(),
        "true 137"
    );
}
