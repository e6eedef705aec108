//! What may happen to an utterance's commands before they go out: whether
//! the utterance was meant for hearken at all (wake phrase, push-to-talk),
//! spoken answers to held commands, the activation and confirmation state
//! machine, and the rate limits every command passes.

pub(crate) mod activation;
pub(crate) mod conversation;
pub(crate) mod rate_limit;
