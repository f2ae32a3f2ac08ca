//! `--plan auto`: every quantizable tensor not named by `--keep` gets the format, among those its
//! rows fit, that minimizes the summed predicted error under a size or bits-per-weight budget.
//! The budget is checked against the smallest and largest possible plans before any work.

use llmopt_formats::gguf::{alignment, write_header, GgufFile, TensorEntry, TensorInfo};
use llmopt_tensor::GgmlType;

use crate::{
    alloc::{self, Options},
    ftype::{can_encode, encodable_names, FileType},
    keep::KeepRule,
    plan::{check_matches, Plan, TensorPlan},
    rules::{self, Choice},
    sensitivity::candidates_among,
    QuantError,
};

/// How large the output may be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// The whole file, in bytes (`--target-size`).
    FileBytes(u64),
    /// Bits per weight over all tensors' elements, as `GgufFile::bits_per_weight` (`--bpw`).
    Bpw(f64),
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::FileBytes(b) => write!(f, "{:.3} MB", *b as f64 / 1e6),
            Budget::Bpw(b) => write!(f, "{b} bits per weight"),
        }
    }
}

/// What `--plan auto` decided, for the report and the file's provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoSummary {
    pub budget: Budget,
    /// Tensor data bytes the budget allows, and what the plan uses.
    pub budget_bytes: u64,
    pub bytes: u64,
    /// The plan's summed predicted error (KLD when the sensitivities were measured).
    pub predicted: f64,
    /// `measured` or `proxy`.
    pub sensitivity: String,
}

/// The tensors of a file as `--plan auto` sees them: fixed ones (never quantized, or named by
/// `--keep`) and the ones it chooses for, each with its candidate formats.
#[derive(Clone, Debug)]
pub struct AutoSpace {
    tensors: Vec<TensorInfo>,
    keep: Vec<KeepRule>,
    /// Per tensor: its fixed format and choice, or `None` when the plan chooses.
    fixed: Vec<Option<(GgmlType, Choice)>>,
    /// The tensors the plan chooses for (indices into `tensors`) and their candidates.
    pub slots: Vec<(usize, Vec<GgmlType>)>,
    fixed_bytes: u64,
    n_elements: u64,
    /// Bytes of the file that are not tensor data (header, metadata, padding), bounded above.
    overhead: u64,
}

/// Room for the `llmopt.*` keys the output adds to the source's metadata.
const METADATA_SLACK: u64 = 16 << 10;

impl AutoSpace {
    /// Sorts `src`'s tensors into fixed ones and choices among `formats` (empty: llama.cpp's
    /// block formats, [`crate::sensitivity::candidates`]); `--keep` rules must name formats this build writes and match a
    /// quantizable tensor, as for any plan.
    pub fn new(
        src: &GgufFile,
        keep: Vec<KeepRule>,
        formats: &[GgmlType],
    ) -> Result<Self, QuantError> {
        let (tensors, meta) = (src.tensors(), src.metadata());
        for k in &keep {
            if !can_encode(k.format) {
                return Err(QuantError::NoEncoder { ty: k.format, available: encodable_names() });
            }
            check_matches(k, tensors)?;
        }
        // Any quantized file type sorts tensors into never quantized, --keep and the rest.
        let q8 = FileType::of(GgmlType::Q8_0)
            .ok_or(QuantError::NoEncoder { ty: GgmlType::Q8_0, available: encodable_names() })?;
        let picks = rules::llama_cpp_picks(tensors, meta, q8, &keep, false);
        let mut fixed = Vec::with_capacity(tensors.len());
        let mut slots = Vec::new();
        let mut fixed_bytes = 0;
        for (i, (t, p)) in tensors.iter().zip(&picks).enumerate() {
            let allowed = candidates_among(t.shape[0], formats);
            match p.choice {
                Choice::Format | Choice::Rule if !allowed.is_empty() => {
                    fixed.push(None);
                    slots.push((i, allowed));
                }
                // A --keep rule's format; else the source's (never quantized, or rows that fit
                // no block format).
                Choice::Keep(_) => {
                    fixed_bytes += bytes_as(t, p.ty)?;
                    fixed.push(Some((p.ty, p.choice)));
                }
                _ => {
                    fixed_bytes += t.n_bytes;
                    fixed.push(Some((t.ty, Choice::Unquantized)));
                }
            }
        }
        let header = header_bytes(src)?;
        let plan_list: u64 = slots.iter().map(|(i, _)| tensors[*i].name.len() as u64 + 16).sum();
        let overhead = header + METADATA_SLACK + plan_list + alignment(meta) * tensors.len() as u64;
        Ok(Self {
            n_elements: tensors.iter().map(TensorInfo::n_elements).sum(),
            tensors: tensors.to_vec(),
            keep,
            fixed,
            slots,
            fixed_bytes,
            overhead,
        })
    }

    /// The tensor behind slot `s`.
    pub fn tensor(&self, s: usize) -> &TensorInfo {
        &self.tensors[self.slots[s].0]
    }

    /// Bytes of each candidate of each slot.
    fn options(&self, errors: Option<&[Vec<f64>]>) -> Result<Vec<Options>, QuantError> {
        self.slots
            .iter()
            .enumerate()
            .map(|(s, (i, formats))| {
                let bytes = formats
                    .iter()
                    .map(|&f| bytes_as(&self.tensors[*i], f))
                    .collect::<Result<Vec<_>, _>>()?;
                let error = errors.map_or_else(|| vec![0.0; formats.len()], |e| e[s].clone());
                Ok(Options { bytes, error })
            })
            .collect()
    }

