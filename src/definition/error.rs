//! Definition diagnostics: each problem names the file, line, column and key it is about, and
//! renders with the offending source line through miette at the CLI edge.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, Severity, SourceCode};

use super::node::{Loc, PathSeg, path_to_string};

/// One thing wrong (or worth a warning) in a definition.
#[derive(Debug, Clone)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
    pub loc: Option<Loc>,
    /// The key path the problem is about, e.g. `system.users[1].uid`.
    pub key_path: Option<String>,
    pub help: Option<String>,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            message: message.into(),
            loc: None,
            key_path: None,
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(message)
        }
    }

    pub fn at(mut self, loc: Loc) -> Self {
        self.loc = Some(loc);
        self
    }

    pub fn at_path(mut self, path: &[PathSeg]) -> Self {
        if !path.is_empty() {
            self.key_path = Some(path_to_string(path));
        }
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The plain form (logs, JSON, tests) carries the location itself; the graphical form
        // shows it in the snippet header instead.
        if let Some(loc) = &self.loc {
            write!(f, "{loc}: ")?;
        }
        if let Some(path) = &self.key_path {
            write!(f, "`{path}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.loc.as_ref().map(|l| &*l.file as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let loc = self.loc.as_ref()?;
        let offset = loc.file.offset_of(loc.line, loc.col);
        let rest = &loc.file.text[offset..];
        // Underline the token, but never past the end of its line.
        let line_len = rest.find('\n').unwrap_or(rest.len());
        let len = loc.len.min(line_len).max(usize::from(line_len > 0));
        Some(Box::new(std::iter::once(LabeledSpan::new(
            None, offset, len,
        ))))
    }
}

/// What loading a definition can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more problems; warnings found along the way are kept too.
    #[error("{}", summary(.0))]
    Invalid(Vec<Problem>),
}

fn summary(problems: &[Problem]) -> String {
    let errors = problems.iter().filter(|p| p.is_error()).count();
    match errors {
        1 => "the definition has 1 error".to_string(),
        n => format!("the definition has {n} errors"),
    }
}

impl DefinitionError {
    /// Every problem, errors and warnings, in the order found.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            DefinitionError::Read { path, source } => {
                vec![Problem::error(format!(
                    "cannot read {}: {source}",
                    path.display()
                ))]
            }
            DefinitionError::Invalid(p) => p.clone(),
        }
    }
}

impl From<Problem> for DefinitionError {
    fn from(p: Problem) -> Self {
        DefinitionError::Invalid(vec![p])
    }
}

/// "did you mean …?" for a misspelt key or value: the closest candidate, if it is close enough
/// to be a plausible typo.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given_l = given.to_ascii_lowercase();
    let words = |s: &str| -> Vec<String> {
        s.split(['-', '_', '.'])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let given_words = words(&given_l);
    candidates
        .into_iter()
        .map(|c| {
            let c_l = c.to_ascii_lowercase();
            let mut score = strsim::jaro_winkler(&given_l, &c_l);
            // `ssh-keys` for `ssh-authorized-keys`: every word given is a word of the key.
            let c_words = words(&c_l);
            if given_words.len() > 1 && given_words.iter().all(|w| c_words.contains(w)) {
                score = score.max(0.9);
            }
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["packages", "repositories", "system", "outputs"];
        assert_eq!(did_you_mean("pakages", keys), Some("packages"));
        assert_eq!(did_you_mean("sytem", keys), Some("system"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("Outputs", keys), Some("outputs"));
        let user = [
            "name",
            "ssh-authorized-keys",
            "password-hash",
            "password-locked",
        ];
        assert_eq!(did_you_mean("ssh-keys", user), Some("ssh-authorized-keys"));
        assert!(did_you_mean("password", user).is_some_and(|s| s.starts_with("password")));
    }
}
