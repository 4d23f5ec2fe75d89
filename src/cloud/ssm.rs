//! SSM: SecureString parameters and Run Command.

use std::fmt;

use aws_sdk_ssm::types::{ParameterType, Tag};
use rhai::CustomType;

use super::{Blocking, CloudError, Tags};

const SVC: &str = "ssm";

/// A parameter's metadata (never its value).
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Parameter", extra = super::display_fns)]
pub struct Parameter {
    #[rhai_type(readonly)]
    pub name: String,
    /// `String`, `StringList` or `SecureString`.
    #[rhai_type(readonly)]
    pub kind: String,
    #[rhai_type(readonly)]
    pub version: i64,
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Parameter({} {} v{})",
            self.name, self.kind, self.version
        )
    }
}

/// The outcome of a Run Command invocation on one instance.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "CommandResult", extra = super::display_fns)]
pub struct CommandResult {
    #[rhai_type(readonly)]
    pub command_id: String,
    #[rhai_type(readonly)]
    pub instance_id: String,
    #[rhai_type(readonly)]
    pub status: String,
    #[rhai_type(readonly)]
    pub exit_code: i64,
    #[rhai_type(readonly)]
    pub stdout: String,
    #[rhai_type(readonly)]
    pub stderr: String,
}

impl fmt::Display for CommandResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CommandResult({} {} exit {})",
            self.command_id, self.status, self.exit_code
        )
    }
}

/// The SSM operations primitives use.
pub trait SsmApi: Send + Sync {
    /// Store a SecureString. Without `overwrite`, an existing parameter is left alone and
    /// returned as is (so generated secrets are created once and reused).
    fn put_secure(
        &self,
        name: &str,
        value: &str,
        overwrite: bool,
        tags: &Tags,
    ) -> Result<(Parameter, bool), CloudError>;
    /// A parameter and its (decrypted) value; `None` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<(Parameter, String)>, CloudError>;
    fn delete(&self, name: &str) -> Result<(), CloudError>;
    /// Every parameter under `path` (recursively), without values.
    fn list_by_path(&self, path: &str) -> Result<Vec<Parameter>, CloudError>;
    fn send_command(
        &self,
        instance_id: &str,
        commands: &[String],
        comment: &str,
    ) -> Result<String, CloudError>;
    fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandResult, CloudError>;
}

/// [`SsmApi`] over aws-sdk-ssm.
pub struct SdkSsm {
    client: aws_sdk_ssm::Client,
    rt: Blocking,
}

impl SdkSsm {
    pub fn new(client: aws_sdk_ssm::Client, rt: Blocking) -> Self {
        SdkSsm { client, rt }
    }
}

impl SsmApi for SdkSsm {
    fn put_secure(
        &self,
        name: &str,
        value: &str,
        overwrite: bool,
        tags: &Tags,
    ) -> Result<(Parameter, bool), CloudError> {
        // AWS refuses Tags together with Overwrite: tag on first creation only.
        let create = self
            .client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .set_tags(Some(
                tags.pairs()
                    .into_iter()
                    .map(|(k, v)| {
                        Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                            .expect("tag has key and value")
                    })
                    .collect(),
            ));
        match self.rt.call(SVC, "PutParameter", create.send()) {
            Ok(out) => Ok((
                Parameter {
                    name: name.into(),
                    kind: "SecureString".into(),
                    version: out.version(),
                },
                true,
            )),
            Err(e) => {
                if e.code != "ParameterAlreadyExists" {
                    return Err(e);
                }
                if !overwrite {
                    let (p, _) = self.get(name)?.ok_or(e)?;
                    return Ok((p, false));
                }
                let out = self.rt.call(
                    SVC,
                    "PutParameter",
                    self.client
                        .put_parameter()
                        .name(name)
                        .value(value)
                        .r#type(ParameterType::SecureString)
                        .overwrite(true)
                        .send(),
                )?;
                Ok((
                    Parameter {
                        name: name.into(),
                        kind: "SecureString".into(),
                        version: out.version(),
                    },
                    true,
                ))
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<(Parameter, String)>, CloudError> {
        match self.rt.call(
            SVC,
            "GetParameter",
            self.client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send(),
        ) {
            Ok(out) => Ok(out.parameter().map(|p| {
                (
                    Parameter {
                        name: p.name().unwrap_or(name).to_string(),
                        kind: p
                            .r#type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        version: p.version(),
                    },
                    p.value().unwrap_or_default().to_string(),
                )
            })),
            Err(e) => e.absent(),
        }
    }

    fn delete(&self, name: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteParameter",
                self.client.delete_parameter().name(name).send(),
            )
            .map(|_| ())
    }

    fn send_command(
        &self,
        instance_id: &str,
        commands: &[String],
        comment: &str,
    ) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "SendCommand",
            self.client
                .send_command()
                .instance_ids(instance_id)
                .document_name("AWS-RunShellScript")
                .comment(comment)
                .parameters("commands", commands.to_vec())
                .send(),
        )?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "SendCommand",
                    "NoCommandId",
                    "SendCommand returned no command id",
                )
            })
    }

    fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandResult, CloudError> {
        let out = self.rt.call(
            SVC,
            "GetCommandInvocation",
            self.client
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(instance_id)
                .send(),
        )?;
        Ok(CommandResult {
            command_id: command_id.to_string(),
            instance_id: instance_id.to_string(),
            status: out
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            exit_code: out.response_code() as i64,
            stdout: out
                .standard_output_content()
                .unwrap_or_default()
                .to_string(),
            stderr: out.standard_error_content().unwrap_or_default().to_string(),
        })
    }

    fn list_by_path(&self, path: &str) -> Result<Vec<Parameter>, CloudError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self.rt.call(
                SVC,
                "GetParametersByPath",
                self.client
                    .get_parameters_by_path()
                    .path(path)
                    .recursive(true)
                    .with_decryption(false)
                    .set_next_token(token.clone())
                    .send(),
            )?;
            found.extend(out.parameters().iter().map(|p| {
                Parameter {
                    name: p.name().unwrap_or_default().to_string(),
                    kind: p
                        .r#type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    version: p.version(),
                }
            }));
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(found);
            }
        }
    }
}