    /// Tensor data bytes `budget` allows; an error unless it lies between the smallest plan
    /// (every chosen tensor in its smallest candidate) and the largest (every one in its largest,
    /// which needs no choosing: `--format` does that).
    pub fn budget_bytes(&self, budget: Budget) -> Result<u64, QuantError> {
        let options = self.options(None)?;
        let smallest = self.fixed_bytes + alloc::smallest_total(&options);
        let largest: u64 = self.fixed_bytes
            + options.iter().map(|o| o.bytes.iter().copied().max().unwrap_or(0)).sum::<u64>();
        let (bytes, show): (u64, Box<dyn Fn(u64) -> String>) = match budget {
            Budget::FileBytes(b) if b > 0 => {
                let o = self.overhead;
                (b.saturating_sub(o), Box::new(move |d| format!("{:.3} MB", (d + o) as f64 / 1e6)))
            }
            Budget::Bpw(b) if b.is_finite() && b > 0.0 => {
                let n = self.n_elements.max(1) as f64;
                (
                    (b * n / 8.0) as u64,
                    Box::new(move |d| format!("{:.3} bits per weight", d as f64 * 8.0 / n)),
                )
            }
            _ => {
                return Err(QuantError::BadBudget {
                    budget: budget.to_string(),
                    reason: "it must be a positive number".into(),
                })
            }
        };
        if bytes < smallest {
            return Err(QuantError::BadBudget {
                budget: budget.to_string(),
                reason: format!(
                    "the smallest plan (every tensor in its smallest candidate format) needs {}",
                    show(smallest)
                ),
            });
        }
        if bytes >= largest {
            return Err(QuantError::BadBudget {
                budget: budget.to_string(),
                reason: format!(
                    "every tensor fits its largest candidate format ({} in all), so there is \
                     nothing to choose: ask for less, or use --format",
                    show(largest)
                ),
            });
        }
        Ok(bytes)
    }

    /// The plan for `budget` given each slot's predicted error per candidate (`errors[s][c]`).
    pub fn plan(
        &self,
        errors: &[Vec<f64>],
        budget: Budget,
        sensitivity: &str,
        imatrix: bool,
    ) -> Result<Plan, QuantError> {
        let budget_bytes = self.budget_bytes(budget)?;
        let options = self.options(Some(errors))?;
        let a = alloc::allocate(&options, budget_bytes - self.fixed_bytes).ok_or_else(|| {
            QuantError::BadBudget { budget: budget.to_string(), reason: "no plan fits".into() }
        })?;
        let mut chosen: Vec<Option<(GgmlType, f64)>> = vec![None; self.tensors.len()];
        for ((i, formats), (&c, o)) in self.slots.iter().zip(a.picks.iter().zip(&options)) {
            chosen[*i] = Some((formats[c], o.error[c]));
        }
        let tensors: Vec<TensorPlan> = self
            .tensors
            .iter()
            .zip(&self.fixed)
            .zip(&chosen)
            .map(|((t, fixed), auto)| {
                let (target, choice, predicted) = match (fixed, auto) {
                    (Some((ty, choice)), _) => (*ty, *choice, None),
                    (None, Some((ty, e))) => (*ty, Choice::Auto, Some(*e)),
                    (None, None) => (t.ty, Choice::Unquantized, None),
                };
                TensorPlan {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    source: t.ty,
                    target,
                    choice,
                    llama_cpp: target,
                    fallbacks: Vec::new(),
                    predicted,
                }
            })
            .collect();
        // The file type is the format holding most of the chosen weights.
        let mut by_format: Vec<(GgmlType, u64)> = Vec::new();
        for t in tensors.iter().filter(|t| t.choice == Choice::Auto) {
            match by_format.iter_mut().find(|(f, _)| *f == t.target) {
                Some((_, n)) => *n += t.n_elements(),
                None => by_format.push((t.target, t.n_elements())),
            }
        }
        let main = by_format.iter().max_by_key(|(_, n)| *n).map_or(GgmlType::Q8_0, |(f, _)| *f);
        let file_type = *FileType::of(main)
            .ok_or(QuantError::NotAWeightFormat { ty: main, available: encodable_names() })?;
        let summary = AutoSummary {
            budget,
            budget_bytes,
            bytes: a.bytes + self.fixed_bytes,
            predicted: a.error,
            sensitivity: sensitivity.to_string(),
        };
        Ok(Plan { file_type, tensors, keep: self.keep.clone(), imatrix, auto: Some(summary) })
    }
}

/// Bytes of tensor `t` in format `ty`.
fn bytes_as(t: &TensorInfo, ty: GgmlType) -> Result<u64, QuantError> {
    let ncols = t.shape[0];
    Ok(t.n_elements() / ncols.max(1) * ty.row_bytes(ncols as usize)? as u64)
}

/// Bytes of `src`'s header as our writer lays it out (the output adds `llmopt.*` keys to it).
fn header_bytes(src: &GgufFile) -> Result<u64, QuantError> {
    let entries: Vec<TensorEntry<'_>> = src
        .tensors()
        .iter()
        .map(|t| TensorEntry { name: &t.name, ty: t.ty, shape: &t.shape, n_bytes: t.n_bytes })
        .collect();
    let mut counter = Counter(0);
    write_header(&mut counter, src.metadata(), &entries).map_err(QuantError::Write)?;
    Ok(counter.0)
}

/// A writer that only counts.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
