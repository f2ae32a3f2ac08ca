//! Two runs' metrics side by side, with a verdict per metric from the metric's own direction and
//! the runs' standard errors: a difference is only called better or worse when it exceeds twice
//! the standard error of the difference, `2·sqrt(se_a² + se_b²)` (about a 95% two-sided test for
//! means of several repetitions).

use serde::Serialize;

use crate::{Better, Metric};

/// The judgement on one metric, B against A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// B moved in the metric's better direction by more than the noise.
    Better,
    /// B moved in the worse direction by more than the noise.
    Worse,
    /// |B - A| is at most the noise.
    WithinNoise,
    /// One side has no standard error, so the delta cannot be judged.
    NoSpread,
    /// The metric has no better direction (a fact, such as the host's copy bandwidth).
    Unranked,
    /// Only one of the runs has the metric (or one value is not finite).
    Missing,
}

impl Verdict {
    /// The words printed in tables: `better`, `worse`, `within noise`, `no spread`, `unranked`,
    /// `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Better => "better",
            Self::Worse => "worse",
            Self::WithinNoise => "within noise",
            Self::NoSpread => "no spread",
            Self::Unranked => "unranked",
            Self::Missing => "missing",
        }
    }
}

/// One metric of two runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricComparison {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub a: Option<f64>,
    pub a_stderr: Option<f64>,
    pub b: Option<f64>,
    pub b_stderr: Option<f64>,
    /// `b - a`.
    pub delta: Option<f64>,
    /// `b / a` (none when `a` is 0).
    pub ratio: Option<f64>,
    /// `2·sqrt(a_stderr² + b_stderr²)`, when both spreads are known.
    pub noise: Option<f64>,
    pub verdict: Verdict,
}

/// Two runs' metrics side by side: A's metrics in A's order, then those only B has.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub metrics: Vec<MetricComparison>,
}

impl Comparison {
    /// Compares run B's metrics with run A's.
    pub fn of(a: &[Metric], b: &[Metric]) -> Self {
        let find = |ms: &[Metric], name: &str| ms.iter().find(|m| m.name == name).cloned();
        let mut metrics: Vec<_> =
            a.iter().map(|ma| compare_one(Some(ma.clone()), find(b, &ma.name))).collect();
        for mb in b.iter().filter(|mb| find(a, &mb.name).is_none()) {
            metrics.push(compare_one(None, Some(mb.clone())));
        }
        Self { metrics }
    }

    /// How many metrics got `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.metrics.iter().filter(|m| m.verdict == verdict).count()
    }

    /// One line: `2 better, 1 worse, 3 within noise; 2 without a spread, 1 unranked, 1 missing`
    /// (zero counts after the semicolon left out).
    pub fn summary(&self) -> String {
        let ranked = format!(
            "{} better, {} worse, {} within noise",
            self.count(Verdict::Better),
            self.count(Verdict::Worse),
            self.count(Verdict::WithinNoise)
        );
        let others: Vec<String> = [
            (Verdict::NoSpread, "without a spread"),
            (Verdict::Unranked, "unranked"),
            (Verdict::Missing, "missing on one side"),
        ]
        .iter()
        .map(|&(v, words)| (self.count(v), words))
        .filter(|&(n, _)| n > 0)
        .map(|(n, words)| format!("{n} {words}"))
        .collect();
        if others.is_empty() {
            ranked
        } else {
            format!("{ranked}; {}", others.join(", "))
        }
    }
}

