//! What every Tally binary sets up before it runs a command: private files, logging and the
//! async runtime.

/// Makes every file and directory this process creates its owner's only (umask 077), so that
/// a data directory, its index files (written by the embedded engines, which take the umask)
/// and exports are never world-readable, whatever umask the process was started with. Tally's
/// own files are created 0600 and 0700 explicitly as well.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Raises the open-file limit (`ulimit -n`) to its hard maximum: every client connection
/// takes a descriptor, and a service manager's default soft limit (often 1,024) would let a
/// thousand idle clients shut everyone else out. Best effort: a refusal leaves the limit as it
/// was, and the listener fits its connection limit under it.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raising the open-file limit failed: {e}");
        }
    }
}

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
