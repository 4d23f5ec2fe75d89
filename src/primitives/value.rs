//! Rhai values as JSON (for `eval --json`) and as readable text (tables for handles and
//! lists of them).

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use super::ssm::Secret;

/// Any value a script can hold, as JSON: typed handles become objects of their properties;
/// a secret becomes its name, never its value.
pub fn to_json(v: &Dynamic) -> Value {
    use crate::cloud::{cloudfront, ec2, efs, elb, iam, pricing, ssm};
    if v.is_unit() {
        return Value::Null;
    }
    if let Ok(b) = v.as_bool() {
        return Value::Bool(b);
    }
    if let Ok(i) = v.as_int() {
        return Value::from(i);
    }
    if let Ok(f) = v.as_float() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null);
    }
    if v.is_string() || v.is_char() {
        return Value::String(v.to_string());
    }
    if let Some(a) = v.read_lock::<Array>() {
        return Value::Array(a.iter().map(to_json).collect());
    }
    if let Some(m) = v.read_lock::<Map>() {
        return Value::Object(m.iter().map(|(k, x)| (k.to_string(), to_json(x))).collect());
    }
    if let Some(s) = v.read_lock::<Secret>() {
        return Value::String(s.to_string());
    }
    macro_rules! handles {
        ($($t:ty),* $(,)?) => {
            $(if let Some(h) = v.read_lock::<$t>() {
                return serde_json::to_value(&*h).unwrap_or(Value::Null);
            })*
        };
    }
    handles!(
        ec2::Vpc,
        ec2::Subnet,
        ec2::Image,
        ec2::IngressRule,
        ec2::SecurityGroup,
        ec2::KeyPair,
        ec2::Instance,
        ec2::SpotPrice,
        ec2::Volume,
        ec2::InstanceTypeInfo,
        efs::FileSystem,
        efs::MountTarget,
        ssm::Parameter,
        ssm::CommandResult,
        iam::InstanceProfile,
        pricing::Price,
        elb::LoadBalancer,
        elb::TargetGroup,
        elb::Listener,
        cloudfront::Distribution,
        crate::health::HealthResult,
    );
    Value::String(v.to_string())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        Value::Array(a) => format!("[{} items]", a.len()),
        Value::Object(o) => format!("{{{} fields}}", o.len()),
        other => other.to_string(),
    }
}

/// A value for people: a list of objects as a table, one object as a property table, a
/// scalar as itself.
pub fn render(v: &Dynamic) -> String {
    let json = to_json(v);
    let plain = |s: &str| s.to_string();
    match &json {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                for k in item.as_object().expect("object").keys() {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| {
                    columns
                        .iter()
                        .map(|c| cell(item.get(c).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let headers: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            format!(
                "{}\n({} items)",
                crate::ui::render_table(&headers, &rows, plain),
                items.len()
            )
        }
        Value::Object(o) if !v.is_map() || !o.is_empty() => {
            let rows: Vec<Vec<String>> = o.iter().map(|(k, x)| vec![k.clone(), cell(x)]).collect();
            let title = if v.is_map() {
                "map".to_string()
            } else {
                v.type_name()
                    .rsplit("::")
                    .next()
                    .unwrap_or("value")
                    .to_string()
            };
            format!(
                "{title}\n{}",
                crate::ui::render_table(&["PROPERTY".into(), "VALUE".into()], &rows, plain)
            )
        }
        Value::Array(items) if items.is_empty() => "(no items)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_become_objects_and_lists_tables() {
        let vpc = crate::cloud::ec2::Vpc {
            id: "vpc-1".into(),
            cidr: "10.0.0.0/16".into(),
            is_default: true,
        };
        let arr: Array = vec![Dynamic::from(vpc.clone()), Dynamic::from(vpc)];
        let json = to_json(&Dynamic::from_array(arr.clone()));
        assert_eq!(json[0]["id"], "vpc-1");
        assert_eq!(json[1]["is_default"], true);
        let text = render(&Dynamic::from_array(arr));
        assert!(
            text.contains("ID") && text.contains("vpc-1") && text.ends_with("(2 items)"),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_never_serialized() {
        let s = Secret::new("/geusemaker/x/key", "hunter2");
        let json = to_json(&Dynamic::from(s));
        assert_eq!(json, Value::String("Secret(/geusemaker/x/key)".into()));
    }
}
