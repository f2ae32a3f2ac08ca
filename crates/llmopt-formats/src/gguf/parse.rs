//! The GGUF header parser over a byte slice: metadata, tensor infos, and the data section's bounds.
//! Every length is checked against the bytes that remain before anything is allocated, so a corrupt
//! count fails with `Truncated` instead of exhausting memory.

use llmopt_tensor::GgmlType;

use super::{GgufError, MetaValue, Metadata, TensorInfo, ValueType};

const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (GGUF writers use 1; deeper is almost surely corruption).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

/// What the header says: version, metadata, tensors (offsets absolute in the file) and data bounds.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.pos as u64,
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn corrupt(&self, field: String, offset: usize, reason: impl Into<String>) -> GgufError {
        GgufError::Corrupt { field, offset: offset as u64, reason: reason.into() }
    }

    fn string(&mut self, field: &dyn Fn() -> String) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(&|| format!("{} (length)", field()))?;
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.corrupt(field(), at, format!("string is not UTF-8 ({e})")))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what remains.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        field: &dyn Fn() -> String,
    ) -> Result<(), GgufError> {
        let remaining = (self.buf.len() - self.pos) as u64;
        match count.checked_mul(min_size) {
            Some(need) if need <= remaining => Ok(()),
            _ => Err(GgufError::Truncated {
                field: format!("{} ({count} items)", field()),
                offset: self.pos as u64,
                needed: count.saturating_mul(min_size),
                len: self.buf.len() as u64,
            }),
        }
    }

    fn value(
        &mut self,
        ty: ValueType,
        field: &dyn Fn() -> String,
        depth: u32,
    ) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(self.array::<1>(field)?[0]),
            ValueType::I8 => MetaValue::I8(self.array::<1>(field)?[0] as i8),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            ValueType::U32 => MetaValue::U32(self.u32(field)?),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            ValueType::U64 => MetaValue::U64(self.u64(field)?),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(field)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(self.corrupt(
                            field(),
                            at,
                            format!("bool byte is {b}, not 0 or 1"),
                        ))
                    }
                }
            }
            ValueType::String => MetaValue::String(self.string(field)?),
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(field(), at, "arrays nested too deeply"));
                }
                let tag = self.u32(&|| format!("{} (array element type)", field()))?;
                let elem = ValueType::from_u32(tag).ok_or_else(|| {
                    self.corrupt(field(), at, format!("unknown array element type {tag}"))
                })?;
                let count = self.u64(&|| format!("{} (array length)", field()))?;
                self.check_count(count, elem.min_size(), field)?;
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    items.push(self.value(elem, &|| format!("{}[{i}]", field()), depth + 1)?);
                }
                MetaValue::Array(items)
            }
        })
    }
}

/// Parses the header of a GGUF file held in `buf` and validates every tensor's bounds.
pub fn parse_header(buf: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    if buf.len() < 4 {
        return Err(GgufError::Truncated {
            field: "magic".into(),
            offset: 0,
            needed: 4,
            len: buf.len() as u64,
        });
    }
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if &magic != MAGIC {
        return Err(GgufError::NotGguf { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = c.u64(&|| "tensor_count".into())?;
    let n_kv = c.u64(&|| "metadata_kv_count".into())?;

    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes.
    c.check_count(n_kv, 13, &|| "metadata_kv_count".into())?;
    let mut metadata = Metadata::default();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let at = c.pos;
        let tag = c.u32(&|| format!("type of metadata '{key}'"))?;
        let ty = ValueType::from_u32(tag).ok_or_else(|| {
            c.corrupt(format!("metadata '{key}'"), at, format!("unknown value type {tag}"))
        })?;
        let value = c.value(ty, &|| format!("metadata '{key}'"), 0)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => {
                return Err(GgufError::Corrupt {
                    field: "metadata 'general.alignment'".into(),
                    offset: 0,
                    reason: format!("{v:?} is not a power of two"),
                })
            }
        },
    };

    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    c.check_count(n_tensors, 24, &|| "tensor_count".into())?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut relative = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let info_at = c.pos as u64;
        let name = c.string(&|| format!("tensor #{i} name"))?;
        let dims_at = c.pos;
        let n_dims = c.u32(&|| format!("tensor '{name}' n_dims"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.corrupt(
                format!("tensor '{name}' n_dims"),
                dims_at,
                format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let at = c.pos;
            let ne = c.u64(&|| format!("tensor '{name}' dimension {d}"))?;
            if ne == 0 || ne > (1 << 40) {
                return Err(c.corrupt(
                    format!("tensor '{name}' dimension {d}"),
                    at,
                    format!("size {ne} is out of range"),
                ));
            }
            shape.push(ne);
        }
        let type_at = c.pos as u64;
        let type_id = c.u32(&|| format!("tensor '{name}' type"))?;
        let ty = GgmlType::from_u32(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
            tensor: name.clone(),
            type_id,
            offset: type_at,
        })?;
        let off_at = c.pos;
        let offset = c.u64(&|| format!("tensor '{name}' offset"))?;
        if offset % alignment != 0 {
            return Err(c.corrupt(
                format!("tensor '{name}' offset"),
                off_at,
                format!("{offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        let n_elems = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let n_bytes = n_elems.and_then(|n| {
            let rows = n / shape[0];
            ty.row_bytes(shape[0] as usize).ok().and_then(|rb| (rb as u64).checked_mul(rows))
        });
        let Some(n_bytes) = n_bytes else {
            return Err(c.corrupt(
                format!("tensor '{name}' shape"),
                dims_at,
                format!("shape {shape:?} does not fit type {} (row length must be a multiple of its block)", ty.name()),
            ));
        };
        relative.push((offset, info_at));
        tensors.push(TensorInfo { name, shape, ty, offset, n_bytes, info_offset: info_at });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    for t in &mut tensors {
        // The relative offset comes from the file: adding the data start may overflow.
        let start = t.offset.checked_add(data_offset);
        match start.and_then(|s| s.checked_add(t.n_bytes)) {
            Some(end) if end <= file_len => t.offset += data_offset,
            _ => {
                return Err(GgufError::Truncated {
                    field: format!("data of tensor '{}'", t.name),
                    offset: start.unwrap_or(u64::MAX),
                    needed: t.n_bytes,
                    len: file_len,
                })
            }
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}
