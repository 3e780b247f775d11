//! Wall-clock helpers. The pure core takes time as an argument; only the
//! shell reads the clock, through [`now_ms`].

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Midnight China Standard Time of a `YYYY-MM-DD` date, in ms since the
/// epoch; `None` for anything else (including impossible dates).
pub fn parse_date_cst(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let days = days_from_civil(y, m, d);
    // Reject 2026-02-30 and the like: the day must come back unchanged.
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    Some(days * 86_400_000 - CST_OFFSET_MS)
}

/// China Standard Time offset: the users' wall clock.
pub const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;
pub const DAY_MS: i64 = 86_400_000;
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// Start (ms) of the China day holding `ms`.
pub fn day_start_cst(ms: i64) -> i64 {
    (ms + CST_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - CST_OFFSET_MS
}

/// Start (ms) of the China week (Monday 00:00) holding `ms`. 1970-01-01 was
/// a Thursday: three days on, weeks fall on Mondays. The store's SQL uses
/// the same arithmetic ([`WEEK_SQL_SHIFT_MS`]).
pub fn week_start_cst(ms: i64) -> i64 {
    (ms + WEEK_SQL_SHIFT_MS).div_euclid(WEEK_MS) * WEEK_MS - WEEK_SQL_SHIFT_MS
}

/// What is added to a time before dividing by a week so that weeks start
/// Monday 00:00 China time.
pub const WEEK_SQL_SHIFT_MS: i64 = CST_OFFSET_MS + 3 * DAY_MS;

/// `YYYY-MM-DD` in China Standard Time.
pub fn day_cst(ms: i64) -> String {
    rfc3339_cst(ms.max(0) as u64)[..10].to_string()
}

/// `YYYY-MM-DD HH:MM` in China Standard Time, for people to read.
pub fn minute_cst(ms: i64) -> String {
    rfc3339_cst(ms.max(0) as u64)[..16].replace('T', " ")
}

/// RFC 3339 in China Standard Time: `2026-11-23T16:05:09.123+08:00`.
pub fn rfc3339_cst(ms: u64) -> String {
    let t = ms as i64 + CST_OFFSET_MS;
    let (days, rem) = (t.div_euclid(86_400_000), t.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}+08:00")
}

/// `YYYYMMDD` in China Standard Time, for ticket numbers.
pub fn date_cst(ms: u64) -> String {
    let days = (ms as i64 + CST_OFFSET_MS).div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_days_and_weeks() {
        // 2026-11-23 (a Monday) 00:30 China time = 2026-11-22 16:30 UTC.
        let t = 1_795_365_000_000;
        let day = day_start_cst(t);
        assert_eq!(day_cst(day), day_cst(t));
        assert_eq!(minute_cst(t), "2026-11-23 00:30");
        assert_eq!(minute_cst(day), "2026-11-23 00:00");
        assert!(t - day < DAY_MS && t >= day);
        let week = week_start_cst(t);
        assert!(t - week < WEEK_MS && t >= week);
        assert_eq!(week_start_cst(week + 6 * DAY_MS), week);
        assert_eq!(week_start_cst(week - 1), week - WEEK_MS);
        // The week starts at a China midnight on a Monday.
        assert_eq!(day_start_cst(week), week);
        assert_eq!(day_cst(week), "2026-11-23");
    }

    #[test]
    fn formats_china_standard_time() {
        assert_eq!(rfc3339_cst(0), "1970-01-01T08:00:00.000+08:00");
        assert_eq!(
            rfc3339_cst(1_764_000_000_123),
            "2025-11-25T00:00:00.123+08:00"
        );
        assert_eq!(
            rfc3339_cst(951_782_400_000),
            "2000-02-29T08:00:00.000+08:00"
        );
        assert_eq!(date_cst(1_763_999_999_999), "20251124");
        assert_eq!(date_cst(1_764_000_000_000), "20251125");
    }

    #[test]
    fn parses_dates_as_china_midnight() {
        assert_eq!(parse_date_cst("2025-11-25"), Some(1_764_000_000_000));
        assert_eq!(
            parse_date_cst("2000-02-29").map(|ms| rfc3339_cst(ms as u64)),
            Some("2000-02-29T00:00:00.000+08:00".into())
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-01-01",
            "2026-1-1",
            "2026-01-01-01",
            "",
            "yyyy-mm-dd",
        ] {
            assert_eq!(parse_date_cst(bad), None, "{bad}");
        }
    }
}
