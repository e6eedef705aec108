//! Which reading to act on when favouring the catalog's vocabulary changed a
//! word. The boosts tip close calls towards what the site has, which fixes a
//! misheard verb or name ("lack all the doors" → "lock …") but can also steer
//! a request for something the site lacks onto something it has ("the
//! bedroom tv" → "the bedroom ceiling" light), or a remark onto a request.
//! So the free reading (what the decoder preferred without the boosts) is
//! interpreted too, and the boosted reading is acted on only where the free
//! one understood too little to say anything:
//!
//! - both give the same commands: either;
//! - the free reading gives other commands: refused as ambiguous (heard two ways);
//! - the free reading is a question, not a request, or names what the site
//!   lacks or cannot do: that refusal stands (never a substitute);
//! - otherwise (no device or no action heard, nothing said): the boosted reading.

use crate::intent::{Interpretation, NoCommandReason};

/// The interpretation to act on, given the boosted reading's and, when the
/// boosts changed a word, the free reading's (its latency is the boosted
/// one's; the caller adds the free reading's).
pub fn choose(boosted: Interpretation, free: Option<Interpretation>) -> Interpretation {
    let Some(free) = free else { return boosted };
    let same =
        free.commands.len() == boosted.commands.len() && free.commands.iter().all(|c| boosted.commands.contains(c));
    if same {
        return boosted;
    }
    if !free.commands.is_empty() {
        let explanation = format!("heard two ways, as \"{}\" and as \"{}\"; say it again", boosted.text, free.text);
        return Interpretation {
            commands: Vec::new(),
            needs_confirmation: Vec::new(),
            no_command_reason: Some(NoCommandReason::Ambiguous),
            explanation: Some(explanation),
            ..boosted
        };
    }
    let free_says_no = matches!(
        free.no_command_reason,
        Some(
            NoCommandReason::Question
                | NoCommandReason::NotACommand
                | NoCommandReason::NoSuchDevice
                | NoCommandReason::UnsupportedAction
        )
    );
    if free_says_no {
        Interpretation { latency: boosted.latency, ..free }
    } else {
        boosted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::catalog::command::Command;

    fn reading(text: &str, commands: &[(&str, &str)], reason: Option<NoCommandReason>) -> Interpretation {
        Interpretation {
            text: text.to_owned(),
            commands: commands
                .iter()
                .map(|(device, action)| Command { device: (*device).into(), action: (*action).into(), value: None })
                .collect(),
            needs_confirmation: Vec::new(),
            no_command_reason: reason,
            explanation: None,
            latency: Duration::ZERO,
            asked_model: false,
            model: None,
        }
    }

    #[test]
    fn the_boosted_reading_is_used_only_where_the_free_one_understood_too_little() {
        let lock = reading("lock all the doors", &[("front_door", "lock")], None);
        // "lack all the doors": a device, no action.
        let chosen = choose(lock.clone(), Some(reading("lack all the doors", &[], Some(NoCommandReason::NoAction))));
        assert_eq!(chosen.commands, lock.commands);
        assert_eq!(choose(lock.clone(), None).commands, lock.commands);
        assert_eq!(choose(lock.clone(), Some(lock.clone())).commands, lock.commands);
    }

    #[test]
    fn a_free_reading_that_says_no_or_names_what_the_site_lacks_is_never_overruled() {
        let ceiling = reading("turn off the bedroom ceiling", &[("bedroom_ceiling_light", "turn_off")], None);
        let tv = reading("turn off the bedroom tv", &[], Some(NoCommandReason::NoSuchDevice));
        let chosen = choose(ceiling.clone(), Some(tv));
        assert!(chosen.commands.is_empty());
        assert_eq!(chosen.no_command_reason, Some(NoCommandReason::NoSuchDevice));
        let remark = reading("i love the porch at night", &[], Some(NoCommandReason::NotACommand));
        assert!(choose(ceiling.clone(), Some(remark)).commands.is_empty());
        // Other commands the free way: heard two ways, nothing done.
        let fan = reading("turn off the bedroom fan", &[("bedroom_fan", "turn_off")], None);
        let chosen = choose(ceiling, Some(fan));
        assert!(chosen.commands.is_empty());
        assert_eq!(chosen.no_command_reason, Some(NoCommandReason::Ambiguous));
    }
}
