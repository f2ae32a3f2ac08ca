//! Hugging Face checkpoints: `*.safetensors` files over memory maps, either one file or the shards
//! that `model.safetensors.index.json` lists. Every header is parsed and checked at open (by the
//! `safetensors` crate: offsets contiguous, sizes matching shapes, the file complete); tensor data
//! are then borrowed slices of the maps. Only the float dtypes that ggml stores as plain
//! little-endian arrays (F32, F16, BF16) are handed out, so they reach the kernels unconverted; a
//! tensor of any other dtype is listed but asking for it is an [`HfError::UnsupportedDtype`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use llmopt_tensor::GgmlType;
use memmap2::Mmap;
use serde::Deserialize;

/// The file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint (`weight_map`: tensor name -> shard file).
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The model's hyper-parameters, beside the weights.
pub const CONFIG_FILE: &str = "config.json";

/// Why a Hugging Face model directory (weights or `config.json`) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is missing ({what})")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("invalid JSON in {path} at line {line}, column {column}: {reason}")]
    Json { path: PathBuf, line: usize, column: usize, reason: String },
    #[error("{path} is not a valid safetensors file: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("invalid shard index {path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("tensor '{name}' is missing from {path}")]
    MissingTensor { name: String, path: PathBuf },
    #[error(
        "tensor '{name}' in {path} has dtype {dtype}, which is not supported (F32, F16, BF16)"
    )]
    UnsupportedDtype { name: String, dtype: String, path: PathBuf },
}

impl HfError {
    /// A `serde_json` error in `path`, with its position split out.
    pub(crate) fn json(path: &Path, e: &serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let reason = full
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(&full)
            .to_string();
        HfError::Json { path: path.to_path_buf(), line, column, reason }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return HfError::MissingFile { path: path.to_path_buf(), what: "no such file" };
        }
        HfError::Io { path: path.to_path_buf(), source }
    }
}

/// The dtypes handed out: those whose ggml layout is the same plain little-endian array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// The ggml type with the same byte layout.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The name safetensors headers use (`"F32"`, `"F16"`, `"BF16"`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    fn from_st(d: ::safetensors::Dtype) -> Option<Self> {
        Some(match d {
            ::safetensors::Dtype::F32 => Dtype::F32,
            ::safetensors::Dtype::F16 => Dtype::F16,
            ::safetensors::Dtype::BF16 => Dtype::BF16,
            _ => return None,
        })
    }

    fn to_st(self) -> ::safetensors::Dtype {
        match self {
            Dtype::F32 => ::safetensors::Dtype::F32,
            Dtype::F16 => ::safetensors::Dtype::F16,
            Dtype::BF16 => ::safetensors::Dtype::BF16,
        }
    }
}

/// One memory-mapped `.safetensors` file; its bytes outlive the model for as long as an `Arc` does.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
}

impl SafetensorsFile {
    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The whole mapped file (tensor offsets are absolute in it).
impl AsRef<[u8]> for SafetensorsFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    /// The header's dtype: ours when supported, else its safetensors name.
    dtype: Result<Dtype, String>,
    shape: Vec<usize>,
    offset: usize,
    n_bytes: usize,
}

/// A tensor of a checkpoint: dtype, shape in PyTorch order (`shape[0]` outermost) and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    /// The file holding it; `offset..offset + n_bytes` are its bytes there.
    pub file: &'a Arc<SafetensorsFile>,
    pub offset: usize,
    pub n_bytes: usize,
}

impl<'a> Tensor<'a> {
    /// The tensor's bytes (little-endian, row-major).
    pub fn data(&self) -> &'a [u8] {
        &(**self.file).as_ref()[self.offset..self.offset + self.n_bytes]
    }
}

