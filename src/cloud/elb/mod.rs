//! ELBv2: application load balancers, target groups, listeners, target health — the handles
//! and [`ElbApi`] here, its SDK implementation in `sdk.rs`.

use std::fmt;

use rhai::CustomType;

use super::{CloudError, Tags};
use crate::state::Kind;

const SVC: &str = "elb";

/// An application load balancer.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "LoadBalancer", extra = super::display_fns)]
pub struct LoadBalancer {
    #[rhai_type(readonly)]
    pub arn: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub dns_name: String,
    /// `provisioning`, `active`, `failed`.
    #[rhai_type(readonly)]
    pub state: String,
    #[rhai_type(readonly)]
    pub vpc_id: String,
}

impl fmt::Display for LoadBalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LoadBalancer({} {} {})",
            self.name, self.dns_name, self.state
        )
    }
}

/// A target group with its health check.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "TargetGroup", extra = super::display_fns)]
pub struct TargetGroup {
    #[rhai_type(readonly)]
    pub arn: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub port: i64,
    #[rhai_type(readonly)]
    pub health_path: String,
}

impl fmt::Display for TargetGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TargetGroup({} :{} {})",
            self.name, self.port, self.health_path
        )
    }
}

/// A listener of a load balancer.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Listener", extra = super::display_fns)]
pub struct Listener {
    #[rhai_type(readonly)]
    pub arn: String,
    #[rhai_type(readonly)]
    pub port: i64,
    #[rhai_type(readonly)]
    pub protocol: String,
    /// What the listener does with a request no rule takes: `forward`, `redirect` or
    /// `fixed-response`.
    #[rhai_type(readonly)]
    pub default_action: String,
    /// The target group the default action forwards to (`forward` only).
    #[rhai_type(readonly)]
    pub default_target: Option<String>,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listener({} {})", self.protocol, self.port)
    }
}

/// How a new target group checks its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroupSpec {
    pub name: String,
    pub vpc_id: String,
    pub port: i32,
    pub health_path: String,
    pub interval_s: i32,
    pub timeout_s: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    pub matcher: String,
}

/// What a listener does.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerAction {
    Forward {
        target_group_arn: String,
    },
    RedirectToHttps,
    /// HTTP 403: for requests that did not come the way the stack allows (e.g. not through
    /// its CloudFront distribution).
    Forbidden,
}

/// The listener rule that forwards only requests carrying a header with a given value.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderRule {
    pub header: String,
    pub value: String,
    pub target_group_arn: String,
}

/// The ELBv2 operations primitives use.
pub trait ElbApi: Send + Sync {
    fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError>;
    fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError>;
    fn create_load_balancer(
        &self,
        name: &str,
        subnets: &[String],
        security_groups: &[String],
        tags: &Tags,
    ) -> Result<LoadBalancer, CloudError>;
    fn delete_load_balancer(&self, arn: &str) -> Result<(), CloudError>;
    fn find_target_group(&self, name: &str) -> Result<Option<TargetGroup>, CloudError>;
    fn create_target_group(
        &self,
        spec: &TargetGroupSpec,
        tags: &Tags,
    ) -> Result<TargetGroup, CloudError>;
    fn delete_target_group(&self, arn: &str) -> Result<(), CloudError>;
    fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, CloudError>;
    fn create_listener(
        &self,
        lb_arn: &str,
        port: i32,
        certificate_arn: Option<&str>,
        action: &ListenerAction,
        tags: &Tags,
    ) -> Result<Listener, CloudError>;
    fn delete_listener(&self, arn: &str) -> Result<(), CloudError>;
    /// Replace a listener's default action.
    fn set_default_action(
        &self,
        listener_arn: &str,
        action: &ListenerAction,
    ) -> Result<(), CloudError>;
    /// Make `rule` the listener's first rule (priority 1); `false` when it already is.
    fn ensure_header_rule(
        &self,
        listener_arn: &str,
        rule: &HeaderRule,
        tags: &Tags,
    ) -> Result<bool, CloudError>;
    fn register(&self, tg_arn: &str, instance_id: &str, port: i32) -> Result<(), CloudError>;
    fn deregister(&self, tg_arn: &str, instance_id: &str) -> Result<(), CloudError>;
    /// `(state, reason)` of one target, `None` when it is not registered.
    fn target_health(
        &self,
        tg_arn: &str,
        instance_id: &str,
    ) -> Result<Option<(String, String)>, CloudError>;
    /// ARNs (load balancers and target groups) among `arns` tagged `key=value`.
    fn tagged(&self, key: &str, value: &str) -> Result<Vec<(Kind, String, String)>, CloudError>;
}

mod sdk;
pub use sdk::SdkElb;
