//! The OpenTelemetry `ot` entry of a W3C tracestate: records the rejection threshold `th` of a
//! consistent probabilistic decision (OpenTelemetry's tracestate probability sampling).

/// 2^56: thresholds and randomness values are 56-bit numbers.
const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
const RANDOMNESS_MASK: u64 = MAX_ADJUSTED_COUNT - 1;
/// Hex digits of a 56-bit value.
const DIGITS: usize = 14;
/// W3C trace context: at most 32 list members, values of at most 256 characters.
const MAX_MEMBERS: usize = 32;
const MAX_VALUE_LEN: usize = 256;

/// The rejection threshold for a sampling probability: the number of 2^56 randomness values
/// that are not kept. 2^56 (keep nothing) for a probability of 0.
pub fn threshold_for(probability: f64) -> u64 {
    let kept = (probability.clamp(0.0, 1.0) * MAX_ADJUSTED_COUNT as f64).round() as u64;
    MAX_ADJUSTED_COUNT - kept.min(MAX_ADJUSTED_COUNT)
}

/// The randomness the specification takes from a trace id: its least significant 56 bits.
pub fn trace_id_randomness(trace_id: u128) -> u64 {
    (trace_id as u64) & RANDOMNESS_MASK
}

/// The `th` value of a threshold: 14 hex digits with trailing zeros removed, `0` for zero.
pub fn threshold_text(threshold: u64) -> String {
    if threshold == 0 {
        return "0".to_string();
    }
    let digits = format!("{:014x}", threshold & RANDOMNESS_MASK);
    digits.trim_end_matches('0').to_string()
}

/// Parses a `th` value: 1 to 14 hex digits, extended with trailing zeros to 14.
pub fn parse_threshold(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > DIGITS {
        return None;
    }
    let value = u64::from_str_radix(text, 16).ok()?;
    Some(value << (4 * (DIGITS - text.len())))
}

/// Parses an `rv` value: exactly 14 hex digits.
fn parse_randomness(text: &str) -> Option<u64> {
    if text.len() != DIGITS {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The tracestate of a span kept by a consistent probabilistic decision with rejection
/// threshold `threshold`, made on `trace_randomness` (the trace id's).
///
/// The outgoing `th` is the larger of the incoming one (an absent `th` means nothing was
/// rejected before) and ours, as the specification's equalizing downstream sampler does.
/// It is written only when the span's randomness (its explicit `rv`, else the trace id's)
/// passes it; otherwise the decision is not consistent for this span and `th` is erased.
/// The other `ot` sub-keys and the other vendors' entries are kept; the `ot` entry moves to
/// the front, as W3C requires of a changed entry, and the list is cut to 32 members.
pub fn record_threshold(state: &str, threshold: u64, trace_randomness: u64) -> String {
    let mut ot: Option<&str> = None;
    let mut others: Vec<&str> = Vec::new();
    for member in state.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match member.split_once('=') {
            Some((key, value)) if key.trim() == "ot" => {
                // Keys are unique; a repeated `ot` entry is invalid and dropped.
                ot.get_or_insert(value.trim());
            }
            _ => others.push(member),
        }
    }
    let value = ot_value(ot.unwrap_or(""), threshold, trace_randomness);
    let mut members: Vec<String> = Vec::with_capacity(others.len() + 1);
    if !value.is_empty() {
        members.push(format!("ot={value}"));
    }
    members.extend(others.into_iter().map(str::to_string));
    members.truncate(MAX_MEMBERS);
    members.join(",")
}

/// The new `ot` value: the old sub-keys with `th` replaced (in place), added, or erased.
fn ot_value(old: &str, threshold: u64, trace_randomness: u64) -> String {
    let subkeys: Vec<(&str, &str)> = old
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.split_once(':').unwrap_or((s, "")))
        .collect();
    let find = |key: &str| subkeys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let randomness = match find("rv") {
        Some(rv) => parse_randomness(rv),
        None => Some(trace_randomness),
    };
    let incoming = match find("th") {
        Some(th) => parse_threshold(th),
        None => Some(0),
    };
    let outgoing = match (randomness, incoming) {
        (Some(r), Some(t)) if r >= t.max(threshold) => Some(threshold_text(t.max(threshold))),
        _ => None,
    };
    let with_th = join(&subkeys, outgoing.as_deref());
    if with_th.len() <= MAX_VALUE_LEN {
        return with_th;
    }
    // Too long to add `th`: erase it rather than leave an upstream claim that is now wrong.
    join(&subkeys, None)
}

