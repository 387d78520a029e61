use super::*;
use crate::crd::ExchangeCalendar;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn regular() -> Schedule {
    Schedule {
        calendar: ExchangeCalendar::Nyse,
        pre_market: false,
        post_market: false,
    }
}

fn extended() -> Schedule {
    Schedule {
        pre_market: true,
        post_market: true,
        ..regular()
    }
}

/// Known trading days a person can check against the exchange's published hours: the
/// regular session's open and close in UTC, so that the daylight-saving offset is visible.
#[test]
fn known_days_open_and_close_at_the_published_hours() {
    let days: &[(&str, Option<(&str, &str)>)] = &[
        // Friday before the March switch: EST, UTC−5.
        (
            "2026-03-06",
            Some(("2026-03-06T14:30:00Z", "2026-03-06T21:00:00Z")),
        ),
        // Monday after it (the switch is Sunday 2026-03-08): EDT, UTC−4.
        (
            "2026-03-09",
            Some(("2026-03-09T13:30:00Z", "2026-03-09T20:00:00Z")),
        ),
        // Friday 2026-10-30 (EDT) and Monday 2026-11-02 after the November switch (EST).
        (
            "2026-10-30",
            Some(("2026-10-30T13:30:00Z", "2026-10-30T20:00:00Z")),
        ),
        (
            "2026-11-02",
            Some(("2026-11-02T14:30:00Z", "2026-11-02T21:00:00Z")),
        ),
        // Thanksgiving closed; the day after closes at 13:00 EST.
        ("2026-11-26", None),
        (
            "2026-11-27",
            Some(("2026-11-27T14:30:00Z", "2026-11-27T18:00:00Z")),
        ),
        // Christmas Eve early close (Thursday), Christmas closed.
        (
            "2026-12-24",
            Some(("2026-12-24T14:30:00Z", "2026-12-24T18:00:00Z")),
        ),
        ("2026-12-25", None),
        // Independence Day 2026 is a Saturday: observed Friday July 3; Thursday is a full day.
        (
            "2026-07-02",
            Some(("2026-07-02T13:30:00Z", "2026-07-02T20:00:00Z")),
        ),
        ("2026-07-03", None),
        // 2025: July 3 closed early at 13:00 EDT.
        (
            "2025-07-03",
            Some(("2025-07-03T13:30:00Z", "2025-07-03T17:00:00Z")),
        ),
        // Weekend.
        ("2026-12-05", None),
        ("2026-12-06", None),
        // Good Friday 2027.
        ("2027-03-26", None),
    ];
    for (date, hours) in days {
        let date: Date = date.parse().unwrap();
        let window = regular().window_of(date);
        let expected = hours.map(|(open, close)| Window {
            start: at(open),
            end: at(close),
        });
        assert_eq!(window, expected, "regular session of {date}");
    }
}

#[test]
fn the_extended_sessions_widen_the_window() {
    let window = extended().window_of("2026-11-27".parse().unwrap()).unwrap();
    // 04:00 EST to 17:00 EST (four hours after the 13:00 close).
    assert_eq!(window.start, at("2026-11-27T09:00:00Z"));
    assert_eq!(window.end, at("2026-11-27T22:00:00Z"));
    let only_post = Schedule {
        post_market: true,
        ..regular()
    };
    let window = only_post.window_of("2026-07-02".parse().unwrap()).unwrap();
    assert_eq!(window.start, at("2026-07-02T13:30:00Z"));
    assert_eq!(window.end, at("2026-07-03T00:00:00Z"), "20:00 EDT");
}

