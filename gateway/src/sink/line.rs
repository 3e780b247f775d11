//! InfluxDB line protocol (pure): one reading as one line, escaped as the
//! protocol asks, tested against exact strings.

/// Whether a measurement name needs escaping: commas, spaces, backslashes.
pub(super) fn needs_escape_measurement(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b' ' | b'\\'))
}

/// Whether a tag key or value needs escaping: also equals signs.
pub(super) fn needs_escape_tag(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b'=' | b' ' | b'\\'))
}

/// Escapes a measurement name: commas and spaces.
pub(super) fn escape_measurement(out: &mut String, s: &str) {
    if !needs_escape_measurement(s) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escapes a tag key or value: commas, equals signs and spaces.
pub(super) fn escape_tag(out: &mut String, s: &str) {
    if !needs_escape_tag(s) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends the decimal digits of `v`.
pub(super) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends one reading as a line of InfluxDB line protocol (no newline):
/// `{quantity},site={site},node={node},ch={ch} value={v}i {ts_ns}`.
pub fn encode_line_into(
    out: &mut String,
    quantity: &str,
    site: &str,
    node: &str,
    ch: &str,
    value: i32,
    ts_ms: u64,
) {
    escape_measurement(out, quantity);
    out.push_str(",site=");
    escape_tag(out, site);
    out.push_str(",node=");
    escape_tag(out, node);
    out.push_str(",ch=");
    escape_tag(out, ch);
    out.push_str(" value=");
    if value < 0 {
        out.push('-');
    }
    push_u64(out, u64::from(value.unsigned_abs()));
    out.push_str("i ");
    // Nanoseconds = the milliseconds followed by six zeros (exact, and no
    // u128 arithmetic on the hot path).
    push_u64(out, ts_ms);
    if ts_ms != 0 {
        out.push_str("000000");
    }
}

/// One reading as a line of InfluxDB line protocol:
/// `{quantity},site={site},node={node},ch={ch} value={v}i {ts_ns}`.
pub fn encode_line(
    quantity: &str,
    site: &str,
    node: &str,
    ch: &str,
    value: i32,
    ts_ms: u64,
) -> String {
    let mut out = String::with_capacity(80);
    encode_line_into(&mut out, quantity, site, node, ch, value, ts_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_matches_design_md_exactly() {
        assert_eq!(
            encode_line(
                "residual_current",
                "home_a",
                "n01",
                "rc1",
                312,
                1_764_000_000_123
            ),
            "residual_current,site=home_a,node=n01,ch=rc1 value=312i 1764000000123000000"
        );
        assert_eq!(
            encode_line("temperature", "s", "n", "t1", -45, 0),
            "temperature,site=s,node=n,ch=t1 value=-45i 0"
        );
        assert_eq!(
            encode_line("current", "s", "n", "c", i32::MIN, u64::MAX),
            format!(
                "current,site=s,node=n,ch=c value=-2147483648i {}",
                u128::from(u64::MAX) * 1_000_000
            )
        );
    }

    #[test]
    fn escapes_spaces_commas_and_equals() {
        assert_eq!(
            encode_line("my meas,x", "a b", "c,d", "e=f", 1, 1),
            r"my\ meas\,x,site=a\ b,node=c\,d,ch=e\=f value=1i 1000000"
        );
        assert_eq!(
            encode_line("m", r"back\slash", "n", "c", 1, 1),
            r"m,site=back\\slash,node=n,ch=c value=1i 1000000"
        );
    }

    #[test]
    fn fast_path_matches_the_general_formatting() {
        let mut seed = 7u64;
        for _ in 0..10_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (seed >> 17) as i32;
            let ts = seed >> (seed % 64);
            assert_eq!(
                encode_line("q", "s", "n", "c", v, ts),
                format!(
                    "q,site=s,node=n,ch=c value={v}i {}",
                    u128::from(ts) * 1_000_000
                )
            );
        }
    }
}
