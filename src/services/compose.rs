//! The compose file, as typed structs serialized by serde (never a text template).

use super::*;

/// A map that keeps its insertion order when serialized (services in the recipe's order).
struct Ordered<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ComposeFile {
    name: String,
    services: Ordered<ComposeService>,
}

#[derive(Serialize)]
struct ComposeService {
    image: String,
    restart: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_file: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthCheck>,
    mem_limit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size: Option<String>,
    logging: Logging,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
}

#[derive(Serialize)]
struct DependsOn {
    condition: &'static str,
}

#[derive(Serialize)]
struct HealthCheck {
    test: Vec<String>,
    interval: &'static str,
    timeout: String,
    retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<String>,
}

#[derive(Serialize)]
struct Logging {
    driver: &'static str,
    options: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Deploy {
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    reservations: Reservations,
}

#[derive(Serialize)]
struct Reservations {
    devices: Vec<Device>,
}

#[derive(Serialize)]
struct Device {
    driver: &'static str,
    count: &'static str,
    capabilities: Vec<&'static str>,
}

/// Compose interpolates `$`: a literal one is written `$$`.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// Render the compose file for `services` (validated first).
pub fn compose_file(services: &[Service], layout: &Layout) -> Result<String, ServiceError> {
    compose_file_holding(services, layout, &[])
}

/// [`compose_file`] with the public ports of the services named in `hold` bound to the
/// instance's loopback: the file a service starts from while it is not ready for the outside
/// (n8n until its owner exists).
pub fn compose_file_holding(
    services: &[Service],
    layout: &Layout,
    hold: &[String],
) -> Result<String, ServiceError> {
    validate(services)?;
    for h in hold {
        if !services.iter().any(|s| &s.name == h) {
            return Err(ServiceError::new(
                "hold",
                format!("no service `{h}` to hold back"),
            ));
        }
    }
    for p in [&layout.efs_dir, &layout.data_dir, &layout.env_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    let healthy: BTreeSet<&str> = services
        .iter()
        .filter(|s| s.health.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let mut out = Vec::new();
    for s in services {
        let ports = s
            .ports
            .iter()
            .filter_map(|p| match p.expose {
                Exposure::Public if hold.contains(&s.name) => {
                    Some(format!("127.0.0.1:{}:{}", p.host_port(), p.port))
                }
                Exposure::Public => Some(format!("{}:{}", p.host_port(), p.port)),
                Exposure::Internal => Some(format!("127.0.0.1:{}:{}", p.host_port(), p.port)),
                Exposure::None => None,
            })
            .collect();
        let volumes = s
            .volumes
            .iter()
            .map(|(path, source)| {
                let dir = host_dir(source, layout).expect("validated");
                format!("{dir}:{path}")
            })
            .collect();
        let healthcheck = s.container_check().map(|cmd| {
            let h = s.health.as_ref().expect("a check has health");
            HealthCheck {
                test: vec!["CMD-SHELL".into(), literal(&cmd)],
                interval: "15s",
                timeout: format!("{}s", h.timeout_ms.div_ceil(1000).max(1)),
                retries: 8,
                start_period: h.start_period.clone(),
            }
        });
        let depends_on = s
            .depends_on
            .iter()
            .map(|d| {
                let condition = if healthy.contains(d.as_str()) {
                    "service_healthy"
                } else {
                    "service_started"
                };
                (d.clone(), DependsOn { condition })
            })
            .collect();
        out.push((
            s.name.clone(),
            ComposeService {
                image: s.image.clone(),
                restart: "unless-stopped",
                user: s.user.clone(),
                command: s
                    .command
                    .as_ref()
                    .map(|c| c.iter().map(|a| literal(a)).collect()),
                environment: s.env.iter().map(|(k, v)| (k.clone(), literal(v))).collect(),
                env_file: s.env_file(layout).into_iter().collect(),
                ports,
                volumes,
                depends_on,
                healthcheck,
                mem_limit: s.memory.clone().unwrap_or_else(|| DEFAULT_MEMORY.into()),
                shm_size: s.shm_size.clone(),
                logging: Logging {
                    driver: "json-file",
                    options: BTreeMap::from([
                        ("max-size", LOG_MAX_SIZE),
                        ("max-file", LOG_MAX_FILE),
                    ]),
                },
                deploy: s.gpu.then(|| Deploy {
                    resources: Resources {
                        reservations: Reservations {
                            devices: vec![Device {
                                driver: "nvidia",
                                count: "all",
                                capabilities: vec!["gpu"],
                            }],
                        },
                    },
                }),
            },
        ));
    }
    let file = ComposeFile {
        name: "geusemaker".into(),
        services: Ordered(out),
    };
    let yaml = serde_yaml_ng::to_string(&file)
        .map_err(|e| ServiceError::new("compose file", e.to_string()))?;
    Ok(format!(
        "# Generated by geusemaker from the recipe's services. Data: {} (EFS), {} (EBS data volume).\n{yaml}",
        layout.efs_dir, layout.data_dir
    ))
}
