//! What the last healthy run applied to AWS, kept with the stack (`values.applied`): the
//! instance it left running, the fingerprint of the services on it, and the rules of the
//! stack's security groups. `status` compares it with AWS to show drift — a rule added by hand,
//! a type changed in the console — which the next `run` shows in its diff and converges.

use serde::{Deserialize, Serialize};

/// The key under the stack's values.
pub const KEY: &str = "applied";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub instance_id: String,
    pub instance_type: String,
    pub image_id: String,
    /// The `geusemaker:services` fingerprint of what runs on the instance.
    #[serde(default)]
    pub services: Option<String>,
    #[serde(default)]
    pub groups: Vec<AppliedGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedGroup {
    pub id: String,
    pub name: String,
    /// Each rule as `tcp/5678 from 203.0.113.7/32`.
    pub rules: Vec<String>,
}

/// What AWS shows now, for [`drift`].
pub struct Observed<'a> {
    pub instance_id: &'a str,
    pub instance_type: &'a str,
    pub image_id: &'a str,
    pub services: Option<&'a str>,
    /// Each applied group's rules now (`None`: the group is gone).
    pub groups: Vec<(&'a AppliedGroup, Option<Vec<String>>)>,
}

/// Where AWS differs from what was applied, one line each; empty when it does not.
pub fn drift(applied: &Applied, now: &Observed<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if now.instance_id != applied.instance_id {
        out.push(format!(
            "instance {} runs, {} was applied",
            now.instance_id, applied.instance_id
        ));
        return out;
    }
    if now.instance_type != applied.instance_type {
        out.push(format!(
            "instance type {} in AWS, {} applied",
            now.instance_type, applied.instance_type
        ));
    }
    if now.image_id != applied.image_id {
        out.push(format!(
            "instance image {} in AWS, {} applied",
            now.image_id, applied.image_id
        ));
    }
    if applied.services.is_some() && now.services != applied.services.as_deref() {
        out.push(format!(
            "services on the instance {}, {} applied (changed by another run or by hand)",
            now.services.unwrap_or("unknown"),
            applied.services.as_deref().unwrap_or_default()
        ));
    }
    for (group, rules) in &now.groups {
        let Some(rules) = rules else {
            out.push(format!(
                "security group {} ({}) is gone",
                group.name, group.id
            ));
            continue;
        };
        let mut marks: Vec<String> = rules
            .iter()
            .filter(|r| !group.rules.contains(r))
            .map(|r| format!("+{r}"))
            .collect();
        marks.extend(
            group
                .rules
                .iter()
                .filter(|r| !rules.contains(r))
                .map(|r| format!("-{r}")),
        );
        if !marks.is_empty() {
            out.push(format!(
                "security group {}: {} (not what the recipe applied)",
                group.name,
                marks.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied() -> Applied {
        Applied {
            instance_id: "i-1".into(),
            instance_type: "t3.medium".into(),
            image_id: "ami-1".into(),
            services: Some("sha256:aa".into()),
            groups: vec![AppliedGroup {
                id: "sg-1".into(),
                name: "s-app".into(),
                rules: vec!["tcp/5678 from 203.0.113.7/32".into()],
            }],
        }
    }

    #[test]
    fn no_drift_when_aws_is_what_was_applied() {
        let a = applied();
        let now = Observed {
            instance_id: "i-1",
            instance_type: "t3.medium",
            image_id: "ami-1",
            services: Some("sha256:aa"),
            groups: vec![(&a.groups[0], Some(a.groups[0].rules.clone()))],
        };
        assert_eq!(drift(&a, &now), Vec::<String>::new());
    }

    #[test]
    fn a_rule_added_by_hand_and_a_type_changed_in_the_console_are_drift() {
        let a = applied();
        let now = Observed {
            instance_id: "i-1",
            instance_type: "t3.large",
            image_id: "ami-1",
            services: Some("sha256:aa"),
            groups: vec![(
                &a.groups[0],
                Some(vec![
                    "tcp/5678 from 203.0.113.7/32".into(),
                    "tcp/22 from 0.0.0.0/0".into(),
                ]),
            )],
        };
        assert_eq!(
            drift(&a, &now),
            [
                "instance type t3.large in AWS, t3.medium applied",
                "security group s-app: +tcp/22 from 0.0.0.0/0 (not what the recipe applied)"
            ]
        );
    }
}
