//! Recipes and stdlib modules compiled into the binary.

/// How messages name a file compiled into the binary (`<bundled>/recipes/dev.rhai:47:30`): never
/// a path that could be mistaken for one in the working directory.
pub const BUNDLED: &str = "<bundled>";

/// Bundled recipes: `geusemaker run dev` runs `recipes/dev.rhai`.
pub const RECIPES: &[(&str, &str)] = &[
    ("automation", include_str!("../../recipes/automation.rhai")),
    ("destroy", include_str!("../../recipes/destroy.rhai")),
    ("dev", include_str!("../../recipes/dev.rhai")),
    ("gpu", include_str!("../../recipes/gpu.rhai")),
    ("quickstart", include_str!("../../recipes/quickstart.rhai")),
    ("rollback", include_str!("../../recipes/rollback.rhai")),
];

/// Bundled stdlib modules: `import "network"` finds `stdlib/network.rhai`.
pub const STDLIB: &[(&str, &str)] = &[
    ("edge", include_str!("../../stdlib/edge.rhai")),
    ("instance", include_str!("../../stdlib/instance.rhai")),
    ("network", include_str!("../../stdlib/network.rhai")),
    ("report", include_str!("../../stdlib/report.rhai")),
    ("security", include_str!("../../stdlib/security.rhai")),
    ("services", include_str!("../../stdlib/services.rhai")),
    ("storage", include_str!("../../stdlib/storage.rhai")),
    ("teardown", include_str!("../../stdlib/teardown.rhai")),
    ("tier", include_str!("../../stdlib/tier.rhai")),
    ("update", include_str!("../../stdlib/update.rhai")),
];

pub fn recipe(name: &str) -> Option<&'static str> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn stdlib(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    fn names(dir: &str) -> BTreeSet<String> {
        std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "rhai")
                    .then(|| p.file_stem().unwrap().to_string_lossy().to_string())
            })
            .collect()
    }

    #[test]
    fn every_file_is_embedded() {
        let recipes: BTreeSet<String> = super::RECIPES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            recipes,
            names("recipes"),
            "recipes/ and engine::embedded::RECIPES differ"
        );
        let stdlib: BTreeSet<String> = super::STDLIB.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            stdlib,
            names("stdlib"),
            "stdlib/ and engine::embedded::STDLIB differ"
        );
    }
}
