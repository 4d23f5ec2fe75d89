//! The automation tier: n8n behind an internet-facing load balancer (HTTP, or HTTPS with a
//! certificate and HTTP redirected), the instance reachable from it only; destroy takes it all.

use super::*;

fn app_sg_rules_on_5678(w: &World, stack: &str) -> (Vec<String>, Vec<String>) {
    let sdk = w.sdk();
    let groups = sdk.stack_security_groups(stack);
    let app = groups
        .iter()
        .find(|g| g.group_name() == Some(format!("{stack}-app").as_str()))
        .unwrap();
    let p = app
        .ip_permissions()
        .iter()
        .find(|p| p.from_port() == Some(5678))
        .unwrap();
    (
        p.ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(str::to_string))
            .collect(),
        p.user_id_group_pairs()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
    )
}

#[test]
fn automation_puts_n8n_behind_a_load_balancer_and_destroys_cleanly() {
    let w = World::moto();
    let stack = support::stack_name("auto");
    let out = automation(&w, &stack, &[]);
    out.success()
        .stdout_has("healthy behind the load balancer")
        .stdout_has("includes load balancer");
    let state = w.state(&stack);
    let dns = state["outputs"]["load_balancer_dns"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state["outputs"]["n8n_url"], format!("http://{dns}"));

    let (rt, elbv2, _) = elb(&w);
    let lb = assert_load_balancer_internet_facing_and_tagged(&rt, &elbv2, &stack, &dns);
    let tg = assert_target_group_serves_the_instance(&rt, &elbv2, &stack, &lb, &state);
    let sdk = w.sdk();
    assert_instance_admits_the_load_balancer_only(&w, &sdk, &stack, &lb);

    // Re-run: no second load balancer or target group.
    automation(&w, &stack, &[])
        .success()
        .stdout_has("nothing changed");
    assert_one_load_balancer(&rt, &elbv2, &stack);

    // A new type replaces the instance: the load balancer ends up with the new one only.
    automation(&w, &stack, &["--set", "instance_type=t3.xlarge"])
        .success()
        .stdout_has(&format!("-/+ instance {stack}-app: t3.large → t3.xlarge"));
    assert_only_the_new_instance_serves(&w, &rt, &elbv2, &stack, &tg, &state);

    run(&w, &["destroy", &stack, "--yes"]).success();
    assert_destroyed_with_its_load_balancer(&sdk, &rt, &elbv2, &stack);
}

/// `run automation` for `stack`, n8n open to 198.51.100.0/24, with `more` arguments.
fn automation(w: &World, stack: &str, more: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "automation",
        "--name",
        stack,
        "--set",
        "health_timeout=30",
        "--set",
        "allowed_cidr=198.51.100.0/24",
    ];
    args.extend_from_slice(more);
    run(w, &args)
}

