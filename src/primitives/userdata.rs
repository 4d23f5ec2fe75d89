//! `userdata::` — instance boot scripts (bash, checked with shellcheck in the tests). The
//! generators live in [`crate::boot`]; these wrappers check and convert recipe values.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, required};
use super::{id_of, rt, usage_err, usage_err_hint, OptionKeys};
use crate::boot::{self, Layout};
use crate::services::{self, Service, ServiceError};

pub fn types(_engine: &mut Engine) {}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "script",
        keys: keys::<ScriptOptions>,
    },
    OptionKeys {
        function: "compose_file",
        keys: keys::<ComposeFileOptions>,
    },
    OptionKeys {
        function: "compose_up",
        keys: keys::<ComposeUpOptions>,
    },
    OptionKeys {
        function: "n8n_owner",
        keys: keys::<OwnerOptions>,
    },
    OptionKeys {
        function: "data_snapshots",
        keys: keys::<SnapshotOptions>,
    },
    OptionKeys {
        function: "backups",
        keys: keys::<BackupOptions>,
    },
    OptionKeys {
        function: "save_config",
        keys: keys::<ConfigOptions>,
    },
    OptionKeys {
        function: "restore_config",
        keys: keys::<ConfigOptions>,
    },
    OptionKeys {
        function: "data_release",
        keys: keys::<DataOptions>,
    },
    OptionKeys {
        function: "data_resume",
        keys: keys::<DataOptions>,
    },
];

/// The options that say where things are on the instance; each function's options struct has
/// the ones it uses (the rest keep their defaults).
#[derive(Default)]
struct Dirs {
    efs_dir: Option<String>,
    data_dir: Option<String>,
    env_dir: Option<String>,
    stack_dir: Option<String>,
}

impl Dirs {
    fn layout(self) -> Layout {
        let d = Layout::default();
        Layout {
            efs_dir: self.efs_dir.unwrap_or(d.efs_dir),
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            env_dir: self.env_dir.unwrap_or(d.env_dir),
            stack_dir: self.stack_dir.unwrap_or(d.stack_dir),
            env_file: d.env_file,
        }
    }
}

/// `userdata::script`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptOptions {
    #[serde(default)]
    report: bool,
}

/// `userdata::compose_file`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeFileOptions {
    efs_dir: Option<String>,
    data_dir: Option<String>,
    /// Services started held back (n8n until its owner exists).
    #[serde(default)]
    hold: Vec<String>,
}

/// `userdata::compose_up`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeUpOptions {
    efs_dir: Option<String>,
    data_dir: Option<String>,
    #[serde(default = "compose_yaml")]
    file: String,
}

fn compose_yaml() -> String {
    "compose.yaml".into()
}

/// `userdata::n8n_owner`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerOptions {
    #[serde(default = "n8n_port")]
    port: i64,
    env_file: Option<String>,
    #[serde(default = "yes")]
    publish: bool,
}

fn n8n_port() -> i64 {
    5678
}

fn yes() -> bool {
    true
}

/// `userdata::data_snapshots`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotOptions {
    #[serde(default = "a_week")]
    keep_days: i64,
}

/// `userdata::backups`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupOptions {
    efs_dir: Option<String>,
    data_dir: Option<String>,
    #[serde(default = "a_week")]
    keep_days: i64,
}

fn a_week() -> i64 {
    7
}

/// `userdata::save_config` and `restore_config`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigOptions {
    id: Option<String>,
    env_dir: Option<String>,
    stack_dir: Option<String>,
}

/// `userdata::data_release` and `data_resume`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DataOptions {
    data_dir: Option<String>,
    stack_dir: Option<String>,
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

/// An SSM parameter's name from a Parameter handle or a plain name.
fn param_name(func: &str, key: &str, v: Dynamic) -> Result<String, Box<EvalAltResult>> {
    match v.clone().try_cast::<crate::cloud::ssm::Parameter>() {
        Some(p) => Ok(p.name),
        None => v.into_string().map_err(|t| {
            usage_err(format!(
                "{func}: `{key}` must be a Parameter or a name, not {t}"
            ))
        }),
    }
}

fn service_err(func: &str, e: ServiceError) -> Box<EvalAltResult> {
    let msg = format!("{func}: {e}");
    match e.hint.as_deref() {
        Some(h) => usage_err_hint(msg, h),
        None => usage_err(msg),
    }
}

/// Decode and validate a list of service maps.
pub fn decode_services(func: &str, list: Array) -> Result<Vec<Service>, Box<EvalAltResult>> {
    let items: Vec<serde_json::Value> = list
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            rhai::serde::from_dynamic::<serde_json::Value>(&v).map_err(|e| {
                usage_err(format!("{func}: service #{} is not plain data: {e}", i + 1))
            })
        })
        .collect::<Result<_, _>>()?;
    services::decode(&items).map_err(|e| service_err(func, e))
}

/// An update's id (required) and where its files are.
fn config_options(
    func: &'static str,
    options: Map,
) -> Result<(String, Layout), Box<EvalAltResult>> {
    let o: ConfigOptions = decode(func, options)?;
    let id = required(func, "id", o.id)?;
    let l = Dirs {
        env_dir: o.env_dir,
        stack_dir: o.stack_dir,
        ..Dirs::default()
    }
    .layout();
    Ok((id, l))
}

