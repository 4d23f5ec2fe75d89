//! `userdata::` — instance boot scripts (bash, checked with shellcheck in the tests). The
//! generators live in [`crate::boot`]; these wrappers check and convert recipe values.
//! The functions are in three parts: the script and its plain sections (`script.rs`), the
//! services (`stack.rs`), the data on the instance (`data.rs`); their options are here.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, required};
use super::{usage_err, usage_err_hint, OptionKeys};
use crate::boot::Layout;
use crate::services::{self, Service, ServiceError};

pub fn types(_engine: &mut Engine) {}

mod data;
mod script;
mod stack;

pub fn module() -> rhai::Module {
    let mut m = exported_module!(script::api);
    m.combine(exported_module!(stack::api));
    m.combine(exported_module!(data::api));
    m
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
