//! What every Tally binary sets up before it runs a command: logging and the async runtime.

/// Logs to standard error, filtered by `TALLY_LOG` (e.g. `TALLY_LOG=debug`,
/// `TALLY_LOG=warn,tally_store=info`); the default is `info`, with the id index engine's
/// message for every table it writes held back to `warn`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,lsm_tree=warn,fjall=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The multi-threaded runtime a command runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
