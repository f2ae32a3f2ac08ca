//! The one chart renderer: a [`Figure`] is data (two [`Axis`], [`Mark`]s, a legend) and
//! [`Figure::svg`] draws it with plotters' SVG backend, so every chart shares axes, palette and style.

use plotters::{
    coord::Shift,
    element::DashedPathElement,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    axis::{Axis, Scale, CHAR_PX},
    HtmlError,
};

/// An exact color, `(r, g, b)`: the screenshot test looks for these values in the rendered page.
pub type Rgb = (u8, u8, u8);

/// Series colors in order (Tableau 10), e.g. one per batch size.
pub const PALETTE: [Rgb; 8] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0x9c, 0x75, 0x5f),
];

/// One color per step kind, in [`crate::report::TimeShare::parts`] order: attention projections
/// (blue), attention core (light blue), mlp (orange), norms (green), embedding + output (purple),
/// sampling (yellow), other (grey). The per-layer chart reuses the first, third and fourth.
pub const KIND_COLORS: [Rgb; 7] = [
    (0x4e, 0x79, 0xa7),
    (0xa0, 0xcb, 0xe8),
    (0xf2, 0x8e, 0x2b),
    (0x59, 0xa1, 0x4f),
    (0xb0, 0x7a, 0xa1),
    (0xed, 0xc9, 0x48),
    (0xba, 0xb0, 0xac),
];

/// Text, axes and rules.
pub(crate) const INK: Rgb = (0x2b, 0x2f, 0x36);
const GRID: Rgb = (0xe6, 0xe8, 0xec);
const FONT: &str = "sans-serif";

