//! skiff-registry: an OCI distribution-spec v1.1 registry server.
//!
//! Layers, top to bottom:
//! - [`server`]: HTTP routing, auth, limits, metrics, access logs, accept loop
//!   (plain TCP or rustls) with graceful shutdown;
//! - [`store`]: the registry model (repositories, blobs, uploads, manifests,
//!   tags, referrers) and the spec's error codes;
//! - [`storage`]: the [`storage::Driver`] trait and its filesystem backend;
//! - [`gc`]: mark-and-sweep garbage collection.
//!
//! Entry points used by the CLI: [`run`] (blocking server with SIGINT/SIGTERM
//! handling), [`serve`] (async, caller-supplied shutdown), [`gc_blocking`].

pub mod auth;
pub mod config;
pub mod conn;
pub mod digest;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod metrics;
pub mod server;
pub mod storage;
pub mod store;
pub mod tls;

use crate::config::Config;
use crate::server::App;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// TLS files unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Socket or runtime failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

fn build_app(config: Config) -> Result<(Arc<App>, Option<tokio_rustls::TlsAcceptor>), ServeError> {
    config.validate()?;
    let driver = open_driver(&config)?;
    let store = store::Store::new(
        driver,
        store::Limits {
            max_manifest_size: config.limits.max_manifest_size,
            max_blob_size: config.limits.max_blob_size,
        },
    );
    let auth = config.auth.as_ref().map(auth::Auth::new).transpose()?;
    let acceptor = match &config.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            &t.cert, &t.key,
        )?)),
        None => None,
    };
    let app = Arc::new(App {
        store,
        auth,
        metrics: metrics::Metrics::default(),
        tls: acceptor.is_some(),
        config,
    });
    Ok((app, acceptor))
}

/// Opens the configured storage driver (S3 when `[s3]` is set, else the
/// `storage` directory).
pub fn open_driver(config: &Config) -> Result<Arc<dyn storage::Driver>, ServeError> {
    if let Some(s3) = &config.s3 {
        return Ok(Arc::new(storage::s3::S3Driver::new(s3)?));
    }
    let dir = config.storage.clone().ok_or(config::ConfigError::Field {
        field: "storage",
        reason: "no storage directory configured".into(),
    })?;
    Ok(Arc::new(storage::fs::FsDriver::new(dir)?))
}

/// Serves until `shutdown` resolves, then drains open connections (up to 30 s).
/// Prints one JSON line `{"msg":"listening","addr":..}` to stderr once bound.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    use hyper_util::rt::TokioIo;
    let listen = config.listen;
    let (app, acceptor) = build_app(config)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(io_err(format!("binding {listen}")))?;
    let addr = listener.local_addr().map_err(io_err("local_addr"))?;
    eprintln!(
        "{}",
        serde_json::json!({"msg":"listening","addr":addr.to_string(),"tls":acceptor.is_some()})
    );
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{}", serde_json::json!({"msg":"accept failed","error":e.to_string()}));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // A second handle on the socket, for a lingering close (below).
        let linger_fd = std::os::fd::AsFd::as_fd(&tcp).try_clone_to_owned().ok();
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closing_svc = closing.clone();
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let conn = conn::ConnState::new(conn::Timeouts::from(&app.config.timeouts));
        let tcp = conn::TimedIo::new(tcp, conn.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    let conn = conn.clone();
                    let closing = closing_svc.clone();
                    async move {
                        let in_flight = conn.begin();
                        let read_to_end = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let http1 = req.version() < hyper::Version::HTTP_2;
                        let req = req.map(|b| {
                            let b = conn::TimedBody::new(b, conn.clone(), read_to_end.clone());
                            axum::body::Body::new(b)
                        });
                        let mut r = server::handle(app, peer, req).await;
                        // Answered before its body was read (an error, a
                        // refusal too large to drain): the rest of the body
                        // is still on the wire, so the connection closes,
                        // and says so.
                        let unread = !read_to_end.load(std::sync::atomic::Ordering::Acquire);
                        if http1 && (unread || conn.doomed()) {
                            closing.store(true, std::sync::atomic::Ordering::Release);
                            r.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(
                            r.map(|b| conn::GuardedBody::new(b, in_flight)),
                        )
                    }
                });
            // HTTP/1.1, and HTTP/2 by ALPN (TLS) or prior knowledge (h2c).
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            match acceptor {
                None => {
                    let conn = http.serve_connection(TokioIo::new(tcp), svc);
                    let _ = watcher.watch(conn).await;
                    if closing.load(std::sync::atomic::Ordering::Acquire) {
                        if let Some(fd) = linger_fd {
                            linger(fd).await;
                        }
                    }
                }
                Some(acc) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = http.serve_connection(TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    eprintln!("{}", serde_json::json!({"msg":"shutting down"}));
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    Ok(())
}

/// A lingering close, as web servers do after `Connection: close` with a
/// request body still on the wire: the response is sent and the write side
/// shut down (FIN), then what the client still sends is read and dropped
/// for a while (at most 5 s or 16 MiB) before the socket closes. Closing at
/// once with unread data would make the kernel send a reset, which can
/// destroy the response before the client has read it and makes the
/// client's body write fail with EPIPE.
async fn linger(fd: std::os::fd::OwnedFd) {
    use tokio::io::AsyncReadExt as _;
    let std = std::net::TcpStream::from(fd);
    let _ = std.shutdown(std::net::Shutdown::Write);
    if std.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut s) = tokio::net::TcpStream::from_std(std) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0usize;
    while total < 16 << 20 {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Runs the server on a new multi-threaded runtime until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting runtime"))?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io_err("installing SIGTERM handler"))?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        serve(config, shutdown).await
    })
}

/// Runs garbage collection on the configured storage (blocking).
pub fn gc_config(config: &Config, opts: &gc::GcOptions) -> Result<gc::GcReport, gc::GcError> {
    let driver = open_driver(config).map_err(|e| gc::GcError::Store(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| storage::StorageError::io("runtime", "", e))?;
    rt.block_on(gc::collect(driver, opts))
}

/// Runs garbage collection on a filesystem store (blocking).
pub fn gc_blocking(storage: &Path, opts: &gc::GcOptions) -> Result<gc::GcReport, gc::GcError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| storage::StorageError::io("runtime", "", e))?;
    rt.block_on(async {
        let driver: Arc<dyn storage::Driver> = Arc::new(storage::fs::FsDriver::new(storage)?);
        gc::collect(driver, opts).await
    })
}
