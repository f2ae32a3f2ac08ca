//! The formats a model can be quantized to, and the `general.file_type` number (llama.cpp's
//! `LLAMA_FTYPE_*`) each writes. Whether a format can be produced is read from the format table
//! (`from_f32`), so a format works here the moment its encoder exists.

use llmopt_tensor::{GgmlType, FORMATS};

use crate::QuantError;

/// A file type: the format most weights get, and the number llama.cpp stores for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileType {
    /// The format of the quantizable weights (before llama.cpp's per-tensor rules).
    pub format: GgmlType,
    /// `general.file_type` (`enum llama_ftype`).
    pub id: u32,
    /// llama.cpp's name for it (`LLAMA_FTYPE_MOSTLY_Q4_0` without the prefix).
    pub name: &'static str,
}

/// One row per file type. A K-quant format names llama.cpp's smallest mixture of it (`Q3_K_S`,
/// `Q4_K_S`, `Q5_K_S`, listed first so [`FileType::of`] finds them); the `_M` and `_L` mixtures
/// share a format and differ in the per-tensor rules [`crate::rules`] applies. `Q8_1` and `Q8_K`
/// are activation formats and never files. MXFP4 stores llama.cpp's number for `MXFP4_MOE` (38),
/// though llama-quantize puts only MoE experts in MXFP4 and we put every quantizable weight;
/// llmopt's own formats use numbers from 200, which llama.cpp names "unknown".
#[rustfmt::skip]
pub static FILE_TYPES: [FileType; 25] = [
    FileType { format: GgmlType::F32,  id: 0,  name: "ALL_F32" },
    FileType { format: GgmlType::F16,  id: 1,  name: "MOSTLY_F16" },
    FileType { format: GgmlType::Q4_0, id: 2,  name: "MOSTLY_Q4_0" },
    FileType { format: GgmlType::Q4_1, id: 3,  name: "MOSTLY_Q4_1" },
    FileType { format: GgmlType::Q8_0, id: 7,  name: "MOSTLY_Q8_0" },
    FileType { format: GgmlType::Q5_0, id: 8,  name: "MOSTLY_Q5_0" },
    FileType { format: GgmlType::Q5_1, id: 9,  name: "MOSTLY_Q5_1" },
    FileType { format: GgmlType::Q2_K, id: 10, name: "MOSTLY_Q2_K" },
    FileType { format: GgmlType::Q3_K, id: 11, name: "MOSTLY_Q3_K_S" },
    FileType { format: GgmlType::Q4_K, id: 14, name: "MOSTLY_Q4_K_S" },
    FileType { format: GgmlType::Q5_K, id: 16, name: "MOSTLY_Q5_K_S" },
    FileType { format: GgmlType::Q6_K, id: 18, name: "MOSTLY_Q6_K" },
    FileType { format: GgmlType::BF16, id: 32, name: "MOSTLY_BF16" },
    FileType { format: GgmlType::MXFP4, id: 38, name: "MOSTLY_MXFP4" },
    FileType { format: GgmlType::MXFP8, id: 200, name: "LLMOPT_MXFP8" },
    FileType { format: GgmlType::INT8_PC, id: 201, name: "LLMOPT_INT8_PC" },
    FileType { format: GgmlType::FP8_PC, id: 202, name: "LLMOPT_FP8_PC" },
    FileType { format: GgmlType::NF4, id: 203, name: "LLMOPT_NF4" },
    FileType { format: GgmlType::INT4_G128, id: 204, name: "LLMOPT_INT4_G128" },
    FileType { format: GgmlType::W8A8, id: 205, name: "LLMOPT_W8A8" },
    FileType { format: GgmlType::W8A16, id: 206, name: "LLMOPT_W8A16" },
    FileType { format: GgmlType::Q3_K, id: 12, name: "MOSTLY_Q3_K_M" },
    FileType { format: GgmlType::Q3_K, id: 13, name: "MOSTLY_Q3_K_L" },
    FileType { format: GgmlType::Q4_K, id: 15, name: "MOSTLY_Q4_K_M" },
    FileType { format: GgmlType::Q5_K, id: 17, name: "MOSTLY_Q5_K_M" },
];

impl FileType {
    /// The file type whose weights are `format`, if it is one.
    pub fn of(format: GgmlType) -> Option<&'static FileType> {
        FILE_TYPES.iter().find(|f| f.format == format)
    }

    /// The short name the CLI takes for it: llama-quantize's (`Q4_K_M`, `Q4_0`, `F16`), written
    /// in ggml's case (`q4_K_M`, `q4_0`, `f16`).
    pub fn short_name(&self) -> String {
        let n = self.name.trim_start_matches("MOSTLY_").trim_start_matches("ALL_");
        let n = n.trim_start_matches("LLMOPT_");
        match n.split_once("_K") {
            Some((head, mixture)) => format!("{}_K{mixture}", head.to_lowercase()),
            None => n.to_lowercase(),
        }
    }
}

/// Whether this build can write `ty`: it is a file type's format and the table has its encoder.
pub fn can_encode(ty: GgmlType) -> bool {
    FileType::of(ty).is_some() && ty.spec().from_f32.is_some()
}

/// The formats this build can quantize to, in the table's order (`f32, f16, bf16, q4_0, ...`).
pub fn encodable_formats() -> Vec<GgmlType> {
    FORMATS.iter().map(|s| s.ty).filter(|&t| can_encode(t)).collect()
}

