//! `userdata::` — instance boot scripts (bash, checked with shellcheck in the tests). The
//! generators live in [`crate::boot`]; these wrappers check and convert recipe values.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::Opts;
use super::{id_of, rt, usage_err};
use crate::boot::{self, Images, Layout};

pub fn types(_engine: &mut Engine) {}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

const LAYOUT_KEYS: [&str; 4] = ["efs_dir", "data_dir", "env_file", "stack_dir"];

fn layout(o: &mut Opts) -> Result<Layout, Box<EvalAltResult>> {
    let d = Layout::default();
    Ok(Layout {
        efs_dir: o.str("efs_dir")?.unwrap_or(d.efs_dir),
        data_dir: o.str("data_dir")?.unwrap_or(d.data_dir),
        env_file: o.str("env_file")?.unwrap_or(d.env_file),
        stack_dir: o.str("stack_dir")?.unwrap_or(d.stack_dir),
    })
}

fn keys<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    LAYOUT_KEYS
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

fn err(func: &str) -> impl Fn(String) -> Box<EvalAltResult> + '_ {
    move |e| usage_err(format!("{func}: {e}"))
}

fn strings(func: &str, items: Array) -> Result<Vec<String>, Box<EvalAltResult>> {
    items
        .into_iter()
        .map(|v| {
            v.into_string()
                .map_err(|t| usage_err(format!("{func}: expected strings, not {t}")))
        })
        .collect()
}