/// An open checkpoint: one file or all shards of an index, tensors by Hugging Face name.
#[derive(Debug)]
pub struct SafetensorsModel {
    dir: PathBuf,
    files: Vec<Arc<SafetensorsFile>>,
    tensors: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl SafetensorsModel {
    /// Opens a model directory (`model.safetensors.index.json` and its shards, else
    /// `model.safetensors`) or a single `.safetensors` file, and checks every header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, HfError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| HfError::io(path, e))?;
        if !meta.is_dir() {
            let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            let mut m = Self { dir, files: Vec::new(), tensors: BTreeMap::new() };
            m.add_file(path)?;
            return Ok(m);
        }
        let index = path.join(INDEX_FILE);
        if index.exists() {
            return Self::open_sharded(path, &index);
        }
        let single = path.join(SINGLE_FILE);
        if !single.exists() {
            return Err(HfError::MissingFile {
                path: single,
                what: "the directory has neither it nor model.safetensors.index.json",
            });
        }
        let mut m = Self { dir: path.to_path_buf(), files: Vec::new(), tensors: BTreeMap::new() };
        m.add_file(&single)?;
        Ok(m)
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<Self, HfError> {
        let text = std::fs::read_to_string(index_path).map_err(|e| HfError::io(index_path, e))?;
        let index: Index =
            serde_json::from_str(&text).map_err(|e| HfError::json(index_path, &e))?;
        let bad = |reason: String| HfError::BadIndex { path: index_path.to_path_buf(), reason };
        let mut shards: Vec<&str> = index.weight_map.values().map(String::as_str).collect();
        shards.sort_unstable();
        shards.dedup();
        if shards.is_empty() {
            return Err(bad("weight_map is empty".into()));
        }
        let mut m = Self { dir: dir.to_path_buf(), files: Vec::new(), tensors: BTreeMap::new() };
        for shard in &shards {
            // Shards are plain file names beside the index; anything else could point outside the model.
            if Path::new(shard).file_name().and_then(|n| n.to_str()) != Some(*shard) {
                return Err(bad(format!("shard '{shard}' is not a plain file name")));
            }
            m.add_file(&dir.join(shard))?;
        }
        for (name, shard) in &index.weight_map {
            let held = m.tensors.get(name).is_some_and(|e| {
                m.files[e.file].path.file_name().and_then(|n| n.to_str()) == Some(shard)
            });
            if !held {
                return Err(bad(format!(
                    "weight_map puts '{name}' in {shard}, which does not hold it"
                )));
            }
        }
        Ok(m)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), HfError> {
        let file = std::fs::File::open(path).map_err(|e| HfError::io(path, e))?;
        // SAFETY: the map is read-only; a file changed by another process while open is outside this
        // reader's contract (as for every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| HfError::io(path, e))?;
        let bad = |reason: String| HfError::BadHeader { path: path.to_path_buf(), reason };
        let (header_len, meta) =
            ::safetensors::SafeTensors::read_metadata(&map).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        let idx = self.files.len();
        for (name, info) in meta.tensors() {
            let (start, end) = info.data_offsets;
            if self.tensors.contains_key(&name) {
                return Err(bad(format!("tensor '{name}' is also in another shard")));
            }
            let entry = Entry {
                file: idx,
                dtype: Dtype::from_st(info.dtype).ok_or_else(|| info.dtype.to_string()),
                shape: info.shape.clone(),
                offset: data_start + start,
                n_bytes: end - start,
            };
            self.tensors.insert(name, entry);
        }
        self.files.push(Arc::new(SafetensorsFile { path: path.to_path_buf(), map }));
        Ok(())
    }

    /// The directory the checkpoint is in (where `config.json` is).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files opened, in the order read.
    pub fn files(&self) -> &[Arc<SafetensorsFile>] {
        &self.files
    }

    /// All tensor names, sorted (including those of unsupported dtypes).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the checkpoint holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor called `name`: `Ok(None)` when absent, an error when its dtype is unsupported.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor<'_>>, HfError> {
        let Some((name, e)) = self.tensors.get_key_value(name) else { return Ok(None) };
        let file = &self.files[e.file];
        let dtype = e.dtype.clone().map_err(|dtype| HfError::UnsupportedDtype {
            name: name.clone(),
            dtype,
            path: file.path.clone(),
        })?;
        Ok(Some(Tensor {
            name,
            dtype,
            shape: &e.shape,
            file,
            offset: e.offset,
            n_bytes: e.n_bytes,
        }))
    }

