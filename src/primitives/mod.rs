//! Script-visible primitives, one module per API group, registered from [`AREAS`].
//!
//! Primitives are thin: they check and convert Rhai values, call the cloud/state layers, and
//! convert back to typed handles. Every create records an intent in the ledger before its API
//! call and the id right after.

pub mod cloudfront;
pub mod ec2;
pub mod efs;
pub mod elb;
pub mod follow;
pub mod health;
pub mod iam;
pub mod net;
pub mod opts;
pub mod parallel;
pub mod params;
pub mod pricing;
pub mod ssm;
pub mod stacks;
pub mod state;
pub mod ui;
pub mod userdata;
pub mod value;

use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, Position};

use crate::cloud::CloudError;

pub use params::Params;

mod runtime;
pub use runtime::{rt, thread_call, CallSite, Change, ChangeAction, Runtime};

/// One API group: its Rhai namespace, its functions and its handle types.
pub struct Area {
    pub name: &'static str,
    pub doc: &'static str,
    pub module: fn() -> Module,
    pub types: fn(&mut Engine),
    /// Its functions whose option map is a typed struct ([`opts::decode`]).
    pub options: &'static [OptionKeys],
}

/// A primitive whose option map is decoded into a struct: the struct's fields are the keys it
/// accepts, and the reference lists them.
pub struct OptionKeys {
    /// The function's name in its area (`run_instance`).
    pub function: &'static str,
    pub keys: fn() -> &'static [&'static str],
}

/// Every primitive module, in the order the reference lists them.
pub const AREAS: &[Area] = &[
    Area {
        name: "ec2",
        doc: "VPC discovery, AMIs, security groups, key pairs, instances, spot prices.",
        module: ec2::module,
        types: ec2::types,
        options: ec2::OPTIONS,
    },
    Area {
        name: "efs",
        doc: "Encrypted EFS file systems and mount targets.",
        module: efs::module,
        types: efs::types,
        options: efs::OPTIONS,
    },
    Area {
        name: "elb",
        doc: "Application load balancer, target group, listeners, target health.",
        module: elb::module,
        types: elb::types,
        options: elb::OPTIONS,
    },
    Area {
        name: "cloudfront",
        doc: "A CloudFront distribution in front of the load balancer.",
        module: cloudfront::module,
        types: cloudfront::types,
        options: cloudfront::OPTIONS,
    },
    Area {
        name: "ssm",
        doc: "SecureString parameters and Run Command.",
        module: ssm::module,
        types: ssm::types,
        options: ssm::OPTIONS,
    },
    Area {
        name: "iam",
        doc: "The instance role and instance profile.",
        module: iam::module,
        types: iam::types,
        options: iam::OPTIONS,
    },
    Area {
        name: "pricing",
        doc: "On-demand prices (Price List API, cached, with a bundled fallback).",
        module: pricing::module,
        types: pricing::types,
        options: pricing::OPTIONS,
    },
    Area {
        name: "health",
        doc: "HTTP and TCP health checks, and waiting for them.",
        module: health::module,
        types: health::types,
        options: health::OPTIONS,
    },
    Area {
        name: "net",
        doc: "This machine's public address: who may connect by default.",
        module: net::module,
        types: net::types,
        options: net::OPTIONS,
    },
    Area {
        name: "state",
        doc: "The stack's stored values, outputs, status and resource ledger.",
        module: state::module,
        types: state::types,
        options: state::OPTIONS,
    },
    Area {
        name: "ui",
        doc: "Stages, messages, tables and confirmation.",
        module: ui::module,
        types: ui::types,
        options: ui::OPTIONS,
    },
    Area {
        name: "userdata",
        doc: "Instance boot scripts.",
        module: userdata::module,
        types: userdata::types,
        options: userdata::OPTIONS,
    },
];

/// Register every area as a static module, plus the global functions (`param()`, `params()`,
/// `stack()`, `parallel()`, `options()`).
pub fn register_all(engine: &mut Engine) {
    for area in AREAS {
        (area.types)(engine);
        engine.register_static_module(area.name, (area.module)().into());
    }
    engine.register_global_module(params::module().into());
    engine.register_global_module(stacks::module().into());
    engine.register_global_module(parallel::module().into());
    engine.register_global_module(opts::module().into());
}

fn error_value(fields: &[(&str, Option<String>)]) -> Box<EvalAltResult> {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert((*k).into(), v.clone().into());
        }
    }
    EvalAltResult::ErrorRuntime(Dynamic::from_map(m), Position::NONE).into()
}

/// An AWS failure as a Rhai error: a map with `kind`, `service`, `operation`, `code`,
/// `message`, `hint` (so `catch (e)` can test `e.code`).
pub fn cloud_err(e: CloudError) -> Box<EvalAltResult> {
    error_value(&[
        ("kind", Some("aws".into())),
        ("service", Some(e.service.to_string())),
        ("operation", Some(e.operation.clone())),
        ("code", Some(e.code.clone())),
        ("message", Some(e.message.clone())),
        ("hint", e.hint.clone()),
    ])
}

/// A misuse of a primitive (bad argument, bad option).
pub fn usage_err(msg: impl Into<String>) -> Box<EvalAltResult> {
    error_value(&[
        ("kind", Some("usage".into())),
        ("message", Some(msg.into())),
    ])
}

pub fn usage_err_hint(msg: impl Into<String>, hint: impl Into<String>) -> Box<EvalAltResult> {
    error_value(&[
        ("kind", Some("usage".into())),
        ("message", Some(msg.into())),
        ("hint", Some(hint.into())),
    ])
}

/// Services not healthy in time: kind `health`, code `NotHealthy` (what makes a failed run's
/// rollback a `timeout` one).
pub fn health_err(msg: impl Into<String>, hint: impl Into<String>) -> Box<EvalAltResult> {
    error_value(&[
        ("kind", Some("health".into())),
        ("code", Some("NotHealthy".into())),
        ("message", Some(msg.into())),
        ("hint", Some(hint.into())),
    ])
}

pub fn state_err(e: crate::state::StateError) -> Box<EvalAltResult> {
    let (msg, hint) = (e.message(), e.hint());
    error_value(&[
        ("kind", Some("state".into())),
        ("message", Some(msg)),
        ("hint", hint),
    ])
}

pub use crate::suggest::did_you_mean;

/// The AWS id behind a typed handle or a plain id string (`vpc` or `"vpc-123"`).
pub fn id_of(v: &Dynamic, what: &str) -> Result<String, Box<EvalAltResult>> {
    use crate::cloud::{ec2, efs, iam};
    if let Some(s) = v.clone().try_cast::<rhai::ImmutableString>() {
        return Ok(s.to_string());
    }
    macro_rules! by_field {
        ($($t:ty => $f:ident),* $(,)?) => {
            $(if let Some(h) = v.clone().try_cast::<$t>() { return Ok(h.$f.clone()); })*
        };
    }
    by_field!(
        ec2::Vpc => id, ec2::Subnet => id, ec2::SecurityGroup => id, ec2::Instance => id,
        ec2::Image => id, ec2::KeyPair => name, ec2::Volume => id, efs::FileSystem => id, efs::MountTarget => id, crate::cloud::ssm::Parameter => name, crate::cloud::elb::LoadBalancer => arn, crate::cloud::elb::TargetGroup => arn, crate::cloud::elb::Listener => arn, crate::cloud::cloudfront::Distribution => id,
        iam::InstanceProfile => arn,
    );
    Err(usage_err(format!(
        "expected {what} (a handle or an id string), not {}",
        v.type_name()
    )))
}
