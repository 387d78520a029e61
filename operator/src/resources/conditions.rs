//! Kubernetes condition conventions: one condition per type, `lastTransitionTime` moves only
//! when `status` changes, `observedGeneration` says which spec the condition describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True`, `False` (Kubernetes spells condition statuses as strings).
pub fn status_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A condition of `type_` observed at `now` for `generation`.
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
        message,
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

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
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
}