fn compare_one(a: Option<Metric>, b: Option<Metric>) -> MetricComparison {
    let any = a.as_ref().or(b.as_ref()).expect("a metric on at least one side");
    let (name, unit, better) = (any.name.clone(), any.unit.clone(), any.better);
    let finite = |m: &Option<Metric>| m.as_ref().map(|m| m.value).filter(|v| v.is_finite());
    let (va, vb) = (finite(&a), finite(&b));
    let (sa, sb) = (a.as_ref().and_then(|m| m.stderr), b.as_ref().and_then(|m| m.stderr));
    let delta = va.zip(vb).map(|(x, y)| y - x);
    let ratio = va.zip(vb).filter(|&(x, _)| x != 0.0).map(|(x, y)| y / x);
    let noise = sa.zip(sb).map(|(x, y)| 2.0 * (x * x + y * y).sqrt());
    let verdict = match (delta, better, noise) {
        (None, _, _) => Verdict::Missing,
        (Some(_), Better::None, _) => Verdict::Unranked,
        (Some(_), _, None) => Verdict::NoSpread,
        (Some(d), _, Some(n)) if d.abs() <= n => Verdict::WithinNoise,
        (Some(d), Better::Higher, _) if d > 0.0 => Verdict::Better,
        (Some(d), Better::Lower, _) if d < 0.0 => Verdict::Better,
        (Some(_), _, _) => Verdict::Worse,
    };
    MetricComparison {
        name,
        unit,
        better,
        a: va,
        a_stderr: sa,
        b: vb,
        b_stderr: sb,
        delta,
        ratio,
        noise,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: f64, stderr: Option<f64>, better: Better) -> Metric {
        Metric { name: name.into(), value, stderr, unit: "t/s".into(), better }
    }

    #[test]
    fn verdicts_follow_direction_and_noise() {
        use Better::{Higher, Lower, None as Unranked};
        let a = [
            m("faster", 100.0, Some(1.0), Higher),
            m("slower", 100.0, Some(1.0), Higher),
            m("noisy", 100.0, Some(1.0), Higher),
            m("ppl_down", 10.0, Some(0.1), Lower),
            m("ppl_up", 10.0, Some(0.1), Lower),
            m("one_sided", 100.0, Some(1.0), Higher),
            m("fact", 20.0, Some(0.1), Unranked),
            m("only_a", 1.0, None, Higher),
        ];
        let b = [
            m("faster", 103.0, Some(1.0), Higher), // noise 2*sqrt(2) = 2.83 < 3
            m("slower", 97.0, Some(1.0), Higher),
            m("noisy", 102.8, Some(1.0), Higher), // 2.8 <= 2.83
            m("ppl_down", 9.5, Some(0.1), Lower),
            m("ppl_up", 10.5, Some(0.1), Lower),
            m("one_sided", 150.0, None, Higher),
            m("fact", 25.0, Some(0.1), Unranked),
            m("only_b", 1.0, None, Higher),
        ];
        let c = Comparison::of(&a, &b);
        let verdicts: Vec<(&str, Verdict)> =
            c.metrics.iter().map(|r| (r.name.as_str(), r.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                ("faster", Verdict::Better),
                ("slower", Verdict::Worse),
                ("noisy", Verdict::WithinNoise),
                ("ppl_down", Verdict::Better),
                ("ppl_up", Verdict::Worse),
                ("one_sided", Verdict::NoSpread),
                ("fact", Verdict::Unranked),
                ("only_a", Verdict::Missing),
                ("only_b", Verdict::Missing),
            ]
        );
        let faster = &c.metrics[0];
        assert_eq!(faster.delta, Some(3.0));
        assert!((faster.ratio.unwrap() - 1.03).abs() < 1e-12);
        assert!((faster.noise.unwrap() - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(c.metrics[5].delta, Some(50.0));
        assert_eq!(c.metrics[7].b, None);
        assert_eq!(
            c.summary(),
            "2 better, 2 worse, 1 within noise; 1 without a spread, 1 unranked, 2 missing on one side"
        );
    }

    #[test]
    fn equal_runs_are_within_noise_and_zero_is_not_divided_by() {
        let a = [m("x", 0.0, Some(0.0), Better::Higher), m("y", 5.0, Some(0.5), Better::Lower)];
        let c = Comparison::of(&a, &a);
        assert!(c.metrics.iter().all(|r| r.verdict == Verdict::WithinNoise));
        assert_eq!(c.metrics[0].ratio, None);
        assert_eq!(c.summary(), "0 better, 0 worse, 2 within noise");
        let nan = [m("x", f64::NAN, Some(0.0), Better::Higher)];
        assert_eq!(Comparison::of(&a, &nan).metrics[0].verdict, Verdict::Missing);
    }
}
