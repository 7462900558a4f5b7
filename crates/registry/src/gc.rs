//! Mark-and-sweep garbage collection of unreferenced blobs and untagged
//! manifests.
//!
//! Safe against concurrent pushes: nothing modified after `start - grace` is
//! deleted (pushes touch every blob a new manifest references before checking
//! it exists, and committed uploads and new revisions carry fresh mtimes); a
//! doomed blob is first renamed into `trash/`, its mtime re-checked there and
//! the blob restored if a push touched it meanwhile; uploads in progress are
//! never touched (only uploads idle for longer than `upload_ttl`). Every step is an idempotent single-object delete, so a GC killed
//! half-way leaves a consistent store; run it again to finish.

use crate::digest::{Algorithm, Digest};
use crate::manifest;
use crate::storage::{Driver, StorageError};
use crate::store::{self, Limits, RevisionMeta, Store};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// GC settings.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Objects modified within this window before the start are kept.
    pub grace: Duration,
    /// Delete manifests that no tag (or tagged index, or kept subject) reaches.
    pub delete_untagged: bool,
    /// Uploads whose data was not written for this long are abandoned and
    /// removed (in-progress uploads are younger by definition).
    pub upload_ttl: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(600),
            delete_untagged: true,
            upload_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What a GC run did (or would do, with `dry_run`).
#[derive(Debug, Default)]
pub struct GcReport {
    /// `(repository, digest)` of manifests removed.
    pub manifests_deleted: Vec<(String, String)>,
    /// Digests of blobs removed.
    pub blobs_deleted: Vec<String>,
    /// Bytes freed by removed blobs.
    pub bytes_freed: u64,
    /// Blobs kept because something references them.
    pub blobs_marked: usize,
    /// Unreferenced blobs kept because they are younger than the grace window.
    pub blobs_young: usize,
    /// Abandoned uploads removed (ids).
    pub uploads_deleted: Vec<String>,
}

/// A GC failure.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// API-level failure while reading metadata.
    #[error("gc: {0}")]
    Store(String),
}

impl From<crate::error::ApiError> for GcError {
    fn from(e: crate::error::ApiError) -> Self {
        GcError::Store(e.detail)
    }
}

async fn revisions(d: &dyn Driver, repo: &str) -> Result<Vec<Digest>, StorageError> {
    let mut out = Vec::new();
    for algo in [Algorithm::Sha256, Algorithm::Sha512] {
        let dir = format!("repositories/{repo}/_manifests/revisions/{}", algo.name());
        for hex in d.list(&dir).await? {
            if let Ok(dg) = format!("{}:{hex}", algo.name()).parse() {
                out.push(dg);
            }
        }
    }
    Ok(out)
}

/// Runs a collection over `driver`.
pub async fn collect(driver: Arc<dyn Driver>, opts: &GcOptions) -> Result<GcReport, GcError> {
    let start = SystemTime::now();
    let cutoff = start.checked_sub(opts.grace).unwrap_or(start);
    let st = Store::new(
        driver.clone(),
        Limits {
            max_manifest_size: u64::MAX,
            max_blob_size: u64::MAX,
        },
    );
    let d = driver.as_ref();
    let mut report = GcReport::default();
    let mut marked_blobs: HashSet<Digest> = HashSet::new();
    for repo in st.catalog().await? {
        mark_repo(&st, d, &repo, cutoff, opts, &mut report, &mut marked_blobs).await?;
    }
    let deleted = sweep_blobs(d, &marked_blobs, cutoff, opts, &mut report).await?;
    // Drop repository links to removed blobs.
    if !opts.dry_run && !deleted.is_empty() {
        for repo in st.catalog().await? {
            for dg in &deleted {
                // A re-upload since the sweep re-creates blob and link (fresh
                // mtime); leave those alone.
                let link = store::layer_link(&repo, dg);
                let stale = d.stat(&link).await?.is_some_and(|m| m.modified < cutoff);
                if stale && d.stat(&store::blob_path(dg)).await?.is_none() {
                    d.delete(&link).await?;
                }
            }
        }
    }
    let upload_cutoff = start.checked_sub(opts.upload_ttl).unwrap_or(start);
    drop_uploads(d, upload_cutoff, opts, &mut report).await?;
    Ok(report)
}

/// A manifest revision of a repository with what it references.
struct Rev {
    meta: RevisionMeta,
    children: Vec<Digest>,
    blobs: Vec<Digest>,
    subject: Option<Digest>,
    young: bool,
}

/// Every revision of `repo` with its references.
async fn load_revs(
    st: &Store,
    d: &dyn Driver,
    repo: &str,
    cutoff: SystemTime,
) -> Result<HashMap<Digest, Rev>, GcError> {
    let mut revs: HashMap<Digest, Rev> = HashMap::new();
    for dg in revisions(d, repo).await? {
        let Some(meta) = st.revision_meta(repo, &dg).await? else {
            continue;
        };
        let young = d
            .stat(&store::revision(repo, &dg))
            .await?
            .is_none_or(|m| m.modified >= cutoff);
        let body = d.get(&store::blob_path(&dg)).await?.unwrap_or_default();
        let (children, blobs, subject) = match manifest::parse(&body, Some(&meta.media_type)) {
            Ok(p) => (
                p.manifests.into_iter().map(|m| m.digest).collect(),
                p.blobs
                    .into_iter()
                    .filter(|b| !b.foreign)
                    .map(|b| b.digest)
                    .collect(),
                p.subject.map(|s| s.digest),
            ),
            Err(_) => (Vec::new(), Vec::new(), None),
        };
        revs.insert(
            dg,
            Rev {
                meta,
                children,
                blobs,
                subject,
                young,
            },
        );
    }
    Ok(revs)
}

