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

#[derive(Subcommand)]
enum Command {
    /// Run Tandem locally: control on SQLite under ./data, no other services.
    Dev {
        #[command(flatten)]
        control: ControlConfig,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev { mut control } => {
            control.dev = true;
            tandem_control::telemetry::init(&control.log_format);
            tandem_client::dev::run(control).await
        }
    }
}
