//! GGUF v3 writer: metadata and tensors in, a file llama.cpp can open out. Used by the tests to make
//! small and deliberately broken files, and by the passes that write models.

use std::io::{self, Write};

use llmopt_tensor::GgmlType;

use super::{MetaValue, Metadata, DEFAULT_ALIGNMENT};

/// A tensor to write: `shape[0]` innermost, `data` already in format `ty`.
#[derive(Clone, Debug)]
pub struct TensorToWrite<'a> {
    pub name: String,
    pub ty: GgmlType,
    pub shape: Vec<u64>,
    pub data: &'a [u8],
}

fn tag(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) -> io::Result<()> {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(items) => {
            let elem = items.first().map_or(0, tag);
            if items.iter().any(|i| tag(i) != elem) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "GGUF arrays hold one element type",
                ));
            }
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i)?;
            }
        }
    }
    Ok(())
}

/// A tensor's entry in the header when its data are written later ([`write_header`]).
#[derive(Clone, Copy, Debug)]
pub struct TensorEntry<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    /// `shape[0]` innermost.
    pub shape: &'a [u64],
    /// Bytes of data that will follow for this tensor (before padding).
    pub n_bytes: u64,
}

/// The data alignment a file with `meta` uses: `general.alignment`, else 32.
pub fn alignment(meta: &Metadata) -> u64 {
    meta.get_u64("general.alignment").unwrap_or(DEFAULT_ALIGNMENT)
}

/// Writes a GGUF v3 header: `meta`, then the tensor infos with the offsets their data will have
/// when each tensor's `n_bytes` follow in order, each padded with [`write_padding`]. For writers
/// that stream tensors one at a time instead of holding them all ([`write_gguf`]).
pub fn write_header(
    w: &mut impl Write,
    meta: &Metadata,
    entries: &[TensorEntry<'_>],
) -> io::Result<()> {
    let align = alignment(meta);
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    head.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta.iter() {
        put_str(&mut head, k);
        head.extend_from_slice(&tag(v).to_le_bytes());
        put_value(&mut head, v)?;
    }
    let mut offset = 0u64;
    for t in entries {
        put_str(&mut head, t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&(t.ty as u32).to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + t.n_bytes).div_ceil(align) * align;
    }
    head.resize((head.len() as u64).div_ceil(align) as usize * align as usize, 0);
    w.write_all(&head)
}

/// Writes the zeros that pad a tensor's `n_bytes` of data up to the next multiple of `align`.
pub fn write_padding(w: &mut impl Write, n_bytes: u64, align: u64) -> io::Result<()> {
    let pad = [0u8; 256];
    let mut left = (n_bytes.div_ceil(align) * align - n_bytes) as usize;
    while left > 0 {
        let n = left.min(pad.len());
        w.write_all(&pad[..n])?;
        left -= n;
    }
    Ok(())
}

/// Writes a GGUF v3 file with `meta` and `tensors` (data aligned to `general.alignment` or 32).
pub fn write_gguf(
    w: &mut impl Write,
    meta: &Metadata,
    tensors: &[TensorToWrite<'_>],
) -> io::Result<()> {
    let entries: Vec<TensorEntry<'_>> = tensors
        .iter()
        .map(|t| TensorEntry {
            name: &t.name,
            ty: t.ty,
            shape: &t.shape,
            n_bytes: t.data.len() as u64,
        })
        .collect();
    write_header(w, meta, &entries)?;
    let align = alignment(meta);
    for t in tensors {
        w.write_all(t.data)?;
        write_padding(w, t.data.len() as u64, align)?;
    }
    Ok(())
}
