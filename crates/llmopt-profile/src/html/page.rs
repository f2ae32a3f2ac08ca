//! One self-contained HTML page: inline CSS, sections of tables and figures (inline SVG), no
//! scripts and no external resources. Every text that comes from data is escaped here.

use std::fmt::Write;

use super::{
    charts::{Figure, Rgb},
    escape, HtmlError,
};

const CSS: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #f5f6f8; color: #2b2f36;
  font: 14px/1.45 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 20px 20px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #dfe3e8; }
h3 { font-size: 14px; margin: 0 0 6px; }
.sub { color: #5b6472; margin: 0 0 14px; word-break: break-all; }
.facts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6px 18px; background: #fff;
  border: 1px solid #dfe3e8; border-radius: 6px; padding: 12px 16px; }
.facts div { display: flex; gap: 8px; min-width: 0; }
.facts dt { color: #5b6472; white-space: nowrap; }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #dfe3e8; border-radius: 6px; padding: 12px 12px 8px; }
figure.wide { grid-column: 1 / -1; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: #5b6472; font-size: 12px; margin-top: 4px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 0 0 4px; min-height: 16px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.sw { display: inline-block; width: 12px; height: 12px; }
table { border-collapse: collapse; background: #fff; font-size: 12.5px; width: 100%;
  border: 1px solid #dfe3e8; }
th, td { padding: 4px 7px; border-bottom: 1px solid #eceef1; text-align: right; white-space: nowrap; }
th { background: #eef1f4; font-weight: 600; }
td.l, th.l { text-align: left; white-space: normal; }
tbody tr:nth-child(even) { background: #fafbfc; }
.note { color: #5b6472; font-size: 12.5px; margin: 6px 0 0; }
footer { color: #8a93a0; font-size: 12px; margin-top: 28px; }
";

/// A table: header cells and rows of cells (text, escaped when written); the first `left`
/// columns are left-aligned.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub left: usize,
}

/// An HTML page being built, section by section.
#[derive(Debug)]
pub(crate) struct Page {
    html: String,
}

impl Page {
    /// Starts a page: `<title>`, a heading and a line under it.
    pub fn new(title: &str, subtitle: &str) -> Self {
        let mut html = String::with_capacity(1 << 16);
        let (t, s) = (escape(title), escape(subtitle));
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t}</title><style>{CSS}</style></head>\n<body><main>\n<h1>{t}</h1>\n<p class=\"sub\">{s}</p>\n"
        );
        Self { html }
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.html, "<h2>{}</h2>", escape(text));
    }

    /// A grid of `label: value` facts, three to a row.
    pub fn facts(&mut self, facts: &[(&str, String)]) {
        self.html.push_str("<dl class=\"facts\">");
        for (k, v) in facts {
            let _ = write!(self.html, "<div><dt>{}</dt><dd>{}</dd></div>", escape(k), escape(v));
        }
        self.html.push_str("</dl>\n");
    }

    /// A paragraph in the note style.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.html, "<p class=\"note\">{}</p>", escape(text));
    }

    pub fn table(&mut self, t: &Table) {
        let cell = |tag: &str, i: usize, s: &str| {
            let class = if i < t.left { " class=\"l\"" } else { "" };
            format!("<{tag}{class}>{}</{tag}>", escape(s))
        };
        self.html.push_str("<table><thead><tr>");
        for (i, h) in t.header.iter().enumerate() {
            self.html.push_str(&cell("th", i, h));
        }
        self.html.push_str("</tr></thead><tbody>");
        for row in &t.rows {
            self.html.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                self.html.push_str(&cell("td", i, c));
            }
            self.html.push_str("</tr>");
        }
        self.html.push_str("</tbody></table>\n");
    }

    /// Figures two to a row; a figure alone in the list spans the row.
    pub fn figures(&mut self, figures: &[Figure]) -> Result<(), HtmlError> {
        self.html.push_str("<div class=\"grid\">\n");
        for f in figures {
            self.figure(f, figures.len() == 1)?;
        }
        self.html.push_str("</div>\n");
        Ok(())
    }

    fn figure(&mut self, f: &Figure, wide: bool) -> Result<(), HtmlError> {
        let class = if wide { " class=\"wide\"" } else { "" };
        let _ =
            write!(self.html, "<figure{class}><h3>{}</h3><div class=\"legend\">", escape(&f.title));
        for (name, c) in &f.legend {
            let _ = write!(
                self.html,
                "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
                hex(*c),
                escape(name)
            );
        }
        self.html.push_str("</div>\n");
        self.html.push_str(&f.svg()?);
        if let Some(note) = &f.note {
            let _ = write!(self.html, "\n<figcaption>{}</figcaption>", escape(note));
        }
        self.html.push_str("</figure>\n");
        Ok(())
    }

    /// Closes the page with a footer line.
    pub fn finish(mut self, footer: &str) -> String {
        let _ = write!(self.html, "<footer>{}</footer>\n</main></body></html>\n", escape(footer));
        self.html
    }
}

/// `#4e79a7`.
pub(crate) fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}
