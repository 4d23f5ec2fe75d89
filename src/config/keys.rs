//! The settings config.toml may hold: each key with its kind, default and help, and the
//! values they take.

use std::fmt;
use std::time::Duration;

/// What kind of value a key holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Str,
    Bool,
    /// An integer in `min..=max`.
    Int(i64, i64),
    /// A duration such as `30s`, `5m`, `1h` (at least one second).
    Duration,
    /// A list of strings.
    List,
    /// A string with a meaning (an instance type, a region), checked like a recipe param.
    Of(crate::kinds::ValueKind),
}

impl Kind {
    pub(super) fn describe(self) -> String {
        match self {
            Kind::Str => "a string".into(),
            Kind::Bool => "true or false".into(),
            Kind::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
            Kind::Duration => "a duration like \"30s\", \"5m\" or \"1h\"".into(),
            Kind::List => "a list of strings, e.g. [\"n8n\", \"postgres\"]".into(),
            Kind::Of(k) => k.describe().into(),
        }
    }
}

/// One setting: `section.name`, its type, its default (as TOML text) and what it does.
#[derive(Debug)]
pub struct Key {
    pub key: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Every setting geusemaker reads.
pub const KEYS: &[Key] = &[
    Key {
        key: "aws.region",
        kind: Kind::Of(crate::kinds::ValueKind::Region),
        default: None,
        help: "region for new stacks (a stack stays in its region; --region wins)",
    },
    Key {
        key: "aws.profile",
        kind: Kind::Str,
        default: None,
        help: "profile from ~/.aws/config (--profile wins)",
    },
    Key {
        key: "deploy.tier",
        kind: Kind::Str,
        default: Some("\"dev\""),
        help: "recipe `geusemaker run --name X` runs when none is given",
    },
    Key {
        key: "deploy.instance_type",
        kind: Kind::Of(crate::kinds::ValueKind::InstanceType),
        default: None,
        help: "instance_type param for recipes that take one (--set wins)",
    },
    Key {
        key: "deploy.spot",
        kind: Kind::Bool,
        default: None,
        help: "spot param for recipes that take one (--set wins)",
    },
    Key {
        key: "health.interval",
        kind: Kind::Duration,
        default: Some("\"30s\""),
        help: "time between checks in `monitor` (--interval wins)",
    },
    Key {
        key: "health.failures",
        kind: Kind::Int(1, 100),
        default: Some("3"),
        help: "consecutive failures that make a service critical",
    },
    Key {
        key: "health.warn_ms",
        kind: Kind::Int(1, 600_000),
        default: Some("2000"),
        help: "a response slower than this is a warning",
    },
    Key {
        key: "health.critical_ms",
        kind: Kind::Int(1, 600_000),
        default: Some("5000"),
        help: "a response slower than this counts as a failure",
    },
    Key {
        key: "health.critical_services",
        kind: Kind::List,
        default: Some("[\"n8n\", \"postgres\"]"),
        help: "services whose critical state triggers a rollback",
    },
    Key {
        key: "monitor.auto_rollback",
        kind: Kind::Bool,
        default: Some("true"),
        help: "roll back automatically: failed runs, and critical services in `monitor`",
    },
    Key {
        key: "state.url",
        kind: Kind::Str,
        default: Some("\"local\""),
        help: "where stack state lives: `local` ($GEUSEMAKER_HOME) or `s3://BUCKET/PREFIX` shared by a team (--state and GEUSEMAKER_STATE win; a project's geusemaker.toml [state] over this file)",
    },
    Key {
        key: "state.region",
        kind: Kind::Of(crate::kinds::ValueKind::Region),
        default: None,
        help: "the state bucket's region, when it is not the AWS chain's",
    },
    Key {
        key: "state.lease",
        kind: Kind::Duration,
        default: Some("\"2m\""),
        help: "how long a shared lock outlives a run that stopped renewing it (killed, offline) before another run may take it over",
    },
    Key {
        key: "state.kms_key",
        kind: Kind::Str,
        default: None,
        help: "KMS key (id, ARN or alias) to encrypt state objects with, instead of S3-managed keys",
    },
    Key {
        key: "ui.emoji",
        kind: Kind::Bool,
        default: Some("false"),
        help: "symbols in stage, success and warning lines",
    },
    Key {
        key: "ui.color",
        kind: Kind::Bool,
        default: Some("true"),
        help: "colour on terminals (NO_COLOR always turns it off)",
    },
    Key {
        key: "ui.compact",
        kind: Kind::Bool,
        default: Some("false"),
        help: "leave out detail lines while recipes run (stages, results and warnings stay)",
    },
];

/// A setting's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Duration(Duration),
    List(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Duration(d) => write!(f, "{}", fmt_duration(*d)),
            Value::List(l) => write!(f, "{}", l.join(",")),
        }
    }
}

impl Value {
    pub(super) fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => s.clone().into(),
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Duration(d) => fmt_duration(*d).into(),
            Value::List(l) => l.clone().into(),
        }
    }
}

/// `90s` → `1m30s`; whole units only.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s").replace("m0s", "m"),
    }
}

/// `30s`, `5m`, `1h30m`, `90` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return (secs > 0)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(|| "a duration must be at least 1s".to_string());
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("`{text}` is not a duration like 30s, 5m or 1h")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like 30s, 5m or 1h"))?;
        total += n * unit;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(format!(
            "`{text}` is not a duration like 30s, 5m or 1h (at least 1s)"
        ));
    }
    Ok(Duration::from_secs(total))
}
