//! `--keep PATTERN=FORMAT`: a format for the tensors whose names match a regular expression, as
//! llama-quantize's `--tensor-type` (the pattern is searched anywhere in the name; the first rule
//! that matches a tensor wins).

use std::{fmt, str::FromStr};

use llmopt_tensor::GgmlType;
use regex::Regex;

use crate::{ftype::parse_format, QuantError};

/// One override: tensors whose names match `pattern` get `format`.
#[derive(Clone, Debug)]
pub struct KeepRule {
    text: String,
    pattern: Regex,
    /// The format the matching tensors get.
    pub format: GgmlType,
}

impl KeepRule {
    /// Reads `PATTERN=FORMAT` (split at the last `=`); the format must be one this build encodes.
    pub fn parse(s: &str) -> Result<Self, QuantError> {
        let bad = |reason: String| QuantError::BadKeep { rule: s.to_string(), reason };
        let (pattern, format) = s
            .rsplit_once('=')
            .ok_or_else(|| bad("expected PATTERN=FORMAT, e.g. attn_v=q8_0".into()))?;
        let format = parse_format(format).map_err(|e| bad(e.to_string()))?;
        Self::new(pattern, format).map_err(|e| match e {
            QuantError::BadKeep { reason, .. } => bad(reason),
            e => e,
        })
    }

    /// A rule from its parts; the pattern must be a valid, non-empty regular expression.
    pub fn new(pattern: &str, format: GgmlType) -> Result<Self, QuantError> {
        let text = format!("{pattern}={}", format.name());
        let bad = |reason: String| QuantError::BadKeep { rule: text.clone(), reason };
        if pattern.is_empty() {
            return Err(bad("the pattern is empty".into()));
        }
        let pattern = Regex::new(pattern).map_err(|e| {
            // The regex crate's message draws a caret under the error over several lines; its
            // last line says what is wrong.
            let msg = e.to_string();
            let last = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&msg);
            bad(format!("invalid regular expression: {}", last.trim_start_matches("error: ")))
        })?;
        Ok(Self { text, pattern, format })
    }

    /// Whether the rule applies to the tensor called `name` (the pattern matches anywhere in it).
    pub fn matches(&self, name: &str) -> bool {
        self.pattern.is_match(name)
    }
}

impl fmt::Display for KeepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for KeepRule {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_anywhere_in_the_name() {
        let k = KeepRule::parse(r"blk\.(0|29)\.ffn_down=Q8_0").unwrap();
        assert_eq!(k.format, GgmlType::Q8_0);
        assert_eq!(k.to_string(), r"blk\.(0|29)\.ffn_down=q8_0");
        assert!(k.matches("blk.0.ffn_down.weight"));
        assert!(k.matches("blk.29.ffn_down.weight"));
        assert!(!k.matches("blk.2.ffn_down.weight"));
        let exact = KeepRule::parse(r"^token_embd\.weight$=f16").unwrap();
        assert!(
            exact.matches("token_embd.weight") && !exact.matches("per_layer_token_embd.weight")
        );
    }

    #[test]
    fn bad_rules_say_why() {
        let why = |s: &str| match KeepRule::parse(s) {
            Err(QuantError::BadKeep { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert!(why("attn_v").contains("PATTERN=FORMAT"));
        assert!(why("=q8_0").contains("empty"));
        assert!(
            why("attn_(v=q8_0").contains("invalid regular expression"),
            "{}",
            why("attn_(v=q8_0")
        );
        assert!(!why("attn_(v=q8_0").contains('\n'));
        assert!(why("attn_v=q9_9").contains("unknown format"), "{}", why("attn_v=q9_9"));
    }
}
