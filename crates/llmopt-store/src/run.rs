//! What a run record holds: identity, provenance (command line, model file, host, llmopt build),
//! timing, status, typed metrics and the run's own JSON report.

use serde::Serialize;

use crate::host::Host;

/// Which direction of a metric is an improvement; `None` for facts that are not ranked (e.g. the
/// machine's copy bandwidth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    None,
}

impl Better {
    /// The word stored in the database and printed: `higher`, `lower`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Higher => "higher",
            Self::Lower => "lower",
            Self::None => "none",
        }
    }

    /// The inverse of [`Better::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Higher, Self::Lower, Self::None].into_iter().find(|b| b.as_str() == s)
    }
}

/// One measured figure of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// Unique within its run, e.g. `pp512`, `tg128`, `ppl`, `arc_easy.acc`.
    pub name: String,
    /// The value in `unit`. Not-a-number (serialized as `null`) when the run produced no finite value.
    pub value: f64,
    /// Standard error of `value` (e.g. sd/sqrt(reps) of a mean), when the run measured a spread.
    pub stderr: Option<f64>,
    /// Unit of `value` and `stderr`, e.g. `t/s`, `GB/s`, `MB`, `%`; empty for pure numbers.
    pub unit: String,
    /// Which direction is an improvement.
    pub better: Better,
}

impl Metric {
    /// A metric without a spread.
    pub fn new(
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        better: Better,
    ) -> Self {
        Self { name: name.into(), value, stderr: None, unit: unit.into(), better }
    }

    /// The same metric with a standard error (ignored unless finite and non-negative).
    pub fn with_stderr(mut self, stderr: f64) -> Self {
        self.stderr = (stderr.is_finite() && stderr >= 0.0).then_some(stderr);
        self
    }
}

/// The model file a run measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelFile {
    /// The path as given on the command line.
    pub path: String,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Whether a run finished its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

impl Status {
    /// The word stored in the database: `ok`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Failed].into_iter().find(|v| v.as_str() == s)
    }
}

/// Everything recorded about one run, before the store gives it an id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    /// What ran: `bench`, `profile`, `eval.perplexity`, `eval.tasks`, `eval.compare`, `quantize`.
    pub kind: String,
    /// The command line, program name first.
    pub argv: Vec<String>,
    /// The model file, when the run used one.
    pub model: Option<ModelFile>,
    pub host: Host,
    /// llmopt's version (`CARGO_PKG_VERSION`) and git commit (`unknown` outside a checkout).
    pub llmopt_version: String,
    pub llmopt_commit: String,
    /// RFC 3339 UTC timestamps.
    pub started_at: String,
    pub finished_at: String,
    pub status: Status,
    /// In the order the run reported them.
    pub metrics: Vec<Metric>,
    /// The run's full report as JSON text (what `--json` prints); `None` where not loaded
    /// ([`crate::Store::list`]) or not produced.
    #[serde(skip)]
    pub report: Option<String>,
}

impl RunRecord {
    /// The command line as one string a POSIX shell would split back into `argv`: words with
    /// anything but letters, digits and `-_./=:,+@%` are single-quoted.
    pub fn command_line(&self) -> String {
        self.argv.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
    }

    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

fn shell_word(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// A stored run: its id and its record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    #[serde(flatten)]
    pub record: RunRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for b in [Better::Higher, Better::Lower, Better::None] {
            assert_eq!(Better::parse(b.as_str()), Some(b));
        }
        for s in [Status::Ok, Status::Failed] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Better::parse("up"), None);
    }

    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let words = ["llmopt", "generate", "-p", "it's a test", "", "--x=1,2"];
        assert_eq!(shell_word(words[3]), r"'it'\''s a test'");
        assert_eq!(shell_word(words[4]), "''");
        assert_eq!(shell_word(words[5]), "--x=1,2");
    }

    #[test]
    fn stderr_must_be_a_spread() {
        let m = Metric::new("pp16", 100.0, "t/s", Better::Higher);
        assert_eq!(m.clone().with_stderr(2.0).stderr, Some(2.0));
        assert_eq!(m.clone().with_stderr(f64::NAN).stderr, None);
        assert_eq!(m.with_stderr(-1.0).stderr, None);
    }
}
