//! One GGUF model, one context, greedy decoding under an optional JSON
//! Schema. The context keeps the tokens it has already decoded, so a request
//! that starts like the previous one (the catalog prompt) only decodes what
//! differs. Schema constraint uses llguidance's `Matcher` directly: a mask
//! per sampled token, and forced tokens (jump-forward) decoded as one batch.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::TokEnv;

use hearken_engine_api::cores::ThreadBudget;

use crate::threads::RawContext;
use crate::tok_env::LlamaTokEnv;

/// Errors of the generation stage.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The model file cannot be loaded or the context cannot be created.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The GGUF file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The request cannot be served as asked (a client error).
    #[error("{0}")]
    BadRequest(String),
    /// llama.cpp failed while decoding.
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// Settings fixed at startup.
pub struct GeneratorConfig {
    /// Context length in tokens.
    pub n_ctx: u32,
    /// Most threads for generating one token at a time.
    pub threads: i32,
    /// Most threads for decoding prompts (batches).
    pub threads_batch: i32,
    /// Use fewer threads while other work keeps cores busy (see `hearken_engine_api::cores`).
    pub adaptive_threads: bool,
    /// Layers offloaded to the GPU (0 on CPU builds).
    pub gpu_layers: u32,
    /// Feed grammar-forced tokens in batches (off only to measure what it saves).
    pub jump_forward: bool,
}

/// One finished completion.
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// `stop` (end of turn or grammar complete) or `length` (hit max_tokens).
    pub finish_reason: &'static str,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the previous request's KV cache.
    pub cached_tokens: usize,
    /// Tokens generated, forced ones included.
    pub completion_tokens: usize,
    /// Of those, tokens the grammar forced (jump-forward: batched, and never decoded at the end).
    pub forced_tokens: usize,
    /// Time until the new part of the prompt (with the reply's forced opening) was decoded.
    pub prompt_ms: f64,
    /// Time spent generating.
    pub generate_ms: f64,
    /// Threads it generated with.
    pub threads: i32,
}

/// The model, its context and the grammar machinery; one request at a time.
pub struct Generator {
    model: &'static LlamaModel,
    context: LlamaContext<'static>,
    template: Option<LlamaChatTemplate>,
    factory: ParserFactory,
    /// Tokens whose keys and values are in the KV cache, in order.
    cached: Vec<LlamaToken>,
    n_batch: usize,
    jump_forward: bool,
    /// Where the thread count is changed per request; `None`: fixed at load.
    raw: Option<RawContext>,
    budget: ThreadBudget,
    threads: i32,
    threads_batch: i32,
}

