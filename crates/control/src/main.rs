use clap::Parser;
use tandem_control::{telemetry, Application, ControlConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ControlConfig::parse();
    telemetry::init(&config.log_format);
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("control stopped");
    Ok(())
}
