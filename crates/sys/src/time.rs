//! RFC 3339 timestamps in UTC, without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day) of day number `days` since 1970-01-01
/// (Howard Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn format(secs: i64, nanos: Option<u32>) -> String {
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    match nanos {
        Some(n) => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{n:09}Z"),
        None => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    }
}

/// `secs` since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339_secs(secs: i64) -> String {
    format(secs, None)
}

/// `t` as `YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ` (nanoseconds, as runc prints
/// `created`). Times before the epoch print as the epoch.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format(d.as_secs() as i64, Some(d.subsec_nanos()))
}

/// The current time as [`rfc3339_nanos`] formats it.
pub fn now_rfc3339() -> String {
    rfc3339_nanos(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nanos(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(now_rfc3339().len(), 30);
    }
}
