//! The vocabulary as llama.cpp loads it: token texts, scores and attributes, special ids with
//! their defaults, the end-of-generation set, and the special-token list used to split text.
//!
//! llama.cpp does not only read the GGUF token types: it also promotes tokens to "control" by
//! their text (`<|im_end|>`, `<end_of_turn>`, FIM markers...), gathers end-of-generation tokens by
//! text, and applies per-model quirks. Tokenization depends on those attributes (control tokens
//! are matched only with `parse_special`, user-defined ones always), so we reproduce them here.

use std::collections::HashMap;

use crate::error::TokenizerError;
use crate::gguf::VocabData;
use crate::pretok::PreTokenizer;

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// Which merge algorithm the vocabulary uses.
#[derive(Clone, Debug)]
pub(crate) enum Family {
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`).
    Bpe { pre: PreTokenizer, ignore_merges: bool },
    /// SentencePiece-style: spaces escaped to U+2581, merges by score, byte fallback
    /// (`tokenizer.ggml.model = llama`).
    Spm,
}

/// Special token ids (after defaults, metadata overrides and detection by text).
#[derive(Clone, Debug, Default)]
pub(crate) struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

impl Specials {
    fn slot(&mut self, key_name: &str) -> &mut Option<u32> {
        match key_name {
            "bos" => &mut self.bos,
            "eos" => &mut self.eos,
            "eot" => &mut self.eot,
            "eom" => &mut self.eom,
            "unknown" => &mut self.unk,
            "seperator" => &mut self.sep,
            "padding" => &mut self.pad,
            "mask" => &mut self.mask,
            "fim_pre" | "prefix" => &mut self.fim_pre,
            "fim_suf" | "suffix" => &mut self.fim_suf,
            "fim_mid" | "middle" => &mut self.fim_mid,
            "fim_pad" => &mut self.fim_pad,
            "fim_rep" => &mut self.fim_rep,
            _ => &mut self.fim_sep,
        }
    }
}

/// A loaded vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Vocab {
    pub family: Family,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    /// Text to id; for duplicate texts the last id wins (as in llama.cpp).
    pub token_to_id: HashMap<String, u32>,
    pub merges: Vec<String>,
    pub ids: Specials,
    /// End-of-generation ids, sorted.
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// Control, user-defined and unknown tokens, longest text first (ties by id).
    pub special_cache: Vec<u32>,
}

// Texts llama.cpp uses to find special tokens the metadata does not name. Lists are in priority
// order (llama.cpp takes the first hit in hash-map order; we take the first in list order).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] =
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Pre-tokenizer names for which llama.cpp also sets `ignore_merges` and `add_bos`.
const LLAMA3_PRES: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
];

impl Vocab {
    pub(crate) fn new(d: VocabData) -> Result<Self, TokenizerError> {
        let n = d.tokens.len();
        let (family, mut ids, mut add_bos, mut add_space_prefix) = match d.model.as_str() {
            "gpt2" => {
                let name = d.pre.clone().unwrap_or_else(|| "default".to_string());
                let pre = PreTokenizer::for_name(&name)
                    .ok_or_else(|| TokenizerError::UnsupportedPre(name.clone()))?;
                let llama3 = LLAMA3_PRES.contains(&name.as_str());
                let ids = Specials { bos: Some(11), eos: Some(11), ..Specials::default() };
                (Family::Bpe { pre, ignore_merges: llama3 }, ids, llama3, false)
            }
            "llama" => {
                let ids =
                    Specials { bos: Some(1), eos: Some(2), unk: Some(0), ..Specials::default() };
                (Family::Spm, ids, true, true)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        if let Some(v) = d.add_space_prefix {
            add_space_prefix = v;
        }

        let mut tokens = d.tokens;
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
            token_to_id.insert(t.clone(), i as u32);
        }
        let scores = if d.scores.is_empty() { vec![0.0; n] } else { d.scores[..n].to_vec() };
        let mut attrs: Vec<u16> = (0..n)
            .map(|i| match d.token_types.get(i) {
                None => attr::NORMAL,
                Some(1) => attr::NORMAL,
                Some(2) => attr::UNKNOWN,
                Some(3) => attr::CONTROL,
                Some(4) => attr::USER_DEFINED,
                Some(5) => attr::UNUSED,
                Some(6) => attr::BYTE,
                Some(_) => 0,
            })
            .collect();

        // Defaults out of range are disabled; metadata ids override when in range.
        for name in crate::gguf::SPECIAL_KEYS {
            let slot = ids.slot(name);
            if slot.is_some_and(|id| id as usize >= n) {
                *slot = None;
            }
        }
        for &(name, id) in &d.special_ids {
            if (id as usize) < n {
                *ids.slot(name) = Some(id as u32);
            }
        }
        if let Some(v) = d.add_bos {
            add_bos = v;
        }
        let add_eos = d.add_eos.unwrap_or(false);

        // Detection by text; a detected token becomes a control token.
        let detect = |slot: &mut Option<u32>, texts: &[&str], attrs: &mut Vec<u16>| {
            if slot.is_some() {
                return;
            }
            if let Some(&id) = texts.iter().find_map(|t| token_to_id.get(*t)) {
                *slot = Some(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        };
        detect(&mut ids.eot, EOT_TEXTS, &mut attrs);
        detect(&mut ids.eom, EOM_TEXTS, &mut attrs);
        detect(&mut ids.fim_pre, FIM_PRE_TEXTS, &mut attrs);
        detect(&mut ids.fim_suf, FIM_SUF_TEXTS, &mut attrs);
        detect(&mut ids.fim_mid, FIM_MID_TEXTS, &mut attrs);
        detect(&mut ids.fim_pad, FIM_PAD_TEXTS, &mut attrs);
        detect(&mut ids.fim_rep, FIM_REP_TEXTS, &mut attrs);
        detect(&mut ids.fim_sep, FIM_SEP_TEXTS, &mut attrs);

        let mut eog: Vec<u32> =
            [ids.fim_pad, ids.fim_rep, ids.fim_sep].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these render as text.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        // o200k_harmony / solar-open: `<|end|>` ends a message, not the generation.
        let has = |eog: &[u32], t: &str| token_to_id.get(t).is_some_and(|id| eog.contains(id));
        let harmony = (has(&eog, "<|return|>") && has(&eog, "<|call|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>"));
        if has(&eog, "<|end|>") && harmony {
            let end = token_to_id["<|end|>"];
            eog.retain(|&id| id != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
        if (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>")) && has(&eog, "</s>") {
            let s = token_to_id["</s>"];
            eog.retain(|&id| id != s);
            attrs[s as usize] = attr::NORMAL;
        }

        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_cache.sort_by_key(|&id| std::cmp::Reverse(tokens[id as usize].len()));

        // Phi-3: special tokens swallow the white space after them.
        let name = d.model_name.to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_cache {
                attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(&id) = token_to_id.get("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = token_to_id.get(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }

        Ok(Self {
            family,
            tokens,
            scores,
            attrs,
            token_to_id,
            merges: d.merges,
            ids,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            special_cache,
        })
    }

    /// The id of a token text.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
}