/// [`encodable_formats`] as a comma-separated list of names, for messages.
pub fn encodable_names() -> String {
    encodable_formats().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// Other names for formats: INT4 with groups of 32, scale and min is exactly Q4_1.
const ALIASES: [(&str, GgmlType); 1] = [("int4_g32", GgmlType::Q4_1)];

/// Reads a format name (ggml's, any case: `q4_0`, `Q4_K`, `bf16`, or an alias such as
/// `int4_g32` for Q4_1) that this build can encode.
pub fn parse_format(name: &str) -> Result<GgmlType, QuantError> {
    let name = name.trim();
    let alias = ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)).map(|(_, t)| t.name());
    let name = alias.unwrap_or(name);
    let ty = FORMATS.iter().find(|s| s.name.eq_ignore_ascii_case(name)).map(|s| s.ty).ok_or_else(
        || QuantError::UnknownFormat { name: name.to_string(), available: encodable_names() },
    )?;
    if FileType::of(ty).is_none() {
        return Err(QuantError::NotAWeightFormat { ty, available: encodable_names() });
    }
    if !can_encode(ty) {
        return Err(QuantError::NoEncoder { ty, available: encodable_names() });
    }
    Ok(ty)
}

/// Reads a file type: a format name ([`parse_format`]; a K-quant gives its `_S` mixture) or
/// llama-quantize's name of a mixture, any case (`q4_K_M`, `Q3_K_L`, `q4_k_s`).
pub fn parse_file_type(name: &str) -> Result<&'static FileType, QuantError> {
    let wanted = name.trim();
    if let Some(ft) = FILE_TYPES.iter().find(|f| f.short_name().eq_ignore_ascii_case(wanted)) {
        parse_format(ft.format.name())?;
        return Ok(ft);
    }
    let ty = parse_format(wanted).map_err(|e| match e {
        QuantError::UnknownFormat { name, .. } => {
            QuantError::UnknownFormat { name, available: file_type_names() }
        }
        e => e,
    })?;
    FileType::of(ty).ok_or(QuantError::NotAWeightFormat { ty, available: encodable_names() })
}

/// The file types this build can write, for messages: the formats, then the mixtures.
pub fn file_type_names() -> String {
    let mixtures = FILE_TYPES
        .iter()
        .filter(|f| can_encode(f.format) && FileType::of(f.format).is_some_and(|s| s.id != f.id));
    let mut names = vec![encodable_names()];
    names.extend(mixtures.map(FileType::short_name));
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_type_numbers_are_llama_cpps() {
        let id = |t| FileType::of(t).unwrap().id;
        assert_eq!(id(GgmlType::F32), 0);
        assert_eq!(id(GgmlType::F16), 1);
        assert_eq!(id(GgmlType::Q4_0), 2);
        assert_eq!(id(GgmlType::Q4_1), 3);
        assert_eq!(id(GgmlType::Q8_0), 7);
        assert_eq!(id(GgmlType::Q5_0), 8);
        assert_eq!(id(GgmlType::Q5_1), 9);
        assert_eq!(id(GgmlType::BF16), 32);
        assert_eq!(FileType::of(GgmlType::Q8_K), None);
    }

    #[test]
    fn every_format_with_an_encoder_and_a_file_type_is_offered() {
        let names = encodable_names();
        for n in ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"] {
            assert!(names.contains(n), "{names}");
            assert_eq!(parse_format(&n.to_uppercase()).unwrap().name(), n);
        }
        assert!(!names.contains("q8_1") && !names.contains("q8_K"), "{names}");
        for n in ["mxfp4", "mxfp8", "int8_pc", "fp8_pc", "nf4", "int4_g128", "w8a8", "w8a16"] {
            assert!(names.contains(n), "{names}");
            assert_eq!(parse_format(n).unwrap().name(), n);
        }
        assert_eq!(parse_format("INT4_G32").unwrap(), GgmlType::Q4_1);
    }

    #[test]
    fn mixtures_are_read_by_llama_quantizes_names() {
        let id = |n: &str| parse_file_type(n).map(|f| f.id);
        if can_encode(GgmlType::Q4_K) {
            assert_eq!(id("q4_K_M").unwrap(), 15);
            assert_eq!(id("Q4_K_S").unwrap(), 14);
            assert_eq!(id("q4_K").unwrap(), 14);
        }
        if can_encode(GgmlType::Q3_K) {
            assert_eq!(id("Q3_K_M").unwrap(), 12);
            assert_eq!(id("q3_k_l").unwrap(), 13);
        }
        assert_eq!(id("q4_0").unwrap(), 2);
        assert_eq!(id("f32").unwrap(), 0);
        assert_eq!(FileType::of(GgmlType::Q5_K).unwrap().short_name(), "q5_K_S");
        match parse_file_type("q4_K_X") {
            Err(QuantError::UnknownFormat { available, .. }) => {
                assert!(available.contains("q4_K_M"), "{available}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_activation_and_unencodable_formats_are_refused() {
        assert!(matches!(parse_format("q9_9"), Err(QuantError::UnknownFormat { .. })));
        assert!(matches!(parse_format("q8_1"), Err(QuantError::NotAWeightFormat { .. })));
        for ty in [GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q6_K] {
            match parse_format(ty.name()) {
                Ok(t) => assert!(ty.spec().from_f32.is_some() && t == ty),
                Err(e) => assert!(matches!(e, QuantError::NoEncoder { .. }), "{e}"),
            }
        }
    }
}