/// Where the data volume is mounted and the stack's files are.
fn data_options(func: &'static str, options: Map) -> Result<Layout, Box<EvalAltResult>> {
    let o: DataOptions = decode(func, options)?;
    Ok(Dirs {
        data_dir: o.data_dir,
        stack_dir: o.stack_dir,
        ..Dirs::default()
    }
    .layout())
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

    /// A boot script that reports its progress (`#{ report: true }`): after each step it
    /// writes the boot document — this run, the step now, the steps done with their seconds,
    /// and on a failure the failing step — to the stack's SSM parameter
    /// `/geusemaker-boot/<stack>` with the instance role (`iam::instance_profile` allows that
    /// one parameter). `health::wait_until_healthy` reads it while it waits: the phases show as
    /// they pass, and a failed boot ends the wait at once.
    ///
    /// ```rhai
    /// let script = userdata::script([userdata::packages()], #{ report: true });
    /// ```
    #[rhai_fn(name = "script", return_raw)]
    pub fn script_opts(
        ctx: NativeCallContext,
        sections: Array,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::script";
        let report = decode::<ScriptOptions>(F, options)?.report;
        let sections = strings(F, sections)?;
        if !report {
            return Ok(boot::script(&sections));
        }
        let rt = rt(&ctx)?;
        let channel = boot::Channel {
            region: rt.region()?,
            parameter: boot::channel_parameter(&rt.stack),
            run: rt.run_id.clone(),
        };
        boot::script_reporting(&sections, Some(&channel))
            .map_err(|e| usage_err(format!("{F}: {e}")))
    }

    /// The name of the stack's boot channel (the SSM parameter its boot reports to).
    ///
    /// ```rhai
    /// ssm::delete_parameter(userdata::boot_channel());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn boot_channel(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        Ok(boot::channel_parameter(&rt(&ctx)?.stack))
    }

    /// A timer on the instance that watches the metadata for a spot interruption notice and
    /// reports it on the stack's boot channel (`/geusemaker-boot/<stack>`): `monitor` then
    /// starts the replacement about two minutes before AWS takes the instance.
    ///
    /// ```rhai
    /// let watch = userdata::spot_notices();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn spot_notices(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::spot_notices";
        let rt = rt(&ctx)?;
        let channel = boot::Channel {
            region: rt.region()?,
            parameter: boot::channel_parameter(&rt.stack),
            run: rt.run_id.clone(),
        };
        // The notice carries a token only this boot script and the stack's state know: the run
        // id is no secret (it is on the instance's tags, which the account can read).
        let token = {
            let mut store = rt.store()?;
            let mut token = None;
            store
                .update(|s| token = Some(boot::notice_token(&mut s.values, &rt.run_id)))
                .map_err(|e| usage_err(format!("{F}: {e}")))?;
            token.expect("set by the update")
        };
        boot::spot_notices(&channel, &token).map_err(|e| usage_err(format!("{F}: {e}")))
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
            pairs.push((k.to_string(), param_name(F, &k, v)?));
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

    /// A daily systemd timer that snapshots the stack's data volume (`ec2::volume("data")`)
    /// with the instance's role and deletes its snapshots older than `keep_days` (7). The role
    /// needs `iam::instance_profile(name, #{ data_snapshots: true })`: it may snapshot that
    /// volume only, and delete only the stack's snapshots.
    ///
    /// ```rhai
    /// let snapshots = userdata::data_snapshots(#{ keep_days: 7 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_snapshots(
        ctx: NativeCallContext,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_snapshots";
        let rt = rt(&ctx)?;
        let keep = decode::<SnapshotOptions>(F, options)?.keep_days;
        let keep =
            u32::try_from(keep).map_err(|_| usage_err(format!("{F}: keep_days must be 1..365")))?;
        boot::data_snapshots(&rt.region()?, &rt.stack, &rt.resource_name("data"), keep)
            .map_err(err(F))
    }

    /// A daily systemd timer backing up every service with a `backup` entry to
    /// `<efs_dir>/backups/<service>/`, keeping `keep_days` (7) days; nothing when no service
    /// has one.
    ///
    /// ```rhai
    /// let nightly = userdata::backups(svcs, #{ keep_days: 14 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn backups(services: Array, options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::backups";
        let svcs = decode_services(F, services)?;
        let o: BackupOptions = decode(F, options)?;
        let l = Dirs {
            efs_dir: o.efs_dir,
            data_dir: o.data_dir,
            ..Dirs::default()
        }
        .layout();
        let keep = o.keep_days;
        let keep =
            u32::try_from(keep).map_err(|_| usage_err(format!("{F}: keep_days must be 1..365")))?;
        services::backups(&svcs, &l, keep).map_err(|e| service_err(F, e))
    }

    /// The section update `id` starts with: the compose and env files as they are now, kept
    /// (root-only, written whole or not at all) so `userdata::restore_config` can put exactly
    /// them back if the update fails its health checks. `options`: `id` (required: the run's
    /// id), `env_dir`, `stack_dir`.
    ///
    /// ```rhai
    /// let keep = userdata::save_config(#{ id: state::run_id() });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn save_config(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::save_config";
        let (id, l) = config_options(F, options)?;
        boot::save_config(&l, &id).map_err(err(F))
    }

    /// The configuration `userdata::save_config` kept for update `id` put back and the stack
    /// started from it again (its images are still on the instance); nothing is touched when
    /// that update kept nothing. `options`: `id` (required), `env_dir`, `stack_dir`.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::restore_config(#{ id: run })])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn restore_config(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::restore_config";
        let (id, l) = config_options(F, options)?;
        boot::restore_config(&l, &id).map_err(err(F))
    }

    /// Stop every container and unmount the data volume, so it can move to another instance
    /// while this one keeps running (a spot instance cannot be stopped). Run through SSM.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::data_release(#{})])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_release(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_release";
        boot::data_release(&data_options(F, options)?).map_err(err(F))
    }

    /// The data volume (attached again) mounted, Docker and the stack started: the way back
    /// from `userdata::data_release`. Run through SSM.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::data_resume(#{})])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_resume(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_resume";
        boot::data_resume(&data_options(F, options)?).map_err(err(F))
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
