//! Errors of the desired-state layer. Every problem names the file, the line and the key.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a Compose file or stack, located precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path relative to the source root, e.g. `web/compose.yaml`.
    pub file: String,
    pub line: usize,
    /// Dotted path of the key, e.g. `services.web.ports[1]`; empty for a whole-file problem.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
    #[error("no stack found in {0}: a stack is a direct subfolder holding compose.yaml (or compose.yml, docker-compose.yaml, docker-compose.yml)")]
    NoStacks(PathBuf),
    #[error("stack '{0}' was asked for with --stack but is not in the desired state")]
    UnknownStack(String),
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out = format!(
        "the desired state is invalid ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}
