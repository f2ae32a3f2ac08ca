//! CSV export: one row per (run, metric), RFC 4180 quoting, so spreadsheets and pandas read the
//! store's history without SQL. A run without metrics still gets one row, with the metric columns
//! empty.

use std::io::{self, Write};

use crate::Run;

const HEADER: &[&str] = &[
    "run_id",
    "kind",
    "status",
    "started_at",
    "finished_at",
    "model_path",
    "model_sha256",
    "model_size",
    "host_cpu",
    "host_physical_cores",
    "host_memory_bytes",
    "host_os",
    "llmopt_version",
    "llmopt_commit",
    "command_line",
    "metric",
    "value",
    "stderr",
    "unit",
    "better",
];

/// Writes a header and the rows of `runs`, in the order given.
pub fn write_csv<'a>(
    runs: impl IntoIterator<Item = &'a Run>,
    out: &mut impl Write,
) -> io::Result<()> {
    write_row(out, HEADER.iter().map(|s| s.to_string()))?;
    for run in runs {
        let r = &run.record;
        let model = r.model.as_ref();
        let common = [
            run.id.to_string(),
            r.kind.clone(),
            r.status.as_str().to_string(),
            r.started_at.clone(),
            r.finished_at.clone(),
            model.map_or_else(String::new, |m| m.path.clone()),
            model.map_or_else(String::new, |m| m.sha256.clone()),
            model.map_or_else(String::new, |m| m.size.to_string()),
            r.host.cpu.clone(),
            r.host.physical_cores.to_string(),
            r.host.memory_bytes.to_string(),
            r.host.os.clone(),
            r.llmopt_version.clone(),
            r.llmopt_commit.clone(),
            r.command_line(),
        ];
        if r.metrics.is_empty() {
            write_row(out, common.iter().cloned().chain(std::iter::repeat_n(String::new(), 5)))?;
        }
        for m in &r.metrics {
            let metric = [
                m.name.clone(),
                if m.value.is_nan() { String::new() } else { m.value.to_string() },
                m.stderr.map_or_else(String::new, |s| s.to_string()),
                m.unit.clone(),
                m.better.as_str().to_string(),
            ];
            write_row(out, common.iter().cloned().chain(metric))?;
        }
    }
    Ok(())
}

fn write_row(out: &mut impl Write, fields: impl Iterator<Item = String>) -> io::Result<()> {
    let line: Vec<String> = fields.map(|f| quoted(&f)).collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

/// A field as RFC 4180 wants it: quoted (inner quotes doubled) when it holds a comma, a quote or a
/// line break, else as is.
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(quoted("a,b"), "\"a,b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quoted("two\nlines"), "\"two\nlines\"");
        assert_eq!(quoted(""), "");
    }
}
