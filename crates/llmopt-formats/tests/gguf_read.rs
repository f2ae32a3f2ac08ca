//! The GGUF reader on files the test writes (every metadata type, every tensor type, broken files)
//! and on the real models that setup installs.

use llmopt_formats::gguf::{
    parse_header, write_gguf, GgufError, GgufFile, MetaValue, Metadata, TensorToWrite,
};
use llmopt_tensor::GgmlType;

const ALL_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn sample_metadata() -> Metadata {
    let mut m = Metadata::default();
    m.insert("general.architecture", MetaValue::String("llama".into()));
    m.insert("t.u8", MetaValue::U8(200));
    m.insert("t.i8", MetaValue::I8(-5));
    m.insert("t.u16", MetaValue::U16(60000));
    m.insert("t.i16", MetaValue::I16(-30000));
    m.insert("t.u32", MetaValue::U32(4_000_000_000));
    m.insert("t.i32", MetaValue::I32(-2_000_000_000));
    m.insert("t.f32", MetaValue::F32(1.5));
    m.insert("t.bool", MetaValue::Bool(true));
    m.insert("t.u64", MetaValue::U64(1 << 40));
    m.insert("t.i64", MetaValue::I64(-(1 << 40)));
    m.insert("t.f64", MetaValue::F64(-2.25));
    m.insert("t.str", MetaValue::String("héllo ▁ wörld".into()));
    m.insert(
        "t.arr",
        MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("bc".into())]),
    );
    m.insert("t.arr_f32", MetaValue::Array(vec![MetaValue::F32(0.5), MetaValue::F32(-1.0)]));
    m.insert("t.nested", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::I32(1)])]));
    m
}

/// A file with one 2x512 tensor of each type (bytes are a pattern; the reader does not decode).
fn sample_file() -> (Vec<u8>, Vec<Vec<u8>>) {
    let datas: Vec<Vec<u8>> = ALL_TYPES
        .iter()
        .map(|ty| (0..2 * ty.row_bytes(512).unwrap()).map(|i| (i * 7 % 251) as u8).collect())
        .collect();
    let tensors: Vec<TensorToWrite<'_>> = ALL_TYPES
        .iter()
        .zip(&datas)
        .map(|(ty, d)| TensorToWrite {
            name: format!("t.{}", ty.name()),
            ty: *ty,
            shape: vec![512, 2],
            data: d,
        })
        .collect();
    let mut out = Vec::new();
    write_gguf(&mut out, &sample_metadata(), &tensors).unwrap();
    (out, datas)
}

