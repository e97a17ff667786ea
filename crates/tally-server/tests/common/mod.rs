//! What the server's integration tests share: the real server, in-process, on an ephemeral
//! port of 127.0.0.1, over a temporary data directory.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_server::ServerSettings;
use tally_store::LogConfig;
use tempfile::TempDir;

/// A running server and its admin token; its data directory is deleted when dropped.
pub struct TestServer {
    pub running: Running,
    /// Bearer token of an admin key of every tenant.
    pub admin: String,
    pub _tmp: TempDir,
}

impl TestServer {
    /// Starts a server without the search index, checkpoints every 50 ms, with `settings`.
    pub async fn start(settings: ServerSettings) -> TestServer {
        TestServer::start_app(settings, false).await
    }

    /// [`TestServer::start`], with the search index when `index` is true.
    pub async fn start_app(settings: ServerSettings, index: bool) -> TestServer {
        TestServer::start_with(settings, index, false).await
    }

    /// [`TestServer::start_app`] with encryption at rest (a key-encryption key in a file of
    /// the temporary directory) when `encrypted` is true.
    pub async fn start_with(settings: ServerSettings, index: bool, encrypted: bool) -> TestServer {
        TestServer::start_full(settings, index, encrypted, false).await
    }

    /// [`TestServer::start_with`], running the default alert rules when `alerts` is true.
    pub async fn start_full(
        settings: ServerSettings,
        index: bool,
        encrypted: bool,
        alerts: bool,
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let defaults = AppSettings::new(tmp.path().join("data"));
        let at_rest = encrypted.then(|| {
            use std::os::unix::fs::PermissionsExt;
            let kek = tmp.path().join("kek");
            std::fs::write(&kek, tally_store::Kek::generate_text().as_str()).unwrap();
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
            tally_server::app::AtRestSettings {
                kek: tally_store::KekSource::File(kek),
                rotate_after: None,
            }
        });
        let app = App::start(AppSettings {
            log: LogConfig {
                checkpoint_interval: Duration::from_millis(50),
                ..Default::default()
            },
            http: settings,
            index: if index { defaults.index.clone() } else { None },
            admin: AdminKey::Create("admin".into()),
            at_rest,
            alerts: alerts.then(tally_server::alerts::AlertSettings::default),
            ..defaults
        })
        .await
        .expect("start tally");
        let admin = app.admin_token().expect("an admin key").to_string();
        let running = app.spawn("127.0.0.1:0").await.expect("serve");
        TestServer {
            running,
            admin,
            _tmp: tmp,
        }
    }

    /// `host:port` of the listener.
    pub fn addr(&self) -> String {
        self.running.url.trim_start_matches("http://").to_string()
    }

    /// Stops it in order, within a generous bound (a hang fails the test).
    pub async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(30), self.running.stop())
            .await
            .expect("the server stops");
    }
}
