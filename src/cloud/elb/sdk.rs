//! [`ElbApi`] over aws-sdk-elasticloadbalancingv2, and the conversions from its types.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, HttpHeaderConditionConfig,
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Matcher, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum, RuleCondition, Tag, TargetDescription, TargetTypeEnum,
};

use crate::cloud::{retry_create, Blocking, CloudError, Tags};
use crate::state::Kind;

use super::*;

/// Per-operation override: no SDK retries (geusemaker retries the create, looking first).
fn no_sdk_retries() -> aws_sdk_elasticloadbalancingv2::config::Builder {
    aws_sdk_elasticloadbalancingv2::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled())
}

/// [`ElbApi`] over aws-sdk-elasticloadbalancingv2.
pub struct SdkElb {
    client: aws_sdk_elasticloadbalancingv2::Client,
    rt: Blocking,
}

impl SdkElb {
    pub fn new(client: aws_sdk_elasticloadbalancingv2::Client, rt: Blocking) -> Self {
        SdkElb { client, rt }
    }
}

fn tags_of(tags: &Tags) -> Vec<Tag> {
    tags.pairs()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn to_lb(l: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer) -> LoadBalancer {
    LoadBalancer {
        arn: l.load_balancer_arn().unwrap_or_default().to_string(),
        name: l.load_balancer_name().unwrap_or_default().to_string(),
        dns_name: l.dns_name().unwrap_or_default().to_string(),
        state: l
            .state()
            .and_then(|s| s.code())
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        vpc_id: l.vpc_id().unwrap_or_default().to_string(),
    }
}

fn to_tg(t: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> TargetGroup {
    TargetGroup {
        arn: t.target_group_arn().unwrap_or_default().to_string(),
        name: t.target_group_name().unwrap_or_default().to_string(),
        port: t.port().unwrap_or(0) as i64,
        health_path: t.health_check_path().unwrap_or_default().to_string(),
    }
}

fn to_listener(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Listener {
    Listener {
        arn: l.listener_arn().unwrap_or_default().to_string(),
        port: l.port().unwrap_or(0) as i64,
        protocol: l
            .protocol()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        default_action: l
            .default_actions()
            .first()
            .and_then(|a| a.r#type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        default_target: l
            .default_actions()
            .first()
            .and_then(|a| a.target_group_arn())
            .map(str::to_string),
    }
}

/// The SDK action for a listener action.
fn sdk_action(action: &ListenerAction) -> Action {
    match action {
        ListenerAction::Forward { target_group_arn } => Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(target_group_arn)
            .build(),
        ListenerAction::RedirectToHttps => Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
        ListenerAction::Forbidden => Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("403")
                    .content_type("text/plain")
                    .message_body("Forbidden")
                    .build(),
            )
            .build(),
    }
}

/// The header condition of `rule`.
fn header_condition(rule: &HeaderRule) -> RuleCondition {
    RuleCondition::builder()
        .field("http-header")
        .http_header_config(
            HttpHeaderConditionConfig::builder()
                .http_header_name(&rule.header)
                .values(&rule.value)
                .build(),
        )
        .build()
}

/// Does an existing rule do exactly what `rule` asks?
fn rule_matches(r: &aws_sdk_elasticloadbalancingv2::types::Rule, rule: &HeaderRule) -> bool {
    let conditions_ok = r.conditions().len() == 1
        && r.conditions().iter().all(|c| {
            c.field() == Some("http-header")
                && c.http_header_config().is_some_and(|h| {
                    h.http_header_name()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&rule.header))
                        && h.values() == [rule.value.clone()]
                })
        });
    let action_ok = r.actions().len() == 1
        && r.actions()[0].r#type() == Some(&ActionTypeEnum::Forward)
        && r.actions()[0].target_group_arn() == Some(rule.target_group_arn.as_str());
    conditions_ok && action_ok
}

impl ElbApi for SdkElb {
    fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeLoadBalancers",
            self.client.describe_load_balancers().send(),
        )?;
        Ok(out.load_balancers().iter().map(to_lb).collect())
    }

    fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeLoadBalancers",
            self.client.describe_load_balancers().names(name).send(),
        ) {
            Ok(out) => Ok(out.load_balancers().first().map(to_lb)),
            Err(e) => e.absent(),
        }
    }

    fn create_load_balancer(
        &self,
        name: &str,
        subnets: &[String],
        security_groups: &[String],
        tags: &Tags,
    ) -> Result<LoadBalancer, CloudError> {
        // AWS answers a repeated create with the same load balancer; emulators may make a
        // second one, so the SDK does not retry it: we look by name first (retry_create).
        let once = || {
            let out = self.rt.call(
                SVC,
                "CreateLoadBalancer",
                self.client
                    .create_load_balancer()
                    .name(name)
                    .r#type(LoadBalancerTypeEnum::Application)
                    .scheme(LoadBalancerSchemeEnum::InternetFacing)
                    .set_subnets(Some(subnets.to_vec()))
                    .set_security_groups(Some(security_groups.to_vec()))
                    .set_tags(Some(tags_of(tags)))
                    .customize()
                    .config_override(no_sdk_retries())
                    .send(),
            )?;
            out.load_balancers().first().map(to_lb).ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "CreateLoadBalancer",
                    "NoLoadBalancer",
                    "no load balancer in the answer",
                )
            })
        };
        retry_create(once, || self.find_load_balancer(name))
    }

    fn delete_load_balancer(&self, arn: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteLoadBalancer",
                self.client
                    .delete_load_balancer()
                    .load_balancer_arn(arn)
                    .send(),
            )
            .map(|_| ())
    }

    fn find_target_group(&self, name: &str) -> Result<Option<TargetGroup>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeTargetGroups",
            self.client.describe_target_groups().names(name).send(),
        ) {
            Ok(out) => Ok(out.target_groups().first().map(to_tg)),
            Err(e) => e.absent(),
        }
    }

    fn create_target_group(
        &self,
        spec: &TargetGroupSpec,
        tags: &Tags,
    ) -> Result<TargetGroup, CloudError> {
        let out = self.rt.call(
            SVC,
            "CreateTargetGroup",
            self.client
                .create_target_group()
                .name(&spec.name)
                .protocol(ProtocolEnum::Http)
                .port(spec.port)
                .vpc_id(&spec.vpc_id)
                .target_type(TargetTypeEnum::Instance)
                .health_check_path(&spec.health_path)
                .health_check_interval_seconds(spec.interval_s)
                .health_check_timeout_seconds(spec.timeout_s)
                .healthy_threshold_count(spec.healthy_threshold)
                .unhealthy_threshold_count(spec.unhealthy_threshold)
                .matcher(Matcher::builder().http_code(&spec.matcher).build())
                .set_tags(Some(tags_of(tags)))
                .send(),
        );
        let out = match out {
            Ok(out) => out,
            // A retried request whose first answer was lost: the group is there.
            Err(e) if e.code == "DuplicateTargetGroupName" => {
                return self.find_target_group(&spec.name)?.ok_or(e)
            }
            Err(e) => return Err(e),
        };
        out.target_groups().first().map(to_tg).ok_or_else(|| {
            CloudError::new(
                SVC,
                "CreateTargetGroup",
                "NoTargetGroup",
                "no target group in the answer",
            )
        })
    }

    fn delete_target_group(&self, arn: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteTargetGroup",
                self.client
                    .delete_target_group()
                    .target_group_arn(arn)
                    .send(),
            )
            .map(|_| ())
    }

    fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeListeners",
            self.client
                .describe_listeners()
                .load_balancer_arn(lb_arn)
                .send(),
        )?;
        Ok(out.listeners().iter().map(to_listener).collect())
    }

    fn create_listener(
        &self,
        lb_arn: &str,
        port: i32,
        certificate_arn: Option<&str>,
        action: &ListenerAction,
        tags: &Tags,
    ) -> Result<Listener, CloudError> {
        let action = sdk_action(action);
        let mut req = self
            .client
            .create_listener()
            .load_balancer_arn(lb_arn)
            .port(port)
            .default_actions(action)
            .set_tags(Some(tags_of(tags)));
        req = match certificate_arn {
            Some(cert) => req
                .protocol(ProtocolEnum::Https)
                .ssl_policy("ELBSecurityPolicy-TLS13-1-2-2021-06")
                .certificates(Certificate::builder().certificate_arn(cert).build()),
            None => req.protocol(ProtocolEnum::Http),
        };
        // One listener per port: a lost answer is found by port, not created twice.
        let once = || {
            let out = self.rt.call(
                SVC,
                "CreateListener",
                req.clone()
                    .customize()
                    .config_override(no_sdk_retries())
                    .send(),
            )?;
            out.listeners().first().map(to_listener).ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "CreateListener",
                    "NoListener",
                    "no listener in the answer",
                )
            })
        };
        retry_create(once, || {
            Ok(self
                .listeners(lb_arn)?
                .into_iter()
                .find(|l| l.port == i64::from(port)))
        })
    }

    fn set_default_action(
        &self,
        listener_arn: &str,
        action: &ListenerAction,
    ) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "ModifyListener",
                self.client
                    .modify_listener()
                    .listener_arn(listener_arn)
                    .default_actions(sdk_action(action))
                    .send(),
            )
            .map(|_| ())
    }

    fn ensure_header_rule(
        &self,
        listener_arn: &str,
        rule: &HeaderRule,
        tags: &Tags,
    ) -> Result<bool, CloudError> {
        let rules = self.rt.call(
            SVC,
            "DescribeRules",
            self.client
                .describe_rules()
                .listener_arn(listener_arn)
                .send(),
        )?;
        let forward = sdk_action(&ListenerAction::Forward {
            target_group_arn: rule.target_group_arn.clone(),
        });
        if let Some(first) = rules.rules().iter().find(|r| r.priority() == Some("1")) {
            if rule_matches(first, rule) {
                return Ok(false);
            }
            // The first rule says something else (an older secret, another target): replace
            // what it does, keeping its place.
            self.rt.call(
                SVC,
                "ModifyRule",
                self.client
                    .modify_rule()
                    .rule_arn(first.rule_arn().unwrap_or_default())
                    .conditions(header_condition(rule))
                    .actions(forward)
                    .send(),
            )?;
            return Ok(true);
        }
        self.rt.call(
            SVC,
            "CreateRule",
            self.client
                .create_rule()
                .listener_arn(listener_arn)
                .priority(1)
                .conditions(header_condition(rule))
                .actions(forward)
                .set_tags(Some(tags_of(tags)))
                .send(),
        )?;
        Ok(true)
    }

    fn delete_listener(&self, arn: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteListener",
                self.client.delete_listener().listener_arn(arn).send(),
            )
            .map(|_| ())
    }

    fn register(&self, tg_arn: &str, instance_id: &str, port: i32) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "RegisterTargets",
                self.client
                    .register_targets()
                    .target_group_arn(tg_arn)
                    .targets(
                        TargetDescription::builder()
                            .id(instance_id)
                            .port(port)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
    }

    fn deregister(&self, tg_arn: &str, instance_id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeregisterTargets",
                self.client
                    .deregister_targets()
                    .target_group_arn(tg_arn)
                    .targets(TargetDescription::builder().id(instance_id).build())
                    .send(),
            )
            .map(|_| ())
    }

    fn target_health(
        &self,
        tg_arn: &str,
        instance_id: &str,
    ) -> Result<Option<(String, String)>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeTargetHealth",
            self.client
                .describe_target_health()
                .target_group_arn(tg_arn)
                .send(),
        )?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .find(|d| d.target().and_then(|t| t.id()) == Some(instance_id))
            .map(|d| {
                let h = d.target_health();
                (
                    h.and_then(|h| h.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    h.and_then(|h| h.reason())
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_default(),
                )
            }))
    }

    fn tagged(&self, key: &str, value: &str) -> Result<Vec<(Kind, String, String)>, CloudError> {
        // (kind, name, arn) of load balancers and target groups carrying the tag.
        let lbs = self.rt.call(
            SVC,
            "DescribeLoadBalancers",
            self.client.describe_load_balancers().send(),
        )?;
        let tgs = self.rt.call(
            SVC,
            "DescribeTargetGroups",
            self.client.describe_target_groups().send(),
        )?;
        let mut candidates: Vec<(Kind, String, String)> = lbs
            .load_balancers()
            .iter()
            .map(|l| {
                (
                    Kind::LoadBalancer,
                    l.load_balancer_name().unwrap_or_default().to_string(),
                    l.load_balancer_arn().unwrap_or_default().to_string(),
                )
            })
            .collect();
        candidates.extend(tgs.target_groups().iter().map(|t| {
            (
                Kind::TargetGroup,
                t.target_group_name().unwrap_or_default().to_string(),
                t.target_group_arn().unwrap_or_default().to_string(),
            )
        }));
        let mut found = Vec::new();
        // DescribeTags takes at most 20 ARNs per call.
        for chunk in candidates.chunks(20) {
            let out = self.rt.call(
                SVC,
                "DescribeTags",
                self.client
                    .describe_tags()
                    .set_resource_arns(Some(chunk.iter().map(|c| c.2.clone()).collect()))
                    .send(),
            )?;
            for d in out.tag_descriptions() {
                if d.tags()
                    .iter()
                    .any(|t| t.key() == Some(key) && t.value() == Some(value))
                {
                    if let Some(c) = chunk
                        .iter()
                        .find(|c| Some(c.2.as_str()) == d.resource_arn())
                    {
                        found.push(c.clone());
                    }
                }
            }
        }
        Ok(found)
    }
}