#[test]
fn round_trips_every_value_and_tensor_type() {
    let (bytes, datas) = sample_file();
    let dir = std::env::temp_dir().join(format!("llmopt-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata(), &sample_metadata());
    assert_eq!(f.tensors().len(), ALL_TYPES.len());
    for ((t, ty), d) in f.tensors().iter().zip(ALL_TYPES).zip(&datas) {
        assert_eq!(t.ty, *ty);
        assert_eq!(t.shape, vec![512, 2]);
        assert_eq!(t.offset % 32, 0);
        assert_eq!(f.tensor_data(t), &d[..]);
    }
    assert_eq!(f.metadata().get_u64("t.u8"), Some(200));
    assert_eq!(f.metadata().get_u64("t.i8"), None, "negative values are not u64");
    assert_eq!(f.metadata().get_f32("t.u16"), Some(60000.0));
    // The same bytes held in memory read the same, and name the given path in messages.
    let m = GgufFile::from_bytes("in-memory.gguf", &bytes).unwrap();
    assert_eq!(
        (m.metadata(), m.tensors(), m.file_len()),
        (f.metadata(), f.tensors(), f.file_len())
    );
    assert!(f.tensors().iter().all(|t| m.tensor_data(t) == f.tensor_data(t)));
    assert_eq!(m.path(), std::path::Path::new("in-memory.gguf"));
    assert!(matches!(GgufFile::from_bytes("x", &bytes[..10]), Err(GgufError::Truncated { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_truncation_is_a_clean_error() {
    let (bytes, _) = sample_file();
    let end =
        parse_header(&bytes).unwrap().tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap();
    for len in 0..end as usize {
        match parse_header(&bytes[..len]) {
            Err(GgufError::Truncated { .. }) => {}
            other => panic!("prefix of {len} bytes: expected Truncated, got {other:?}"),
        }
    }
    assert!(parse_header(&bytes).is_ok());
}

#[test]
fn errors_name_the_problem() {
    let (bytes, _) = sample_file();
    let err = parse_header(b"PK\x03\x04 not a gguf").unwrap_err();
    assert!(matches!(err, GgufError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF file"));

    let mut v1 = bytes.clone();
    v1[4] = 1;
    assert!(matches!(parse_header(&v1), Err(GgufError::UnsupportedVersion { version: 1 })));

    // Corrupt the first tensor's type id (after its name) to an unknown type.
    let name = b"t.f32";
    let at = bytes.windows(name.len()).rposition(|w| w == name).unwrap() + name.len() + 4 + 16;
    let mut bad = bytes.clone();
    bad[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    match parse_header(&bad) {
        Err(GgufError::UnsupportedTensorType { tensor, type_id: 99, offset }) => {
            assert_eq!(tensor, "t.f32");
            assert_eq!(offset as usize, at);
        }
        other => panic!("{other:?}"),
    }

    // A bool byte other than 0/1.
    let key = b"t.bool";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    let mut bad = bytes.clone();
    bad[at] = 7;
    let err = parse_header(&bad).unwrap_err();
    assert!(
        err.to_string().contains("'t.bool'") && err.to_string().contains(&format!("offset {at}")),
        "{err}"
    );

    // An absurd array length fails before allocating.
    let key = b"t.arr";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4;
    let mut bad = bytes.clone();
    bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse_header(&bad), Err(GgufError::Truncated { .. })));

    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn reads_the_installed_models() {
    for (name, arch, n_tensors) in [
        (llmopt_testdata::SMOLLM2, "llama", 272),
        (llmopt_testdata::GEMMA3, "gemma3", 236),
        (llmopt_testdata::QWEN05, "qwen2", 291),
    ] {
        let f = GgufFile::open(llmopt_testdata::model(name)).unwrap();
        assert_eq!(f.architecture(), Some(arch), "{name}");
        assert_eq!(f.tensors().len(), n_tensors, "{name}");
        let total: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();
        let last = f.tensors().iter().map(|t| t.offset + t.n_bytes).max().unwrap();
        assert!(last <= f.file_len() && total <= f.file_len());
        assert!(f.metadata().get_array("tokenizer.ggml.tokens").unwrap().len() > 40_000);
    }
}

/// Found by `cargo fuzz` (fuzz/fuzz_targets/gguf_header.rs): a tensor's relative offset near
/// `u64::MAX` overflowed when the data section's start was added. With overflow checks that was a
/// panic; without them the sum wrapped to a small in-bounds offset and the corrupt file was accepted
/// with the tensor pointing into the header.
#[test]
fn tensor_offset_overflowing_past_the_data_start_is_an_error() {
    let data = vec![0u8; 16];
    let t = TensorToWrite { name: "w".into(), ty: GgmlType::F32, shape: vec![4], data: &data };
    let mut bytes = Vec::new();
    write_gguf(&mut bytes, &Metadata::default(), &[t]).unwrap();
    let h = parse_header(&bytes).unwrap();
    // The offset field follows name (8 + 1), n_dims (4), one dimension (8) and the type (4).
    let at = h.tensors[0].info_offset as usize + 8 + 1 + 4 + 8 + 4;
    assert_eq!(bytes[at..at + 8], 0u64.to_le_bytes());
    // A multiple of the alignment whose sum with the data start wraps to exactly 0.
    let wrapping = 0u64.wrapping_sub(h.data_offset);
    bytes[at..at + 8].copy_from_slice(&wrapping.to_le_bytes());
    let err = parse_header(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::Truncated { .. }) && err.to_string().contains("tensor 'w'"),
        "{err}"
    );
}
