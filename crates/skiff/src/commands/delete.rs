//! `delete`: removes a container, or the directory an aborted `create` left.

use anyhow::bail;
use skiff_runtime::Runtime;

pub(super) fn delete(rt: &Runtime, id: &str, force: bool) -> anyhow::Result<i32> {
    match rt.load(id) {
        Ok(c) => {
            c.delete(rt, force)?;
            Ok(0)
        }
        Err(skiff_runtime::Error::NotFound(_)) => {
            // A directory without state (an aborted create) is removed.
            let dir = rt.root().dir(id);
            if skiff_runtime::config::validate_id(id).is_ok()
                && dir.is_dir()
                && !dir.join("state.json").exists()
            {
                std::fs::remove_dir_all(&dir).ok();
                return Ok(0);
            }
            if force {
                return Ok(0);
            }
            bail!("container \"{id}\" does not exist")
        }
        Err(e) => Err(e.into()),
    }
}
