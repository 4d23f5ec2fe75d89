//! `ec2::` — network discovery, AMIs, security groups, key pairs, instances, spot prices.

use rhai::plugin::*;
use rhai::Engine;

use super::opts::{keys, WaitOptions};
use super::OptionKeys;

/// The root volume size an instance was launched with (GiB), tagged on it.
pub const ROOT_GB_TAG: &str = "geusemaker:root-gb";

/// What a stack snapshot is for: `daily` (taken by the instance), `update` (before one).
pub const SNAPSHOT_TAG: &str = "geusemaker:snapshot";

mod catalog;
mod changes;
mod instances;
mod network;
mod volumes;

use changes::*;
use instances::*;
use network::*;
use volumes::*;

pub fn types(engine: &mut Engine) {
    use crate::cloud::ec2::*;
    engine
        .build_type::<Vpc>()
        .build_type::<Subnet>()
        .build_type::<Image>()
        .build_type::<IngressRule>()
        .build_type::<SecurityGroup>()
        .build_type::<KeyPair>()
        .build_type::<Instance>()
        .build_type::<SpotPrice>()
        .build_type::<Volume>()
        .build_type::<InstanceTypeInfo>();
}

pub fn module() -> rhai::Module {
    let mut m = exported_module!(network::api);
    m.combine(exported_module!(catalog::api));
    m.combine(exported_module!(instances::api));
    m.combine(exported_module!(changes::api));
    m.combine(exported_module!(volumes::api));
    m
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "run_instance",
        keys: keys::<RunInstanceOptions>,
    },
    OptionKeys {
        function: "wait_until_running",
        keys: keys::<WaitOptions>,
    },
    OptionKeys {
        function: "security_group",
        keys: keys::<GroupOptions>,
    },
    OptionKeys {
        function: "volume",
        keys: keys::<VolumeCreateOptions>,
    },
    OptionKeys {
        function: "instances",
        keys: keys::<ListOptions>,
    },
    OptionKeys {
        function: "security_groups",
        keys: keys::<GroupListOptions>,
    },
    OptionKeys {
        function: "instance_changes",
        keys: keys::<WantedInstance>,
    },
];
