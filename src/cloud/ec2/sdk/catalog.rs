//! [`Ec2Catalog`] over aws-sdk-ec2 and SSM: AMIs, instance types, zones, spot prices.

use aws_sdk_ec2::types::InstanceType;

use crate::cloud::CloudError;

use super::super::convert::*;
use super::super::*;
use super::SdkEc2;

impl Ec2Catalog for SdkEc2 {
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
}
