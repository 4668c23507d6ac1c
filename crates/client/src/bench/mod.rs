//! `tandem bench`: a load generator that speaks the y-websocket protocol
//! with real `yrs` documents, against Tandem or a peer server, and the
//! benchmarks of control's relay-facing endpoints.
//!
//! - [`scenario`]: the load shapes and one run of a scenario against a target;
//! - [`peer`]: one simulated client (socket, document, edits, latencies);
//! - [`wire`]: the y-protocols messages, plain or in Hocuspocus' framing;
//! - [`target`]: how a client reaches a room on each server (tokens for Tandem);
//! - [`report`]: the JSON report, its table, the side-by-side comparison;
//! - [`control`]: fixed-rate load on `verify` and `check-access`;
//! - [`stats`], [`procstat`]: percentiles; server RSS and CPU from `/proc`.
//!
//! Figures are not asserted anywhere: `scripts/bench` runs this and prints
//! them; the end-to-end tests check that reports are complete and correct.

pub mod control;
pub mod edits;
pub mod peer;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod soak;
pub mod stats;
pub mod storm;
pub mod target;
pub mod wire;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Runs one scenario against one server and prints its report.
    Run(RunArgs),
    /// Offers a fixed rate of requests to control's verify or check-access.
    Control(ControlArgs),
    /// Clients edit, join and leave across relay nodes while services are
    /// killed and restarted in turn; checks durability, convergence, memory
    /// and token requests (run by `scripts/soak`).
    Soak(soak::SoakArgs),
    /// The reconnect storm: clients connected and synced, the relay killed
    /// (SIGKILL) and restarted on the same port, every client back and synced
    /// (with or without resume tickets); control's requests and CPU.
    Storm(storm::StormArgs),
    /// Prints the side-by-side table of report files (JSON lines).
    Compare {
        /// Files of JSON reports, one per line.
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which kind of server `--url` is.
    #[arg(long, value_enum, default_value = "tandem")]
    pub target: target::Kind,
    /// WebSocket base URL of the server (the relay for Tandem).
    #[arg(long)]
    pub url: String,
    /// Control's base URL (Tandem only: documents and tokens).
    #[arg(long)]
    pub control: Option<String>,
    /// fanout, rooms, idle, idle-10k, large-doc or burst.
    #[arg(long)]
    pub scenario: String,
    /// The small version of the scenario.
    #[arg(long)]
    pub quick: bool,
    /// Server processes to read RSS and CPU time from (repeat for several).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Appends the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub rooms: Option<usize>,
    #[arg(long)]
    pub clients_per_room: Option<usize>,
    #[arg(long)]
    pub edits: Option<u32>,
    /// Edits per second per client.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub hold_secs: Option<u64>,
    #[arg(long)]
    pub doc_bytes: Option<usize>,
    /// Wire-level clients: edits carry their send time in their last bytes
    /// and remote updates are counted from the bytes, never applied to a
    /// document (so one generator offers far more load than with full yrs
    /// clients).
    #[arg(long)]
    pub wire: bool,
    /// Marks this run as one of several generator processes driving one
    /// server at once: `bench compare` adds up the runs of a group.
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[arg(long)]
    pub control: String,
    /// The relay secret control was started with (check-access).
    #[arg(long, env = "TANDEM_RELAY_SECRET", hide_env_values = true)]
    pub relay_secret: String,
    #[arg(long, value_enum)]
    pub endpoint: control::Endpoint,
    /// Requests per second offered.
    #[arg(long)]
    pub rate: f64,
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Label of control's database in the report.
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl RunArgs {
    pub fn scenario(&self) -> anyhow::Result<scenario::Scenario> {
        let mut s = scenario::Scenario::preset(&self.scenario, self.quick).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown scenario {} (known: {})",
                self.scenario,
                scenario::NAMES.join(", ")
            )
        })?;
        if let Some(v) = self.rooms {
            s.rooms = v.max(1);
        }
        if let Some(v) = self.clients_per_room {
            s.clients_per_room = v.max(1);
        }
        if let Some(v) = self.edits {
            s.edits = v;
        }
        if let Some(v) = self.rate {
            anyhow::ensure!(v > 0.0, "--rate must be positive");
            s.rate = v;
        }
        if let Some(v) = self.hold_secs {
            s.hold = Duration::from_secs(v);
        }
        if let Some(v) = self.doc_bytes {
            s.doc_bytes = v;
        }
        s.wire = self.wire;
        Ok(s)
    }
}

fn append_json(path: &Option<PathBuf>, json: &str) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{json}")?;
    }
    Ok(())
}

/// Runs a scenario and returns its report (what the CLI and the tests call).
pub async fn run_scenario(args: &RunArgs) -> anyhow::Result<report::Report> {
    let scenario = args.scenario()?;
    let target = target::Target::open(args.target, &args.url, args.control.as_deref()).await?;
    let mut report = scenario::run(&target, &scenario, &args.pids).await?;
    report.group = args.group.clone();
    Ok(report)
}

pub async fn main(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Run(args) => {
            let report = run_scenario(&args).await?;
            let json = serde_json::to_string(&report)?;
            print!("{}", report.table());
            println!("{json}");
            append_json(&args.json, &json)
        }
        BenchCommand::Control(args) => {
            let report = control::run(&control::ControlLoad {
                control: args.control.clone(),
                relay_secret: args.relay_secret.clone(),
                endpoint: args.endpoint,
                rate: args.rate,
                duration: Duration::from_secs(args.duration_secs.max(1)),
                max_in_flight: args.max_in_flight,
                database: args.database.clone(),
            })
            .await?;
            println!("{}", report.line());
            append_json(&args.json, &serde_json::to_string(&report)?)
        }
        BenchCommand::Soak(args) => {
            let report = soak::run(&args).await?;
            print!("{}", report.summary());
            append_json(&args.json, &serde_json::to_string(&report)?)?;
            anyhow::ensure!(
                report.violations.is_empty(),
                "{} violation(s)",
                report.violations.len()
            );
            Ok(())
        }
        BenchCommand::Storm(args) => {
            let report = storm::run(&args).await?;
            print!("{}", report.table());
            let json = serde_json::to_string(&report)?;
            println!("{json}");
            append_json(&args.json, &json)?;
            anyhow::ensure!(
                report.back == report.storming,
                "only {} of the killed node's {} clients came back within {} s",
                report.back,
                report.storming,
                args.timeout_secs
            );
            anyhow::ensure!(
                report.others_reconnected == 0,
                "{} clients of the nodes left running had to reconnect",
                report.others_reconnected
            );
            Ok(())
        }
        BenchCommand::Compare { files } => {
            let mut reports = Vec::new();
            for f in files {
                let text = std::fs::read_to_string(&f)?;
                for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
                    if let Ok(r) = serde_json::from_str::<report::Report>(line) {
                        reports.push(r);
                    }
                }
            }
            print!("{}", report::compare(&reports));
            Ok(())
        }
    }
}