/// The revisions of `repo` to keep: from the roots (tagged manifests,
/// young ones, or everything), their children and referrers.
fn mark(revs: &HashMap<Digest, Rev>, tagged: Vec<Digest>, opts: &GcOptions) -> HashSet<Digest> {
    let mut marked: HashSet<Digest> = HashSet::new();
    let mut queue: VecDeque<Digest> = tagged.into();
    for (dg, r) in revs {
        if r.young || !opts.delete_untagged {
            queue.push_back(dg.clone());
        }
    }
    loop {
        while let Some(dg) = queue.pop_front() {
            if !marked.insert(dg.clone()) {
                continue;
            }
            if let Some(r) = revs.get(&dg) {
                queue.extend(r.children.iter().cloned());
            }
        }
        // Referrers of kept manifests are kept too.
        for (dg, r) in revs {
            if !marked.contains(dg) && r.subject.as_ref().is_some_and(|s| marked.contains(s)) {
                queue.push_back(dg.clone());
            }
        }
        if queue.is_empty() {
            return marked;
        }
    }
}

/// Marks what `repo` keeps (its blobs into `marked_blobs`) and unlinks
/// the rest of its manifests.
async fn mark_repo(
    st: &Store,
    d: &dyn Driver,
    repo: &str,
    cutoff: SystemTime,
    opts: &GcOptions,
    report: &mut GcReport,
    marked_blobs: &mut HashSet<Digest>,
) -> Result<(), GcError> {
    let revs = load_revs(st, d, repo, cutoff).await?;
    let mut tagged = Vec::new();
    for t in d.list(&store::tags_dir(repo)).await? {
        if let Some(raw) = d.get(&format!("{}/{t}", store::tags_dir(repo))).await? {
            if let Ok(dg) = String::from_utf8_lossy(&raw).trim().parse::<Digest>() {
                tagged.push(dg);
            }
        }
    }
    let marked = mark(&revs, tagged, opts);
    for (dg, r) in &revs {
        if marked.contains(dg) {
            marked_blobs.insert(dg.clone());
            marked_blobs.extend(r.blobs.iter().cloned());
        } else {
            report
                .manifests_deleted
                .push((repo.to_string(), dg.to_string()));
            if !opts.dry_run {
                st.unlink_manifest(repo, dg, &r.meta).await?;
            }
        }
    }
    Ok(())
}

/// Deletes (moves to trash) every blob neither marked nor young; returns
/// the deleted digests.
async fn sweep_blobs(
    d: &dyn Driver,
    marked_blobs: &HashSet<Digest>,
    cutoff: SystemTime,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<HashSet<Digest>, GcError> {
    let mut deleted: HashSet<Digest> = HashSet::new();
    for algo in [Algorithm::Sha256, Algorithm::Sha512] {
        let base = format!("blobs/{}", algo.name());
        for pre in d.list(&base).await? {
            for hex in d.list(&format!("{base}/{pre}")).await? {
                let Ok(dg) = format!("{}:{hex}", algo.name()).parse::<Digest>() else {
                    continue;
                };
                if marked_blobs.contains(&dg) {
                    report.blobs_marked += 1;
                    continue;
                }
                let path = store::blob_path(&dg);
                // Re-check right before deleting: a push may have touched it.
                let Some(meta) = d.stat(&path).await? else {
                    continue;
                };
                if meta.modified >= cutoff {
                    report.blobs_young += 1;
                    continue;
                }
                if !opts.dry_run {
                    // Move aside first, then re-check: a push that touched the
                    // blob before the move is seen here and the blob restored;
                    // a push after the move finds it missing and is refused.
                    let trash = format!("trash/{}-{hex}-{}", algo.name(), uuid::Uuid::new_v4());
                    if !d.retire(&path, &trash, cutoff).await? {
                        report.blobs_young += 1;
                        continue;
                    }
                }
                report.blobs_deleted.push(dg.to_string());
                report.bytes_freed += meta.size;
                deleted.insert(dg);
            }
        }
    }
    Ok(deleted)
}

/// Abandoned uploads (untouched since `upload_cutoff`).
async fn drop_uploads(
    d: &dyn Driver,
    upload_cutoff: SystemTime,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<(), GcError> {
    for id in d.list("uploads").await? {
        let data = format!("uploads/{id}/data");
        let info = format!("uploads/{id}/info");
        let newest = match (d.stat(&data).await?, d.stat(&info).await?) {
            (Some(a), Some(b)) => a.modified.max(b.modified),
            (Some(a), None) | (None, Some(a)) => a.modified,
            (None, None) => continue,
        };
        if newest < upload_cutoff {
            report.uploads_deleted.push(id.clone());
            if !opts.dry_run {
                d.delete(&format!("uploads/{id}")).await?;
            }
        }
    }
    Ok(())
}
