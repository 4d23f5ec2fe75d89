//! SDK clients pointed at moto for checking what the binary did, what a stack leaves behind,
//! and a few AWS helpers (filters, tags, an ACM certificate, IAM's URL-encoded policies).

use std::io::{Read, Write};
use std::net::TcpStream;

/// SDK clients pointed at moto, for checking what the binary did.
pub struct Sdk {
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub efs: aws_sdk_efs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Sdk {
    pub fn new(endpoint: &str, region: &str) -> Sdk {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conf = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new(region.to_string()))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load(),
        );
        Sdk {
            ec2: aws_sdk_ec2::Client::new(&conf),
            efs: aws_sdk_efs::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            ),
            rt,
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// An instance's user data, read back through the EC2 API.
    pub fn user_data(&self, instance: &str) -> String {
        let raw = self.user_data_payload(instance);
        if raw.starts_with(&[0x1f, 0x8b]) {
            // Large scripts go gzipped (cloud-init unpacks them).
            use std::io::Read as _;
            let mut script = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut script)
                .unwrap();
            return script;
        }
        String::from_utf8(raw).unwrap()
    }

    /// A SecureString parameter's decrypted value.
    pub fn secret_value(&self, name: &str) -> String {
        self.block_on(
            self.ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send(),
        )
        .unwrap()
        .parameter()
        .unwrap()
        .value()
        .unwrap()
        .to_string()
    }

    /// The bytes EC2 holds as the instance's user data (at most 16 KiB).
    pub fn user_data_payload(&self, instance: &str) -> Vec<u8> {
        use base64::Engine as _;
        let ud = self
            .block_on(
                self.ec2
                    .describe_instance_attribute()
                    .instance_id(instance)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send(),
            )
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(ud.user_data().unwrap().value().unwrap())
            .unwrap()
    }

    /// Live (non-terminated) instances tagged with the stack.
    /// Write `doc` to the stack's boot channel, as its instance would (issue 19).
    pub fn write_boot_channel(&self, stack: &str, doc: &serde_json::Value) {
        self.block_on(
            self.ssm
                .put_parameter()
                .name(format!("/geusemaker-boot/{stack}"))
                .value(doc.to_string())
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send(),
        )
        .unwrap();
    }

    pub fn stack_instances(&self, stack: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .block_on(
                self.ec2
                    .describe_instances()
                    .filters(filter("tag:geusemaker:stack", stack))
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("instance-state-name")
                            .values("pending")
                            .values("running")
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect()
    }

    pub fn stack_security_groups(&self, stack: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        self.block_on(
            self.ec2
                .describe_security_groups()
                .filters(filter("tag:geusemaker:stack", stack))
                .send(),
        )
        .unwrap()
        .security_groups()
        .to_vec()
    }
}

pub fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// Tag value by key.
pub fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Everything in AWS that belongs to `stack`, by kind: what destroy must leave empty.
#[derive(Debug, Default, PartialEq)]
pub struct Leftovers {
    pub instances: Vec<String>,
    pub security_groups: Vec<String>,
    pub volumes: Vec<String>,
    pub key_pairs: Vec<String>,
    pub file_systems: Vec<String>,
    pub parameters: Vec<String>,
    pub roles: Vec<String>,
    pub profiles: Vec<String>,
}

impl Leftovers {
    pub fn non_data(&self) -> Vec<String> {
        [
            &self.instances,
            &self.security_groups,
            &self.key_pairs,
            &self.roles,
            &self.profiles,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.non_data().is_empty()
            && self.volumes.is_empty()
            && self.file_systems.is_empty()
            && self.parameters.is_empty()
    }
}

impl Sdk {
    pub fn leftovers(&self, stack: &str) -> Leftovers {
        let tag = filter("tag:geusemaker:stack", stack);
        let instances = self
            .stack_instances(stack)
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let security_groups = self
            .stack_security_groups(stack)
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        let vols = self
            .block_on(self.ec2.describe_volumes().filters(tag.clone()).send())
            .unwrap();
        let volumes = vols
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id().map(str::to_string))
            .collect();
        let keys = self
            .block_on(self.ec2.describe_key_pairs().filters(tag).send())
            .unwrap();
        let key_pairs = keys
            .key_pairs()
            .iter()
            .filter_map(|k| k.key_name().map(str::to_string))
            .collect();
        // Every page: a test binary's moto holds more file systems than one page.
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .block_on(
                    self.efs
                        .describe_file_systems()
                        .set_marker(marker.clone())
                        .send(),
                )
                .unwrap();
            all.extend(page.file_systems().iter().cloned());
            marker = page.next_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        let file_systems = all
            .iter()
            .filter(|f| {
                f.tags()
                    .iter()
                    .any(|t| t.key() == "geusemaker:stack" && t.value() == stack)
            })
            .map(|f| f.file_system_id().to_string())
            .collect();
        let params = self
            .block_on(
                self.ssm
                    .get_parameters_by_path()
                    .path(format!("/geusemaker/{stack}/"))
                    .recursive(true)
                    .send(),
            )
            .unwrap();
        let parameters = params
            .parameters()
            .iter()
            .filter_map(|p| p.name().map(str::to_string))
            .collect();
        let roles = self.block_on(self.iam.list_roles().send()).unwrap();
        let roles = roles
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .filter(|n| n.starts_with(&format!("{stack}-")))
            .collect();
        let profiles = self
            .block_on(self.iam.list_instance_profiles().send())
            .unwrap();
        let profiles = profiles
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_string())
            .filter(|n| n.starts_with(&format!("{stack}-")))
            .collect();
        Leftovers {
            instances,
            security_groups,
            volumes,
            key_pairs,
            file_systems,
            parameters,
            roles,
            profiles,
        }
    }
}

/// Request an ACM certificate from moto (a raw JSON-protocol call: the tool itself never
/// creates certificates) and return its ARN.
pub fn acm_certificate(endpoint: &str, domain: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let body = format!("{{\"DomainName\":\"{domain}\"}}");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: CertificateManager.RequestCertificate\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let json = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["CertificateArn"].as_str().unwrap().to_string()
}

/// A policy document as IAM returns it (URL-encoded), decoded.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An EC2 tag.
pub fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// The stack's app instance as every tier launches it: spot, IMDSv2 required (no credentials
/// for a request without a session token), the stack's instance profile, tagged with its stack.
pub fn assert_spot_app_instance(i: &aws_sdk_ec2::types::Instance, stack: &str) {
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(
        i.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );
    assert!(i
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .unwrap()
        .ends_with(&format!("/{stack}-app")));
    assert_eq!(tag(i.tags(), "geusemaker:stack"), Some(stack));
}
