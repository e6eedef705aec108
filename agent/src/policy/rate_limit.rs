//! Command rate limits (`limits.device_commands_per_minute`,
//! `limits.confirm_commands_per_minute`): a sliding one-minute window of the
//! commands let through. A misheard loop, a replayed recording or a model
//! stuck on one device cannot flood a device or keep unlocking a door.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window both limits count over.
const WINDOW: Duration = Duration::from_secs(60);

/// Counts the commands let through per device and for confirm-class actions.
#[derive(Debug)]
pub struct RateLimits {
    per_device: u32,
    confirm_class: u32,
    device_sent: HashMap<String, VecDeque<Instant>>,
    confirm_sent: VecDeque<Instant>,
}

impl RateLimits {
    /// Limits per minute; 0 turns one off.
    pub fn new(per_device: u32, confirm_class: u32) -> RateLimits {
        RateLimits { per_device, confirm_class, device_sent: HashMap::new(), confirm_sent: VecDeque::new() }
    }

    /// Lets a command for `device` through at `now` and counts it, or says
    /// which limit it is past (and counts nothing).
    pub fn admit(&mut self, device: &str, confirm_class: bool, now: Instant) -> Result<(), String> {
        let sent = self.device_sent.entry(device.to_owned()).or_default();
        forget_before(sent, now);
        forget_before(&mut self.confirm_sent, now);
        if self.per_device > 0 && sent.len() >= self.per_device as usize {
            return Err(format!(
                "rate limit: {} commands to {device} in the last minute (limits.device_commands_per_minute)",
                sent.len()
            ));
        }
        if confirm_class && self.confirm_class > 0 && self.confirm_sent.len() >= self.confirm_class as usize {
            return Err(format!(
                "rate limit: {} confirm-class commands in the last minute (limits.confirm_commands_per_minute)",
                self.confirm_sent.len()
            ));
        }
        sent.push_back(now);
        if confirm_class {
            self.confirm_sent.push_back(now);
        }
        // Devices not commanded for a minute are forgotten: the map stays as small as the recent traffic.
        self.device_sent.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        Ok(())
    }
}

fn forget_before(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_device_gets_its_limit_per_minute_and_no_more() {
        let mut limits = RateLimits::new(3, 0);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(limits.admit("fan", false, t0 + Duration::from_secs(i)).is_ok());
        }
        let refused = limits.admit("fan", false, t0 + Duration::from_secs(10)).unwrap_err();
        assert!(refused.contains("3 commands to fan") && refused.contains("device_commands_per_minute"), "{refused}");
        // Another device is not affected.
        assert!(limits.admit("lamp", false, t0 + Duration::from_secs(10)).is_ok());
        // A refused command is not counted: one minute after the first, one slot is free again.
        assert!(limits.admit("fan", false, t0 + Duration::from_secs(60)).is_ok());
        assert!(limits.admit("fan", false, t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn confirm_class_commands_share_one_limit_across_devices() {
        let mut limits = RateLimits::new(0, 2);
        let t0 = Instant::now();
        assert!(limits.admit("front_door", true, t0).is_ok());
        assert!(limits.admit("garage", true, t0).is_ok());
        let refused = limits.admit("back_door", true, t0).unwrap_err();
        assert!(refused.contains("confirm_commands_per_minute"), "{refused}");
        // Ordinary commands are not confirm-class, and 0 means no device limit.
        for _ in 0..100 {
            assert!(limits.admit("fan", false, t0).is_ok());
        }
        assert!(limits.admit("back_door", true, t0 + WINDOW).is_ok());
    }
}
