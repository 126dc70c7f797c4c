//! A Herald deployment for process tests: a Postgres database of its own, a config file, a tenant
//! with author, reviewer and sender keys made with the CLI, and `herald` commands that use them.

use std::path::PathBuf;

use tokio::process::Command;

use crate::support::{drop_database, empty_dir, herald, postgres_database};

pub struct Deployment {
    pub dir: PathBuf,
    pub url: String,
    pub author: String,
    pub reviewer: String,
    pub sender: String,
}

impl Deployment {
    /// `config` is the text of `herald.toml`.
    pub async fn new(config: &str) -> Deployment {
        let url = postgres_database().await;
        let dir = empty_dir();
        std::fs::write(dir.join("herald.toml"), config).unwrap();
        let mut deployment = Deployment {
            dir,
            url,
            author: String::new(),
            reviewer: String::new(),
            sender: String::new(),
        };
        let status = deployment
            .command()
            .args(["tenant", "create", "acme"])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        deployment.author = deployment.key("admin").await;
        deployment.reviewer = deployment.key("admin").await;
        deployment.sender = deployment.key("send").await;
        deployment
    }

    /// `herald` with this deployment's database and configuration.
    pub fn command(&self) -> Command {
        let mut command = herald(&self.dir);
        command
            .env("HERALD_DATABASE_URL", &self.url)
            .env("HERALD_CONFIG", self.dir.join("herald.toml"));
        command
    }

    pub async fn key(&self, scopes: &str) -> String {
        let output = self
            .command()
            .args(["apikey", "create", "--tenant", "acme", "--scopes", scopes])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub async fn store(&self) -> store::Store {
        store::Store::connect(&self.url).await.unwrap()
    }

    pub async fn remove(self) {
        drop_database(&self.url).await;
        let _ = std::fs::remove_dir_all(self.dir);
    }
}
