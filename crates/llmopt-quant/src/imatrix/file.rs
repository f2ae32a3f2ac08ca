//! The importance file: llama.cpp's GGUF imatrix format (what `llama-imatrix -o x.gguf` writes and
//! `llama-quantize --imatrix` reads), so files go both ways. Keys `general.type = "imatrix"`,
//! `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`; per weight `W`, tensors
//! `W.in_sum2` (F32, the column sums of x²) and `W.counts` (F32, the token count). Ours adds
//! `llmopt.calib.sha256` and `llmopt.calib.tokens` (llama.cpp ignores them).

use std::{collections::BTreeMap, io::Write, path::Path};

use llmopt_formats::gguf::{write_gguf, GgufFile, MetaValue, Metadata, TensorToWrite};
use llmopt_tensor::GgmlType;

use super::{CalibInfo, Entry, Imatrix};
use crate::QuantError;

const SUMS: &str = ".in_sum2";
/// One weight's tensors as read: its sums and its counts, each once found.
type Parts = (Option<Vec<f32>>, Option<Vec<f32>>);
const COUNTS: &str = ".counts";

fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

impl Imatrix {
    /// Writes the matrix in llama.cpp's GGUF imatrix format.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut meta = Metadata::default();
        meta.insert("general.type", MetaValue::String("imatrix".into()));
        let datasets = self.calib.iter().map(|c| MetaValue::String(c.file.clone())).collect();
        meta.insert("imatrix.datasets", MetaValue::Array(datasets));
        meta.insert("imatrix.chunk_count", MetaValue::U32(self.chunks));
        meta.insert("imatrix.chunk_size", MetaValue::U32(self.chunk_size));
        if let Some(c) = &self.calib {
            if let Some(h) = &c.sha256 {
                meta.insert("llmopt.calib.sha256", MetaValue::String(h.clone()));
            }
            meta.insert("llmopt.calib.tokens", MetaValue::U64(c.tokens));
        }
        let data: Vec<(String, Vec<u64>, Vec<u8>)> = self
            .entries()
            .flat_map(|(name, e)| {
                let sums = f32_bytes(e.sums.iter().map(|&s| s as f32));
                let counts = f32_bytes([e.count as f32]);
                [
                    (format!("{name}{SUMS}"), vec![e.sums.len() as u64, 1], sums),
                    (format!("{name}{COUNTS}"), vec![1, 1], counts),
                ]
            })
            .collect();
        let tensors: Vec<TensorToWrite<'_>> = data
            .iter()
            .map(|(name, shape, bytes)| TensorToWrite {
                name: name.clone(),
                ty: GgmlType::F32,
                shape: shape.clone(),
                data: bytes,
            })
            .collect();
        write_gguf(w, &meta, &tensors)
    }

    /// Reads a GGUF imatrix file (ours or llama-imatrix's); every entry needs its sums and a
    /// positive count, all finite F32.
    pub fn read(path: &Path) -> Result<Self, QuantError> {
        let bad = |reason: String| QuantError::ImatrixFile { path: path.to_path_buf(), reason };
        let f = GgufFile::open(path).map_err(|e| bad(e.to_string()))?;
        let meta = f.metadata();
        if let Some(ty) = meta.get_str("general.type").filter(|&t| t != "imatrix") {
            return Err(bad(format!("general.type is \"{ty}\", not \"imatrix\"")));
        }
        let mut parts: BTreeMap<&str, Parts> = BTreeMap::new();
        for t in f.tensors() {
            let (name, is_sums) = match (t.name.strip_suffix(SUMS), t.name.strip_suffix(COUNTS)) {
                (Some(n), _) => (n, true),
                (_, Some(n)) => (n, false),
                _ => continue,
            };
            if t.ty != GgmlType::F32 {
                return Err(bad(format!("{} is {}, expected F32", t.name, t.ty)));
            }
            let bytes = f.tensor_data(t);
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(bad(format!("{} holds the non-finite value {v}", t.name)));
            }
            let slot = parts.entry(name).or_default();
            *(if is_sums { &mut slot.0 } else { &mut slot.1 }) = Some(values);
        }
        let mut m = Imatrix {
            chunks: meta.get_u64("imatrix.chunk_count").unwrap_or(0) as u32,
            chunk_size: meta.get_u64("imatrix.chunk_size").unwrap_or(0) as u32,
            calib: calib_info(meta),
            ..Imatrix::default()
        };
        for (name, part) in parts {
            let (Some(sums), Some(counts)) = part else {
                return Err(bad(format!("{name} lacks its {SUMS} or {COUNTS} tensor")));
            };
            let count = match counts.as_slice() {
                [c] if *c >= 1.0 => c.round() as u64,
                _ => {
                    return Err(bad(format!(
                        "{name}{COUNTS} must be one positive count (per-expert counts are not \
                         supported), found {counts:?}"
                    )))
                }
            };
            let sums = sums.into_iter().map(f64::from).collect();
            m.insert(name.to_string(), Entry { sums, count });
        }
        if m.is_empty() {
            return Err(bad(format!("it has no {SUMS}/{COUNTS} tensors")));
        }
        Ok(m)
    }
}

fn calib_info(meta: &Metadata) -> Option<CalibInfo> {
    let file = meta.get_array("imatrix.datasets")?.first()?.as_str()?.to_string();
    Some(CalibInfo {
        file,
        sha256: meta.get_str("llmopt.calib.sha256").map(str::to_string),
        tokens: meta.get_u64("llmopt.calib.tokens").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let mut m = Imatrix { chunks: 2, chunk_size: 512, ..Imatrix::default() };
        m.calib = Some(CalibInfo { file: "t.txt".into(), sha256: Some("ab".into()), tokens: 1024 });
        m.add("blk.0.attn_q.weight", 2, &[1.0, 2.0, 3.0, 4.0]);
        m.add("blk.1.ffn_down.weight", 1, &[0.5; 8]);
        let dir = std::env::temp_dir().join(format!("llmopt-quant-imatrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.gguf");
        let mut bytes = Vec::new();
        m.write(&mut bytes).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let back = Imatrix::read(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.importance("blk.0.attn_q.weight").unwrap(), [5.0, 10.0]);

        std::fs::write(&path, b"not a gguf").unwrap();
        assert!(matches!(Imatrix::read(&path), Err(QuantError::ImatrixFile { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
