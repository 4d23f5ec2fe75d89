//! GeuseMaker: deployments of a private AI stack on AWS, written as Rhai recipes over typed
//! primitives.
//!
//! Layers, top to bottom: [`cli`] (clap) → [`engine`] (the Rhai host) and [`ops`] (commands
//! on a deployed stack) → [`primitives`] (script-visible functions) → [`inventory`] → [`cloud`]
//! (AWS behind one interface per service) and [`config`] → [`state`] (stack documents, ledger,
//! locks), with leaves every layer may use ([`suggest`], [`naming`], [`param_value`], [`ui`],
//! …). A module uses only those below it: the `layers` test checks every `crate::` path.

pub mod boot;
pub mod cidr;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod engine;
pub mod health;
pub mod interrupt;
pub mod inventory;
pub mod kinds;
pub mod naming;
pub mod ops;
pub mod param_value;
pub mod primitives;
pub mod public_ip;
pub mod services;
pub mod state;
pub mod suggest;
pub mod ui;

#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Every top-level module and its layer. A module may use only modules of a lower layer;
    /// `engine` and `ops` (the commands) may use each other.
    const LAYERS: &[(&str, u8)] = &[
        ("suggest", 0),
        ("cidr", 0),
        ("interrupt", 0),
        ("public_ip", 0),
        ("ui", 0),
        ("naming", 0),
        ("param_value", 0),
        ("boot", 1),
        ("state", 1),
        ("kinds", 2),
        ("services", 2),
        ("cloud", 3),
        ("config", 3),
        ("inventory", 4),
        ("health", 4),
        ("primitives", 5),
        ("engine", 6),
        ("ops", 6),
        ("cli", 7),
    ];

    fn rank(module: &str) -> Option<u8> {
        LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
    }

    fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                rust_files(&entry.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if name == "lib" || name == "main" {
                continue;
            }
            let own = rank(&name)
                .unwrap_or_else(|| panic!("module `{name}` has no layer: add it to LAYERS"));
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for (at, _) in text.match_indices("crate::") {
                    let used: String = text[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used == name {
                        continue;
                    }
                    let Some(theirs) = rank(&used) else {
                        continue; // an item of the crate root (none today), not a module
                    };
                    let commands = ["engine", "ops"];
                    let allowed = theirs < own
                        || (commands.contains(&name.as_str()) && commands.contains(&used.as_str()));
                    if !allowed {
                        let line = text[..at].matches('\n').count() + 1;
                        wrong.push(format!(
                            "{}:{line}: `{name}` uses `{used}`, a layer above it",
                            file.strip_prefix(&src).unwrap().display()
                        ));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports that point up:\n{}",
            wrong.join("\n")
        );
    }
}
