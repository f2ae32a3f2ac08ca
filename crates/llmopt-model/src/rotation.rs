//! Walsh-Hadamard rotations of a Linear's input that a file's weights were written for (W8A8 by
//! `quantize --method smoothquant`): the sites, their GGUF keys, and the chunk per site.

use llmopt_formats::gguf::Metadata;

use crate::ModelError;

/// Where the forward rotates a Linear's input, in chunks of a power of two, by the orthonormal
/// Walsh-Hadamard matrix (its own inverse). The weights reading that input were rotated the same
/// way when the file was written, so the product is unchanged in exact arithmetic, while each
/// outlier of the input is spread over its chunk (per-token int8 activations then keep the
/// other values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RotationSite {
    /// The attention norm's output, read by Q, K and V.
    AttnIn,
    /// The feed-forward norm's output, read by gate and up.
    FfnIn,
    /// The gated activation, read by down.
    FfnDown,
}

impl RotationSite {
    /// Every site, in the order of [`Rotations`]'s slots.
    pub const ALL: [RotationSite; 3] =
        [RotationSite::AttnIn, RotationSite::FfnIn, RotationSite::FfnDown];

    /// The GGUF key holding this site's chunk.
    pub fn key(self) -> &'static str {
        match self {
            RotationSite::AttnIn => "llmopt.model.rotation.attn_in",
            RotationSite::FfnIn => "llmopt.model.rotation.ffn_in",
            RotationSite::FfnDown => "llmopt.model.rotation.ffn_down",
        }
    }

    /// The layer weights (GGUF names after `blk.N.`, before `.weight`) that read this input.
    pub fn weights(self) -> &'static [&'static str] {
        match self {
            RotationSite::AttnIn => &["attn_q", "attn_k", "attn_v"],
            RotationSite::FfnIn => &["ffn_gate", "ffn_up"],
            RotationSite::FfnDown => &["ffn_down"],
        }
    }

    /// The site whose weights include `weight` (`"attn_k"`), if any.
    pub fn of_weight(weight: &str) -> Option<RotationSite> {
        Self::ALL.into_iter().find(|s| s.weights().contains(&weight))
    }
}

/// The chunk of each [`RotationSite`]; `None` where the input is not rotated (every file but
/// those written for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotations([Option<usize>; 3]);

impl Rotations {
    /// The chunk of `site`.
    pub fn get(&self, site: RotationSite) -> Option<usize> {
        self.0[site as usize]
    }

    /// Sets the chunk of `site`.
    pub fn set(&mut self, site: RotationSite, chunk: Option<usize>) {
        self.0[site as usize] = chunk;
    }

    /// Whether any input is rotated.
    pub fn any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }

    /// The chunks the file's metadata records.
    pub fn from_metadata(meta: &Metadata) -> Self {
        let mut r = Self::default();
        for site in RotationSite::ALL {
            r.set(site, meta.get_u64(site.key()).map(|v| v as usize));
        }
        r
    }

    /// Each chunk must be a power of two (at least 2) dividing its input's width.
    pub fn validate(&self, d_model: usize, ffn_dim: usize) -> Result<(), ModelError> {
        for site in RotationSite::ALL {
            let Some(r) = self.get(site) else { continue };
            let width = if site == RotationSite::FfnDown { ffn_dim } else { d_model };
            if !(r.is_power_of_two() && r >= 2 && width.is_multiple_of(r)) {
                return Err(ModelError::InvalidMetadata {
                    key: site.key().into(),
                    reason: format!(
                        "{r} is not a power of two (at least 2) dividing the input width {width}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The chunk a rotation takes for an input of `width`: its largest power-of-two divisor
/// (576 -> 64, 1536 -> 512, 2048 -> 2048, 4864 -> 256); `None` under 32, where it would spread
/// an outlier over too few values to matter.
pub fn rotation_chunk(width: usize) -> Option<usize> {
    let r = 1usize << width.trailing_zeros().min(usize::BITS - 1);
    (width > 0 && r >= 32).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_the_largest_power_of_two_dividing_the_width() {
        assert_eq!(rotation_chunk(576), Some(64));
        assert_eq!(rotation_chunk(1536), Some(512));
        assert_eq!(rotation_chunk(2048), Some(2048));
        assert_eq!(rotation_chunk(4864), Some(256));
        assert_eq!(rotation_chunk(48), None);
        assert_eq!(rotation_chunk(0), None);
    }

    #[test]
    fn sites_name_their_weights_and_chunks_are_checked() {
        assert_eq!(RotationSite::of_weight("attn_k"), Some(RotationSite::AttnIn));
        assert_eq!(RotationSite::of_weight("ffn_down"), Some(RotationSite::FfnDown));
        assert_eq!(RotationSite::of_weight("attn_output"), None);
        let mut r = Rotations::default();
        assert!(!r.any() && r.validate(576, 1536).is_ok());
        r.set(RotationSite::FfnDown, Some(512));
        r.set(RotationSite::AttnIn, Some(64));
        assert!(r.any() && r.validate(576, 1536).is_ok());
        r.set(RotationSite::FfnIn, Some(48));
        let e = r.validate(576, 1536).unwrap_err().to_string();
        assert!(e.contains("rotation.ffn_in") && e.contains("power of two"), "{e}");
    }
}