/// The color of series `i` (the palette repeats past its end).
pub(crate) fn series_color(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// What a chart draws, in data units of its axes.
#[derive(Clone, Debug)]
pub(crate) enum Mark {
    /// A polyline (points with a non-finite coordinate are left out), with a dot at each point.
    Line { points: Vec<(f64, f64)>, color: Rgb, dots: bool },
    /// A filled rectangle from `x.0..x.1` by `y.0..y.1`.
    Bar { x: (f64, f64), y: (f64, f64), color: Rgb },
    /// A circle of `radius` pixels, filled or outlined.
    Dot { at: (f64, f64), radius: u32, color: Rgb, filled: bool },
    /// A filled diamond of `radius` pixels (the baseline of the Pareto chart).
    Diamond { at: (f64, f64), radius: i32, color: Rgb },
    /// A dashed vertical rule across the plot, its label at the top right of it, `row` lines down
    /// (so labels of close rules do not overlap).
    Rule { x: f64, label: String, row: usize },
    /// Text beside a point, vertically centred, starting `dx` pixels right of it.
    Label { at: (f64, f64), text: String, dx: i32 },
    /// The name of a point marker `clear` pixels wide, put where it overlaps no marker and no
    /// other tag: right of the point if it can, else left, above, below or diagonally.
    Tag { at: (f64, f64), text: String, clear: i32 },
}

/// One chart: title and legend go into the page around the SVG, the rest into the SVG.
#[derive(Clone, Debug)]
pub(crate) struct Figure {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub marks: Vec<Mark>,
    /// `(name, color)` per series, shown above the chart.
    pub legend: Vec<(String, Rgb)>,
    /// A line under the chart (what is drawn, what was left out).
    pub note: Option<String>,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

impl Figure {
    /// A figure without marks, legend or note, 560 x 320 pixels.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            x,
            y,
            marks: Vec::new(),
            legend: Vec::new(),
            note: None,
            size: (560, 320),
        }
    }

    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> Result<String, HtmlError> {
        let mut out = String::new();
        self.draw(&mut out)
            .map_err(|e| HtmlError::Draw { chart: self.title.clone(), message: e.to_string() })?;
        Ok(out)
    }

    fn draw(&self, out: &mut String) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
        let root = SVGBackend::with_string(out, self.size).into_drawing_area();
        root.fill(&WHITE)?;
        self.draw_on(&root)?;
        root.present()
    }

    fn draw_on(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
        let (x, y) = (&self.x, &self.y);
        let mut chart = ChartBuilder::on(root)
            .margin_top(14)
            .margin_right(28)
            .margin_left(6)
            .margin_bottom(4)
            .x_label_area_size(46)
            .y_label_area_size(y.label_width())
            .build_cartesian_2d(x.coord(false), y.coord(true))?;
        let (xf, yf) = (|v: &f64| x.label_at(*v, false), |v: &f64| y.label_at(*v, true));
        let text = |size: u32| (FONT, size).into_font().color(&color(INK));
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x.title.as_str())
            .y_desc(y.title.as_str())
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .bold_line_style(color(GRID))
            .light_line_style(TRANSPARENT)
            .axis_style(color(INK))
            .label_style(text(13))
            .axis_desc_style(text(14));
        if x.scale == Scale::Categories {
            mesh.disable_x_mesh();
        }
        if y.scale == Scale::Categories {
            mesh.disable_y_mesh();
        }
        mesh.draw()?;
        let at = |p: (f64, f64)| (x.flip(x.pos(p.0), false), y.flip(y.pos(p.1), true));
        let ok = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
        for mark in &self.marks {
            match mark {
                Mark::Line { points, color: c, dots } => {
                    let pts: Vec<_> = points.iter().filter(|p| ok(p)).map(|&p| at(p)).collect();
                    let line = PathElement::new(pts.clone(), color(*c).stroke_width(3));
                    chart.draw_series(std::iter::once(line))?;
                    if *dots {
                        chart.draw_series(
                            pts.iter().map(|&p| Circle::new(p, 5, color(*c).filled())),
                        )?;
                    }
                }
                Mark::Bar { x: (x0, x1), y: (y0, y1), color: c } => {
                    if ok(&(*x0, *y0)) && ok(&(*x1, *y1)) {
                        let r =
                            Rectangle::new([at((*x0, *y0)), at((*x1, *y1))], color(*c).filled());
                        chart.draw_series(std::iter::once(r))?;
                    }
                }
                Mark::Dot { at: p, radius, color: c, filled } if ok(p) => {
                    let style =
                        ShapeStyle { color: color(*c).to_rgba(), filled: *filled, stroke_width: 2 };
                    chart.draw_series(std::iter::once(Circle::new(at(*p), *radius, style)))?;
                }
                Mark::Diamond { at: p, radius: r, color: c } if ok(p) => {
                    let shape = vec![(0, -r), (*r, 0), (0, *r), (-r, 0)];
                    let d = EmptyElement::at(at(*p)) + Polygon::new(shape, color(*c).filled());
                    chart.draw_series(std::iter::once(d))?;
                }
                Mark::Rule { x: v, label, row } if v.is_finite() => {
                    let (top, bottom) = (y.pos(y.range.1), y.pos(y.range.0));
                    let (top, bottom) = (y.flip(top, true), y.flip(bottom, true));
                    let px = x.pos(*v);
                    let rule = DashedPathElement::new(
                        [(px, bottom), (px, top)],
                        4,
                        3,
                        color(INK).stroke_width(1),
                    );
                    chart.draw_series(std::iter::once(rule))?;
                    let style = text(12).pos(Pos::new(HPos::Left, VPos::Top));
                    let dy = 2 + 14 * *row as i32;
                    let t = EmptyElement::at((px, top)) + Text::new(label.clone(), (4, dy), style);
                    chart.draw_series(std::iter::once(t))?;
                }
                Mark::Label { at: p, text: s, dx } if ok(p) => {
                    let style = text(12).pos(Pos::new(HPos::Left, VPos::Center));
                    let t = EmptyElement::at(at(*p)) + Text::new(s.clone(), (*dx, 0), style);
                    chart.draw_series(std::iter::once(t))?;
                }
                Mark::Dot { .. }
                | Mark::Diamond { .. }
                | Mark::Rule { .. }
                | Mark::Label { .. }
                | Mark::Tag { .. } => {}
            }
        }
        let tags = {
            let pixel = |p: (f64, f64)| chart.backend_coord(&at(p));
            let (xs, ys) = chart.plotting_area().get_pixel_range();
            let inside = PixelBox { x: (xs.start, xs.end), y: (ys.start, ys.end) };
            let mut taken: Vec<PixelBox> = self
                .marks
                .iter()
                .flat_map(|m| match m {
                    Mark::Dot { at: p, radius: r, .. } if ok(p) => {
                        vec![PixelBox::around(pixel(*p), *r as i32)]
                    }
                    Mark::Diamond { at: p, radius: r, .. } if ok(p) => {
                        vec![PixelBox::around(pixel(*p), *r)]
                    }
                    // Each segment's bounding box: exact for the step lines tags sit beside.
                    Mark::Line { points, .. } => points
                        .windows(2)
                        .filter(|w| ok(&w[0]) && ok(&w[1]))
                        .map(|w| PixelBox::spanning(pixel(w[0]), pixel(w[1]), 2))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            let mut tags = Vec::new();
            for mark in &self.marks {
                if let Mark::Tag { at: p, text: s, clear } = mark {
                    if ok(p) {
                        let (dx, dy, h, b) = place_tag(pixel(*p), s, *clear, &taken, &inside);
                        taken.push(b);
                        tags.push((*p, s, dx, dy, h));
                    }
                }
            }
            tags
        };
        for (p, s, dx, dy, h) in tags {
            let style = text(13).pos(Pos::new(h, VPos::Center));
            let t = EmptyElement::at(at(p)) + Text::new(s.clone(), (dx, dy), style);
            chart.draw_series(std::iter::once(t))?;
        }
        Ok(())
    }
}

