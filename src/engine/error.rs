//! The engine's errors: why a command did not succeed ([`RunError`]), the ways an invocation
//! can be wrong ([`UsageError`]), and what a failed run has to say ([`Failure`]: the error at
//! its place in the recipe, then what became of the stack). Each keeps its parts apart
//! (message, hint, what to suggest, notes); `Display` and [`Failure::render`] are the one place
//! they are put into words, and `cli::report` the one place they are printed.

use std::sync::Arc;

use super::diag::{self, Diagnostic};
use super::sources::Sources;
use crate::state::StateError;
use crate::suggest::did_you_mean;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The invocation itself is wrong (exit 2): nothing was started.
    #[error("{0}")]
    Usage(UsageError),
    /// The recipe failed to compile or failed while running, or the command failed (exit 1):
    /// the error, then what became of the stack.
    #[error("{}", .0.render(false))]
    Recipe(Box<Failure>),
    /// Stopped by Ctrl-C (exit 130): what was stopped, and what became of the stack.
    #[error("{}", .0.render(false))]
    Interrupted(Box<Failure>),
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

    /// The command failed (exit 1): what went wrong.
    pub fn failed(message: impl Into<String>) -> RunError {
        RunError::Recipe(Box::new(Failure::message(message)))
    }

    /// The command failed (exit 1): what went wrong, and what to do about it.
    pub fn failed_hint(message: impl Into<String>, hint: impl Into<String>) -> RunError {
        RunError::Recipe(Box::new(Failure::message(message).hint(hint)))
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

impl From<Failure> for RunError {
    fn from(f: Failure) -> Self {
        RunError::Recipe(Box::new(f))
    }
}

/// What a failed (or interrupted) command has to say: the error, then lines on what became of
/// the stack (how the run ended, what was rolled back, where its state is). Kept in parts;
/// [`Failure::render`] puts it into words, painted or not.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cause: Cause,
    pub notes: Vec<Note>,
}

/// The error a [`Failure`] starts with.
#[derive(Debug, Clone)]
pub enum Cause {
    /// An error at a place in a recipe: shown with its source line, a caret and the calls that
    /// led there.
    Recipe {
        diagnostic: Diagnostic,
        sources: Arc<Sources>,
    },
    /// What went wrong, and what to do about it.
    Message {
        message: String,
        hint: Option<String>,
    },
}

/// A line after the error, or a second failure (an automatic rollback's own).
#[derive(Debug, Clone)]
pub enum Note {
    Line(String),
    Failure(Box<Failure>),
}

impl Failure {
    /// An error in a recipe, at its place in `sources`.
    pub fn recipe(diagnostic: Diagnostic, sources: Arc<Sources>) -> Self {
        Failure {
            cause: Cause::Recipe {
                diagnostic,
                sources,
            },
            notes: Vec::new(),
        }
    }

    /// An error that is only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Failure {
            cause: Cause::Message {
                message: message.into(),
                hint: None,
            },
            notes: Vec::new(),
        }
    }

    /// With what to do about it. Only for a message: a recipe's diagnostic carries its own
    /// hint, and keeps it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        if let Cause::Message { hint: h, .. } = &mut self.cause {
            *h = Some(hint.into());
        }
        self
    }

    /// With a line after the error.
    pub fn note(mut self, line: impl Into<String>) -> Self {
        self.notes.push(Note::Line(line.into()));
        self
    }

    /// With these notes after the error.
    pub fn notes(mut self, notes: impl IntoIterator<Item = Note>) -> Self {
        self.notes.extend(notes);
        self
    }

    /// The error's message, without position or hint: what a run's outcome records.
    pub fn summary(&self) -> &str {
        match &self.cause {
            Cause::Recipe { diagnostic, .. } => &diagnostic.message,
            Cause::Message { message, .. } => message,
        }
    }

    /// The text shown: the error (a diagnostic's `error:` and caret painted when `color`),
    /// then each note on a line of its own.
    pub fn render(&self, color: bool) -> String {
        let mut out = match &self.cause {
            Cause::Recipe {
                diagnostic,
                sources,
            } => diag::render(diagnostic, sources, color),
            Cause::Message { message, hint } => {
                let mut s = format!("error: {message}\n");
                if let Some(h) = hint {
                    s.push_str(&format!("hint: {h}\n"));
                }
                s
            }
        };
        for note in &self.notes {
            match note {
                Note::Line(line) => {
                    out.push_str(line);
                    if !line.ends_with('\n') {
                        out.push('\n');
                    }
                }
                Note::Failure(f) => out.push_str(&f.render(color)),
            }
        }
        out
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
    fn a_failure_renders_its_error_then_what_became_of_the_stack() {
        let rollback = Failure::message("DeleteVolume: VolumeInUse").hint("detach it first");
        let f = Failure::message("health::wait_until_healthy: n8n not healthy")
            .note("run r-1 failed after 3 s")
            .notes([
                Note::Line("automatic rollback failed too:".into()),
                Note::Failure(Box::new(rollback)),
            ])
            .note("state: /h/stacks/s.json (the ledger lists every resource)\n");
        assert_eq!(
            f.render(false),
            "error: health::wait_until_healthy: n8n not healthy\n\
             run r-1 failed after 3 s\n\
             automatic rollback failed too:\n\
             error: DeleteVolume: VolumeInUse\n\
             hint: detach it first\n\
             state: /h/stacks/s.json (the ledger lists every resource)\n"
        );
        assert_eq!(f.summary(), "health::wait_until_healthy: n8n not healthy");
        let e = RunError::from(f);
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().starts_with("error: health::"));
    }

    #[test]
    fn a_recipe_failure_points_into_its_source() {
        let sources = Arc::new(Sources::default());
        sources.insert("r.rhai", "let x = 1;\nboom();\n", None);
        let d = Diagnostic {
            message: "function not found: boom".into(),
            hint: None,
            primary: Some(diag::Loc {
                source: "r.rhai".into(),
                line: 2,
                col: 1,
            }),
            frames: Vec::new(),
        };
        let text = Failure::recipe(d, sources)
            .note("run r-2 failed")
            .render(false);
        assert!(
            text.starts_with("error: function not found: boom\n"),
            "{text}"
        );
        assert!(text.contains("r.rhai:2:1"), "{text}");
        assert!(text.contains("boom();"), "{text}");
        assert!(text.ends_with("run r-2 failed\n"), "{text}");
    }

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
