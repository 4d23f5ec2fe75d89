//! The tags every resource carries: `geusemaker:stack`, `geusemaker:run`, `Name`.

use std::collections::BTreeMap;

pub const STACK_TAG: &str = "geusemaker:stack";
pub const RUN_TAG: &str = "geusemaker:run";
pub const NAME_TAG: &str = "Name";

/// Tags for one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Tags {
    pub stack: String,
    pub run: String,
    pub name: String,
    pub extra: BTreeMap<String, String>,
}

impl Tags {
    pub fn new(stack: &str, run: &str, name: &str) -> Self {
        Tags {
            stack: stack.into(),
            run: run.into(),
            name: name.into(),
            extra: BTreeMap::new(),
        }
    }

    /// All tags as key/value pairs, the three standard ones first.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (STACK_TAG.to_string(), self.stack.clone()),
            (RUN_TAG.to_string(), self.run.clone()),
            (NAME_TAG.to_string(), self.name.clone()),
        ];
        v.extend(
            self.extra
                .iter()
                .filter(|(k, _)| ![STACK_TAG, RUN_TAG, NAME_TAG].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        v
    }
}