/// A rectangle in pixels, `x.0..x.1` by `y.0..y.1`.
#[derive(Clone, Copy, Debug)]
struct PixelBox {
    x: (i32, i32),
    y: (i32, i32),
}

impl PixelBox {
    fn around(c: (i32, i32), r: i32) -> Self {
        Self { x: (c.0 - r, c.0 + r), y: (c.1 - r, c.1 + r) }
    }

    /// The box with corners `a` and `b`, `pad` pixels wider on every side.
    fn spanning(a: (i32, i32), b: (i32, i32), pad: i32) -> Self {
        Self {
            x: (a.0.min(b.0) - pad, a.0.max(b.0) + pad),
            y: (a.1.min(b.1) - pad, a.1.max(b.1) + pad),
        }
    }

    fn overlaps(&self, o: &Self) -> bool {
        self.x.0 < o.x.1 && o.x.0 < self.x.1 && self.y.0 < o.y.1 && o.y.0 < self.y.1
    }

    fn within(&self, o: &Self) -> bool {
        self.x.0 >= o.x.0 && self.x.1 <= o.x.1 && self.y.0 >= o.y.0 && self.y.1 <= o.y.1
    }
}

/// Where a tag of `text` goes beside the point at pixel `c` with a marker `clear` pixels wide:
/// the first of right, left, above, below and the diagonals that stays `inside` and overlaps
/// nothing `taken`; else the first that stays inside; else right. Returns the offset, the
/// alignment and the text's box.
fn place_tag(
    c: (i32, i32),
    text: &str,
    clear: i32,
    taken: &[PixelBox],
    inside: &PixelBox,
) -> (i32, i32, HPos, PixelBox) {
    let w = (text.chars().count() as f64 * CHAR_PX) as i32;
    let (r, up) = (clear + 5, clear + 10);
    let candidates = [
        (r, 0, HPos::Left),
        (-r, 0, HPos::Right),
        (0, -up, HPos::Center),
        (0, up, HPos::Center),
        (clear, -up, HPos::Left),
        (clear, up, HPos::Left),
        (-clear, -up, HPos::Right),
        (-clear, up, HPos::Right),
    ];
    let boxed = |&(dx, dy, h): &(i32, i32, HPos)| {
        let x0 = match h {
            HPos::Left => c.0 + dx,
            HPos::Right => c.0 + dx - w,
            HPos::Center => c.0 + dx - w / 2,
        };
        (dx, dy, h, PixelBox { x: (x0, x0 + w), y: (c.1 + dy - 8, c.1 + dy + 8) })
    };
    let fits = |b: &PixelBox| b.within(inside);
    let free = |b: &PixelBox| fits(b) && !taken.iter().any(|t| t.overlaps(b));
    let all = || candidates.iter().map(boxed);
    all()
        .find(|c| free(&c.3))
        .or_else(|| all().find(|c| fits(&c.3)))
        .unwrap_or_else(|| boxed(&candidates[0]))
}

