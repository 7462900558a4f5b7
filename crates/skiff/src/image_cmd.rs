//! `skiff image ...` and `skiff run --image ...`: thin CLI over `skiff-image`.
//!
//! `main.rs` only dispatches here.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};
use skiff_image::bundle::{self, Overrides, Volume};
use skiff_image::client::{Client, ClientOptions};
use skiff_image::manifest::Platform;
use skiff_image::reference::Reference;
use skiff_image::security::{Seccomp, Security};
use skiff_image::store::Store;
use skiff_image::{archive, auth, container};

use crate::args::{ImageRunArgs, RunCmd};
use crate::Global;

/// `skiff image <command>`.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// Registry options shared by pull, push and login.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryFlags {
    /// Allow plain HTTP to registries other than localhost/127.0.0.1.
    #[arg(long)]
    pub insecure: bool,
    /// Platform to pull from multi-platform images (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Image subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry into the store.
    Pull {
        /// Registry options.
        #[command(flatten)]
        reg: RegistryFlags,
        /// Image reference (alpine, host:port/repo:tag@sha256:...).
        image: String,
    },
    /// Push a stored image to a registry.
    Push {
        /// Registry options.
        #[command(flatten)]
        reg: RegistryFlags,
        /// Stored image.
        image: String,
        /// Destination reference (default: the image's own name).
        dest: Option<String>,
    },
    /// List images in the store.
    #[command(alias = "list")]
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print an image's manifest and config as JSON.
    Inspect {
        /// Stored image.
        image: String,
    },
    /// Remove image names from the store (content goes with `prune`).
    #[command(alias = "rmi")]
    Rm {
        /// Stored images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Delete blobs and snapshots no image refers to.
    Prune,
    /// Import an oci-archive or docker-archive (`docker save`) tarball.
    Import {
        /// Archive format (default: detected).
        #[arg(long, value_parser = ["oci-archive", "docker-archive"])]
        format: Option<String>,
        /// The tarball.
        file: PathBuf,
        /// Name for the image (default: the name in the archive).
        name: Option<String>,
    },
    /// Export a stored image as an oci-archive or docker-archive tarball.
    Export {
        /// Archive format.
        #[arg(long, default_value = "oci-archive", value_parser = ["oci-archive", "docker-archive"])]
        format: String,
        /// Stored image.
        image: String,
        /// Output tarball.
        file: PathBuf,
    },
    /// Store credentials for a registry (after checking them).
    Login {
        /// Registry options.
        #[command(flatten)]
        reg: RegistryFlags,
        /// User name.
        #[arg(short, long)]
        username: String,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Registry host[:port].
        registry: String,
    },
    /// Extract an image's layers (applied in order) into a directory.
    Unpack {
        /// Stored image (pulled when missing).
        image: String,
        /// Target directory (created; must be empty).
        dir: PathBuf,
    },
    /// Unmount and delete a `run --image` bundle of the store (the bundle's
    /// poststop hook runs this at `delete`). Refuses anything else.
    #[command(hide = true)]
    CleanupBundle {
        /// `<store>/containers/<name>` (canonical path).
        bundle: PathBuf,
    },
}

