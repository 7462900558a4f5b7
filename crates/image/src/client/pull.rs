//! Pulls: manifest and config first, then every missing layer downloaded
//! in parallel (bounded by `parallel`) and unpacked into a staging snapshot
//! while it downloads; a snapshot is committed only once both the blob
//! digest and the diff id are verified.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Client, ClientError, PullReport};
use crate::manifest::{self, Compression, Descriptor};
use crate::reference::Reference;
use crate::snapshot::{commit_snapshot, new_staging};
use crate::store::Store;
use crate::unpack::{self, UnpackOptions, UnpackStats, WhiteoutMode};

/// What one layer task returns: `((downloaded, resumed), unpacked)`.
type LayerResult = Result<((u64, u64), bool), ClientError>;

struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

impl Client {
    /// Pulls `r` into `store`: manifest, config, layers (downloaded in
    /// parallel and unpacked into snapshots while downloading); names it.
    pub async fn pull(
        self: &Arc<Self>,
        store: &Store,
        r: &Reference,
    ) -> Result<PullReport, ClientError> {
        let (desc, m, body) = self.resolve(r).await?;
        store.write_blob(&body)?;
        if !store.has_blob(&m.config.digest, Some(m.config.size)) {
            let cfg = self.get_blob(r, &m.config).await?;
            store.write_blob(&cfg)?;
        }
        let cfg = store.config(&m)?;
        let diff_ids = cfg.diff_ids()?;
        if diff_ids.len() != m.layers.len() {
            return Err(ClientError::Invalid(format!(
                "{r}: config has {} diff_ids for {} layers",
                diff_ids.len(),
                m.layers.len()
            )));
        }
        let chains = manifest::chain_ids(&diff_ids);
        let progress = self.opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mp = indicatif::MultiProgress::new();
        if !progress {
            mp.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("progress template")
        .progress_chars("=> ");
        let sem = Arc::new(tokio::sync::Semaphore::new(self.opts.parallel.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut report = PullReport {
            name: r.to_string(),
            ..Default::default()
        };
        for (i, layer) in m.layers.iter().enumerate() {
            let need_blob = !store.has_blob(&layer.digest, Some(layer.size));
            let snap = store.snapshot_path(&chains[i]);
            let need_snap = !snap.exists();
            if !need_blob && !need_snap {
                report.cached += 1;
                continue;
            }
            let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                ClientError::Invalid(format!(
                    "layer {}: unsupported media type {}",
                    layer.digest, layer.media_type
                ))
            })?;
            let pb = mp.add(indicatif::ProgressBar::new(layer.size));
            pb.set_style(style.clone());
            pb.set_prefix(layer.digest.hex()[..12].to_string());
            let job = LayerJob {
                client: Arc::clone(self),
                store: store.clone(),
                r: r.clone(),
                layer: layer.clone(),
                need_blob,
                need_snap,
                snap,
                compression,
                opts: UnpackOptions {
                    whiteouts: WhiteoutMode::Overlay,
                    max_bytes: unpack::size_limit(layer.size, self.opts.max_layer_bytes),
                    diff_id: Some(diff_ids[i].clone()),
                    ..Default::default()
                },
                pb,
            };
            let sem = Arc::clone(&sem);
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore");
                job.run().await
            });
        }
        join_layers(&mut tasks, &mut report).await?;
        store.tag(&report.name, &desc)?;
        report.manifest = Some(desc);
        Ok(report)
    }
}

/// One layer of a pull: download its blob and/or unpack its snapshot.
struct LayerJob {
    client: Arc<Client>,
    store: Store,
    r: Reference,
    layer: Descriptor,
    need_blob: bool,
    need_snap: bool,
    snap: PathBuf,
    compression: Compression,
    opts: UnpackOptions,
    pb: indicatif::ProgressBar,
}

impl LayerJob {
    /// Runs the job; returns `((downloaded, resumed), unpacked)`. The
    /// snapshot is committed only when download and unpack both succeeded.
    async fn run(self) -> LayerResult {
        let staging = if self.need_snap {
            Some(new_staging(&self.store)?)
        } else {
            None
        };
        let result = self.transfer(staging.as_ref()).await;
        self.pb.finish_and_clear();
        match (result, staging) {
            (Ok(c), Some(stage)) => {
                commit_snapshot(&stage, &self.snap)?;
                Ok((c, true))
            }
            (Ok(c), None) => Ok((c, false)),
            (Err(e), stage) => {
                if let Some(s) = stage {
                    let _ = crate::store::remove_tree(&s);
                }
                Err(e)
            }
        }
    }

    /// Downloads (when needed) while unpacking into `staging` (when given).
    async fn transfer(&self, staging: Option<&PathBuf>) -> Result<(u64, u64), ClientError> {
        let mut unpacker = None;
        let mut tx = None;
        if let Some(stage) = staging {
            let (t, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
            let stage = stage.clone();
            let opts = self.opts.clone();
            let compression = self.compression;
            if self.need_blob {
                tx = Some(t);
                unpacker = Some(tokio::task::spawn_blocking(move || {
                    unpack::unpack(
                        ChanReader {
                            rx,
                            cur: bytes::Bytes::new(),
                        },
                        compression,
                        &stage,
                        &opts,
                    )
                }));
            } else {
                let f = self.store.open_blob(&self.layer.digest)?;
                unpacker = Some(tokio::task::spawn_blocking(move || {
                    unpack::unpack(f, compression, &stage, &opts)
                }));
            }
        }
        let mut counts = (0, 0);
        if self.need_blob {
            counts = self
                .client
                .fetch_blob(&self.store, &self.r, &self.layer, tx, &self.pb)
                .await?;
        }
        if let Some(u) = unpacker {
            let stats: UnpackStats = u
                .await
                .map_err(|e| ClientError::Invalid(format!("unpack task: {e}")))?
                .map_err(|source| ClientError::Unpack {
                    digest: self.layer.digest.clone(),
                    source,
                })?;
            let _ = stats;
        }
        Ok(counts)
    }
}

/// Waits for every layer task, adding up their counts; on the first error
/// aborts the others and returns it.
async fn join_layers(
    tasks: &mut tokio::task::JoinSet<LayerResult>,
    report: &mut PullReport,
) -> Result<(), ClientError> {
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        match res
            .map_err(|e| ClientError::Invalid(format!("layer task: {e}")))
            .and_then(|r| r)
        {
            Ok(((dl, resumed), unpacked)) => {
                report.downloaded += dl;
                report.resumed += resumed;
                report.unpacked += unpacked as usize;
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
