//! Accuracy budgets: `"kld<=0.03,acc_drop<=1.0,ppl_ratio<=1.05"` parsed into limits on named
//! metrics, and the verdict of a set of measured values against them. Parsing fails before any work.

use std::{fmt, str::FromStr};

/// A metric a budget can limit. Each has one direction in which it is better; the budget's operator
/// still says which side passes, so `top1>=0.98` and `kld<=0.03` read as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Mean KL divergence from the base (nats per token).
    Kld,
    /// 99th percentile of the per-token KL divergence.
    KldP99,
    /// Percentage of scored tokens whose most likely next token is the base's (0..100).
    Top1,
    /// PPL(candidate) / PPL(base).
    PplRatio,
    /// PPL(candidate) − PPL(base).
    PplDiff,
    /// Largest drop in task accuracy over the tasks run, in percentage points (base − candidate).
    AccDrop,
    /// Candidate file size / base file size.
    SizeRatio,
}

/// Every metric, in the order tables list them.
pub const METRICS: [Metric; 7] = [
    Metric::Kld,
    Metric::KldP99,
    Metric::Top1,
    Metric::PplRatio,
    Metric::PplDiff,
    Metric::AccDrop,
    Metric::SizeRatio,
];

impl Metric {
    /// The name used in budgets and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Kld => "kld",
            Metric::KldP99 => "kld_p99",
            Metric::Top1 => "top1",
            Metric::PplRatio => "ppl_ratio",
            Metric::PplDiff => "ppl_diff",
            Metric::AccDrop => "acc_drop",
            Metric::SizeRatio => "size_ratio",
        }
    }

    /// Whether the metric needs task runs (the others come from the text and the files).
    pub fn needs_tasks(self) -> bool {
        self == Metric::AccDrop
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a limit compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
}

impl Op {
    fn holds(self, x: f64, limit: f64) -> bool {
        match self {
            Op::Le => x <= limit,
            Op::Lt => x < limit,
            Op::Ge => x >= limit,
            Op::Gt => x > limit,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }
}

/// One limit: `metric op value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.value)
    }
}

/// Why a budget string does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BudgetError {
    #[error("budget term {term:?} has no comparison (write e.g. kld<=0.03)")]
    NoOperator { term: String },
    #[error("unknown budget metric {name:?}; known: {known}")]
    UnknownMetric { name: String, known: String },
    #[error("budget term {term:?}: {value:?} is not a finite number")]
    BadValue { term: String, value: String },
    #[error("budget names {metric} twice")]
    Repeated { metric: Metric },
    #[error("the budget is empty")]
    Empty,
}

/// A set of limits, all of which must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    pub limits: Vec<Limit>,
}

impl FromStr for Budget {
    type Err = BudgetError;

    fn from_str(s: &str) -> Result<Self, BudgetError> {
        let mut limits: Vec<Limit> = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let no_op = || BudgetError::NoOperator { term: term.into() };
            let at = term.find(['<', '>']).ok_or_else(no_op)?;
            let (name, rest) = (term[..at].trim(), &term[at..]);
            if name.contains('=') {
                return Err(no_op());
            }
            let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
                (Op::Le, v)
            } else if let Some(v) = rest.strip_prefix(">=") {
                (Op::Ge, v)
            } else if let Some(v) = rest.strip_prefix('<') {
                (Op::Lt, v)
            } else if let Some(v) = rest.strip_prefix('>') {
                (Op::Gt, v)
            } else {
                return Err(no_op());
            };
            let metric = METRICS.into_iter().find(|m| m.name() == name).ok_or_else(|| {
                BudgetError::UnknownMetric {
                    name: name.into(),
                    known: METRICS.map(Metric::name).join(", "),
                }
            })?;
            let value = value.trim();
            let v: f64 =
                value.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
                    BudgetError::BadValue { term: term.into(), value: value.into() }
                })?;
            if limits.iter().any(|l| l.metric == metric) {
                return Err(BudgetError::Repeated { metric });
            }
            limits.push(Limit { metric, op, value: v });
        }
        if limits.is_empty() {
            return Err(BudgetError::Empty);
        }
        Ok(Budget { limits })
    }
}

/// One limit checked against its measured value (`None` when the comparison did not measure it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    pub limit: Limit,
    pub measured: Option<f64>,
    pub holds: bool,
}

impl Budget {
    /// Checks every limit; a metric that was not measured fails its limit (a budget can only be
    /// met by evidence).
    pub fn check(&self, measured: impl Fn(Metric) -> Option<f64>) -> Vec<Check> {
        self.limits
            .iter()
            .map(|&limit| {
                let m = measured(limit.metric);
                Check {
                    limit,
                    measured: m,
                    holds: m.is_some_and(|x| limit.op.holds(x, limit.value)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example_and_every_operator() {
        let b: Budget = "kld<=0.03, acc_drop<=1.0,ppl_ratio<=1.05".parse().unwrap();
        assert_eq!(
            b.limits,
            vec![
                Limit { metric: Metric::Kld, op: Op::Le, value: 0.03 },
                Limit { metric: Metric::AccDrop, op: Op::Le, value: 1.0 },
                Limit { metric: Metric::PplRatio, op: Op::Le, value: 1.05 },
            ]
        );
        let b: Budget = "top1>=98,kld_p99<0.5,size_ratio > 0.1".parse().unwrap();
        let ops: Vec<Op> = b.limits.iter().map(|l| l.op).collect();
        assert_eq!(ops, [Op::Ge, Op::Lt, Op::Gt]);
        assert_eq!(b.limits[0].to_string(), "top1>=98");
    }

    #[test]
    fn bad_budgets_name_the_problem() {
        let err = |s: &str| s.parse::<Budget>().unwrap_err();
        assert!(matches!(err("kld=0.03"), BudgetError::NoOperator { .. }));
        assert!(matches!(err("kld=<0.03"), BudgetError::NoOperator { .. }));
        let e = err("kl<=0.03");
        assert!(e.to_string().contains("known: kld, kld_p99"), "{e}");
        assert!(matches!(err("kld<=abc"), BudgetError::BadValue { .. }));
        assert!(matches!(err("kld<=inf"), BudgetError::BadValue { .. }));
        assert!(matches!(err("kld<=1,kld<=2"), BudgetError::Repeated { metric: Metric::Kld }));
        assert_eq!(err(" , "), BudgetError::Empty);
    }

    #[test]
    fn checks_hold_only_with_evidence() {
        let b: Budget = "kld<=0.03,top1>=90,acc_drop<=1".parse().unwrap();
        let checks = b.check(|m| match m {
            Metric::Kld => Some(0.03),
            Metric::Top1 => Some(85.0),
            _ => None,
        });
        let holds: Vec<bool> = checks.iter().map(|c| c.holds).collect();
        assert_eq!(holds, [true, false, false]);
        assert_eq!(checks[2].measured, None);
    }
}
