//! Reading cosmos-transfer1's output: loguru lines into phases for the progress display, and
//! the end of a run into an outcome a user understands. Pure.

use progress::{JobPlan, Update};

/// The phases of a run, as plan nodes: (id, class used for the role, title).
const PHASES: [(&str, &str, &str); 8] = [
    ("load", "ModelLoader", "Loading models"),
    ("pre", "ControlEncode", "Preprocessing controls"),
    ("guard", "PromptGuardrail", "Prompt guardrail"),
    ("embed", "TextEncode", "Text embedding"),
    ("sample", "DiffusionSampler", "Sampling"),
    ("decode", "VAEDecode", "Decoding"),
    ("vguard", "VideoGuardrail", "Video guardrail"),
    ("save", "SaveVideo", "Saving"),
];

/// The progress plan of a Cosmos run.
pub fn plan() -> JobPlan {
    let mut p = JobPlan::default();
    for (id, class, title) in PHASES {
        p.add(id, class, Some(title), None);
    }
    p
}

/// The message of a loguru line `[MM-DD HH:mm:ss|LEVEL|file.py:LINE:function] message`
/// (ranks' `[rankN]:` prefixes removed), with its level.
pub fn loguru_message(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let line = match line.strip_prefix("[rank") {
        Some(rest) => rest.split_once("]:").map(|(_, r)| r.trim_start())?,
        None => line,
    };
    let body = line.strip_prefix('[')?;
    let (head, message) = body.split_once("] ")?;
    let mut parts = head.split('|');
    let _time = parts.next()?;
    let level = parts.next()?;
    let _where = parts.next()?;
    Some((level, message))
}

/// Turns output lines into progress updates. Keeps the clip count between lines.
#[derive(Debug, Default, Clone)]
pub struct LogReader {
    clips_started: u32,
    clips_total: Option<u32>,
    /// The phase last reported: a phase's many lines report it once.
    current: Option<&'static str>,
}

impl LogReader {
    /// The updates one line of output means (often none).
    pub fn line(&mut self, raw: &str) -> Vec<Update> {
        let mut out = self.updates(raw);
        out.retain(|u| match u {
            Update::NodeStarted { node } => {
                let phase = PHASES.iter().map(|p| p.0).find(|p| p == node);
                let new = phase != self.current;
                self.current = phase;
                new
            }
            _ => true,
        });
        out
    }

    fn updates(&mut self, raw: &str) -> Vec<Update> {
        let node = |id: &str| Update::NodeStarted {
            node: id.to_string(),
        };
        // tqdm writes `\r`-separated bars; the last segment is the current state.
        let line = raw
            .rsplit('\r')
            .find(|s| !s.trim().is_empty())
            .unwrap_or(raw);
        if let Some((done, total)) = tqdm_fraction(line) {
            self.clips_total = Some(total);
            return vec![Update::Step {
                node: Some("sample".into()),
                value: f64::from(done),
                max: f64::from(total),
            }];
        }
        let Some((_, msg)) = loguru_message(line) else {
            return Vec::new();
        };
        let starts = |p: &str| msg.starts_with(p);
        if starts("Start creating base model") || starts("Loading base model") {
            vec![node("load")]
        } else if starts("running preprocessor") || msg.contains("generating input control video") {
            vec![node("pre")]
        } else if starts("Running guardrail checks on all prompts") {
            vec![node("guard")]
        } else if starts("Running text embedding") || starts("Starting T5 compute") {
            vec![node("embed")]
        } else if starts("Starting diffusion sampling") {
            self.clips_started += 1;
            let total = self
                .clips_total
                .unwrap_or(self.clips_started)
                .max(self.clips_started);
            vec![
                node("sample"),
                Update::Step {
                    node: Some("sample".into()),
                    value: f64::from(self.clips_started - 1),
                    max: f64::from(total),
                },
            ]
        } else if starts("Starting VAE decode") {
            vec![node("decode")]
        } else if starts("Run guardrail on generated videos") {
            vec![node("vguard")]
        } else if starts("Saved video to") {
            vec![node("save")]
        } else {
            Vec::new()
        }
    }
}

/// `k/N` of a tqdm bar such as ` 50%|█████     | 1/2 [00:10<00:10, ...]`.
fn tqdm_fraction(line: &str) -> Option<(u32, u32)> {
    if !line.contains('|') || !line.contains('%') {
        return None;
    }
    let after_bar = line.rsplit_once('|')?.1.trim_start();
    let frac = after_bar.split_whitespace().next()?;
    let (a, b) = frac.split_once('/')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (b > 0 && a <= b).then_some((a, b))
}

/// Why a finished run failed, in terms a user understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// 125: Docker could not start the container.
    DockerStart(String),
    GuardrailBlocked,
    OutOfMemory,
    /// 137 that nobody asked for.
    Killed,
    InvalidSpec(String),
    NonZeroExit(i32),
    MissingOutput,
}

impl RunFailure {
    pub fn message(&self) -> String {
        match self {
            RunFailure::DockerStart(why) => format!("the Cosmos container could not start: {why}"),
            RunFailure::GuardrailBlocked => {
                "Cosmos's safety check blocked this prompt or its result; try a different prompt"
                    .into()
            }
            RunFailure::OutOfMemory => {
                "the GPU ran out of memory; try a shorter video or fewer controls".into()
            }
            RunFailure::Killed => "the Cosmos job was killed on the host".into(),
            RunFailure::InvalidSpec(why) => format!("Cosmos refused the job's settings: {why}"),
            RunFailure::NonZeroExit(n) => {
                format!("Cosmos failed (exit code {n}); an admin can read the run log")
            }
            RunFailure::MissingOutput => "Cosmos finished but wrote no video".into(),
        }
    }
}

