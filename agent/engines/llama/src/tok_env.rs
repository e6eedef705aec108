//! A canonical llguidance tokenizer environment backed by the llama.cpp
//! tokenizer. llama-cpp-2's own `llguidance_build_tok_env` declares itself
//! non-canonical, which makes llguidance report no forced tokens; with this
//! one, tokens the grammar forces (keys, punctuation, enum tails) are fed to
//! the model in one batch instead of being sampled one by one.

use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// The trie of the model's vocabulary plus its real tokenizer.
pub struct LlamaTokEnv {
    trie: TokTrie,
    model: &'static LlamaModel,
}

impl LlamaTokEnv {
    /// Walks the vocabulary once (hundreds of milliseconds for large
    /// vocabularies): build it at startup and share it.
    pub fn build(model: &'static LlamaModel) -> TokEnv {
        let vocab = model.vocab();
        let n_vocab = model.n_vocab().cast_unsigned();
        let eot = vocab.eot().0;
        let tok_eos = if eot == -1 { vocab.eos().0.cast_unsigned() } else { eot.cast_unsigned() };
        let info = TokRxInfo::new(n_vocab, tok_eos);
        let mut eog_tokens = vec![tok_eos];
        let mut words = Vec::with_capacity(n_vocab as usize);
        for i in 0..n_vocab.cast_signed() {
            let token = LlamaToken(i);
            if vocab.is_eog(token) && i.cast_unsigned() != tok_eos {
                eog_tokens.push(i.cast_unsigned());
            }
            let bytes = vocab.token_to_piece(token, false, None);
            if bytes.is_empty() {
                // Special tokens carry llguidance's 0xFF marker so they never match text.
                let special = vocab.token_to_piece(token, true, None);
                let mut marked = Vec::with_capacity(special.len() + 1);
                if !special.is_empty() {
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend(special);
                }
                words.push(marked);
            } else {
                words.push(bytes);
            }
        }
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog_tokens);
        Arc::new(LlamaTokEnv { trie, model })
    }
}

impl TokenizerEnv for LlamaTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(_) => self.model.vocab().tokenize(s, false, false).into_iter().map(|t| t.0.cast_unsigned()).collect(),
            // Partial UTF-8 cannot go through the model's tokenizer; the trie's greedy split is exact for bytes.
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }

    fn tokenize_is_canonical(&self) -> bool {
        true
    }
}
