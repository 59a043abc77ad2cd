//! Partial-precision dates, date-times and times (FHIRPath `Date`, `DateTime`, `Time`).
//!
//! Owns: parsing (literal and FHIR string forms), formatting, comparison with partial precision
//! and time zones, calendar arithmetic with time-valued quantities, boundaries and precision.
//! Must not: know about collections, JSON or the evaluator.

use std::cmp::Ordering;

/// Precision levels shared by dates, date-times and times.
pub const YEAR: u8 = 1;
pub const MONTH: u8 = 2;
pub const DAY: u8 = 3;
pub const HOUR: u8 = 4;
pub const MINUTE: u8 = 5;
pub const SECOND: u8 = 6;
pub const MILLI: u8 = 7;

/// A date, date-time or time with partial precision. For a time, year/month/day are 0 and
/// `precision` is at least `HOUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialDate {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
    /// Offset from UTC in minutes, if given.
    pub tz: Option<i16>,
    pub precision: u8,
}

/// A time of day uses the same representation.
pub type PartialTime = PartialDate;

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    if s.len() < n || !s.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `hh[:mm[:ss[.fff]]]`; returns the time and the rest.
fn parse_time_part(s: &str, d: &mut PartialDate) -> Option<()> {
    let (h, mut rest) = digits(s, 2)?;
    if h > 23 {
        return None;
    }
    d.hour = h as u8;
    d.precision = HOUR;
    if let Some(r) = rest.strip_prefix(':') {
        let (m, r) = digits(r, 2)?;
        if m > 59 {
            return None;
        }
        d.minute = m as u8;
        d.precision = MINUTE;
        rest = r;
        if let Some(r) = rest.strip_prefix(':') {
            let (sec, r) = digits(r, 2)?;
            if sec > 59 {
                return None;
            }
            d.second = sec as u8;
            d.precision = SECOND;
            rest = r;
            if let Some(r) = rest.strip_prefix('.') {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                let frac = &r[..n];
                let mut ms = 0u32;
                for (i, b) in frac.bytes().take(3).enumerate() {
                    ms += (b - b'0') as u32 * 10u32.pow(2 - i as u32);
                }
                d.millis = ms as u16;
                d.precision = MILLI;
                rest = &r[n..];
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    Some(())
}

fn parse_tz(s: &str) -> Option<(Option<i16>, &str)> {
    if let Some(r) = s.strip_suffix('Z') {
        return Some((Some(0), r));
    }
    if s.len() >= 6 && s.is_char_boundary(s.len() - 6) {
        let (body, tz) = s.split_at(s.len() - 6);
        let b = tz.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let (h, _) = digits(&tz[1..3], 2)?;
            let (m, _) = digits(&tz[4..6], 2)?;
            let off = (h * 60 + m) as i16;
            return Some((Some(if b[0] == b'-' { -off } else { off }), body));
        }
    }
    Some((None, s))
}

impl PartialDate {
    fn empty() -> Self {
        PartialDate {
            year: 0,
            month: 0,
            day: 0,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            tz: None,
            precision: 0,
        }
    }

    fn parse_date_part(s: &str, d: &mut PartialDate) -> Option<()> {
        let (y, rest) = digits(s, 4)?;
        d.year = y as i32;
        d.precision = YEAR;
        if rest.is_empty() {
            return Some(());
        }
        let (m, rest) = digits(rest.strip_prefix('-')?, 2)?;
        if !(1..=12).contains(&m) {
            return None;
        }
        d.month = m as u8;
        d.precision = MONTH;
        if rest.is_empty() {
            return Some(());
        }
        let (dd, rest) = digits(rest.strip_prefix('-')?, 2)?;
        if dd < 1 || dd > days_in_month(d.year, d.month) as u32 || !rest.is_empty() {
            return None;
        }
        d.day = dd as u8;
        d.precision = DAY;
        Some(())
    }

    /// `YYYY[-MM[-DD]]`.
    pub fn parse_date(s: &str) -> Option<Self> {
        let mut d = Self::empty();
        Self::parse_date_part(s, &mut d)?;
        Some(d)
    }

    /// `YYYY[-MM[-DD[Thh[:mm[:ss[.fff]]][tz]]]]`, also `YYYY-MM-DDT` and `YYYYT` (literal forms).
    pub fn parse_datetime(s: &str) -> Option<Self> {
        let mut d = Self::empty();
        match s.split_once('T') {
            None => {
                let (tz, body) = parse_tz(s)?;
                Self::parse_date_part(body, &mut d)?;
                if tz.is_some() {
                    return None;
                }
            }
            Some((date, time)) => {
                Self::parse_date_part(date, &mut d)?;
                if !time.is_empty() {
                    if d.precision != DAY {
                        return None;
                    }
                    let (tz, body) = parse_tz(time)?;
                    parse_time_part(body, &mut d)?;
                    d.tz = tz;
                }
            }
        }
        Some(d)
    }

    /// `hh[:mm[:ss[.fff]]]` (no time zone).
    pub fn parse_time(s: &str) -> Option<Self> {
        let mut d = Self::empty();
        parse_time_part(s, &mut d)?;
        Some(d)
    }

    fn fmt_time(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{:02}", self.hour);
        if self.precision >= MINUTE {
            let _ = write!(out, ":{:02}", self.minute);
        }
        if self.precision >= SECOND {
            let _ = write!(out, ":{:02}", self.second);
        }
        if self.precision >= MILLI {
            let _ = write!(out, ".{:03}", self.millis);
        }
    }

    pub fn format_date(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = write!(out, "{:04}", self.year);
        if self.precision >= MONTH {
            let _ = write!(out, "-{:02}", self.month);
        }
        if self.precision >= DAY {
            let _ = write!(out, "-{:02}", self.day);
        }
        out
    }

    pub fn format_datetime(&self) -> String {
        use std::fmt::Write;
        let mut out = self.format_date();
        if self.precision >= HOUR {
            out.push('T');
            self.fmt_time(&mut out);
            match self.tz {
                Some(0) => out.push('Z'),
                Some(t) => {
                    let sign = if t < 0 { '-' } else { '+' };
                    let a = t.unsigned_abs();
                    let _ = write!(out, "{sign}{:02}:{:02}", a / 60, a % 60);
                }
                None => {}
            }
        }
        out
    }

    pub fn format_time(&self) -> String {
        let mut out = String::new();
        self.fmt_time(&mut out);
        out
    }

    /// Moves the value to UTC (only meaningful with a time zone and at least hour precision).
    fn to_utc(self) -> Self {
        let Some(tz) = self.tz else { return self };
        if self.precision < HOUR || tz == 0 {
            return self;
        }
        let mut d = self;
        let total = d.hour as i64 * 60 + d.minute as i64 - tz as i64;
        let day_shift = total.div_euclid(1440);
        let mins = total.rem_euclid(1440);
        d.hour = (mins / 60) as u8;
        d.minute = (mins % 60) as u8;
        if day_shift != 0 && d.precision >= DAY && d.year != 0 {
            let days = days_from_civil(d.year, d.month, d.day) + day_shift;
            let (y, m, dd) = civil_from_days(days);
            d.year = y;
            d.month = m;
            d.day = dd;
        }
        d.tz = Some(0);
        d
    }

    fn fields(&self) -> [i64; 6] {
        [
            self.year as i64,
            self.month as i64,
            self.day as i64,
            self.hour as i64,
            self.minute as i64,
            self.second as i64 * 1000 + self.millis as i64,
        ]
    }

    /// Ordering with partial precision: `None` when the answer is uncertain.
    /// Seconds and milliseconds count as one precision. `first` is the first precision to
    /// compare (1 for dates/date-times, `HOUR` for times).
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        let (a, b) = if self.precision >= HOUR || other.precision >= HOUR {
            if self.tz.is_some() != other.tz.is_some() && self.year != 0 {
                // one has a time zone and the other not: cannot compare at time precision
                if self.precision >= HOUR && other.precision >= HOUR {
                    return None;
                }
            }
            (self.to_utc(), other.to_utc())
        } else {
            (*self, *other)
        };
        let pa = a.precision.min(SECOND);
        let pb = b.precision.min(SECOND);
        let first = if self.year == 0 && other.year == 0 {
            HOUR
        } else {
            YEAR
        };
        let fa = a.fields();
        let fb = b.fields();
        let common = pa.min(pb);
        for p in first..=common {
            let i = (p - 1) as usize;
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        if pa != pb {
            None
        } else {
            Some(Ordering::Equal)
        }
    }

    /// Equivalence: different precision is simply not equivalent.
    pub fn equivalent(&self, other: &Self) -> bool {
        self.precision.min(SECOND) == other.precision.min(SECOND)
            && self.compare(other) == Some(Ordering::Equal)
    }

    /// Adds `amount` of a calendar/UCUM time unit; `None` for a non-time unit or overflow.
    pub fn add(&self, amount: i64, unit: &str) -> Option<Self> {
        if amount.unsigned_abs() > 1_000_000_000_000 {
            return None;
        }
        let mut d = *self;
        let u = unit.trim_end_matches('s');
        match u {
            "year" => d.year = d.year.checked_add(i32::try_from(amount).ok()?)?,
            "month" => {
                let m = d.year as i64 * 12 + (d.month.max(1) as i64 - 1) + amount;
                d.year = i32::try_from(m.div_euclid(12)).ok()?;
                if d.precision >= MONTH {
                    d.month = (m.rem_euclid(12) + 1) as u8;
                }
            }
            "week" | "wk" | "day" | "d" => {
                let days = if u == "week" || u == "wk" {
                    amount.checked_mul(7)?
                } else {
                    amount
                };
                if d.precision >= DAY {
                    let n = days_from_civil(d.year, d.month, d.day).checked_add(days)?;
                    let (y, m, dd) = civil_from_days(n);
                    d.year = y;
                    d.month = m;
                    d.day = dd;
                }
                return Some(d);
            }
            "hour" | "h" => return d.add_millis(amount.checked_mul(3_600_000)?),
            "minute" | "min" => return d.add_millis(amount.checked_mul(60_000)?),
            "second" | "" => return d.add_millis(amount.checked_mul(1000)?),
            "millisecond" | "m" => return d.add_millis(amount),
            _ => return None,
        }
        if d.precision >= DAY {
            d.day = d.day.min(days_in_month(d.year, d.month));
        }
        Some(d)
    }

    fn add_millis(&self, ms: i64) -> Option<Self> {
        let mut d = *self;
        let cur = ((d.hour as i64 * 60 + d.minute as i64) * 60 + d.second as i64) * 1000
            + d.millis as i64;
        let total = cur.checked_add(ms)?;
        let day_shift = total.div_euclid(86_400_000);
        let rem = total.rem_euclid(86_400_000);
        d.hour = (rem / 3_600_000) as u8;
        d.minute = (rem / 60_000 % 60) as u8;
        d.second = (rem / 1000 % 60) as u8;
        d.millis = (rem % 1000) as u16;
        if d.year != 0 && d.precision >= DAY && day_shift != 0 {
            let (y, m, dd) = civil_from_days(days_from_civil(d.year, d.month, d.day) + day_shift);
            d.year = y;
            d.month = m;
            d.day = dd;
        }
        Some(d)
    }

    /// Precision digits as FHIRPath's `precision()` reports them.
    pub fn precision_digits(&self, is_time: bool) -> i64 {
        if is_time {
            [0, 0, 0, 0, 2, 4, 6, 9][self.precision as usize] as i64
        } else {
            [0, 4, 6, 8, 10, 12, 14, 17][self.precision as usize] as i64
        }
    }

    /// Low (`high == false`) or high boundary at the given precision digits.
    pub fn boundary(
        &self,
        digits: Option<i64>,
        is_time: bool,
        is_date: bool,
        high: bool,
    ) -> Option<Self> {
        let target = match (is_time, digits) {
            (true, None) => MILLI,
            (true, Some(2)) => HOUR,
            (true, Some(4)) => MINUTE,
            (true, Some(6)) => SECOND,
            (true, Some(9)) => MILLI,
            (false, None) if is_date => DAY,
            (false, None) => MILLI,
            (false, Some(4)) => YEAR,
            (false, Some(6)) => MONTH,
            (false, Some(8)) => DAY,
            (false, Some(10)) if !is_date => HOUR,
            (false, Some(12)) if !is_date => MINUTE,
            (false, Some(14)) if !is_date => SECOND,
            (false, Some(17)) if !is_date => MILLI,
            _ => return None,
        };
        let mut d = *self;
        for p in (self.precision + 1)..=target {
            match p {
                MONTH => d.month = if high { 12 } else { 1 },
                DAY => {
                    d.day = if high {
                        days_in_month(d.year, d.month)
                    } else {
                        1
                    }
                }
                HOUR => d.hour = if high { 23 } else { 0 },
                MINUTE => d.minute = if high { 59 } else { 0 },
                SECOND => d.second = if high { 59 } else { 0 },
                MILLI => d.millis = if high { 999 } else { 0 },
                _ => {}
            }
        }
        d.precision = target;
        if !is_time && target >= HOUR && d.tz.is_none() {
            d.tz = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        if target < HOUR {
            d.tz = None;
        }
        Some(d)
    }

    /// Current UTC date-time from the system clock.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
        let rem = ms.rem_euclid(86_400_000);
        PartialDate {
            year: y,
            month: m,
            day: d,
            hour: (rem / 3_600_000) as u8,
            minute: (rem / 60_000 % 60) as u8,
            second: (rem / 1000 % 60) as u8,
            millis: (rem % 1000) as u16,
            tz: Some(0),
            precision: MILLI,
        }
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = y as i64 - if m <= 2 { 1 } else { 0 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m.max(1) as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d.max(1) as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + if m <= 2 { 1 } else { 0 }) as i32, m, d)
}