/// The outcome of a run from its exit code, the container's OOM flag and the last lines of
/// its output. `None` means it succeeded (the caller still checks the output exists).
pub fn classify(exit_code: i32, oom_killed: bool, tail: &[String]) -> Option<RunFailure> {
    let has = |needle: &str| tail.iter().any(|l| l.contains(needle));
    if oom_killed || has("OutOfMemoryError") || has("CUDA out of memory") {
        return Some(RunFailure::OutOfMemory);
    }
    if has("Guardrail blocked generation") || has("failed safety checks") || has("is not safe") {
        return Some(RunFailure::GuardrailBlocked);
    }
    match exit_code {
        0 => None,
        125 => Some(RunFailure::DockerStart(
            tail.iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .cloned()
                .unwrap_or_else(|| "docker exited with 125".into()),
        )),
        137 => Some(RunFailure::Killed),
        n => {
            let spec_error = tail.iter().rev().find(|l| {
                (l.starts_with("ValueError")
                    || l.starts_with("AssertionError")
                    || l.starts_with("FileNotFoundError"))
                    && !l.contains("OutOfMemory")
            });
            match spec_error {
                Some(l) => Some(RunFailure::InvalidSpec(l.trim().to_string())),
                None => Some(RunFailure::NonZeroExit(n)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(updates: Vec<Update>) -> Vec<String> {
        updates
            .into_iter()
            .filter_map(|u| match u {
                Update::NodeStarted { node } => Some(node),
                Update::Step { value, max, .. } => Some(format!("{value}/{max}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn phases_in_order_from_a_run() {
        let log = [
            "[09-02 17:00:15|INFO|cosmos_transfer1/diffusion/model/model_ctrl.py:728:build_model] Start creating base model",
            "{",
            "    \"vis\": 0.5",
            "[09-02 17:00:20|INFO|cosmos_transfer1/diffusion/inference/transfer.py:300:demo] running preprocessor",
            "[09-02 17:00:21|INFO|cosmos_transfer1/diffusion/inference/transfer.py:330:demo] Running guardrail checks on all prompts",
            "[09-02 17:00:22|INFO|cosmos_transfer1/diffusion/inference/transfer.py:340:demo] Running text embedding on all prompts",
            "[rank0]: [09-02 17:00:23|INFO|cosmos_transfer1/diffusion/inference/world_generation_pipeline.py:500:generate] Starting diffusion sampling",
            "  0%|          | 0/2 [00:00<?, ?it/s]\r 50%|█████     | 1/2 [00:10<00:10, 10.0s/it]",
            "[09-02 17:00:40|INFO|cosmos_transfer1/diffusion/inference/world_generation_pipeline.py:505:generate] Starting VAE decode",
            "[09-02 17:00:50|INFO|cosmos_transfer1/diffusion/inference/transfer.py:380:demo] Run guardrail on generated videos",
            "[09-02 17:00:55|INFO|cosmos_transfer1/diffusion/inference/transfer.py:390:demo] Saved video to outputs/run_x/output.mp4",
        ];
        let mut r = LogReader::default();
        let got: Vec<String> = log.iter().flat_map(|l| nodes(r.line(l))).collect();
        assert_eq!(
            got,
            ["load", "pre", "guard", "embed", "sample", "0/1", "1/2", "decode", "vguard", "save"]
        );
        assert_eq!(plan().nodes.len(), 8);
        let mut r = LogReader::default();
        let twice = log[0].replace(
            "Start creating base model",
            "Loading base model checkpoint (local): x",
        );
        let got: Vec<String> = [log[0], twice.as_str()]
            .iter()
            .flat_map(|l| nodes(r.line(l)))
            .collect();
        assert_eq!(got, ["load"], "a phase's many lines report it once");
    }

    #[test]
    fn failures_are_named() {
        let t = |lines: &[&str]| lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(classify(0, false, &t(&["Saved video"])), None);
        assert_eq!(
            classify(
                1,
                false,
                &t(&[
                    "[..|CRITICAL|x] Input text prompt 0 is not safe",
                    "Guardrail blocked generation for entire batch.",
                    "TypeError: cannot unpack"
                ])
            ),
            Some(RunFailure::GuardrailBlocked)
        );
        assert_eq!(
            classify(
                1,
                false,
                &t(&["torch.OutOfMemoryError: CUDA out of memory."])
            ),
            Some(RunFailure::OutOfMemory)
        );
        assert_eq!(classify(137, true, &[]), Some(RunFailure::OutOfMemory));
        assert_eq!(classify(137, false, &[]), Some(RunFailure::Killed));
        assert!(
            matches!(classify(125, false, &t(&["docker: Conflict. The container name is already in use."])), Some(RunFailure::DockerStart(m)) if m.contains("Conflict"))
        );
        assert!(
            matches!(classify(1, false, &t(&["ValueError: Invalid hint_key: foo"])), Some(RunFailure::InvalidSpec(m)) if m.contains("hint_key"))
        );
        assert_eq!(classify(3, false, &[]), Some(RunFailure::NonZeroExit(3)));
        assert!(RunFailure::GuardrailBlocked
            .message()
            .contains("different prompt"));
    }
}
