//! Kubernetes condition conventions: one condition per type, `lastTransitionTime` moves only
//! when `status` changes, `observedGeneration` says which spec the condition describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Longest condition message and Event note the operator writes, in bytes. Messages can quote
/// outside input (a line of a `tickersFrom` ConfigMap); the API server refuses an Event note over
/// 1 KiB, and a status of megabytes would be refused or bloat every watch of the stream.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes (on a character boundary), saying how long it was.
pub fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let suffix = format!("… (truncated, {} bytes)", text.len());
    let mut end = max.saturating_sub(suffix.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &text[..end])
}

/// `True`, `False` (Kubernetes spells condition statuses as strings).
pub fn status_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A condition of `type_` observed at `now` for `generation`; `message` is cut to
/// [`MAX_MESSAGE_BYTES`].
pub fn condition(
    type_: &str,
    value: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status_str(value).to_owned(),
        reason: reason.to_owned(),
        message: bounded(message, MAX_MESSAGE_BYTES),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Puts `new` into `conditions`, replacing the condition of the same type. When the status is
/// unchanged the old `lastTransitionTime` is kept: it records when the status last flipped,
/// not when the operator last looked.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Gives each condition of `conditions` whose status equals its status in `before` (the
/// status as stored) the stored `lastTransitionTime`: a condition set twice in one reconcile
/// (Degraded cleared by the plan, set again by a failing worker) did not transition, and a
/// status that did not change must compare equal so that it is not written again.
pub fn keep_transition_times(conditions: &mut [Condition], before: &[Condition]) {
    for c in conditions {
        if let Some(old) = before
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        assert_eq!(bounded("short".into(), 10), "short");
        let long = "é".repeat(400_000);
        let cut = bounded(long, MAX_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with("(truncated, 800000 bytes)"), "{cut}");
        let c = condition("Degraded", true, "X", "x".repeat(5000), None, &at(1));
        assert!(c.message.len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            condition(
                "Ready",
                false,
                "ShardsStarting",
                "0 of 2".into(),
                Some(1),
                &at(10),
            ),
        );
        set_condition(
            &mut cs,
            condition(
                "Ready",
                false,
                "ShardsStarting",
                "1 of 2".into(),
                Some(2),
                &at(20),
            ),
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, at(10));
        assert_eq!(cs[0].message, "1 of 2");
        assert_eq!(cs[0].observed_generation, Some(2));
        set_condition(
            &mut cs,
            condition(
                "Ready",
                true,
                "ShardsReady",
                "2 of 2".into(),
                Some(2),
                &at(30),
            ),
        );
        assert_eq!(cs[0].last_transition_time, at(30));
        assert_eq!(cs[0].status, "True");
        set_condition(
            &mut cs,
            condition(
                "Degraded",
                false,
                "ShardsReady",
                String::new(),
                Some(2),
                &at(30),
            ),
        );
        assert_eq!(cs.len(), 2);
    }

    #[test]
    fn a_condition_set_back_in_one_reconcile_keeps_its_stored_transition_time() {
        let degraded = |value, secs| {
            condition(
                "Degraded",
                value,
                "SinkFailed",
                "m".into(),
                Some(1),
                &at(secs),
            )
        };
        let stored = vec![degraded(true, 10)];
        // Cleared by the plan, set again by a failing worker: set_condition saw two flips.
        let mut cs = stored.clone();
        set_condition(&mut cs, degraded(false, 20));
        set_condition(&mut cs, degraded(true, 20));
        assert_eq!(cs[0].last_transition_time, at(20));
        keep_transition_times(&mut cs, &stored);
        assert_eq!(cs, stored, "no transition: equal to what is stored");
        // A real flip keeps its new time.
        let mut flipped = vec![degraded(false, 30)];
        keep_transition_times(&mut flipped, &stored);
        assert_eq!(flipped[0].last_transition_time, at(30));
    }
}
