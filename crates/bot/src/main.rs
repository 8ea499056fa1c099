//! `comfycord`: run the bot, or use its pipeline from the terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use bot::config::{Config, LogFormat, DEFAULT_CONFIG_PATH};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "comfycord",
    version,
    about = "Discord front-end for self-hosted ComfyUI"
)]
struct Cli {
    /// Config file (environment variables override it).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and every workflow against every backend's /object_info; exits 1 on any problem.
    Check,
    /// Ask a running bot's /healthz (health.listen); exits 0 when healthy (Docker HEALTHCHECK).
    Healthcheck,
    /// Generate from the terminal with a progress bar and save the outputs.
    Run {
        /// Workflow name (a file in workflows_dir).
        #[arg(long, short)]
        workflow: String,
        /// The prompt.
        prompt: Option<String>,
        /// Any workflow parameter, e.g. --param steps=30 --param seed=42 (repeatable).
        #[arg(long = "param", short, value_parser = parse_key_value)]
        params: Vec<(String, String)>,
        /// Image file(s) for the workflow's image parameters, in order (repeatable).
        #[arg(long)]
        image: Vec<PathBuf>,
        /// Aspect-ratio preset instead of width/height: 1:1, 4:3, 3:4, 3:2, 2:3, 16:9, 9:16, 21:9.
        #[arg(long)]
        aspect: Option<String>,
        /// Backend name from the config (default: the first).
        #[arg(long)]
        backend: Option<String>,
        /// Where to save the outputs.
        #[arg(long, default_value = "outputs")]
        out: PathBuf,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("comfycord: {e}");
            return ExitCode::from(2);
        }
    };
    // Set up after the config, whose errors go to stderr as plain text.
    bot::logging::init(match config.log_format {
        LogFormat::Json => bot::logging::Format::Json,
        LogFormat::Text => bot::logging::Format::Text,
    });
    for name in &config.ignored_env {
        tracing::warn!(variable = %name, "ignoring an environment variable that names no config key");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("comfycord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Some(Command::Check) => {
                let report = bot::check::run_check(&config).await;
                print!("{}", report.render());
                if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Some(Command::Healthcheck) => {
                let Some(listen) = config.health.listen else {
                    eprintln!("comfycord: the health endpoint is off; set health.listen (e.g. COMFYCORD_HEALTH__LISTEN=127.0.0.1:9100)");
                    return ExitCode::from(2);
                };
                match bot::health::check(listen).await {
                    Ok(body) => {
                        println!("{body}");
                        ExitCode::SUCCESS
                    }
                    Err(body) => {
                        eprintln!("comfycord: unhealthy: {body}");
                        ExitCode::FAILURE
                    }
                }
            }
            Some(Command::Run {
                workflow,
                prompt,
                params,
                image,
                aspect,
                backend,
                out,
            }) => {
                use std::io::IsTerminal as _;
                let args = bot::run::RunArgs {
                    workflow,
                    prompt,
                    params,
                    images: image,
                    aspect,
                    backend,
                    out_dir: out,
                };
                let sink = bot::run::TerminalSink {
                    redraw: std::io::stderr().is_terminal(),
                };
                match bot::run::run_workflow(&config, args, sink, bot::serve::shutdown_signal())
                    .await
                {
                    Ok(result) => {
                        for f in &result.files {
                            println!("{}", f.display());
                        }
                        if let Some(seed) = result.values.get("seed") {
                            eprintln!("seed {seed}");
                        }
                        ExitCode::SUCCESS
                    }
                    Err(bot::run::RunError::Cancelled) => {
                        eprintln!("comfycord: cancelled");
                        ExitCode::from(130)
                    }
                    Err(e) => {
                        eprintln!("comfycord: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            None => {
                tracing::info!(%config, "starting");
                match bot::serve::serve(config, &cli.config, bot::serve::shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}
