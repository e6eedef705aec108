//! Changes a loaded context's thread count between requests, so that each
//! request uses the cores other work leaves free
//! ([`hearken_engine_api::cores`]) without a new context (which would lose
//! the cached prompt prefix). llama.cpp has `llama_set_n_threads` for this;
//! llama-cpp-2 does not wrap it and keeps the context pointer private, but
//! prints it in its `Debug` output. The address read there is used only
//! after llama.cpp, asked through it, reports the same context size and
//! batch size as the wrapper does; otherwise the thread count stays fixed.
//!
//! This and the llama engine's only unsafe code.
#![allow(unsafe_code)]

use llama_cpp_2::context::LlamaContext;
use llama_cpp_sys_2::llama_context;

/// The context's address in llama.cpp, checked; `None` when it cannot be
/// read or does not answer like the wrapped context.
pub struct RawContext(usize);

impl RawContext {
    /// Finds the address of `context`.
    pub fn of(context: &LlamaContext<'_>) -> Option<RawContext> {
        let debug = format!("{context:?}");
        let hex: String = debug.split("0x").nth(1)?.chars().take_while(char::is_ascii_hexdigit).collect();
        let address = usize::from_str_radix(&hex, 16).ok().filter(|&a| a != 0)?;
        let raw = address as *const llama_context;
        // SAFETY: `address` is the value llama-cpp-2 printed as its live
        // context pointer; these getters only read fields of that context.
        let (n_ctx, n_batch) = unsafe { (llama_cpp_sys_2::llama_n_ctx(raw), llama_cpp_sys_2::llama_n_batch(raw)) };
        (n_ctx == context.n_ctx() && n_batch == context.n_batch()).then_some(RawContext(address))
    }

    /// Sets the threads for generating and for prompt batches.
    ///
    /// `context` must be the context this was found for; holding it mutably
    /// means no computation runs on it meanwhile.
    pub fn set_threads(&self, _context: &mut LlamaContext<'_>, threads: i32, threads_batch: i32) {
        // SAFETY: the address was checked against this live context in `of`,
        // and the exclusive borrow of the context keeps it alive and idle.
        unsafe { llama_cpp_sys_2::llama_set_n_threads(self.0 as *mut llama_context, threads, threads_batch) }
    }

    /// The threads llama.cpp will generate with.
    pub fn threads(&self, _context: &LlamaContext<'_>) -> i32 {
        // SAFETY: as in `set_threads`; a read of one field.
        unsafe { llama_cpp_sys_2::llama_n_threads(self.0 as *mut llama_context) }
    }
}
