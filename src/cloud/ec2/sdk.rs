//! [`Ec2Api`] over aws-sdk-ec2.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, KeyType, MarketType, ResourceType,
    SpotInstanceType, SpotMarketOptions, Tag, VolumeType,
};
use base64::Engine as _;

use super::{retry_create, Blocking, CloudError, Tags};

use super::convert::*;
use super::*;

/// [`Ec2Api`] over aws-sdk-ec2 (and SSM for the public AMI parameter).
pub struct SdkEc2 {
    client: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    rt: Blocking,
}

impl SdkEc2 {
    pub fn new(client: aws_sdk_ec2::Client, ssm: aws_sdk_ssm::Client, rt: Blocking) -> Self {
        SdkEc2 { client, ssm, rt }
    }

    /// One RunInstances request, without the SDK's retries (see [`retry_create`]).
    fn run_instance_once(&self, spec: &LaunchSpec) -> Result<Instance, CloudError> {
        let mut tags = spec.tags.clone();
        tags.extra
            .insert(TOKEN_TAG.to_string(), spec.client_token.clone());
        let mut req = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(Some(spec.security_group_ids.clone()))
            .client_token(&spec.client_token)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // One hop: the instance itself. Containers are a hop further away and so
                    // cannot take the instance role's credentials (nothing in them needs AWS).
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &spec.tags));
        if let Some(key) = &spec.key_name {
            req = req.key_name(key);
        }
        if let Some(ud) = &spec.user_data {
            let payload = crate::boot::user_data_payload(ud).map_err(|packed| {
                CloudError::new(
                    SVC,
                    "RunInstances",
                    "UserDataTooLarge",
                    format!("user data is {packed} bytes gzipped; EC2 takes 16 KiB"),
                )
            })?;
            req = req.user_data(base64::engine::general_purpose::STANDARD.encode(payload));
        }
        if let Some(profile) = &spec.instance_profile {
            let p = if profile.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(profile)
            } else {
                IamInstanceProfileSpecification::builder().name(profile)
            };
            req = req.iam_instance_profile(p.build());
        }
        if spec.spot {
            let mut opts = SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate);
            if let Some(p) = &spec.max_price {
                opts = opts.max_price(p);
            }
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(opts.build())
                    .build(),
            );
        }
        for v in &spec.volumes {
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&v.device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(v.size_gb)
                            .volume_type(VolumeType::from(v.volume_type.as_str()))
                            .delete_on_termination(v.delete_on_termination)
                            .encrypted(v.encrypted)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = self.rt.call(
            SVC,
            "RunInstances",
            req.customize().config_override(no_sdk_retries()).send(),
        )?;
        out.instances().first().map(to_instance).ok_or_else(|| {
            CloudError::new(
                SVC,
                "RunInstances",
                "NoInstance",
                "RunInstances returned no instance",
            )
        })
    }
}

/// One CreateVolume request, without the SDK's retries (see [`retry_create`]).
impl SdkEc2 {
    fn create_volume_once(&self, req: &VolumeRequest) -> Result<Volume, CloudError> {
        let mut tags = req.tags.clone();
        tags.extra
            .insert(TOKEN_TAG.to_string(), req.client_token.clone());
        let out = self.rt.call(
            SVC,
            "CreateVolume",
            self.client
                .create_volume()
                .availability_zone(&req.az)
                .size(req.size_gb)
                .volume_type(VolumeType::from(req.volume_type.as_str()))
                .encrypted(true)
                .client_token(&req.client_token)
                .tag_specifications(tag_spec(ResourceType::Volume, &tags))
                .customize()
                .config_override(no_sdk_retries())
                .send(),
        )?;
        Ok(Volume {
            id: s(out.volume_id()),
            name: req.tags.name.clone(),
            az: s(out.availability_zone()),
            size_gb: out.size().unwrap_or(req.size_gb) as i64,
            volume_type: out
                .volume_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            encrypted: out.encrypted().unwrap_or(true),
            state: out
                .state()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            attached_to: None,
            device: None,
            delete_on_termination: false,
        })
    }
}