#[export_module]
pub mod api {
    /// A boot script: the strict-mode header (and a boot log) followed by the given sections.
    ///
    /// ```rhai
    /// let script = userdata::script([
    ///     userdata::packages(),
    ///     userdata::efs_mount(fs, "/mnt/efs"),
    /// ]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn script(sections: Array) -> Result<String, Box<EvalAltResult>> {
        Ok(boot::script(&strings("userdata::script", sections)?))
    }

    /// Install Docker, the pinned Docker Compose plugin, amazon-efs-utils and xfsprogs.
    ///
    /// ```rhai
    /// let install = userdata::packages();
    /// ```
    pub fn packages() -> String {
        boot::packages()
    }

    /// Mount EFS `fs` (handle or id) at `mount_point` with TLS via amazon-efs-utils, with a
    /// `_netdev` fstab entry, retrying until the mount target answers.
    ///
    /// ```rhai
    /// let mount = userdata::efs_mount(fs, "/mnt/efs");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn efs_mount(fs: Dynamic, mount_point: &str) -> Result<String, Box<EvalAltResult>> {
        let id = id_of(&fs, "a file system")?;
        boot::efs_mount(&id, mount_point).map_err(err("userdata::efs_mount"))
    }

    /// Wait for an EBS volume to be attached, create an XFS file system only if it has none
    /// (a re-attached volume keeps its data), and mount it at `mount_point` by UUID. `volume`
    /// is a `Volume`, its id, or the device it will be attached as (`"/dev/sdf"`) — the
    /// latter lets the boot script be written before the volume exists.
    ///
    /// ```rhai
    /// let data_mount = userdata::ebs_mount("/dev/sdf", "/mnt/data");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ebs_mount(volume: Dynamic, mount_point: &str) -> Result<String, Box<EvalAltResult>> {
        let id = id_of(&volume, "a volume or device")?;
        boot::ebs_mount(&id, mount_point).map_err(err("userdata::ebs_mount"))
    }

    /// At boot, fetch SSM parameters (decrypted, with the instance role) into a root-only env
    /// file: `vars` maps variable names to parameter handles or names. The values never
    /// appear in the user data.
    ///
    /// ```rhai
    /// let env = userdata::ssm_env("/etc/geusemaker/stack.env", #{
    ///     POSTGRES_PASSWORD: pg_password,          // a Parameter from ssm::ensure_secret
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssm_env(
        ctx: NativeCallContext,
        env_file: &str,
        vars: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::ssm_env";
        let rt = rt(&ctx)?;
        let region = rt.region()?;
        let mut pairs = Vec::new();
        for (k, v) in vars {
            let name = match v.clone().try_cast::<crate::cloud::ssm::Parameter>() {
                Some(p) => p.name,
                None => v.into_string().map_err(|t| {
                    usage_err(format!("{F}: `{k}` must be a Parameter or a name, not {t}"))
                })?,
            };
            pairs.push((k.to_string(), name));
        }
        boot::ssm_env(&region, env_file, &pairs).map_err(err(F))
    }

    /// Write `content` to `path` with `mode` (e.g. "0644") through a quoted heredoc.
    ///
    /// ```rhai
    /// let f = userdata::write_file("/opt/geusemaker/compose.yaml", compose, "0644");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(path: &str, content: &str, mode: &str) -> Result<String, Box<EvalAltResult>> {
        boot::write_file(path, content, mode).map_err(err("userdata::write_file"))
    }

    /// The Docker Compose file for n8n, Ollama, Qdrant, Crawl4AI and PostgreSQL: pinned
    /// images, health checks and restart policies; n8n and Ollama data on EFS, PostgreSQL and
    /// Qdrant on the data volume. Options: `images` (map overriding any of `n8n`, `ollama`,
    /// `qdrant`, `crawl4ai`, `postgres`; tags must be pinned), `gpu` (false: Ollama gets the
    /// NVIDIA GPUs when true), and the layout `efs_dir`, `data_dir`, `env_file`, `stack_dir`.
    ///
    /// ```rhai
    /// let compose = userdata::compose_file(#{ images: #{ n8n: "n8nio/n8n:1.64.0" } });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn compose_file(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::compose_file";
        let mut o = Opts::new(F, options, &keys(&["images", "gpu"]))?;
        let l = layout(&mut o)?;
        let gpu = o.bool("gpu")?.unwrap_or(false);
        let mut images = Images::default();
        if let Some(m) = o.map("images")? {
            let mut io = Opts::new(F, m, &["n8n", "ollama", "qdrant", "crawl4ai", "postgres"])?;
            for (slot, key) in [
                (&mut images.n8n, "n8n"),
                (&mut images.ollama, "ollama"),
                (&mut images.qdrant, "qdrant"),
                (&mut images.crawl4ai, "crawl4ai"),
                (&mut images.postgres, "postgres"),
            ] {
                if let Some(v) = io.str(key)? {
                    *slot = v;
                }
            }
        }
        boot::compose_yaml(&images, &l, gpu).map_err(err(F))
    }

    /// Create the data directories and start the compose project (`stack_dir/compose.yaml`).
    /// Options: the layout `efs_dir`, `data_dir`, `env_file`, `stack_dir`.
    ///
    /// ```rhai
    /// let start = userdata::compose_up(#{});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn compose_up(options: Map) -> Result<String, Box<EvalAltResult>> {
        let mut o = Opts::new("userdata::compose_up", options, &keys(&[]))?;
        boot::compose_up(&layout(&mut o)?).map_err(err("userdata::compose_up"))
    }

    /// Pull Ollama models in the background once Ollama answers.
    ///
    /// ```rhai
    /// let models = userdata::ollama_pull(["llama3.2:3b", "nomic-embed-text"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ollama_pull(models: Array) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::ollama_pull";
        boot::ollama_pull(&strings(F, models)?, &Layout::default()).map_err(err(F))
    }

    /// Create n8n's owner account (`email`, password from the env file's
    /// `N8N_OWNER_PASSWORD`) once n8n answers; skipped when an owner exists.
    ///
    /// ```rhai
    /// let owner = userdata::n8n_owner("ops@example.com");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn n8n_owner(email: &str) -> Result<String, Box<EvalAltResult>> {
        boot::n8n_owner(email, &Layout::default()).map_err(err("userdata::n8n_owner"))
    }

    /// A daily systemd timer that backs up PostgreSQL (`pg_dump`) and Qdrant (snapshot) to
    /// EFS under `<efs_dir>/backups`, keeping `keep_days` (7) days.
    ///
    /// ```rhai
    /// let nightly = userdata::backups(#{ keep_days: 14 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn backups(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::backups";
        let mut o = Opts::new(F, options, &keys(&["keep_days"]))?;
        let l = layout(&mut o)?;
        let keep = o.int("keep_days")?.unwrap_or(7);
        let keep =
            u32::try_from(keep).map_err(|_| usage_err(format!("{F}: keep_days must be 1..365")))?;
        boot::backups(&l, keep).map_err(err(F))
    }
}