impl Generator {
    /// Loads the model once; it lives as long as the process.
    pub fn load(path: &Path, config: &GeneratorConfig) -> Result<Generator, GenerateError> {
        let load_error = |reason: String| GenerateError::Load { path: path.display().to_string(), reason };
        let backend: &'static LlamaBackend =
            Box::leak(Box::new(LlamaBackend::init().map_err(|e| load_error(e.to_string()))?));
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model: &'static LlamaModel = Box::leak(Box::new(
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| load_error(e.to_string()))?,
        ));
        let n_batch = 512;
        let context_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(config.threads)
            .with_n_threads_batch(config.threads_batch);
        let context = model.new_context(backend, context_params).map_err(|e| load_error(e.to_string()))?;
        let raw = if config.adaptive_threads { RawContext::of(&context) } else { None };
        if config.adaptive_threads && raw.is_none() {
            tracing::warn!("cannot change the context's threads per request; they stay at {}", config.threads);
        }
        let most = config.threads.max(config.threads_batch).max(1);
        // No sampler where the threads cannot be changed anyway.
        let budget = ThreadBudget::new(usize::try_from(most).unwrap_or(1), raw.is_some());
        let template = model.chat_template(None).ok();
        let tok_env: TokEnv = LlamaTokEnv::build(model);
        let mut factory = ParserFactory::new_simple(&tok_env).map_err(|e| load_error(e.to_string()))?;
        factory.quiet();
        Ok(Generator {
            model,
            context,
            template,
            factory,
            cached: Vec::new(),
            n_batch: n_batch as usize,
            jump_forward: config.jump_forward,
            raw,
            budget,
            threads: config.threads,
            threads_batch: config.threads_batch,
        })
    }

    /// Renders chat messages with the model's own template (ChatML when the
    /// GGUF has none), ending with the assistant's turn.
    pub fn render_chat(&self, messages: &[(String, String)]) -> Result<String, GenerateError> {
        let chat = messages
            .iter()
            .map(|(role, content)| LlamaChatMessage::new(role.clone(), content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GenerateError::BadRequest(format!("message contains a NUL byte: {e}")))?;
        if let Some(template) = &self.template {
            if let Ok(text) = self.model.apply_chat_template(template, &chat, true) {
                return Ok(text);
            }
        }
        let mut text = String::new();
        for (role, content) in messages {
            text.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        text.push_str("<|im_start|>assistant\n");
        Ok(text)
    }

    /// Compiles a JSON Schema into a grammar now, so a bad schema is a client
    /// error before any decoding. Whitespace is fixed (compact JSON) unless
    /// the schema's own `x-guidance` says otherwise: fewer tokens, more forced.
    pub fn compile_schema(&self, schema: &serde_json::Value) -> Result<Matcher, GenerateError> {
        let mut schema = schema.clone();
        if let Some(object) = schema.as_object_mut() {
            object.entry("x-guidance").or_insert_with(|| serde_json::json!({"whitespace_flexible": false}));
        } else {
            return Err(GenerateError::BadRequest("the JSON schema must be an object".to_owned()));
        }
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_json_schema(schema))
            .map_err(|e| GenerateError::BadRequest(format!("invalid JSON schema: {e}")))?;
        Ok(Matcher::new(Ok(parser)))
    }

    /// Generates greedily after `prompt`, constrained by `matcher` when given.
    pub fn generate(
        &mut self,
        prompt: &str,
        mut matcher: Option<Matcher>,
        max_tokens: usize,
    ) -> Result<Completion, GenerateError> {
        let add_bos = self.model.vocab().should_add_bos();
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), add_bos, true);
        let n_ctx = self.context.n_ctx() as usize;
        if tokens.is_empty() {
            return Err(GenerateError::BadRequest("the prompt is empty".to_owned()));
        }
        if tokens.len() + max_tokens > n_ctx {
            return Err(GenerateError::BadRequest(format!(
                "prompt ({} tokens) plus max_tokens ({max_tokens}) exceeds the context of {n_ctx} tokens",
                tokens.len()
            )));
        }
        let started = Instant::now();
        let threads = self.use_free_cores();
        // Reuse the longest common prefix; at least the last prompt token is
        // decoded again so there are logits to sample from.
        let mut common = self.cached.iter().zip(&tokens).take_while(|(a, b)| a == b).count();
        common = common.min(tokens.len() - 1);
        self.truncate_cache(common)?;
        let eog = |t: LlamaToken| self.model.vocab().is_eog(t);
        let mut output: Vec<LlamaToken> = Vec::new();
        // Tokens the model has not seen yet: the new part of the prompt, then what
        // the matcher accepted. They are decoded in one batch only when a choice
        // needs the logits after them, so the reply's forced opening goes in the
        // same batch as the prompt.
        let mut pending: Vec<LlamaToken> = tokens[common..].to_vec();
        let mut prompt_ms = None;
        let mut forced = 0;
        let mut finish_reason = "length";
        let grammar_error = |e: anyhow::Error| GenerateError::Decode(format!("grammar: {e}"));
        while output.len() < max_tokens {
            if let Some(m) = matcher.as_mut() {
                if m.is_stopped() {
                    finish_reason = "stop";
                    break;
                }
                if self.jump_forward {
                    let mut ff: Vec<LlamaToken> =
                        m.compute_ff_tokens().into_iter().map(|t| LlamaToken(t.cast_signed())).collect();
                    ff.truncate(max_tokens - output.len());
                    if !ff.is_empty() {
                        let ids: Vec<u32> = ff.iter().map(|t| t.0.cast_unsigned()).collect();
                        m.consume_tokens(&ids).map_err(grammar_error)?;
                        forced += ff.len();
                        output.extend_from_slice(&ff);
                        pending.extend(ff);
                        // Whatever the grammar forces at the end is never decoded.
                        if m.is_stopped() || output.len() >= max_tokens {
                            finish_reason = if m.is_stopped() { "stop" } else { "length" };
                            break;
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let batch = std::mem::take(&mut pending);
                self.decode(&batch)?;
                prompt_ms.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1000.0);
            }
            let logits = self.context.get_logits_ith(-1);
            let next = match matcher.as_mut() {
                Some(m) => {
                    let mask = m.compute_mask_or_eos().map_err(grammar_error)?;
                    let allowed = logits.iter().enumerate().filter(|(i, _)| mask.is_allowed(*i as u32));
                    match allowed.max_by(|a, b| a.1.total_cmp(b.1)) {
                        Some((i, _)) => LlamaToken(i as i32),
                        None => return Err(GenerateError::Decode("the grammar allows no token".to_owned())),
                    }
                }
                None => logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(LlamaToken(0), |(i, _)| LlamaToken(i as i32)),
            };
            if eog(next) {
                finish_reason = "stop";
                break;
            }
            if let Some(m) = matcher.as_mut() {
                m.consume_token(next.0.cast_unsigned()).map_err(grammar_error)?;
            }
            output.push(next);
            pending.push(next);
        }
        let mut bytes = Vec::new();
        for token in &output {
            bytes.extend(self.model.vocab().token_to_piece(*token, false, None));
        }
        Ok(Completion {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            finish_reason,
            prompt_tokens: tokens.len(),
            cached_tokens: common,
            completion_tokens: output.len(),
            forced_tokens: forced,
            prompt_ms: prompt_ms.unwrap_or(0.0),
            generate_ms: started.elapsed().as_secs_f64() * 1000.0 - prompt_ms.unwrap_or(0.0),
            threads,
        })
    }

    /// Sets the context's threads to the cores other work leaves free (within
    /// the configured most) and returns the generating threads.
    fn use_free_cores(&mut self) -> i32 {
        let Some(raw) = &self.raw else { return self.threads };
        let free = i32::try_from(self.budget.now()).unwrap_or(1);
        let (threads, threads_batch) = (self.threads.min(free).max(1), self.threads_batch.min(free).max(1));
        raw.set_threads(&mut self.context, threads, threads_batch);
        raw.threads(&self.context)
    }

    /// Drops cached tokens from position `keep` on, in llama.cpp and in our record.
    fn truncate_cache(&mut self, keep: usize) -> Result<(), GenerateError> {
        if keep < self.cached.len() {
            let ok = self
                .context
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .map_err(|e| GenerateError::Decode(e.to_string()))?;
            if !ok {
                self.context.clear_kv_cache();
                self.cached.clear();
                return Ok(());
            }
            self.cached.truncate(keep);
        }
        Ok(())
    }

    /// Decodes `tokens` after the cached ones, in batches; logits for the last one.
    fn decode(&mut self, tokens: &[LlamaToken]) -> Result<(), GenerateError> {
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (chunk_index, chunk) in tokens.chunks(self.n_batch).enumerate() {
            batch.clear();
            let last_chunk = (chunk_index + 1) * self.n_batch >= tokens.len();
            for (i, token) in chunk.iter().enumerate() {
                let position = (self.cached.len() + i) as i32;
                let wants_logits = last_chunk && i + 1 == chunk.len();
                batch.add(*token, position, &[0], wants_logits).map_err(|e| GenerateError::Decode(e.to_string()))?;
            }
            if let Err(e) = self.context.decode(&mut batch) {
                // What was half-decoded is unknown: start from scratch next time.
                self.context.clear_kv_cache();
                self.cached.clear();
                return Err(GenerateError::Decode(e.to_string()));
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }
}