/// Stacked bars: slot `i` of `slots` gets one bar per part, stacked in order, from `parts[k].1[i]`
/// (non-finite or negative values count as 0). `horizontal` bars grow along x.
pub(crate) fn stacked_bars(slots: usize, parts: &[(Rgb, Vec<f64>)], horizontal: bool) -> Vec<Mark> {
    const HALF: f64 = 0.36;
    let mut marks = Vec::new();
    for i in 0..slots {
        let mut base = 0.0;
        for (c, values) in parts {
            let v = values.get(i).copied().filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0);
            if v > 0.0 {
                let (along, across) = ((base, base + v), (i as f64 - HALF, i as f64 + HALF));
                let (x, y) = if horizontal { (along, across) } else { (across, along) };
                marks.push(Mark::Bar { x, y, color: *c });
            }
            base += v;
        }
    }
    marks
}

/// The finite values of `values` in `bins` equal bins: `(lo, hi, count)` each (one bin around
/// the value when all are equal; none when there are no finite values).
pub(crate) fn histogram(values: &[f64], bins: usize) -> Vec<(f64, f64, usize)> {
    let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(lo), Some(hi)) = (min_finite(v.iter().copied()), max_finite(v.iter().copied()))
    else {
        return Vec::new();
    };
    if hi <= lo {
        let w = (lo.abs() * 0.05).max(1e-12);
        return vec![(lo - w, lo + w, v.len())];
    }
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for x in &v {
        counts[(((x - lo) / width) as usize).min(bins - 1)] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| (lo + i as f64 * width, lo + (i + 1) as f64 * width, n))
        .collect()
}

pub(crate) fn max_finite(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    values.into_iter().filter(|v| v.is_finite()).reduce(f64::max)
}

pub(crate) fn min_finite(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    values.into_iter().filter(|v| v.is_finite()).reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_count_every_finite_value_once() {
        let h = histogram(&[1.0, 2.0, 2.0, 3.0, f64::NAN, 4.0], 3);
        assert_eq!(h.iter().map(|b| b.2).collect::<Vec<_>>(), [1, 2, 2]);
        assert_eq!(histogram(&[5.0, 5.0], 10).len(), 1);
        assert!(histogram(&[], 10).is_empty());
    }

    #[test]
    fn bars_stack_in_order() {
        let m =
            stacked_bars(2, &[((1, 1, 1), vec![1.0, 2.0]), ((2, 2, 2), vec![3.0, f64::NAN])], true);
        assert_eq!(m.len(), 3);
        let Mark::Bar { x, .. } = &m[1] else { panic!("a bar") };
        assert_eq!(*x, (1.0, 4.0));
    }

    #[test]
    fn a_figure_draws_its_marks() {
        let mut f = Figure::new("t", Axis::from_zero("x", [3.0]), Axis::from_zero("y", [3.0]));
        f.marks.push(Mark::Line {
            points: vec![(0.0, 0.0), (3.0, 3.0)],
            color: PALETTE[0],
            dots: true,
        });
        let svg = f.svg().unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("<circle"),
            "{svg}"
        );
    }
}
