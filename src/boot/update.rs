//! What an update runs on a live instance: the configuration kept and put back, the data
//! volume released and resumed.

use super::*;

/// Where an update keeps the configuration it replaces (compose files, env files): one archive
/// per update, `<id>.tar`, root-only (the env files hold secrets).
pub const PREVIOUS_DIR: &str = "/var/lib/geusemaker/previous";

/// A path without its leading `/` (for `tar -C /`).
fn relative(p: &str) -> &str {
    p.trim_start_matches('/')
}

/// An update's id in file names: letters, digits, `-` (a run id).
fn check_update_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!(
            "`{id}` is not an update id (letters, digits and `-`, like a run id)"
        ));
    }
    Ok(())
}

/// Held (on fd 9) by an update or a restore for the rest of its script: a command AWS delivered
/// twice (a retried SendCommand) runs after the first, never beside it.
pub const UPDATE_LOCK: &str = "/run/geusemaker-update.lock";

/// Before update `id` changes the services: the compose files and env files as they are now,
/// kept in `PREVIOUS_DIR/<id>.tar` — written whole or not at all (a temporary file renamed),
/// once per update (the same update delivered again keeps the first copy, not its own new
/// files), older updates' archives removed — so [`restore_config`] puts back exactly these.
pub fn save_config(layout: &Layout, id: &str) -> Result<String, String> {
    check_path(&layout.stack_dir)?;
    check_path(&layout.env_dir)?;
    check_update_id(id)?;
    Ok(format!(
        r#"# --- keep the running configuration ---
exec 9>'{UPDATE_LOCK}'
flock 9
umask 077
mkdir -p '{PREVIOUS_DIR}'
find '{PREVIOUS_DIR}' -maxdepth 1 -type f ! -name '{id}.tar' -delete
if [ ! -f '{PREVIOUS_DIR}/{id}.tar' ]; then
  tar -C / -cpf '{PREVIOUS_DIR}/{id}.tar.partial' '{stack}' '{env}'
  mv -f '{PREVIOUS_DIR}/{id}.tar.partial' '{PREVIOUS_DIR}/{id}.tar'
fi
umask 022
"#,
        stack = relative(&layout.stack_dir),
        env = relative(&layout.env_dir),
    ))
}

/// After update `id` failed: the configuration [`save_config`] kept for it put back (files
/// the update added removed) and the stack started from it again (its images are still on the
/// instance). Without that archive (the update never reached the instance) nothing is touched.
pub fn restore_config(layout: &Layout, id: &str) -> Result<String, String> {
    check_path(&layout.stack_dir)?;
    check_path(&layout.env_dir)?;
    check_update_id(id)?;
    let dir = &layout.stack_dir;
    Ok(format!(
        r#"# --- the previous configuration back ---
exec 9>'{UPDATE_LOCK}'
flock 9
if [ -f '{PREVIOUS_DIR}/{id}.tar' ]; then
  rm -rf '{dir}' '{env}'
  tar -C / -xpf '{PREVIOUS_DIR}/{id}.tar'
  docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' up -d --remove-orphans
else
  echo "update {id} kept nothing: the configuration was not changed"
fi
"#,
        env = layout.env_dir,
    ))
}

/// Before the data volume moves to another instance while this one keeps running (a spot
/// instance cannot be stopped): every container stopped (nothing writes to EFS or the volume
/// any more), the volume's file system flushed and unmounted.
pub fn data_release(layout: &Layout) -> Result<String, String> {
    check_path(&layout.stack_dir)?;
    check_path(&layout.data_dir)?;
    let dir = &layout.stack_dir;
    let data = &layout.data_dir;
    Ok(format!(
        r#"# --- stop the services and release the data volume ---
if [ -f '{dir}/compose.yaml' ]; then
  docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' stop
fi
sync
if mountpoint -q '{data}'; then umount '{data}'; fi
"#
    ))
}

/// The data volume back on this instance (attached again as it was): mounted (its fstab entry
/// is there from the first boot), Docker and the stack started again.
pub fn data_resume(layout: &Layout) -> Result<String, String> {
    check_path(&layout.stack_dir)?;
    check_path(&layout.data_dir)?;
    let dir = &layout.stack_dir;
    let data = &layout.data_dir;
    Ok(format!(
        r#"# --- the data volume and the services back ---
for attempt in $(seq 1 30); do
  mountpoint -q '{data}' && break
  mount '{data}' 2>/dev/null || {{ echo "waiting for the data volume (attempt $attempt/30)"; sleep 10; }}
done
mountpoint -q '{data}' || {{ echo "the data volume did not come back at {data}" >&2; exit 1; }}
systemctl start docker
docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' up -d
"#
    ))
}
