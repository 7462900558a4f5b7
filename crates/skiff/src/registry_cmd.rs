//! `skiff registry ...`: thin CLI over `skiff-registry` (serve, gc, gen-cert).

use crate::Global;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `skiff registry <command>`.
#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// Registry subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API.
    Serve {
        /// Address to listen on [default: 127.0.0.1:5000, or the config's].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Storage directory [default: <--store>/registry, or the config's].
        #[arg(long)]
        storage: Option<PathBuf>,
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// TLS certificate (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Seconds a client has to send a request's line and headers [default: 30].
        #[arg(long, value_name = "SECS")]
        header_timeout: Option<u64>,
        /// Seconds a connection may stay open with no request [default: 120].
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<u64>,
        /// Window (seconds) in which a request body must make progress [default: 60].
        #[arg(long, value_name = "SECS")]
        body_timeout: Option<u64>,
        /// Bytes per second a request body must average over each window [default: 1024].
        #[arg(long, value_name = "BYTES")]
        body_min_rate: Option<u64>,
    },
    /// Delete unreferenced blobs and untagged manifests.
    Gc {
        /// Report what would be deleted without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Storage directory [default: <--store>/registry].
        #[arg(long)]
        storage: Option<PathBuf>,
        /// TOML configuration file (for S3 storage).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keep anything modified less than this many seconds before the start.
        #[arg(long, default_value_t = 600)]
        grace_secs: u64,
        /// Keep untagged manifests.
        #[arg(long)]
        keep_untagged: bool,
        /// Remove uploads not written to for this many seconds.
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        upload_ttl_secs: u64,
    },
    /// Write a self-signed TLS certificate and key (for development).
    GenCert {
        /// Output directory (cert.pem, key.pem).
        #[arg(long)]
        out: PathBuf,
        /// Host names / IPs the certificate is valid for.
        #[arg(long, default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()])]
        host: Vec<String>,
    },
}

/// Runs `skiff registry ...`; returns the process exit code.
pub fn main(global: &Global, args: RegistryArgs) -> anyhow::Result<i32> {
    let default_storage = global.store.join("registry");
    match args.command {
        RegistryCommand::Serve {
            listen,
            storage,
            config,
            tls_cert,
            tls_key,
            header_timeout,
            idle_timeout,
            body_timeout,
            body_min_rate,
        } => {
            let mut cfg = match &config {
                Some(p) => skiff_registry::config::Config::load(p)?,
                None => skiff_registry::config::Config::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(s) = storage {
                cfg.storage = Some(s);
            }
            if cfg.storage.is_none() {
                cfg.storage = Some(default_storage);
            }
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                cfg.tls = Some(skiff_registry::config::TlsConfig { cert, key });
            }
            let t = &mut cfg.timeouts;
            t.header_secs = header_timeout.unwrap_or(t.header_secs);
            t.idle_secs = idle_timeout.unwrap_or(t.idle_secs);
            t.body_secs = body_timeout.unwrap_or(t.body_secs);
            t.body_min_rate = body_min_rate.unwrap_or(t.body_min_rate);
            cfg.validate()?;
            skiff_registry::run(cfg).context("skiff registry serve")?;
            Ok(0)
        }
        RegistryCommand::Gc {
            dry_run,
            storage,
            config,
            grace_secs,
            keep_untagged,
            upload_ttl_secs,
        } => {
            let mut cfg = match &config {
                Some(p) => skiff_registry::config::Config::load(p)?,
                None => skiff_registry::config::Config::default(),
            };
            if let Some(s) = storage {
                cfg.storage = Some(s);
            }
            let dir = cfg.storage.clone().unwrap_or(default_storage);
            cfg.storage = Some(dir.clone());
            let opts = skiff_registry::gc::GcOptions {
                dry_run,
                grace: std::time::Duration::from_secs(grace_secs),
                delete_untagged: !keep_untagged,
                upload_ttl: std::time::Duration::from_secs(upload_ttl_secs),
            };
            let r = skiff_registry::gc_config(&cfg, &opts)
                .with_context(|| format!("skiff registry gc {}", dir.display()))?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            for (repo, d) in &r.manifests_deleted {
                println!("{verb} manifest {repo}@{d}");
            }
            for d in &r.blobs_deleted {
                println!("{verb} blob {d}");
            }
            for u in &r.uploads_deleted {
                println!("{verb} abandoned upload {u}");
            }
            println!(
                "gc: {} manifests, {} blobs ({} bytes) {verb}; {} blobs referenced, {} young kept",
                r.manifests_deleted.len(),
                r.blobs_deleted.len(),
                r.bytes_freed,
                r.blobs_marked,
                r.blobs_young
            );
            Ok(0)
        }
        RegistryCommand::GenCert { out, host } => {
            let (cert, key) = skiff_registry::tls::self_signed(&host)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            std::fs::write(out.join("cert.pem"), cert).context("writing cert.pem")?;
            std::fs::write(out.join("key.pem"), key).context("writing key.pem")?;
            Ok(0)
        }
    }
}