#[test]
fn the_market_state_through_a_day() {
    let cases = [
        ("2026-12-07T08:59:59Z", MarketState::Closed),
        ("2026-12-07T09:00:00Z", MarketState::PreMarket),
        ("2026-12-07T14:29:59Z", MarketState::PreMarket),
        ("2026-12-07T14:30:00Z", MarketState::Open),
        ("2026-12-07T20:59:59Z", MarketState::Open),
        ("2026-12-07T21:00:00Z", MarketState::PostMarket),
        ("2026-12-08T00:59:59Z", MarketState::PostMarket),
        ("2026-12-08T01:00:00Z", MarketState::Closed),
        // Saturday noon New York time.
        ("2026-12-05T17:00:00Z", MarketState::Closed),
    ];
    for (t, state) in cases {
        // The market's state does not depend on which sessions the stream streams.
        assert_eq!(regular().market_state(at(t)), state, "{t}");
        assert_eq!(extended().market_state(at(t)), state, "{t}");
    }
}

#[test]
fn windows_open_and_close_at_their_bounds() {
    let s = regular();
    assert_eq!(s.window_at(at("2026-12-07T14:29:59Z")), None);
    assert!(s.window_at(at("2026-12-07T14:30:00Z")).is_some());
    assert!(s.window_at(at("2026-12-07T20:59:59Z")).is_some());
    assert_eq!(s.window_at(at("2026-12-07T21:00:00Z")), None);
    assert!(extended().window_at(at("2026-12-07T21:00:00Z")).is_some());
}

#[test]
fn the_next_window_skips_weekends_and_holidays() {
    let s = regular();
    // Sunday 2026-12-06 → Monday's open.
    let next = s.next_window(at("2026-12-06T13:00:00Z")).unwrap();
    assert_eq!(next.start, at("2026-12-07T14:30:00Z"));
    // During Monday's session the next window is Tuesday's.
    let next = s.next_window(at("2026-12-07T15:00:00Z")).unwrap();
    assert_eq!(next.start, at("2026-12-08T14:30:00Z"));
    // Wednesday before Thanksgiving after the close → Friday's short session.
    let next = s.next_window(at("2026-11-25T22:00:00Z")).unwrap();
    assert_eq!(next.start, at("2026-11-27T14:30:00Z"));
    assert_eq!(next.end, at("2026-11-27T18:00:00Z"));
    // Thursday 2026-12-24 after the early close → Monday 12-28 (Christmas Friday, weekend).
    let next = s.next_window(at("2026-12-24T18:00:00Z")).unwrap();
    assert_eq!(next.start, at("2026-12-28T14:30:00Z"));
    // New Year 2027 on a Friday: Thursday 12-31 → Monday 2027-01-04.
    let next = s.next_window(at("2026-12-31T21:00:00Z")).unwrap();
    assert_eq!(next.start, at("2027-01-04T14:30:00Z"));
}

#[test]
fn the_next_transition_is_the_next_session_bound() {
    let s = regular();
    assert_eq!(
        s.next_transition(at("2026-12-07T10:00:00Z")),
        Some(at("2026-12-07T14:30:00Z"))
    );
    assert_eq!(
        s.next_transition(at("2026-12-07T14:30:00Z")),
        Some(at("2026-12-07T21:00:00Z"))
    );
    assert_eq!(
        s.next_transition(at("2026-12-08T01:00:00Z")),
        Some(at("2026-12-08T09:00:00Z"))
    );
    // Friday night → Monday's pre-market.
    assert_eq!(
        s.next_transition(at("2026-12-05T02:00:00Z")),
        Some(at("2026-12-07T09:00:00Z"))
    );
}

proptest::proptest! {
    /// Wherever an instant falls, it is either inside a window or before the next one, and
    /// never skips a trading day: the next window starts within four days.
    #[test]
    fn every_instant_is_in_a_window_or_before_the_next(secs in 1_735_689_600i64..1_830_297_600i64) {
        let t = Timestamp::from_second(secs).unwrap();
        for s in [regular(), extended()] {
            let next = s.next_window(t).expect("a trading day within two weeks");
            proptest::prop_assert!(next.start > t);
            proptest::prop_assert!(next.start.duration_since(t) <= SignedDuration::from_hours(24 * 5));
            if let Some(now) = s.window_at(t) {
                proptest::prop_assert!(now.end <= next.start);
                proptest::prop_assert!(s.market_state(t) != MarketState::Closed);
            }
        }
    }
}
