use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use tandem_control::ControlConfig;

#[derive(Parser)]
#[command(
    name = "tandem",
    about = "Tandem: self-hostable backend for real-time collaboration",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run Tandem locally: control on SQLite under ./data and the relay, no other services.
    Dev {
        #[command(flatten)]
        control: ControlConfig,
        /// Relay listen address (port 0 picks a free port).
        #[arg(long, env = "TANDEM_RELAY_LISTEN", default_value = "127.0.0.1:1999")]
        relay_listen: SocketAddr,
        /// Seconds between permission re-checks.
        #[arg(long, env = "TANDEM_RECHECK_SECS", default_value_t = 30)]
        recheck_secs: u64,
    },
    /// The audit log: `tandem audit verify --org ID` (see proto-docs/admin.md).
    #[command(subcommand)]
    Audit(tandem_client::audit::AuditCommand),
    /// Load generator and benchmarks (see scripts/bench).
    #[command(subcommand)]
    Bench(tandem_client::bench::BenchCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev {
            mut control,
            relay_listen,
            recheck_secs,
        } => {
            control.dev = true;
            tandem_control::telemetry::init(&control.log_format);
            tandem_client::dev::run(control, relay_listen, recheck_secs).await
        }
        Command::Bench(cmd) => tandem_client::bench::main(cmd).await,
        Command::Audit(cmd) => {
            if tandem_client::audit::main(cmd)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
