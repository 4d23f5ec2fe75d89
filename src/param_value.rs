//! A recipe param's typed value: what `--set`, the settings and a header's defaults give, and
//! what `param("name")` returns. A leaf: the engine reads headers into it, the primitives hand
//! it to recipes.

use rhai::{Array, Dynamic};
use serde::Serialize;

/// A param's value, typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(l) => write!(f, "{}", l.join(",")),
        }
    }
}

impl Value {
    pub fn to_dynamic(&self) -> Dynamic {
        match self {
            Value::String(s) => s.clone().into(),
            Value::Int(i) => (*i).into(),
            Value::Float(x) => (*x).into(),
            Value::Bool(b) => (*b).into(),
            Value::List(l) => l
                .iter()
                .map(|s| Dynamic::from(s.clone()))
                .collect::<Array>()
                .into(),
        }
    }
}