/// Joins sub-keys, with `th` set to `th` (replaced where it was, else appended) or removed.
fn join(subkeys: &[(&str, &str)], th: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(subkeys.len() + 1);
    let mut written = false;
    for (key, value) in subkeys {
        if *key != "th" {
            parts.push(format!("{key}:{value}"));
        } else if let Some(th) = th.filter(|_| !written) {
            parts.push(format!("th:{th}"));
            written = true;
        }
    }
    if let Some(th) = th.filter(|_| !written) {
        parts.push(format!("th:{th}"));
    }
    parts.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: u64 = 1 << 55;

    #[test]
    fn threshold_text_has_up_to_14_digits_without_trailing_zeros() {
        assert_eq!(threshold_text(threshold_for(0.05)), "f3333333333333");
        assert_eq!(threshold_text(threshold_for(0.5)), "8");
        assert_eq!(threshold_text(threshold_for(1.0)), "0");
        // 1/3 as a double is a little below 1/3, so its exact threshold ends in `c`, not the
        // `b` of a rounded third (the Collector's `pkg/sampling` computes the same).
        assert_eq!(threshold_text(threshold_for(1.0 / 3.0)), "aaaaaaaaaaaaac");
        // Leading zeros are significant: the value is read left-aligned.
        assert_eq!(threshold_text(threshold_for(0.999)), "004189374bc6a8");
        assert_eq!(threshold_for(0.0), MAX_ADJUSTED_COUNT);
    }

    #[test]
    fn threshold_text_parses_back() {
        for p in [0.05, 0.5, 1.0, 1.0 / 3.0, 0.999, 1e-9] {
            let t = threshold_for(p);
            assert_eq!(parse_threshold(&threshold_text(t)), Some(t), "p = {p}");
        }
        assert_eq!(parse_threshold("8"), Some(HALF));
        assert_eq!(parse_threshold(""), None);
        assert_eq!(parse_threshold("123456789abcdef"), None);
        assert_eq!(parse_threshold("xyz"), None);
    }

    #[test]
    fn the_trace_id_randomness_is_its_low_56_bits() {
        let id = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(trace_id_randomness(id), 0x00dc_ba98_7654_3210);
    }

    #[test]
    fn an_empty_state_gets_an_ot_entry() {
        assert_eq!(record_threshold("", HALF, HALF), "ot=th:8");
    }

    #[test]
    fn merges_into_an_ot_entry_and_keeps_other_vendors() {
        let rv = "ot=rv:c0000000000000;th:4";
        // rv (0xc0...) passes th:8, the larger threshold: th is replaced in place.
        assert_eq!(
            record_threshold(&format!("vendor=x,{rv}"), HALF, 0),
            "ot=rv:c0000000000000;th:8,vendor=x"
        );
        // An upstream threshold above ours stays.
        assert_eq!(
            record_threshold("ot=th:c;p:3,vendor=x", HALF, u64::MAX >> 8),
            "ot=th:c;p:3,vendor=x"
        );
        // Other sub-keys stay and th is appended.
        assert_eq!(
            record_threshold(" vendor=x , ot=p:3 ", HALF, HALF),
            "ot=p:3;th:8,vendor=x"
        );
    }

    #[test]
    fn an_inconsistent_threshold_is_erased() {
        // The explicit randomness is below the threshold the decision claims.
        assert_eq!(
            record_threshold("ot=rv:10000000000000;th:0,vendor=x", HALF, HALF),
            "ot=rv:10000000000000,vendor=x"
        );
        // An unreadable upstream threshold makes the probability unknown.
        assert_eq!(record_threshold("ot=th:zz", HALF, HALF), "");
    }

    #[test]
    fn keeps_within_the_w3c_limits() {
        let members: Vec<String> = (0..32).map(|i| format!("v{i}=x")).collect();
        let state = record_threshold(&members.join(","), HALF, HALF);
        let out: Vec<&str> = state.split(',').collect();
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], "ot=th:8");
        assert_eq!(out[31], "v30=x", "the rightmost member is dropped");
        let long = format!("ot=x:{}", "a".repeat(250));
        assert_eq!(record_threshold(&long, HALF, HALF), long);
    }
}
