//! GGUF files over a memory map: the header is parsed and checked once at open, after which tensor
//! data are plain borrowed byte slices of the map (no copies, pages load on first touch).

mod error;
mod parse;
mod value;
mod write;

use std::path::{Path, PathBuf};

use llmopt_tensor::GgmlType;
use memmap2::Mmap;

pub use error::GgufError;
pub use parse::{parse_header, Header, DEFAULT_ALIGNMENT};
pub use value::{MetaValue, Metadata, ValueType};
pub use write::{alignment, write_gguf, write_header, write_padding, TensorEntry, TensorToWrite};

/// One tensor of a GGUF file. `shape[0]` is the innermost (contiguous) dimension, as in ggml.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    pub n_bytes: u64,
    /// Byte offset of this tensor's info record in the header (for messages).
    pub info_offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// An open GGUF file.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    header: Header,
}

impl GgufFile {
    /// Opens and validates `path`; tensor data are not read until used.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        let file = std::fs::File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other("is a directory")));
        }
        // SAFETY: the map is read-only; a model file changed by another process while open is
        // outside this reader's contract (as for every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(&map)?;
        Ok(Self { path, map, header })
    }

    /// A GGUF held in memory (a file written into a buffer), copied into an anonymous map and
    /// validated as `open` does; `name` stands in for the path in messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, GgufError> {
        let path = name.into();
        let header = parse_header(bytes)?;
        let io = |source| GgufError::Io { path: path.clone(), source };
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(io)?;
        Ok(Self { path, map, header })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The metadata key/value map.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor (bounds were checked at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.offset as usize..(info.offset + info.n_bytes) as usize]
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Alignment of the data section.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// The architecture name (`general.architecture`), if present.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata().get_str("general.architecture")
    }

    /// Bits of tensor data per parameter, over all tensors (0 for a file without any).
    pub fn bits_per_weight(&self) -> f64 {
        let params: u64 = self.tensors().iter().map(TensorInfo::n_elements).sum();
        let bytes: u64 = self.tensors().iter().map(|t| t.n_bytes).sum();
        if params == 0 {
            0.0
        } else {
            bytes as f64 * 8.0 / params as f64
        }
    }

    /// Total bytes of tensor data by type.
    pub fn bytes_by_type(&self) -> Vec<(GgmlType, usize, u64)> {
        let mut out: Vec<(GgmlType, usize, u64)> = Vec::new();
        for t in self.tensors() {
            match out.iter_mut().find(|(ty, _, _)| *ty == t.ty) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += t.n_bytes;
                }
                None => out.push((t.ty, 1, t.n_bytes)),
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.2));
        out
    }
}

/// The whole mapped file, so tensors can be borrowed for as long as an `Arc<GgufFile>` lives.
impl AsRef<[u8]> for GgufFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}