    /// The tensor called `name`, which must be present.
    pub fn require(&self, name: &str) -> Result<Tensor<'_>, HfError> {
        self.tensor(name)?
            .ok_or_else(|| HfError::MissingTensor { name: name.into(), path: self.location() })
    }

    /// Where tensors come from, for messages: the single file, or the directory of shards.
    fn location(&self) -> PathBuf {
        match self.files.as_slice() {
            [one] => one.path.clone(),
            _ => self.dir.clone(),
        }
    }
}

/// A tensor to write: `shape` in PyTorch order, `data` little-endian in `dtype`.
#[derive(Clone, Debug)]
pub struct TensorToWrite<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl ::safetensors::View for &TensorToWrite<'_> {
    fn dtype(&self) -> ::safetensors::Dtype {
        self.dtype.to_st()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.data.into()
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` as one `.safetensors` file at `path` (with the `safetensors` crate's serializer,
/// which checks each tensor's byte length against its shape).
pub fn write_safetensors(path: &Path, tensors: &[TensorToWrite<'_>]) -> Result<(), HfError> {
    let items = tensors.iter().map(|t| (t.name.as_str(), t));
    ::safetensors::serialize_to_file(items, None, path).map_err(|e| match e {
        ::safetensors::SafeTensorError::IoError(source) => {
            HfError::Io { path: path.to_path_buf(), source }
        }
        e => HfError::BadHeader { path: path.to_path_buf(), reason: e.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use llmopt_testdata::TempDir;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_a_single_file_with_each_float_dtype() {
        let d = TempDir::new("formats-single");
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let h: Vec<u8> = [0x3c00u16, 0xc000].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = [0x3f80u16, 0x4000, 0x4040].iter().flat_map(|x| x.to_le_bytes()).collect();
        let ts = [
            TensorToWrite { name: "a".into(), dtype: Dtype::F32, shape: vec![2, 3], data: &a },
            TensorToWrite { name: "h".into(), dtype: Dtype::F16, shape: vec![2], data: &h },
            TensorToWrite { name: "b".into(), dtype: Dtype::BF16, shape: vec![3], data: &b },
        ];
        write_safetensors(&d.path().join(SINGLE_FILE), &ts).unwrap();
        for path in [d.path().to_path_buf(), d.path().join(SINGLE_FILE)] {
            let m = SafetensorsModel::open(&path).unwrap();
            assert_eq!(m.dir(), d.path());
            assert_eq!(m.names().collect::<Vec<_>>(), ["a", "b", "h"]);
            for t in &ts {
                let got = m.require(&t.name).unwrap();
                assert_eq!(
                    (got.dtype, got.shape, got.data()),
                    (t.dtype, t.shape.as_slice(), t.data)
                );
            }
            assert_eq!(m.require("b").unwrap().dtype.ggml_type(), GgmlType::BF16);
            assert!(m.tensor("nope").unwrap().is_none());
            let e = m.require("nope").unwrap_err();
            assert!(
                matches!(e, HfError::MissingTensor { .. }) && e.to_string().contains("'nope'"),
                "{e}"
            );
        }
    }

    #[test]
    fn reads_shards_through_the_index() {
        let d = TempDir::new("formats-sharded");
        let a: &'static [u8] = f32_bytes(&[1.0, 2.0]).leak();
        let b: &'static [u8] = f32_bytes(&[3.0]).leak();
        let t = |name: &str, data: &'static [u8]| TensorToWrite {
            name: name.into(),
            dtype: Dtype::F32,
            shape: vec![data.len() / 4],
            data,
        };
        write_safetensors(&d.path().join("model-00001-of-00002.safetensors"), &[t("x.a", a)])
            .unwrap();
        write_safetensors(&d.path().join("model-00002-of-00002.safetensors"), &[t("x.b", b)])
            .unwrap();
        let index = r#"{"metadata": {"total_size": 12}, "weight_map": {
            "x.a": "model-00001-of-00002.safetensors", "x.b": "model-00002-of-00002.safetensors"}}"#;
        std::fs::write(d.path().join(INDEX_FILE), index).unwrap();
        let m = SafetensorsModel::open(d.path()).unwrap();
        assert_eq!(m.files().len(), 2);
        assert_eq!(m.require("x.a").unwrap().data(), a);
        assert_eq!(m.require("x.b").unwrap().data(), b);
        assert!(m
            .require("x.b")
            .unwrap()
            .file
            .path()
            .ends_with("model-00002-of-00002.safetensors"));

        // An index that disagrees with its shards.
        std::fs::write(
            d.path().join(INDEX_FILE),
            index.replace("\"x.b\": \"model-00002", "\"x.b\": \"model-00001"),
        )
        .unwrap();
        let e = SafetensorsModel::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("'x.b'"), "{e}");
        // A shard outside the directory.
        std::fs::write(
            d.path().join(INDEX_FILE),
            r#"{"weight_map": {"x.a": "../model.safetensors"}}"#,
        )
        .unwrap();
        let e = SafetensorsModel::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("plain file name"), "{e}");
        // Bad JSON says where.
        std::fs::write(d.path().join(INDEX_FILE), "{\n  \"weight_map\": {\n    \"x.a\": }\n}")
            .unwrap();
        match SafetensorsModel::open(d.path()).unwrap_err() {
            HfError::Json { line, path, .. } => {
                assert_eq!((line, path), (3, d.path().join(INDEX_FILE)))
            }
            e => panic!("expected a JSON error, got {e}"),
        }
    }

    #[test]
    fn unsupported_dtypes_are_listed_but_not_handed_out() {
        let d = TempDir::new("formats-dtype");
        // Written by hand: the writer only takes supported dtypes.
        let header = r#"{"pos":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        let path = d.path().join("x.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let m = SafetensorsModel::open(&path).unwrap();
        assert_eq!(m.names().collect::<Vec<_>>(), ["pos"]);
        let e = m.tensor("pos").unwrap_err();
        assert!(matches!(&e, HfError::UnsupportedDtype { dtype, .. } if dtype == "I64"), "{e}");
        assert!(e.to_string().contains("'pos'") && e.to_string().contains("x.safetensors"), "{e}");
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let d = TempDir::new("formats-broken");
        let e = SafetensorsModel::open(d.path()).unwrap_err();
        assert!(
            matches!(e, HfError::MissingFile { .. }) && e.to_string().contains(SINGLE_FILE),
            "{e}"
        );
        let e = SafetensorsModel::open(d.path().join("nothing.safetensors")).unwrap_err();
        assert!(matches!(e, HfError::MissingFile { .. }), "{e}");
        let path = d.path().join(SINGLE_FILE);
        for bytes in [
            &b""[..],
            b"\x10\0\0\0\0\0\0\0{}",
            b"\x04\0\0\0\0\0\0\0{\"a\"",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            std::fs::write(&path, bytes).unwrap();
            let e = SafetensorsModel::open(d.path()).unwrap_err();
            assert!(
                matches!(e, HfError::BadHeader { .. }) && e.to_string().contains(SINGLE_FILE),
                "{e}"
            );
        }
        // Data shorter than the header promises.
        let header = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 12]);
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(SafetensorsModel::open(d.path()), Err(HfError::BadHeader { .. })));
    }
}
