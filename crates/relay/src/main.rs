use clap::Parser;
use tandem_relay::{Application, RelayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = RelayConfig::parse();
    init_logs(&config.log_format);
    Application::build(config).await?.run_until_stopped().await
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
