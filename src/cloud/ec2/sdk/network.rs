//! [`Ec2Network`] over aws-sdk-ec2: VPCs, subnets, security groups, key pairs.

use aws_sdk_ec2::types::{Filter, KeyType, ResourceType};

use crate::cloud::{retry_create, CloudError, Tags};

use super::super::convert::*;
use super::super::*;
use super::SdkEc2;

impl Ec2Network for SdkEc2 {
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
        retry_create(create, recover)
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

    fn list_security_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, CloudError> {
        let mut req = self.client.describe_security_groups();
        if let Some(v) = vpc_id {
            req = req.filters(filter("vpc-id", &[v]));
        }
        let out = self.rt.call(SVC, "DescribeSecurityGroups", req.send())?;
        Ok(out.security_groups().iter().map(to_sg).collect())
    }
}
