//! Writes the seed corpus of the `gguf_header` target into DIR: a small valid GGUF (every metadata
//! type, a few tensor types) made with `write_gguf`, and the first 64 KiB of each MODEL given.
//!
//! Usage: `gguf_seeds DIR [MODEL.gguf...]`

use std::{fs, io::Read, path::PathBuf};

use llmopt_formats::gguf::{write_gguf, MetaValue, Metadata, TensorToWrite};
use llmopt_tensor::GgmlType;

fn small_gguf() -> Vec<u8> {
    let mut m = Metadata::default();
    m.insert("general.architecture", MetaValue::String("llama".into()));
    m.insert("general.alignment", MetaValue::U32(32));
    m.insert("llama.block_count", MetaValue::U32(1));
    m.insert("t.i8", MetaValue::I8(-5));
    m.insert("t.u16", MetaValue::U16(60000));
    m.insert("t.i64", MetaValue::I64(-(1 << 40)));
    m.insert("t.f64", MetaValue::F64(-2.25));
    m.insert("t.bool", MetaValue::Bool(true));
    m.insert("t.str", MetaValue::String("héllo".into()));
    m.insert(
        "t.arr",
        MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("bc".into())]),
    );
    m.insert("t.nested", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::F32(1.0)])]));
    let types = [GgmlType::F32, GgmlType::F16, GgmlType::Q4_1, GgmlType::Q4_K];
    let datas: Vec<Vec<u8>> =
        types.iter().map(|ty| vec![0x3c; 2 * ty.row_bytes(256).expect("whole blocks")]).collect();
    let tensors: Vec<TensorToWrite<'_>> = types
        .iter()
        .zip(&datas)
        .map(|(ty, d)| TensorToWrite {
            name: format!("blk.0.{}.weight", ty.name()),
            ty: *ty,
            shape: vec![256, 2],
            data: d,
        })
        .collect();
    let mut out = Vec::new();
    write_gguf(&mut out, &m, &tensors).expect("writing to a Vec cannot fail");
    out
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: gguf_seeds DIR [MODEL.gguf...]"));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("small-valid.gguf"), small_gguf())?;
    for model in args {
        let model = PathBuf::from(model);
        let mut head = Vec::new();
        fs::File::open(&model)?.take(64 * 1024).read_to_end(&mut head)?;
        let name = model.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned());
        fs::write(dir.join(format!("{name}.head64k")), head)?;
    }
    Ok(())
}
