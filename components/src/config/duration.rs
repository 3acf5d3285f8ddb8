//! Go durations (`24h0m0s`, `4m`, `1.5h`, `300ms`) as kubeadm's config and flags spell them,
//! parsed exactly as Go's `time.ParseDuration` (go: src/time/format.go), overflow included:
//! a value larger than Go's `time.Duration` holds (`math.MaxInt64` nanoseconds, about 292
//! years) is an error here too, never a wrapped or saturated number.

use std::time::Duration;

/// The largest duration Go's `time.Duration` holds (`math.MaxInt64` nanoseconds), the
/// largest `ttl` or timeout kubeadm itself accepts.
pub const MAX_GO_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

/// [`MAX_GO_DURATION`] as Go prints it (`time.Duration(math.MaxInt64).String()`).
pub const MAX_GO_DURATION_TEXT: &str = "2562047h47m16.854775807s";

/// Why a text is not a usable Go duration. `Display` is a phrase that follows the value in
/// an error message (`"1d" has an unknown unit "d": ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`.
    #[error("is not a duration such as 1h30m, 90s or 500ms")]
    Invalid,
    /// A number without a unit (`10`); only `0` may stand alone.
    #[error("has no unit: use one of h, m, s, ms, us, ns (e.g. 10s)")]
    MissingUnit,
    /// A unit Go does not know (`1d`).
    #[error("has an unknown unit {unit:?}: use one of h, m, s, ms, us, ns (e.g. 24h for a day)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// More than [`MAX_GO_DURATION`].
    #[error("is too large (max {MAX_GO_DURATION_TEXT})")]
    TooLarge,
    /// Below zero where only a length of time makes sense.
    #[error("is negative")]
    Negative,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// `1 << 63`, the bound Go's parser checks against (one past `math.MaxInt64`).
const LIMIT: u64 = 1 << 63;

fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        // "µs" (U+00B5 micro sign) and "μs" (U+03BC Greek mu), as Go accepts both.
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => NANOS_PER_SEC,
        b"m" => 60 * NANOS_PER_SEC,
        b"h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Go's `leadingInt`: the digits at the start of `s`, `Err` on overflow past `1 << 63`.
fn leading_int(s: &[u8]) -> Result<(u64, &[u8]), DurationError> {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    let mut x: u64 = 0;
    for &c in &s[..end] {
        if x > LIMIT / 10 {
            return Err(DurationError::TooLarge);
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return Err(DurationError::TooLarge);
        }
    }
    Ok((x, &s[end..]))
}

/// Go's `leadingFraction`: the digits after a `.`, as `x / scale`; digits past what fits are
/// dropped (they cannot change the nanoseconds).
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for &c in &s[..end] {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

/// Parses a Go duration into signed nanoseconds, exactly as Go's `time.ParseDuration`.
///
/// # Errors
/// [`DurationError::Invalid`], [`DurationError::MissingUnit`],
/// [`DurationError::UnknownUnit`], or [`DurationError::TooLarge`] past `math.MaxInt64`
/// nanoseconds (either sign).
pub fn parse_go_duration_nanos(text: &str) -> Result<i64, DurationError> {
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut d: u64 = 0;
    while let Some(&first) = s.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(DurationError::Invalid);
        }
        let before = s.len();
        let (v, rest) = leading_int(s)?;
        s = rest;
        let pre = before != s.len();
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix(b".") {
            let before = rest.len();
            (f, scale, s) = leading_fraction(rest);
            post = before != s.len();
        }
        if !pre && !post {
            return Err(DurationError::Invalid);
        }
        let unit_len = s
            .iter()
            .position(|c| *c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit);
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: String::from_utf8_lossy(unit).into_owned(),
        })?;
        if v > LIMIT / unit {
            return Err(DurationError::TooLarge);
        }
        let mut v = v * unit;
        if f > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale)); the product is below
            // one unit, so the cast never saturates.
            v = match v.checked_add((f as f64 * (unit as f64 / scale)) as u64) {
                Some(sum) if sum <= LIMIT => sum,
                _ => return Err(DurationError::TooLarge),
            };
        }
        // Go checks the wrap-around as `d < v`; both are at most 1 << 63, so the sum of two
        // such terms can pass u64::MAX.
        d = match d.checked_add(v) {
            Some(sum) if sum <= LIMIT => sum,
            _ => return Err(DurationError::TooLarge),
        };
    }
    if neg {
        // d <= 1 << 63, so -d fits an i64 (i64::MIN when equal).
        return Ok(0i64.wrapping_sub_unsigned(d));
    }
    i64::try_from(d).map_err(|_| DurationError::TooLarge)
}

