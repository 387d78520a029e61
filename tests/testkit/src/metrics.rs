//! Reading a Prometheus text exposition (a process's `/metrics`) in tests and benchmarks.

/// The sum of the samples of `name` whose labels include every `(label, value)` of `labels`
/// (all of them for an empty list); `None` when no sample matches. Summing lets a caller read
/// one series (`sink="storage", reason="shutdown"`) or a total across a label (every `reason`).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            // Another metric whose name starts with `name` (`x_total` for `x`) is not this one.
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let matches = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if !matches {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_matching_series_only() {
        let text = concat!(
            "# HELP streamer_sink_dropped_quotes_total Quotes a sink gave up on\n",
            "streamer_sink_dropped_quotes_total{reason=\"queue_full\",shard=\"0\",sink=\"redis\"} 5\n",
            "streamer_sink_dropped_quotes_total{reason=\"shutdown\",shard=\"0\",sink=\"redis\"} 2\n",
            "streamer_sink_dropped_quotes_total{reason=\"shutdown\",shard=\"0\",sink=\"storage\"} 1\n",
            "streamer_sink_dropped_quotes 9\n",
            "streamer_quotes_fetched_total 70\n",
        );
        let name = "streamer_sink_dropped_quotes_total";
        assert_eq!(metric_sum(text, name, &[("sink", "redis")]), Some(7.0));
        assert_eq!(
            metric_sum(text, name, &[("sink", "redis"), ("reason", "shutdown")]),
            Some(2.0)
        );
        assert_eq!(metric_sum(text, name, &[]), Some(8.0));
        assert_eq!(metric_sum(text, name, &[("sink", "postgres")]), None);
        assert_eq!(
            metric_sum(text, "streamer_quotes_fetched_total", &[]),
            Some(70.0)
        );
        assert_eq!(metric_sum(text, "streamer_quotes_fetched", &[]), None);
    }
}