/// The load balancer: internet-facing, in two zones or more, tagged; returns it.
fn assert_load_balancer_internet_facing_and_tagged(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    dns: &str,
) -> aws_sdk_elasticloadbalancingv2::types::LoadBalancer {
    let lbs = rt
        .block_on(
            elbv2
                .describe_load_balancers()
                .names(format!("{stack}-web"))
                .send(),
        )
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.dns_name(), Some(dns));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let zones: std::collections::BTreeSet<_> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name())
        .collect();
    assert!(zones.len() >= 2, "{zones:?}");
    let tags = rt
        .block_on(
            elbv2
                .describe_tags()
                .resource_arns(lb.load_balancer_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert!(tags.tag_descriptions()[0]
        .tags()
        .iter()
        .any(|t| t.key() == Some("geusemaker:stack") && t.value() == Some(stack)));
    lb.clone()
}

/// The target group checks n8n's health on 5678, the one HTTP listener forwards to it, and
/// its target is the stack's instance; returns it.
fn assert_target_group_serves_the_instance(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
    state: &serde_json::Value,
) -> aws_sdk_elasticloadbalancingv2::types::TargetGroup {
    let tgs = rt
        .block_on(
            elbv2
                .describe_target_groups()
                .names(format!("{stack}-n8n"))
                .send(),
        )
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.port(), Some(5678));
    assert_eq!(tg.health_check_path(), Some("/healthz"));
    assert_eq!(
        (tg.healthy_threshold_count(), tg.unhealthy_threshold_count()),
        (Some(2), Some(3))
    );
    let listeners = rt
        .block_on(
            elbv2
                .describe_listeners()
                .load_balancer_arn(lb.load_balancer_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    let l = &listeners.listeners()[0];
    assert_eq!(
        (l.port(), l.protocol().map(|p| p.as_str())),
        (Some(80), Some("HTTP"))
    );
    assert_eq!(
        l.default_actions()[0].target_group_arn(),
        tg.target_group_arn()
    );
    let health = rt
        .block_on(
            elbv2
                .describe_target_health()
                .target_group_arn(tg.target_group_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(
        health.target_health_descriptions()[0]
            .target()
            .unwrap()
            .id(),
        state["outputs"]["instance_id"].as_str()
    );
    tg.clone()
}

/// The instance takes n8n traffic from the load balancer's group only; the load balancer
/// takes port 80 from the allowed range.
fn assert_instance_admits_the_load_balancer_only(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
) {
    let alb_sg = lb.security_groups()[0].clone();
    let (cidrs, groups) = app_sg_rules_on_5678(w, stack);
    assert!(cidrs.is_empty(), "{cidrs:?}");
    assert_eq!(groups, std::slice::from_ref(&alb_sg));
    let alb = sdk
        .block_on(sdk.ec2.describe_security_groups().group_ids(&alb_sg).send())
        .unwrap();
    let p = &alb.security_groups()[0].ip_permissions()[0];
    assert_eq!(
        (p.from_port(), p.ip_ranges()[0].cidr_ip()),
        (Some(80), Some("198.51.100.0/24"))
    );
}

/// Exactly one load balancer of the stack's name.
fn assert_one_load_balancer(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
) {
    let all = rt.block_on(elbv2.describe_load_balancers().send()).unwrap();
    assert_eq!(
        all.load_balancers()
            .iter()
            .filter(|l| l.load_balancer_name() == Some(format!("{stack}-web").as_str()))
            .count(),
        1
    );
}

/// A replaced instance: the target group serves the new one only, healthy.
fn assert_only_the_new_instance_serves(
    w: &World,
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
    state: &serde_json::Value,
) {
    let new_id = w.state(stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        Some(new_id.as_str()),
        state["outputs"]["instance_id"].as_str()
    );
    let health = rt
        .block_on(
            elbv2
                .describe_target_health()
                .target_group_arn(tg.target_group_arn().unwrap())
                .send(),
        )
        .unwrap();
    let targets: Vec<(&str, &str)> = health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            (
                d.target().and_then(|t| t.id()).unwrap_or_default(),
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [(new_id.as_str(), "healthy")],
        "only the new instance serves"
    );
}

/// Destroy leaves no non-data resource, load balancer or target group.
fn assert_destroyed_with_its_load_balancer(
    sdk: &support::Sdk,
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
) {
    let left = sdk.leftovers(stack);
    assert!(left.non_data().is_empty(), "{left:?}");
    assert!(
        rt.block_on(
            elbv2
                .describe_load_balancers()
                .names(format!("{stack}-web"))
                .send()
        )
        .is_err(),
        "load balancer deleted"
    );
    assert!(
        rt.block_on(
            elbv2
                .describe_target_groups()
                .names(format!("{stack}-n8n"))
                .send()
        )
        .is_err(),
        "target group deleted"
    );
}

#[test]
fn automation_with_a_certificate_serves_https_and_redirects_http() {
    let w = World::moto();
    let stack = support::stack_name("autotls");
    let cert = support::acm_certificate(w.endpoint.as_deref().unwrap(), "n8n.example.com");
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
            "--set",
            &format!("certificate_arn={cert}"),
        ],
    )
    .success();
    let state = w.state(&stack);
    let dns = state["outputs"]["load_balancer_dns"].as_str().unwrap();
    assert_eq!(state["outputs"]["n8n_url"], format!("https://{dns}"));
    let (rt, elbv2, _) = elb(&w);
    let lb_arn = state["outputs"]["load_balancer_arn"].as_str().unwrap();
    let listeners = rt
        .block_on(elbv2.describe_listeners().load_balancer_arn(lb_arn).send())
        .unwrap();
    let mut ports: Vec<(i32, String)> = listeners
        .listeners()
        .iter()
        .map(|l| {
            (
                l.port().unwrap(),
                l.protocol().unwrap().as_str().to_string(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [(80, "HTTP".to_string()), (443, "HTTPS".to_string())]
    );
    for l in listeners.listeners() {
        let action = &l.default_actions()[0];
        if l.port() == Some(443) {
            assert_eq!(l.certificates()[0].certificate_arn(), Some(cert.as_str()));
            assert_eq!(
                action.target_group_arn(),
                state["outputs"]["target_group_arn"].as_str()
            );
        } else {
            let redirect = action.redirect_config().expect("80 redirects");
            assert_eq!(
                (redirect.protocol(), redirect.port()),
                (Some("HTTPS"), Some("443"))
            );
        }
    }
    run(
        &w,
        &["destroy", &stack, "--yes", "--set", "delete_data=true"],
    )
    .success();
    assert!(w.sdk().leftovers(&stack).is_empty());
}
