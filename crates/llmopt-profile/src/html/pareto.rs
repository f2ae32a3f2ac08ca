//! The size / KLD / speed trade-off of model variants: size against KLD, the Pareto front as a step
//! line, marker area by speed. The baseline (`kld: None`) is KLD 0: on a log axis, a "0" tick.

use super::{
    axis::Axis,
    charts::{max_finite, min_finite, Figure, Mark, Rgb, INK},
    num,
    page::{Page, Table},
    HtmlError,
};
use crate::report::ParetoPoint;

/// Points on the Pareto front, and the step line through them.
pub const FRONT_COLOR: Rgb = (0xe1, 0x57, 0x59);
/// Points another point beats on both size and KLD.
pub const OFF_FRONT_COLOR: Rgb = (0x9a, 0xa3, 0xae);

/// A KLD spread (largest / smallest positive) from which the y axis is logarithmic.
const LOG_SPREAD: f64 = 30.0;
/// Longest label drawn beside a point (the table has the full one).
const LABEL_CHARS: usize = 34;
/// Where labels may be cut when their shared start and end are left out.
const SEPARATORS: &str = " ._-·/";
/// The fastest point's marker radius in pixels; marker area is proportional to speed.
const MAX_RADIUS: f64 = 15.0;

/// Which points are on the Pareto front of size and KLD (both lower is better): a point is on it
/// when no other point is at most as large and at most as divergent and better in one of the two.
/// The baseline's KLD (`None`) counts as 0; a point with a KLD that is not a finite number is never
/// on the front (and is not drawn).
pub fn pareto_front(points: &[ParetoPoint]) -> Vec<bool> {
    points
        .iter()
        .map(|p| {
            let Some(kp) = kld(p) else { return false };
            !points.iter().any(|q| {
                kld(q).is_some_and(|kq| {
                    q.size_bytes <= p.size_bytes
                        && kq <= kp
                        && (q.size_bytes < p.size_bytes || kq < kp)
                })
            })
        })
        .collect()
}

/// The KLD drawn: 0 for the baseline, `None` when not a finite number (negatives from rounding
/// count as 0).
fn kld(p: &ParetoPoint) -> Option<f64> {
    match p.kld {
        None => Some(0.0),
        Some(k) if k.is_finite() => Some(k.max(0.0)),
        Some(_) => None,
    }
}

/// A page with the scatter of size (MB) against KLD and a table of the points; `speed_label`
/// names [`ParetoPoint::tokens_per_s`] (e.g. `decode t/s (tg128)`). The KLD axis is logarithmic
/// when the KLDs span 30x or more. The baseline (`kld: None`) is a diamond at KLD 0; a log axis,
/// which cannot show 0, gets a "0" tick of its own below the rest for it.
pub fn render_pareto(
    points: &[ParetoPoint],
    speed_label: &str,
    title: &str,
) -> Result<String, HtmlError> {
    let front = pareto_front(points);
    let mut page = Page::new(
        title,
        &format!("{} model variants: file size against KL divergence from the baseline, speed as {speed_label}", points.len()),
    );
    if points.iter().any(|p| kld(p).is_some()) {
        page.figures(&[chart(points, &front, speed_label)])?;
    } else {
        page.note("No point has a size and a KLD to draw.");
    }
    page.heading("Points");
    page.table(&table(points, &front, speed_label));
    Ok(page.finish(&format!("llmopt {}", env!("CARGO_PKG_VERSION"))))
}

fn chart(points: &[ParetoPoint], front: &[bool], speed_label: &str) -> Figure {
    let mb = |p: &ParetoPoint| p.size_bytes as f64 / 1e6;
    let drawn: Vec<(usize, &ParetoPoint, f64)> =
        points.iter().enumerate().filter_map(|(i, p)| kld(p).map(|k| (i, p, k))).collect();
    let sizes: Vec<f64> = drawn.iter().map(|d| mb(d.1)).collect();
    let x = Axis::from_zero("file size (MB)", sizes.iter().map(|s| s * 1.1));
    let positive = || drawn.iter().map(|d| d.2).filter(|k| *k > 0.0);
    let y = match (min_finite(positive()), max_finite(positive())) {
        (Some(lo), Some(hi)) if hi >= LOG_SPREAD * lo => {
            Axis::log("mean KLD (nats)", lo, hi).with_zero()
        }
        (_, hi) => Axis::from_zero("mean KLD (nats)", [hi.unwrap_or(0.01) * 1.1]),
    };
    let zero = y.zero();
    let y_of = |k: f64| if k <= 0.0 { zero } else { k };
    let mut f = Figure::new("Size against KL divergence", x, y);
    f.size = (1100, 440);

    let mut on_front: Vec<(f64, f64)> =
        drawn.iter().filter(|d| front[d.0]).map(|d| (mb(d.1), y_of(d.2))).collect();
    on_front.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut step = Vec::new();
    for (i, &p) in on_front.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).map(|j| on_front[j]) {
            step.push((p.0, prev.1));
        }
        step.push(p);
    }
    f.marks.push(Mark::Line { points: step, color: FRONT_COLOR, dots: false });

    let fastest = max_finite(points.iter().filter_map(|p| p.tokens_per_s));
    let names = distinct_parts(points);
    for &(i, p, k) in &drawn {
        let at = (mb(p), y_of(k));
        let color = if front[i] { FRONT_COLOR } else { OFF_FRONT_COLOR };
        let speed = p.tokens_per_s.filter(|t| t.is_finite() && *t > 0.0);
        let radius = match (speed, fastest) {
            (Some(t), Some(max)) if max > 0.0 => {
                ((MAX_RADIUS * (t / max).sqrt()).round() as u32).max(4)
            }
            _ => 7,
        };
        if p.kld.is_none() {
            f.marks.push(Mark::Diamond { at, radius: radius as i32 + 2, color: INK });
        } else {
            f.marks.push(Mark::Dot { at, radius, color, filled: speed.is_some() });
        }
        let text = format!("{}. {}", i + 1, names[i]);
        f.marks.push(Mark::Tag { at, text, clear: radius as i32 });
    }
    f.legend =
        vec![("on the Pareto front".into(), FRONT_COLOR), ("dominated".into(), OFF_FRONT_COLOR)];
    if points.iter().any(|p| p.kld.is_none()) {
        f.legend.push(("baseline (KLD 0)".into(), INK));
    }
    let zero = if f.y.is_log() {
        "on the log axis, 0 is a tick of its own below the rest"
    } else {
        "drawn at 0"
    };
    f.note = Some(format!(
        "Marker area grows with {speed_label}; hollow markers have no speed measured. The front (step line) \
         joins the points no other point beats on both size and KLD. The baseline has KLD 0 against itself \
         ({zero})."
    ));
    f
}

