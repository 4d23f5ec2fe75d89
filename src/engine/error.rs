//! The engine's errors: why a command did not succeed ([`RunError`]), and the ways an
//! invocation can be wrong ([`UsageError`]). Each keeps its parts apart (message, hint, what
//! to suggest); `Display` is the one place they are put into words, and `cli::report` the one
//! place they are printed.

use crate::state::StateError;
use crate::suggest::did_you_mean;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The invocation itself is wrong (exit 2): nothing was started.
    #[error("{0}")]
    Usage(UsageError),
    /// The recipe failed to compile or failed while running (exit 1): a rendered report that
    /// starts with its own `error:` line.
    #[error("{0}")]
    Recipe(String),
    /// Stopped by Ctrl-C (exit 130): a rendered report, like `Recipe`.
    #[error("{0}")]
    Interrupted(String),
    #[error("{0}")]
    State(#[from] StateError),
    /// AWS could not be reached as anyone (exit 2): nothing was asked of it, nothing recorded.
    #[error("{}", .0.render())]
    Preflight(crate::cloud::PreflightError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::Preflight(_) => 2,
            RunError::Interrupted(_) => 130,
            RunError::Recipe(_) | RunError::State(_) => 1,
        }
    }

    /// A usage error that is only a message.
    pub fn usage(message: impl Into<String>) -> RunError {
        RunError::Usage(UsageError::Invalid {
            message: message.into(),
            hint: None,
        })
    }

    /// A usage error with what to do about it.
    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> RunError {
        RunError::Usage(UsageError::Invalid {
            message: message.into(),
            hint: Some(hint.into()),
        })
    }
}

impl From<UsageError> for RunError {
    fn from(e: UsageError) -> Self {
        RunError::Usage(e)
    }
}

/// How an invocation is wrong. The "did you mean" of each is worked out from what it carries,
/// here and nowhere else.
#[derive(Debug)]
pub enum UsageError {
    /// `--set key=…` for a param the recipe does not take.
    UnknownParam {
        key: String,
        /// The recipe as errors name it.
        recipe: String,
        /// The params it takes.
        params: Vec<String>,
        /// What `recipes show` takes to list them (recipes with a header).
        show: Option<String>,
    },
    /// Not a file, a shared source's recipe or a bundled recipe.
    UnknownRecipe {
        name: String,
        bundled: Vec<String>,
        /// A local recipe of that name, as `run` takes it (`acme/gpu`).
        local: Option<String>,
    },
    /// A command on a stack that has no state.
    UnknownStack {
        stack: String,
        /// Where stacks are kept (a directory, an `s3://` URL).
        place: String,
        known: Vec<String>,
    },
    /// Anything else: what is wrong, and what to do about it.
    Invalid {
        message: String,
        hint: Option<String>,
    },
}

impl UsageError {
    /// What is wrong, without the hint.
    pub fn message(&self) -> String {
        match self {
            UsageError::UnknownParam { key, recipe, .. } => {
                format!("--set {key}: the recipe {recipe} has no param `{key}`")
            }
            UsageError::UnknownRecipe { name, bundled, .. } => format!(
                "no recipe `{name}`: not a file, and not a bundled recipe ({})",
                bundled.join(", ")
            ),
            UsageError::UnknownStack { stack, place, .. } => {
                format!("no stack named `{stack}` in {place}")
            }
            UsageError::Invalid { message, .. } => message.clone(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            UsageError::UnknownParam {
                key, params, show, ..
            } => Some(match did_you_mean(key, params.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if params.is_empty() => "this recipe takes no params".into(),
                None => match show {
                    Some(id) => format!(
                        "its params are: {} (`geusemaker recipes show {id}`)",
                        params.join(", ")
                    ),
                    None => format!("its params are: {}", params.join(", ")),
                },
            }),
            UsageError::UnknownRecipe {
                name,
                bundled,
                local,
            } => match local {
                Some(id) => Some(format!(
                    "a local recipe is named `{name}`: run it as `{id}` (`recipes list` shows what each is run as)"
                )),
                None => did_you_mean(name, bundled.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?")),
            },
            UsageError::UnknownStack { stack, known, .. } => {
                Some(match did_you_mean(stack, known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => {
                        "there are no stacks yet; deploy one with `geusemaker run dev --name NAME`"
                            .into()
                    }
                    None => format!("known stacks: {}", known.join(", ")),
                })
            }
            UsageError::Invalid { hint, .. } => hint.clone(),
        }
    }
}

/// The message, then its hint on a line of its own.
impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())?;
        match self.hint() {
            Some(h) => write!(f, "\nhint: {h}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for UsageError {}

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError::Invalid {
            message,
            hint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggestion_comes_from_what_the_error_carries() {
        let e = UsageError::UnknownParam {
            key: "instance_typ".into(),
            recipe: "recipes/dev.rhai".into(),
            params: vec!["instance_type".into(), "region".into()],
            show: Some("dev".into()),
        };
        assert_eq!(
            e.to_string(),
            "--set instance_typ: the recipe recipes/dev.rhai has no param `instance_typ`\nhint: did you mean `instance_type`?"
        );
        let none = UsageError::UnknownStack {
            stack: "x".into(),
            place: "/h/stacks".into(),
            known: vec![],
        };
        assert_eq!(none.message(), "no stack named `x` in /h/stacks");
        assert!(none.hint().unwrap().starts_with("there are no stacks yet"));
        let plain = RunError::usage_hint("bad", "do this");
        assert_eq!(plain.to_string(), "bad\nhint: do this");
        assert_eq!(plain.exit_code(), 2);
    }
}
