//! What operators observe. Here, structured logging: pretty or JSON lines on stderr, level
//! from config unless `RUST_LOG` is set; request ids reach every line through the request span.
//! Beside it: the operator metrics ([`signals`], [`process`]) and request traces exported over
//! OTLP ([`traces`], continuing W3C [`traceparent`]).

pub mod process;
pub mod signals;
pub mod traceparent;
pub mod traces;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Returns quietly if one is already installed.
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let _ = match config.format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