fn client_opts(
    insecure: bool,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<ClientOptions> {
    let platform = match platform {
        Some(p) => Platform::parse(p)
            .with_context(|| format!("--platform {p:?}: expected os/arch[/variant]"))?,
        None => Platform::host(),
    };
    Ok(ClientOptions {
        insecure,
        platform,
        progress: !quiet,
        ..Default::default()
    })
}

fn open_store(global: &Global) -> anyhow::Result<Store> {
    Store::open(&global.store)
        .with_context(|| format!("opening the image store {}", global.store.display()))
}

fn random_name() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    format!(
        "skiff-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Runs `skiff run --image REF [NAME] [-- CMD...]`; returns the exit code.
pub fn run_image(global: &Global, run: RunCmd) -> anyhow::Result<i32> {
    let RunCmd {
        image,
        id: name,
        cmd,
        detach,
        image_args: args,
        ..
    } = run;
    let image = image.as_deref().context("run --image: no image given")?;
    let store = open_store(global)?;
    let opts = client_opts(args.insecure, args.platform.as_deref(), false)?;
    let entry = match args.pull.as_str() {
        "always" => {
            container::pull(&store, image, opts)?;
            store.resolve(image)?
        }
        "never" => store
            .resolve(image)
            .with_context(|| format!("{image} is not in the store (--pull never)"))?,
        _ => container::ensure_image(&store, image, opts)?,
    };
    let id = name.unwrap_or_else(random_name);
    let hostname = args.hostname.clone().unwrap_or_else(|| id.clone());
    let net = crate::network_cmd::attach_for_run(global, store.root(), &id, &hostname, &args.net)?;
    let result = run_prepared(
        global, &store, &entry, &id, hostname, cmd, detach, args, &net,
    );
    if result.is_err() {
        if let Some(dir) = &net.dir {
            if let Err(e) = crate::network_cmd::detach_dir(dir) {
                eprintln!("skiff: warning: {e:#}");
            }
        }
    }
    result
}

/// [`run_image`] once the network is set up: the bundle, then the container.
#[allow(clippy::too_many_arguments)]
fn run_prepared(
    global: &Global,
    store: &Store,
    entry: &skiff_image::store::ImageEntry,
    id: &str,
    hostname: String,
    cmd: Vec<String>,
    detach: bool,
    args: ImageRunArgs,
    net: &crate::network_cmd::RunNetwork,
) -> anyhow::Result<i32> {
    let id = id.to_string();
    let mut volumes = args
        .volume
        .iter()
        .map(|v| Volume::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    for v in &net.volumes {
        // The user's own -v of /etc/hosts or /etc/resolv.conf wins.
        if !volumes.iter().any(|u| u.destination == v.destination) {
            volumes.push(v.clone());
        }
    }
    let memory = args
        .memory
        .as_deref()
        .map(bundle::parse_memory)
        .transpose()?;
    let ov = Overrides {
        cmd,
        entrypoint: args
            .entrypoint
            .map(|e| if e.is_empty() { vec![] } else { vec![e] }),
        env: args.env,
        volumes,
        memory,
        tty: args.tty,
        user: args.user,
        workdir: args.workdir,
        hostname: Some(hostname),
        readonly: args.read_only,
        network: net.ns.clone(),
        security: security_from_flags(&args.security)?,
    };
    // The bundle lives exactly as long as the runtime's container: its
    // poststop hook removes it when the runtime deletes the container
    // (`skiff delete NAME`, or at exit with `--rm`). Like docker, a
    // foreground run without `--rm` keeps the stopped container (and so its
    // bundle, for inspection) until `skiff delete NAME`.
    let hook = Some(
        std::env::current_exe()
            .context("locating this executable for the bundle's cleanup hook (poststop)")?,
    );
    let prepared = container::prepare_bundle(store, entry, &id, &ov, hook.as_deref())?;
    if global.debug {
        eprintln!(
            "skiff: bundle {} ({:?} rootfs)",
            prepared.bundle.display(),
            prepared.mode
        );
    }
    let result = crate::commands::run_bundle(global, &prepared.bundle, &id, detach, !args.rm, None);
    // --rm after a foreground run (the poststop hook has normally done it
    // already: this finds it gone); always when the runtime failed to start it.
    if (args.rm && !detach) || result.is_err() {
        if let Err(e) = container::remove_bundle(store, &prepared.bundle) {
            eprintln!("skiff: warning: removing the bundle: {e}");
        }
        if let Some(dir) = &net.dir {
            if let Err(e) = crate::network_cmd::detach_dir(dir) {
                eprintln!("skiff: warning: {e:#}");
            }
        }
    }
    if detach && result.is_ok() {
        println!("{id}");
    }
    result
}

/// The bundle's security settings from `--privileged`, `--cap-add`,
/// `--cap-drop` and `--security-opt` (docker's syntax).
fn security_from_flags(f: &crate::run_flags::SecurityFlags) -> anyhow::Result<Security> {
    let mut sec = Security {
        privileged: f.privileged,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        ..Default::default()
    };
    for opt in &f.security_opt {
        let (k, v) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => sec.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => sec.no_new_privileges = false,
            ("seccomp", Some("unconfined")) => sec.seccomp = Seccomp::Unconfined,
            ("seccomp", Some(file)) if !file.is_empty() => {
                sec.seccomp = Seccomp::File(std::path::absolute(file)?)
            }
            _ => bail!(
                "--security-opt {opt:?}: expected no-new-privileges[:true|false] or seccomp=unconfined|PROFILE.json"
            ),
        }
    }
    if sec.seccomp == Seccomp::Default && !sec.privileged {
        let p = skiff_image::security::default_profile();
        if !p.exists() {
            eprintln!(
                "skiff: warning: no default seccomp profile at {} (apt-get install containers-common): running without one",
                p.display()
            );
        }
    }
    Ok(sec)
}

/// Whether `bundle` is a direct child of the store's `containers/`.
fn is_store_bundle(store: &std::path::Path, bundle: &std::path::Path) -> bool {
    let containers = std::fs::canonicalize(store.join("containers")).ok();
    containers.is_some() && bundle.parent() == containers.as_deref()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    container::runtime().block_on(f)
}

/// Runs `skiff image ...`; returns the process exit code.
pub fn main(global: &Global, args: ImageArgs) -> anyhow::Result<i32> {
    if let ImageCommand::CleanupBundle { bundle } = &args.command {
        // Never creates a store: `--store` must already be one. The
        // network goes first (CNI DEL needs nothing from the bundle).
        let net = if is_store_bundle(&global.store, bundle) {
            crate::network_cmd::detach_for_bundle(&global.store, bundle)
        } else {
            Ok(())
        };
        let done = container::cleanup_bundle(&global.store, bundle)?;
        net?;
        if global.debug {
            eprintln!("skiff: {}: {done:?}", bundle.display());
        }
        return Ok(0);
    }
    let store = open_store(global)?;
    match args.command {
        ImageCommand::Pull { reg, image } => pull(&store, &reg, &image)?,
        ImageCommand::Push { reg, image, dest } => {
            let entry = store.resolve(&image)?;
            let dest = Reference::parse(dest.as_deref().unwrap_or(&entry.name))?;
            let client = Client::new(client_opts(
                reg.insecure,
                reg.platform.as_deref(),
                reg.quiet,
            )?)?;
            let d = block(client.push(&store, &entry, &dest))?;
            println!("{d}");
        }
        ImageCommand::Ls { format, quiet } => ls(&store, &format, quiet)?,
        ImageCommand::Inspect { image } => {
            let e = store.resolve(&image)?;
            let m = store.manifest(&e.manifest)?;
            let cfg: serde_json::Value =
                serde_json::from_slice(&store.read_blob(&m.config.digest, Some(m.config.size))?)?;
            let v = serde_json::json!({"name": e.name, "digest": e.manifest.digest.to_string(),
                "mediaType": e.manifest.media_type, "manifest": m, "config": cfg});
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ImageCommand::Rm { images } => {
            let mut code = 0;
            for i in images {
                match store.resolve(&i) {
                    Ok(e) => {
                        store.untag(&e.name)?;
                        println!("{}", e.name);
                    }
                    Err(err) => {
                        eprintln!("skiff: {err}");
                        code = 1;
                    }
                }
            }
            return Ok(code);
        }
        ImageCommand::Prune => {
            let s = store.prune()?;
            println!(
                "removed {} blobs ({} bytes) and {} snapshots",
                s.blobs, s.bytes, s.snapshots
            );
        }
        ImageCommand::Import { format, file, name } => {
            let names = archive::import(&store, &file, format.as_deref(), name.as_deref())?;
            for n in names {
                println!("{n}");
            }
        }
        ImageCommand::Export {
            format,
            image,
            file,
        } => {
            let e = store.resolve(&image)?;
            archive::export(&store, &e, &format, &file)?;
        }
        ImageCommand::Login {
            reg,
            username,
            password,
            password_stdin,
            registry,
        } => login(&reg, username, password, password_stdin, registry)?,
        ImageCommand::Unpack { image, dir } => {
            let e = container::ensure_image(&store, &image, client_opts(false, None, true)?)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if std::fs::read_dir(&dir)?.next().is_some() {
                bail!("{}: not empty", dir.display());
            }
            archive::unpack_image(&store, &e, &dir)?;
        }
        ImageCommand::CleanupBundle { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

/// `image pull`: prints the manifest digest, reports progress on stderr.
fn pull(store: &Store, reg: &RegistryFlags, image: &str) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let rep = container::pull(
        store,
        image,
        client_opts(reg.insecure, reg.platform.as_deref(), reg.quiet)?,
    )?;
    if rep.resumed > 0 {
        eprintln!("resumed {} bytes from an interrupted pull", rep.resumed);
    }
    if !reg.quiet {
        eprintln!(
            "pulled {} in {:.2}s: {} bytes downloaded, {} layers unpacked, {} cached",
            rep.name,
            t.elapsed().as_secs_f64(),
            rep.downloaded,
            rep.unpacked,
            rep.cached
        );
    }
    if let Some(d) = rep.manifest {
        println!("{}", d.digest);
    }
    Ok(())
}

/// `image ls`: a table, names only (`-q`) or JSON.
fn ls(store: &Store, format: &str, quiet: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for e in store.images()? {
        let (size, created) = match store.manifest(&e.manifest) {
            Ok(m) => {
                let size: u64 = m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
                let created = store
                    .config(&m)
                    .ok()
                    .and_then(|c| c.created)
                    .unwrap_or_default();
                (size, created)
            }
            Err(_) => (0, String::new()),
        };
        rows.push((e, size, created));
    }
    if format == "json" {
        let v: Vec<_> = rows
            .iter()
            .map(|(e, size, created)| {
                serde_json::json!({"name": e.name, "digest": e.manifest.digest.to_string(),
                    "mediaType": e.manifest.media_type, "size": size, "created": created})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if quiet {
        for (e, ..) in rows {
            println!("{}", e.name);
        }
    } else {
        println!("{:<50} {:<19} {:>12}  CREATED", "NAME", "DIGEST", "SIZE");
        for (e, size, created) in rows {
            println!(
                "{:<50} {:<19} {:>12}  {}",
                e.name,
                &e.manifest.digest.to_string()[..19],
                size,
                created
            );
        }
    }
    Ok(())
}

/// `image login`: checks the credentials with the registry, then stores them.
fn login(
    reg: &RegistryFlags,
    username: String,
    password: Option<String>,
    password_stdin: bool,
    registry: String,
) -> anyhow::Result<()> {
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            bail!("give --password or --password-stdin")
        }
        (None, false) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => bail!("--password and --password-stdin are exclusive"),
    };
    let registry = Reference::parse(&format!("{registry}/x"))
        .map(|r| r.registry)
        .unwrap_or(registry);
    let creds = auth::Credentials { username, password };
    let client = Client::new(client_opts(reg.insecure, None, true)?)?;
    block(client.login(&registry, &creds))?;
    let file = auth::login_file();
    auth::store(&file, &registry, &creds)?;
    println!("Login Succeeded ({})", file.display());
    Ok(())
}
