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

/// One row per format that is a file type. The K-quants stand for llama.cpp's smallest mixture of
/// each (`Q3_K_S`, `Q4_K_S`, `Q5_K_S`), whose per-tensor rules [`crate::rules`] applies; `Q8_1`
/// and `Q8_K` are activation formats and never files. MXFP4 stores llama.cpp's number for
/// `MXFP4_MOE` (38), though llama-quantize puts only MoE experts in MXFP4 and we put every
/// quantizable weight; llmopt's own formats use numbers from 200, which llama.cpp names "unknown".
#[rustfmt::skip]
pub static FILE_TYPES: [FileType; 19] = [
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
];

impl FileType {
    /// The file type whose weights are `format`, if it is one.
    pub fn of(format: GgmlType) -> Option<&'static FileType> {
        FILE_TYPES.iter().find(|f| f.format == format)
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
        for n in ["mxfp4", "mxfp8", "int8_pc", "fp8_pc", "nf4", "int4_g128"] {
            assert!(names.contains(n), "{names}");
            assert_eq!(parse_format(n).unwrap().name(), n);
        }
        assert_eq!(parse_format("INT4_G32").unwrap(), GgmlType::Q4_1);
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