impl Ec2Api for SdkEc2 {
    fn default_vpc(&self) -> Result<Vpc, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeVpcs",
            self.client
                .describe_vpcs()
                .filters(filter("is-default", &["true"]))
                .send(),
        )?;
        let v = out.vpcs().first().ok_or_else(|| {
            let mut e = CloudError::new(SVC, "DescribeVpcs", "NoDefaultVpc", "this region has no default VPC");
            e.hint = Some("pass a VPC explicitly (--set vpc_id=vpc-…) or create a default VPC with `aws ec2 create-default-vpc`".into());
            e
        })?;
        Ok(Vpc {
            id: s(v.vpc_id()),
            cidr: s(v.cidr_block()),
            is_default: true,
        })
    }

    fn vpc(&self, id: &str) -> Result<Vpc, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeVpcs",
            self.client.describe_vpcs().vpc_ids(id).send(),
        )?;
        let v = out.vpcs().first().ok_or_else(|| {
            CloudError::new(
                SVC,
                "DescribeVpcs",
                "InvalidVpcID.NotFound",
                format!("VPC {id} not found"),
            )
        })?;
        Ok(Vpc {
            id: s(v.vpc_id()),
            cidr: s(v.cidr_block()),
            is_default: v.is_default().unwrap_or(false),
        })
    }

    fn subnets(&self, vpc_id: Option<&str>) -> Result<Vec<Subnet>, CloudError> {
        let mut req = self.client.describe_subnets();
        if let Some(vpc_id) = vpc_id {
            req = req.filters(filter("vpc-id", &[vpc_id]));
        }
        let out = self.rt.call(SVC, "DescribeSubnets", req.send())?;
        let mut subnets: Vec<Subnet> = out
            .subnets()
            .iter()
            .map(|n| Subnet {
                id: s(n.subnet_id()),
                vpc_id: s(n.vpc_id()),
                az: s(n.availability_zone()),
                cidr: s(n.cidr_block()),
                default_for_az: n.default_for_az().unwrap_or(false),
                public_ip_on_launch: n.map_public_ip_on_launch().unwrap_or(false),
            })
            .collect();
        subnets.sort_by(|a, b| a.az.cmp(&b.az).then(a.id.cmp(&b.id)));
        Ok(subnets)
    }

    fn managed_prefix_list(&self, name: &str) -> Result<Option<String>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeManagedPrefixLists",
            self.client
                .describe_managed_prefix_lists()
                .filters(
                    Filter::builder()
                        .name("prefix-list-name")
                        .values(name)
                        .build(),
                )
                .send(),
        )?;
        Ok(out
            .prefix_lists()
            .iter()
            .find(|p| p.prefix_list_name() == Some(name) && p.owner_id() == Some("AWS"))
            .and_then(|p| p.prefix_list_id())
            .map(str::to_string))
    }

    fn latest_al2023(&self, arch: &str) -> Result<Image, CloudError> {
        let param =
            format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}");
        match self.rt.call(
            "ssm",
            "GetParameter",
            self.ssm.get_parameter().name(&param).send(),
        ) {
            Ok(out) => {
                if let Some(id) = out.parameter().and_then(|p| p.value()) {
                    return Ok(Image {
                        id: id.to_string(),
                        name: param,
                        architecture: arch.to_string(),
                        source: "ssm".into(),
                    });
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "AL2023 SSM parameter unavailable, using DescribeImages");
            }
        }
        let pattern = format!("al2023-ami-2023.*-{arch}");
        let out = self.rt.call(
            SVC,
            "DescribeImages",
            self.client
                .describe_images()
                .owners("amazon")
                .filters(filter("name", &[&pattern]))
                .filters(filter("state", &["available"]))
                .send(),
        )?;
        // Newest by name (names embed the build date; CreationDate is not reliable everywhere).
        let best = out
            .images()
            .iter()
            .filter(|i| !i.name().unwrap_or_default().contains("minimal"))
            .max_by(|a, b| a.name().cmp(&b.name()))
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "DescribeImages",
                    "NoImage",
                    format!("no Amazon Linux 2023 image for {arch} in this region"),
                )
            })?;
        Ok(Image {
            id: s(best.image_id()),
            name: s(best.name()),
            architecture: arch.to_string(),
            source: "describe_images".into(),
        })
    }

    fn find_security_group(
        &self,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<SecurityGroup>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeSecurityGroups",
            self.client
                .describe_security_groups()
                .filters(filter("vpc-id", &[vpc_id]))
                .filters(filter("group-name", &[name]))
                .send(),
        )?;
        Ok(out.security_groups().first().map(to_sg))
    }

    fn security_group(&self, id: &str) -> Result<SecurityGroup, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeSecurityGroups",
            self.client.describe_security_groups().group_ids(id).send(),
        )?;
        out.security_groups().first().map(to_sg).ok_or_else(|| {
            CloudError::new(
                SVC,
                "DescribeSecurityGroups",
                "InvalidGroup.NotFound",
                format!("security group {id} not found"),
            )
        })
    }

    fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<SecurityGroup, CloudError> {
        let out = self.rt.call(
            SVC,
            "CreateSecurityGroup",
            self.client
                .create_security_group()
                .group_name(name)
                .description(description)
                .vpc_id(vpc_id)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
                .send(),
        );
        let out = match out {
            Ok(out) => out,
            // A retried request whose first answer was lost: the group is ours.
            Err(e) if e.code == "InvalidGroup.Duplicate" => {
                if let Some(g) = self.find_security_group(vpc_id, name)? {
                    return Ok(g);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        Ok(SecurityGroup {
            id: s(out.group_id()),
            name: name.to_string(),
            vpc_id: vpc_id.to_string(),
            ingress: Vec::new(),
        })
    }

    fn authorize_ingress(
        &self,
        group: &SecurityGroup,
        rules: &[IngressRule],
    ) -> Result<SecurityGroup, CloudError> {
        let mut missing: Vec<IngressRule> = Vec::new();
        for r in rules {
            if !group
                .ingress
                .iter()
                .chain(&missing)
                .any(|e| e.same_grant(r))
            {
                missing.push(r.clone());
            }
        }
        let mut updated = group.clone();
        if missing.is_empty() {
            return Ok(updated);
        }
        let result = self.rt.call(
            SVC,
            "AuthorizeSecurityGroupIngress",
            self.client
                .authorize_security_group_ingress()
                .group_id(&group.id)
                .set_ip_permissions(Some(missing.iter().map(ip_permission).collect()))
                .send(),
        );
        match result {
            Ok(_) => {
                updated.ingress.extend(missing);
                Ok(updated)
            }
            // A retried request whose first answer was lost: the rules are there; read them.
            Err(e) if e.code == "InvalidPermission.Duplicate" => self.security_group(&group.id),
            Err(e) => Err(e),
        }
    }

    fn delete_security_group(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteSecurityGroup",
                self.client.delete_security_group().group_id(id).send(),
            )
            .map(|_| ())
    }

    fn find_key_pair(&self, name: &str) -> Result<Option<KeyPair>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeKeyPairs",
            self.client.describe_key_pairs().key_names(name).send(),
        ) {
            Ok(out) => Ok(out.key_pairs().first().map(|k| KeyPair {
                name: s(k.key_name()),
                id: s(k.key_pair_id()),
                fingerprint: s(k.key_fingerprint()),
                private_key_path: None,
            })),
            Err(e) => e.absent(),
        }
    }

    fn create_key_pair(&self, name: &str, tags: &Tags) -> Result<(KeyPair, String), CloudError> {
        let create = || {
            let out = self.rt.call(
                SVC,
                "CreateKeyPair",
                self.client
                    .create_key_pair()
                    .key_name(name)
                    .key_type(KeyType::Ed25519)
                    .tag_specifications(tag_spec(ResourceType::KeyPair, tags))
                    .customize()
                    .config_override(no_sdk_retries())
                    .send(),
            )?;
            let key = KeyPair {
                name: s(out.key_name()),
                id: s(out.key_pair_id()),
                fingerprint: s(out.key_fingerprint()),
                private_key_path: None,
            };
            Ok((key, s(out.key_material())))
        };
        // A key pair made by a request whose answer was lost is useless: its private key was
        // in that answer. Delete it (the name is this stack's, and the caller found none
        // before creating) and create it again.
        let recover = || {
            if self.find_key_pair(name)?.is_some() {
                tracing::debug!(
                    name,
                    "a lost CreateKeyPair answer took the private key; making the key pair again"
                );
                self.delete_key_pair(name)?;
            }
            Ok(None)
        };
        super::retry_create(create, recover)
    }

    fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tags: &Tags,
    ) -> Result<KeyPair, CloudError> {
        let out = self.rt.call(
            SVC,
            "ImportKeyPair",
            self.client
                .import_key_pair()
                .key_name(name)
                .public_key_material(aws_smithy_types::Blob::new(public_key.as_bytes()))
                .tag_specifications(tag_spec(ResourceType::KeyPair, tags))
                .send(),
        )?;
        Ok(KeyPair {
            name: s(out.key_name()),
            id: s(out.key_pair_id()),
            fingerprint: s(out.key_fingerprint()),
            private_key_path: None,
        })
    }

    fn delete_key_pair(&self, name: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteKeyPair",
                self.client.delete_key_pair().key_name(name).send(),
            )
            .map(|_| ())
    }

    fn run_instance(&self, spec: &LaunchSpec) -> Result<Instance, CloudError> {
        // An instance profile made seconds ago is not yet visible to EC2 (IAM propagates
        // eventually): RunInstances refuses it as invalid. Nothing was launched; wait and ask
        // again, for up to PROFILE_PROPAGATION.
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(1);
        loop {
            // The client token makes AWS return the same instance for a repeated request;
            // the token tag lets us find it ourselves (emulators ignore client tokens).
            let launched = retry_create(
                || self.run_instance_once(spec),
                || {
                    Ok(self
                        .describe_instances(&[
                            (format!("tag:{TOKEN_TAG}"), vec![spec.client_token.clone()]),
                            (
                                "instance-state-name".into(),
                                vec!["pending".into(), "running".into()],
                            ),
                        ])?
                        .into_iter()
                        .next())
                },
            );
            match launched {
                Err(e)
                    if spec.instance_profile.is_some()
                        && profile_not_yet_visible(&e)
                        && started.elapsed() + delay < PROFILE_PROPAGATION =>
                {
                    tracing::info!(
                        waited = ?started.elapsed(),
                        "the instance profile is not visible to EC2 yet; launching again in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(8));
                }
                other => return other,
            }
        }
    }

    fn instance(&self, id: &str) -> Result<Instance, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeInstances",
            self.client.describe_instances().instance_ids(id).send(),
        )?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .map(to_instance)
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "DescribeInstances",
                    "InvalidInstanceID.NotFound",
                    format!("instance {id} not found"),
                )
            })
    }

    fn find_instances(&self, tags: &[(String, String)]) -> Result<Vec<Instance>, CloudError> {
        let mut req = self.client.describe_instances().filters(filter(
            "instance-state-name",
            &["pending", "running", "stopping", "stopped"],
        ));
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeInstances", req.send())?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(to_instance)
            .collect())
    }

    fn terminate_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "TerminateInstances",
            self.client.terminate_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.terminating_instances()))
    }

    fn spot_price_history(&self, instance_type: &str) -> Result<Vec<SpotPrice>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeSpotPriceHistory",
            self.client
                .describe_spot_price_history()
                .instance_types(InstanceType::from(instance_type))
                .product_descriptions("Linux/UNIX")
                .start_time(aws_smithy_types::DateTime::from(
                    std::time::SystemTime::now(),
                ))
                .send(),
        )?;
        let mut prices: Vec<SpotPrice> = out
            .spot_price_history()
            .iter()
            .filter_map(|p| {
                Some(SpotPrice {
                    instance_type: p.instance_type()?.as_str().to_string(),
                    az: s(p.availability_zone()),
                    usd_per_hour: p.spot_price()?.parse().ok()?,
                    timestamp: p.timestamp().map(|t| t.to_string()).unwrap_or_default(),
                })
            })
            .collect();
        // One (the latest) per AZ, cheapest first.
        prices.sort_by(|a, b| a.az.cmp(&b.az).then(b.timestamp.cmp(&a.timestamp)));
        prices.dedup_by(|a, b| a.az == b.az);
        prices.sort_by(|a, b| a.usd_per_hour.total_cmp(&b.usd_per_hour));
        Ok(prices)
    }

    fn spot_price_changes(
        &self,
        instance_type: &str,
        az: &str,
        since: std::time::SystemTime,
    ) -> Result<Vec<SpotPrice>, CloudError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.rt.call(
                SVC,
                "DescribeSpotPriceHistory",
                self.client
                    .describe_spot_price_history()
                    .instance_types(InstanceType::from(instance_type))
                    .availability_zone(az)
                    .product_descriptions("Linux/UNIX")
                    .start_time(aws_smithy_types::DateTime::from(since))
                    .set_next_token(token.take())
                    .send(),
            )?;
            out.extend(page.spot_price_history().iter().filter_map(|p| {
                Some(SpotPrice {
                    instance_type: p.instance_type()?.as_str().to_string(),
                    az: s(p.availability_zone()),
                    usd_per_hour: p.spot_price()?.parse().ok()?,
                    timestamp: p.timestamp().map(smithy_time).unwrap_or_default(),
                })
            }));
            match page.next_token().filter(|t| !t.is_empty()) {
                // A few weeks of changes is a few pages; stop at 20 so a loop cannot run away.
                Some(t) if out.len() < 20_000 => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.retain(|p| p.az == az);
        out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        Ok(out)
    }

    fn spot_request_status(&self, request_id: &str) -> Result<Option<String>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeSpotInstanceRequests",
            self.client
                .describe_spot_instance_requests()
                .spot_instance_request_ids(request_id)
                .send(),
        )?;
        Ok(out
            .spot_instance_requests()
            .first()
            .and_then(|r| r.status())
            .and_then(|st| st.code())
            .map(str::to_string))
    }

    fn find_snapshots(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<(String, String)>, CloudError> {
        let mut req = self.client.describe_snapshots().owner_ids("self");
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeSnapshots", req.send())?;
        let mut found: Vec<(String, String)> = out
            .snapshots()
            .iter()
            .map(|s| {
                (
                    s.snapshot_id().unwrap_or_default().to_string(),
                    s.start_time().map(|t| t.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    fn delete_snapshot(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteSnapshot",
                self.client.delete_snapshot().snapshot_id(id).send(),
            )
            .map(|_| ())
    }

    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "CreateSnapshot",
            self.client
                .create_snapshot()
                .volume_id(volume_id)
                .description(description)
                .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
                .send(),
        )?;
        Ok(s(out.snapshot_id()))
    }

    fn stop_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "StopInstances",
            self.client.stop_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.stopping_instances()))
    }

    fn start_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "StartInstances",
            self.client.start_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.starting_instances()))
    }

    fn set_instance_type(&self, id: &str, instance_type: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "ModifyInstanceAttribute",
                self.client
                    .modify_instance_attribute()
                    .instance_id(id)
                    .instance_type(
                        aws_sdk_ec2::types::AttributeValue::builder()
                            .value(instance_type)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
    }

    fn detach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DetachVolume",
                self.client
                    .detach_volume()
                    .volume_id(volume_id)
                    .instance_id(instance_id)
                    .device(device)
                    .send(),
            )
            .map(|_| ())
    }

    fn set_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "CreateTags",
                self.client
                    .create_tags()
                    .resources(resource_id)
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build())
                            .collect(),
                    ))
                    .send(),
            )
            .map(|_| ())
    }

    fn find_volumes(&self, tags: &[(String, String)]) -> Result<Vec<Volume>, CloudError> {
        let mut req = self
            .client
            .describe_volumes()
            .filters(filter("status", &["creating", "available", "in-use"]));
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeVolumes", req.send())?;
        Ok(out.volumes().iter().map(to_volume).collect())
    }

    fn volume(&self, id: &str) -> Result<Volume, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeVolumes",
            self.client.describe_volumes().volume_ids(id).send(),
        )?;
        out.volumes().first().map(to_volume).ok_or_else(|| {
            CloudError::new(
                SVC,
                "DescribeVolumes",
                "InvalidVolume.NotFound",
                format!("volume {id} not found"),
            )
        })
    }

    fn create_volume(&self, req: &VolumeRequest) -> Result<Volume, CloudError> {
        retry_create(
            || self.create_volume_once(req),
            || {
                Ok(self
                    .find_volumes(&[(TOKEN_TAG.to_string(), req.client_token.clone())])?
                    .into_iter()
                    .next())
            },
        )
    }

    fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<String, CloudError> {
        let result = self
            .rt
            .call(
                SVC,
                "AttachVolume",
                self.client
                    .attach_volume()
                    .volume_id(volume_id)
                    .instance_id(instance_id)
                    .device(device)
                    .send(),
            )
            .map(|out| {
                out.state()
                    .map(|st| st.as_str().to_string())
                    .unwrap_or_else(|| "attaching".into())
            });
        match result {
            // A retried request whose first answer was lost: attached already, to this instance.
            Err(e) if e.code.contains("InUse") || e.code == "IncorrectState" => {
                match self.volume(volume_id) {
                    Ok(v) if v.attached_to.as_deref() == Some(instance_id) => {
                        Ok(if v.state == "in-use" {
                            "attached"
                        } else {
                            "attaching"
                        }
                        .into())
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    fn delete_volume(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteVolume",
                self.client.delete_volume().volume_id(id).send(),
            )
            .map(|_| ())
    }

    fn find_security_groups(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<SecurityGroup>, CloudError> {
        let mut req = self.client.describe_security_groups();
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeSecurityGroups", req.send())?;
        Ok(out.security_groups().iter().map(to_sg).collect())
    }

    fn revoke_all_ingress(&self, group: &SecurityGroup) -> Result<(), CloudError> {
        if group.ingress.is_empty() {
            return Ok(());
        }
        self.rt
            .call(
                SVC,
                "RevokeSecurityGroupIngress",
                self.client
                    .revoke_security_group_ingress()
                    .group_id(&group.id)
                    .set_ip_permissions(Some(group.ingress.iter().map(ip_permission).collect()))
                    .send(),
            )
            .map(|_| ())
    }

    fn revoke_rules(&self, group_id: &str, rules: &[IngressRule]) -> Result<(), CloudError> {
        if rules.is_empty() {
            return Ok(());
        }
        self.rt
            .call(
                SVC,
                "RevokeSecurityGroupIngress",
                self.client
                    .revoke_security_group_ingress()
                    .group_id(group_id)
                    .set_ip_permissions(Some(rules.iter().map(ip_permission).collect()))
                    .send(),
            )
            .map(|_| ())
    }

    fn find_key_pairs(&self, tags: &[(String, String)]) -> Result<Vec<KeyPair>, CloudError> {
        let mut req = self.client.describe_key_pairs();
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeKeyPairs", req.send())?;
        Ok(out
            .key_pairs()
            .iter()
            .map(|k| KeyPair {
                name: s(k.key_name()),
                id: s(k.key_pair_id()),
                fingerprint: s(k.key_fingerprint()),
                private_key_path: None,
            })
            .collect())
    }

    fn instance_type_info(
        &self,
        instance_type: &str,
    ) -> Result<Option<InstanceTypeInfo>, CloudError> {
        let out = match self.rt.call(
            SVC,
            "DescribeInstanceTypes",
            self.client
                .describe_instance_types()
                .instance_types(InstanceType::from(instance_type))
                .send(),
        ) {
            Ok(out) => out,
            Err(e) => {
                return if e.code.starts_with("InvalidInstanceType") {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
        };
        Ok(out.instance_types().first().map(|t| {
            let gpu = t.gpu_info();
            let first = gpu.and_then(|g| g.gpus().first());
            InstanceTypeInfo {
                name: instance_type.to_string(),
                vcpus: t.v_cpu_info().and_then(|v| v.default_v_cpus()).unwrap_or(0) as i64,
                memory_gib: t.memory_info().and_then(|m| m.size_in_mib()).unwrap_or(0) as f64
                    / 1024.0,
                gpus: gpu
                    .map(|g| g.gpus().iter().map(|x| x.count().unwrap_or(0) as i64).sum())
                    .unwrap_or(0),
                gpu_model: first
                    .map(|g| {
                        format!(
                            "{} {}",
                            g.manufacturer().unwrap_or_default(),
                            g.name().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default(),
                gpu_memory_gib: gpu.and_then(|g| g.total_gpu_memory_in_mib()).unwrap_or(0) as f64
                    / 1024.0,
                architecture: t
                    .processor_info()
                    .and_then(|p| p.supported_architectures().first())
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
                spot_supported: t
                    .supported_usage_classes()
                    .iter()
                    .any(|u| u.as_str() == "spot"),
            }
        }))
    }

    fn zones_offering(&self, instance_type: &str) -> Result<Vec<String>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeInstanceTypeOfferings",
            self.client
                .describe_instance_type_offerings()
                .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
                .filters(filter("instance-type", &[instance_type]))
                .send(),
        )?;
        let mut zones: Vec<String> = out
            .instance_type_offerings()
            .iter()
            .filter_map(|o| o.location().map(str::to_string))
            .collect();
        zones.sort();
        Ok(zones)
    }

    fn latest_gpu_ami(&self) -> Result<Image, CloudError> {
        let param = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id";
        match self.rt.call(
            "ssm",
            "GetParameter",
            self.ssm.get_parameter().name(param).send(),
        ) {
            Ok(out) => {
                if let Some(id) = out.parameter().and_then(|p| p.value()) {
                    return Ok(Image {
                        id: id.to_string(),
                        name: param.to_string(),
                        architecture: "x86_64".into(),
                        source: "ssm".into(),
                    });
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "Deep Learning AMI parameter unavailable, using DescribeImages");
            }
        }
        // Newest first by name; the AL2023 base image first, older Deep Learning images after.
        for pattern in [
            "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023)*",
            "Deep Learning*Amazon Linux*",
        ] {
            let out = self.rt.call(
                SVC,
                "DescribeImages",
                self.client
                    .describe_images()
                    .owners("amazon")
                    .filters(filter("name", &[pattern]))
                    .filters(filter("architecture", &["x86_64"]))
                    .send(),
            )?;
            if let Some(best) = out.images().iter().max_by(|a, b| a.name().cmp(&b.name())) {
                return Ok(Image {
                    id: s(best.image_id()),
                    name: s(best.name()),
                    architecture: "x86_64".into(),
                    source: "describe_images".into(),
                });
            }
        }
        let mut e = CloudError::new(
            SVC,
            "DescribeImages",
            "NoImage",
            "no Deep Learning (GPU) AMI in this region",
        );
        e.hint = Some(
            "pass an AMI with the NVIDIA driver and container toolkit: --set image_id=ami-…".into(),
        );
        Err(e)
    }

    fn vpcs(&self) -> Result<Vec<Vpc>, CloudError> {
        let out = self
            .rt
            .call(SVC, "DescribeVpcs", self.client.describe_vpcs().send())?;
        Ok(out
            .vpcs()
            .iter()
            .map(|v| Vpc {
                id: s(v.vpc_id()),
                cidr: s(v.cidr_block()),
                is_default: v.is_default().unwrap_or(false),
            })
            .collect())
    }

    fn describe_instances(
        &self,
        filters: &[(String, Vec<String>)],
    ) -> Result<Vec<Instance>, CloudError> {
        let mut req = self.client.describe_instances();
        for (name, values) in filters {
            req = req.filters(
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build(),
            );
        }
        let out = self.rt.call(SVC, "DescribeInstances", req.send())?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(to_instance)
            .collect())
    }

    fn list_security_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, CloudError> {
        let mut req = self.client.describe_security_groups();
        if let Some(v) = vpc_id {
            req = req.filters(filter("vpc-id", &[v]));
        }
        let out = self.rt.call(SVC, "DescribeSecurityGroups", req.send())?;
        Ok(out.security_groups().iter().map(to_sg).collect())
    }
}