fn table(points: &[ParetoPoint], front: &[bool], speed_label: &str) -> Table {
    let rows = points
        .iter()
        .zip(front)
        .enumerate()
        .map(|(i, (p, &on))| {
            vec![
                (i + 1).to_string(),
                p.label.clone(),
                format!("{} MB", num(p.size_bytes as f64 / 1e6)),
                p.kld.map_or_else(|| "0 (baseline)".into(), num),
                p.tokens_per_s.map_or_else(|| "-".into(), num),
                if on { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    let header = ["#", "label", "size", "mean KLD (nats)", speed_label, "on the front"];
    Table { header: header.iter().map(|h| h.to_string()).collect(), rows, left: 2 }
}

/// What tells the labels apart: each without the start and end all of them share (cut at a
/// separator, so `SmolLM2-135M.Q8_0.gguf` and `SmolLM2-135M.Q4_1.gguf` become `Q8_0` and `Q4_1`),
/// shortened to [`LABEL_CHARS`]; whole labels when they share nothing or there is only one.
fn distinct_parts(points: &[ParetoPoint]) -> Vec<String> {
    let labels: Vec<Vec<char>> = points.iter().map(|p| p.label.chars().collect()).collect();
    let shortest = labels.iter().map(Vec::len).min().unwrap_or(0);
    let shared = |at: &dyn Fn(&Vec<char>, usize) -> char| {
        let n = (0..shortest)
            .take_while(|&i| labels.iter().all(|l| at(l, i) == at(&labels[0], i)))
            .count();
        // Back to just after a separator, so no word is cut.
        (0..=n).rev().find(|&k| k == 0 || SEPARATORS.contains(at(&labels[0], k - 1))).unwrap_or(0)
    };
    let (head, tail) = if labels.len() < 2 {
        (0, 0)
    } else {
        (shared(&|l, i| l[i]), shared(&|l, i| l[l.len() - 1 - i]))
    };
    labels
        .iter()
        .map(|l| match l.get(head..l.len().saturating_sub(tail)) {
            Some(mid) if !mid.is_empty() => short(&mid.iter().collect::<String>()),
            _ => short(&l.iter().collect::<String>()),
        })
        .collect()
}

fn short(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, mb: u64, kld: Option<f64>) -> ParetoPoint {
        ParetoPoint {
            label: label.into(),
            size_bytes: mb * 1_000_000,
            kld,
            tokens_per_s: Some(10.0),
        }
    }

    #[test]
    fn the_front_keeps_what_nothing_beats_on_both() {
        let pts = [
            p("base", 500, None),
            p("q8", 270, Some(0.001)),
            p("q4", 150, Some(0.02)),
            p("q4-bad", 160, Some(0.05)), // beaten by q4: larger and worse
            p("q3", 120, Some(0.08)),
            p("q4-twin", 150, Some(0.02)), // equal to q4: neither beats the other
            p("broken", 100, Some(f64::NAN)),
        ];
        assert_eq!(pareto_front(&pts), [true, true, true, false, true, true, false]);
    }

    #[test]
    fn chart_labels_keep_what_tells_them_apart() {
        let pts = [
            p("SmolLM2-135M.Q8_0.gguf (run 2)", 1, None),
            p("SmolLM2-135M.Q4_1.gguf (run 3)", 1, None),
        ];
        assert_eq!(distinct_parts(&pts), ["Q8_0.gguf (run 2)", "Q4_1.gguf (run 3)"]);
        let pts = [p("a.Q8_0.gguf", 1, None), p("a.Q4_1.gguf", 1, None)];
        assert_eq!(distinct_parts(&pts), ["Q8_0", "Q4_1"]);
        assert_eq!(distinct_parts(&pts[..1]), ["a.Q8_0.gguf"]);
        let same = [p("x.gguf", 1, None), p("x.gguf", 2, None)];
        assert_eq!(distinct_parts(&same), ["x.gguf", "x.gguf"]);
    }

    #[test]
    fn labels_are_shortened_and_the_page_escapes_them() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(&"x".repeat(40)).chars().count(), LABEL_CHARS);
        let pts = [p("<script>", 100, Some(0.01)), p("base", 200, None)];
        let html = render_pareto(&pts, "tg128 t/s", "t").unwrap();
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        assert_eq!(html.matches("<svg").count(), 1);
        let nothing = render_pareto(&[p("nan", 1, Some(f64::NAN))], "t/s", "t").unwrap();
        assert!(nothing.contains("No point has a size and a KLD") && !nothing.contains("<svg"));
        assert!(render_pareto(&[], "t/s", "t").unwrap().contains("0 model variants"));
    }
}