/// Parses a Go duration that must not be negative (a TTL, a timeout).
///
/// # Errors
/// As [`parse_go_duration_nanos`], and [`DurationError::Negative`] below zero.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let nanos = parse_go_duration_nanos(text)?;
    let nanos = u64::try_from(nanos).map_err(|_| DurationError::Negative)?;
    Ok(Duration::from_nanos(nanos))
}

/// Whole seconds of `d`, rounded up: a non-zero duration never becomes 0, which for a token
/// TTL means "never expires".
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Formats whole seconds as Go's `time.Duration.String()` does (`24h0m0s`, `4m0s`, `0s`).
pub fn format_go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_duration_table() {
        // go: src/time/time_test.go parseDurationTests (the valid ones).
        let ms = 1_000_000i64;
        let s = 1_000 * ms;
        for (text, want) in [
            ("0", 0),
            ("5s", 5 * s),
            ("30s", 30 * s),
            ("1478s", 1478 * s),
            ("-5s", -5 * s),
            ("+5s", 5 * s),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * s),
            ("5.6s", 5 * s + 600 * ms),
            ("5.s", 5 * s),
            (".5s", 500 * ms),
            ("1.0s", s),
            ("1.00s", s),
            ("1.004s", s + 4 * ms),
            ("1.0040s", s + 4 * ms),
            ("100.00100s", 100 * s + ms),
            ("10ns", 10),
            ("11us", 11_000),
            ("12\u{b5}s", 12_000),
            ("12\u{3bc}s", 12_000),
            ("13ms", 13 * ms),
            ("14s", 14 * s),
            ("15m", 15 * 60 * s),
            ("16h", 16 * 3600 * s),
            ("3h30m", (3 * 3600 + 30 * 60) * s),
            ("10.5s4m", 4 * 60 * s + 10 * s + 500 * ms),
            ("-2m3.4s", -(2 * 60 * s + 3 * s + 400 * ms)),
            (
                "1h2m3s4ms5us6ns",
                3600 * s + 2 * 60 * s + 3 * s + 4 * ms + 5_000 + 6,
            ),
            (
                "39h9m14.425s",
                39 * 3600 * s + 9 * 60 * s + 14 * s + 425 * ms,
            ),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * s),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * s),
            (
                "0.830103483285477580700h",
                49 * 60 * s + 48 * s + 372_539_827,
            ),
        ] {
            assert_eq!(parse_go_duration_nanos(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn go_parse_duration_errors() {
        // go: parseDurationErrorTests, plus kubeadm's 100000000h from issue 8.
        for (text, want) in [
            ("", DurationError::Invalid),
            ("3", DurationError::MissingUnit),
            ("-", DurationError::Invalid),
            ("s", DurationError::Invalid),
            (".", DurationError::Invalid),
            ("-.", DurationError::Invalid),
            (".s", DurationError::Invalid),
            ("+.s", DurationError::Invalid),
            ("1d", DurationError::UnknownUnit { unit: "d".into() }),
            ("\u{85}\u{85}", DurationError::Invalid),
            ("9223372036854775810ns", DurationError::TooLarge),
            ("9223372036854775808ns", DurationError::TooLarge),
            ("-9223372036854775809ns", DurationError::TooLarge),
            ("9223372036854776us", DurationError::TooLarge),
            ("3000000h", DurationError::TooLarge),
            ("9223372036854775.808us", DurationError::TooLarge),
            ("9223372036854ms775us808ns", DurationError::TooLarge),
            ("100000000h", DurationError::TooLarge),
            (" 1h", DurationError::Invalid),
        ] {
            assert_eq!(parse_go_duration_nanos(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn non_negative_form_and_its_bounds() {
        assert_eq!(
            parse_go_duration("24h0m0s"),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(parse_go_duration(MAX_GO_DURATION_TEXT), Ok(MAX_GO_DURATION));
        assert_eq!(
            parse_go_duration("2562047h47m16.854775808s"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(parse_go_duration("-1h"), Err(DurationError::Negative));
        assert_eq!(parse_go_duration("-0s"), Ok(Duration::ZERO));
        assert_eq!(
            DurationError::TooLarge.to_string(),
            "is too large (max 2562047h47m16.854775807s)"
        );
    }

    #[test]
    fn sub_second_durations_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(500)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(MAX_GO_DURATION), 9_223_372_037);
    }

    #[test]
    fn formats_whole_seconds_as_go() {
        assert_eq!(format_go_duration(86400), "24h0m0s");
        assert_eq!(format_go_duration(240), "4m0s");
        assert_eq!(format_go_duration(0), "0s");
    }

    #[test]
    fn two_terms_of_half_the_range_are_too_large_not_an_overflow() {
        // 2562047h is just under 1 << 63 ns; twice that wraps a u64 sum.
        assert_eq!(
            parse_go_duration_nanos("2562047h2562047h"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(
            parse_go_duration_nanos("9223372036854775808ns9223372036854775808ns"),
            Err(DurationError::TooLarge)
        );
    }
}
