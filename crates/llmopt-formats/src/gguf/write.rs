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

/// Writes a GGUF v3 file with `meta` and `tensors` (data aligned to `general.alignment` or 32).
pub fn write_gguf(
    w: &mut impl Write,
    meta: &Metadata,
    tensors: &[TensorToWrite<'_>],
) -> io::Result<()> {
    let align = meta.get_u64("general.alignment").unwrap_or(DEFAULT_ALIGNMENT) as usize;
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta.iter() {
        put_str(&mut head, k);
        head.extend_from_slice(&tag(v).to_le_bytes());
        put_value(&mut head, v)?;
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in &t.shape {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&(t.ty as u32).to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).div_ceil(align) * align;
    }
    head.resize(head.len().div_ceil(align) * align, 0);
    w.write_all(&head)?;
    let pad = [0u8; 256];
    for t in tensors {
        w.write_all(t.data)?;
        let rem = t.data.len().div_ceil(align) * align - t.data.len();
        let mut left = rem;
        while left > 0 {
            let n = left.min(pad.len());
            w.write_all(&pad[..n])?;
            left -= n;
        }
    }
    Ok(())
}
