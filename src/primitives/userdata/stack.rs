//! `userdata::` — the services: checked, rendered as a compose file, pulled and started; the
//! n8n owner, the models, what changed.

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{rt, usage_err};
use crate::boot::{self, Layout};
use crate::services;

use super::*;

#[export_module]
pub mod api {
    /// Check a list of service maps and return it with every default filled in (ports'
    /// host port, health timeout, …). Refuses unknown keys ("did you mean"), duplicate names
    /// or host ports, unpinned or `:latest` images, a `depends_on` naming no service, and a
    /// database's storage on EFS — call it first, before anything is created.
    ///
    /// A service: `name`, `image` (pinned), `ports` (`[#{ port, host, expose }]`, `expose`
    /// one of `"public"`, `"internal"` (127.0.0.1 only), `"none"`), `env` (non-secret),
    /// `secrets` (variable → stack secret name), `volumes` (container path → `"efs:<dir>"` or
    /// `"data:<dir>"`), `health` (`#{ http: "/path" }`, `#{ tcp: true }` or
    /// `#{ exec: "command" }`, with `port`, `body`, `timeout_ms`, `container`,
    /// `start_period`), `depends_on`, `gpu`, `memory` (default 1g), `shm_size`, `user`,
    /// `command`, `backup` (`#{ exec, suffix }` or `#{ post: "/path" }`).
    ///
    /// ```rhai
    /// let svcs = userdata::check_services([
    ///     #{ name: "web", image: "nginx:1.29.3", ports: [#{ port: 80, host: 8080, expose: "public" }],
    ///        health: #{ http: "/" } },
    /// ]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn check_services(list: Array) -> Result<Array, Box<EvalAltResult>> {
        const F: &str = "userdata::check_services";
        let svcs = decode_services(F, list)?;
        let d = rhai::serde::to_dynamic(&svcs).map_err(|e| usage_err(format!("{F}: {e}")))?;
        Ok(d.into_array().unwrap_or_default())
    }

    /// The Docker Compose file for `services` (see `check_services`), rendered from typed
    /// structs: public ports published, internal ones on 127.0.0.1 only, one env file per
    /// service with secrets, a memory limit and json-file log rotation on every service, the
    /// NVIDIA GPUs for services with `gpu: true`. Options: `efs_dir` and `data_dir`, where
    /// EFS and the data volume are mounted (`/mnt/efs`, `/mnt/data`); `hold` (service names):
    /// their public ports bound to the instance's loopback instead — the file to start from
    /// while a service is not ready for the outside (see `n8n_owner`'s `publish`).
    ///
    /// ```rhai
    /// let compose = userdata::compose_file(svcs, #{});
    /// let setup = userdata::compose_file(svcs, #{ hold: ["n8n"] });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn compose_file(services: Array, options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::compose_file";
        let svcs = decode_services(F, services)?;
        let o: ComposeFileOptions = decode(F, options)?;
        let l = Dirs {
            efs_dir: o.efs_dir,
            data_dir: o.data_dir,
            ..Dirs::default()
        }
        .layout();
        let hold = o.hold;
        services::compose_file_holding(&svcs, &l, &hold).map_err(|e| service_err(F, e))
    }

    /// At boot, one root-only env file per service (`<env_dir>/<name>.env`) holding only that
    /// service's secrets, fetched from SSM with the instance role. `secrets` maps each stack
    /// secret name the services use (`"postgres/password"`) to its Parameter (or SSM name).
    ///
    /// ```rhai
    /// let env = userdata::service_env(svcs, secrets);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn service_env(
        ctx: NativeCallContext,
        services: Array,
        secrets: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::service_env";
        let svcs = decode_services(F, services)?;
        let rt = rt(&ctx)?;
        let region = rt.region()?;
        let mut names = std::collections::BTreeMap::new();
        for (k, v) in secrets {
            names.insert(k.to_string(), param_name(F, &k, v)?);
        }
        services::env_files(&region, &svcs, &names, &Layout::default())
            .map_err(|e| service_err(F, e))
    }

    /// Create the services' volume directories (owned by their `user`), make Docker wait for
    /// the storage mounts at every boot, pull the images (retried) and start the compose
    /// project (`/opt/geusemaker/compose.yaml`). Options: `efs_dir`, `data_dir`; `file`: start
    /// from another compose file of `/opt/geusemaker` (e.g. `compose.setup.yaml`).
    ///
    /// ```rhai
    /// let start = userdata::compose_up(svcs, #{});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn compose_up(services: Array, options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::compose_up";
        let svcs = decode_services(F, services)?;
        let o: ComposeUpOptions = decode(F, options)?;
        let l = Dirs {
            efs_dir: o.efs_dir,
            data_dir: o.data_dir,
            ..Dirs::default()
        }
        .layout();
        let file = o.file;
        services::start_from(&svcs, &l, &file).map_err(|e| service_err(F, e))
    }

    /// Every image the services run, pulled all at once before the stack starts, each
    /// reported on the boot channel with its size and seconds (in a reporting script: the
    /// deploy shows them as they arrive). Compose's own pull in `compose_up` then finds them.
    ///
    /// ```rhai
    /// let pulls = userdata::pull_images(services::defaults());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn pull_images(services: Array) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::pull_images";
        let svcs = decode_services(F, services)?;
        services::validate(&svcs).map_err(|e| service_err(F, e))?;
        let images: Vec<String> = svcs.iter().map(|s| s.image.clone()).collect();
        boot::pull_images(&images).map_err(err(F))
    }

    /// At boot, before the stack starts: `vars` of service `name` set to
    /// `http://<the instance's public address>:<its public port>/` in its env file (read from
    /// the instance metadata) — for a tier without a load balancer, whose address is known only
    /// once the instance runs.
    ///
    /// ```rhai
    /// let urls = userdata::public_url_env(svcs, "n8n", ["WEBHOOK_URL", "N8N_EDITOR_BASE_URL"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn public_url_env(
        services: Array,
        name: &str,
        vars: Array,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::public_url_env";
        let svcs = decode_services(F, services)?;
        services::public_url_env(&svcs, name, &strings(F, vars)?, &Layout::default())
            .map_err(|e| service_err(F, e))
    }

    /// Pull Ollama models in the background once Ollama answers (placed before `compose_up`
    /// in a boot script, the models download while the other services start), each reported
    /// on the boot channel with its size.
    ///
    /// ```rhai
    /// let models = userdata::ollama_pull(["llama3.2:3b", "nomic-embed-text"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ollama_pull(models: Array) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::ollama_pull";
        boot::ollama_pull(&strings(F, models)?, &Layout::default()).map_err(err(F))
    }

    /// Create n8n's owner account (`email`, password from the boot env file's
    /// `N8N_OWNER_PASSWORD`) once n8n is ready; skipped when an owner exists. The password file
    /// is removed afterwards.
    ///
    /// ```rhai
    /// let owner = userdata::n8n_owner("ops@example.com");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn n8n_owner(email: &str) -> Result<String, Box<EvalAltResult>> {
        boot::n8n_owner(email, 5678, &Layout::default(), true).map_err(err("userdata::n8n_owner"))
    }

    /// `n8n_owner` with options: `port` (n8n's port on the instance, 5678), `env_file` (the
    /// boot env file holding `N8N_OWNER_PASSWORD`), `publish` (true: n8n was started from
    /// `compose.setup.yaml`, held on the loopback; the stack is restarted from `compose.yaml`
    /// once the owner exists — never before, so no one else can claim n8n).
    ///
    /// ```rhai
    /// let owner = userdata::n8n_owner("ops@example.com", #{ port: 5678, publish: true });
    /// ```
    #[rhai_fn(name = "n8n_owner", return_raw)]
    pub fn n8n_owner_with(email: &str, options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::n8n_owner";
        let o: OwnerOptions = decode(F, options)?;
        let port = o.port;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| usage_err(format!("{F}: port {port} is not a port")))?;
        let mut l = Layout::default();
        if let Some(f) = o.env_file {
            l.env_file = f;
        }
        // Restarting from compose.yaml is harmless when nothing was held: on by default, so a
        // recipe that holds n8n back cannot forget to publish it only after its owner exists.
        let publish = o.publish;
        boot::n8n_owner(email, port, &l, publish).map_err(err(F))
    }

    /// A short fingerprint of a text (`sha256:` and 16 hex digits): tagged on the instance,
    /// it tells a re-run whether what runs there is what the recipe renders now.
    ///
    /// ```rhai
    /// let fp = userdata::fingerprint(script);
    /// ```
    pub fn fingerprint(text: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// What differs between two service lists, one line each: `+ name (image)`, `- name`,
    /// `n8n: image a → b`, `n8n: env +VAR ~VAR -VAR`, `qdrant: memory, ports`. Secret values
    /// never appear.
    ///
    /// ```rhai
    /// for line in userdata::services_diff(before, svcs) { ui::info(line); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn services_diff(old: Array, new: Array) -> Result<Array, Box<EvalAltResult>> {
        const F: &str = "userdata::services_diff";
        let old = decode_services(F, old)?;
        let new = decode_services(F, new)?;
        Ok(services::diff(&old, &new)
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }
}
