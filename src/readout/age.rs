//! Chronological age: typed as months (`86`, `86m`), years and months (`7y2m`, `7y`), or
//! reckoned from a birth date and an exam date (ISO `YYYY-MM-DD`) with chrono's calendar.
use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Days in a mean Gregorian month, for the part of an age after its whole months.
pub const DAYS_PER_MONTH: f64 = 365.2425 / 12.0;

/// A chronological age in months, with the dates it was reckoned from when it was.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChronologicalAge {
    pub months: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exam_date: Option<NaiveDate>,
}

fn invalid(what: &str, message: String) -> Error {
    Error::Invalid {
        what: what.into(),
        message,
    }
}

impl ChronologicalAge {
    /// `86` or `86.5` (months), `86m`, `7y`, `7.5y`, `7y2m` (months 0–11 after years).
    pub fn parse(text: &str) -> Result<ChronologicalAge> {
        let s: String = text
            .trim()
            .to_ascii_lowercase()
            .split_whitespace()
            .collect();
        let bad = |why: &str| {
            invalid(
                "age",
                format!("{text:?}: {why} (write months as 86 or 86m, years as 7y, or 7y2m)"),
            )
        };
        let number = |v: &str| -> Result<f64> {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x < 0.0 || v.starts_with('-') => {
                    Err(bad("an age cannot be negative"))
                }
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(bad("not a number")),
            }
        };
        let months = if let Some((y, rest)) = s.split_once('y') {
            let years = number(y)?;
            match rest.strip_suffix('m') {
                None if rest.is_empty() => years * 12.0,
                Some(m) if !m.is_empty() => {
                    if years.fract() != 0.0 {
                        return Err(bad("years before months must be whole"));
                    }
                    let m = number(m)?;
                    if m >= 12.0 {
                        return Err(bad("months after years must be 0–11"));
                    }
                    years * 12.0 + m
                }
                _ => return Err(bad("unexpected text after the years")),
            }
        } else {
            number(s.strip_suffix('m').unwrap_or(&s))?
        };
        Ok(ChronologicalAge {
            months,
            birth_date: None,
            exam_date: None,
        })
    }

    /// The age on `exam` of a child born on `birth`: whole calendar months, plus the days
    /// after them in mean months.
    pub fn from_dates(birth: NaiveDate, exam: NaiveDate) -> Result<ChronologicalAge> {
        if exam < birth {
            return Err(invalid(
                "dates",
                format!("the exam date {exam} is before the birth date {birth}"),
            ));
        }
        let index = |d: NaiveDate| d.year() as i64 * 12 + d.month0() as i64;
        // Whole months: the calendar estimate, less one when its anniversary is after the exam.
        let mut whole = (index(exam) - index(birth)).max(0) as u32;
        let anniversary = |n: u32| birth.checked_add_months(Months::new(n));
        while whole > 0 && anniversary(whole).is_none_or(|d| d > exam) {
            whole -= 1;
        }
        let anchor = anniversary(whole).unwrap_or(birth);
        let days = (exam - anchor).num_days() as f64;
        Ok(ChronologicalAge {
            months: whole as f64 + days / DAYS_PER_MONTH,
            birth_date: Some(birth),
            exam_date: Some(exam),
        })
    }

    /// [`Self::from_dates`] from two ISO `YYYY-MM-DD` strings.
    pub fn from_date_strings(birth: &str, exam: &str) -> Result<ChronologicalAge> {
        Self::from_dates(
            parse_date("birth date", birth)?,
            parse_date("exam date", exam)?,
        )
    }
}

/// "11 y 10 m" for 142 months (negative ages show as 0 y 0 m; readings never have them).
pub fn years_months(months: f64) -> String {
    let total = months.round().max(0.0) as i64;
    format!("{} y {} m", total / 12, total % 12)
}

/// An ISO `YYYY-MM-DD` date; `what` names it in the error.
pub fn parse_date(what: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|e| invalid(what, format!("{text:?}: {e} (expected YYYY-MM-DD)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn months(s: &str) -> f64 {
        ChronologicalAge::parse(s).unwrap().months
    }

    #[test]
    fn every_age_format() {
        assert_eq!(months("86"), 86.0);
        assert_eq!(months("86.5"), 86.5);
        assert_eq!(months("86m"), 86.0);
        assert_eq!(months("7y"), 84.0);
        assert_eq!(months("7y2m"), 86.0);
        assert_eq!(months(" 7Y 2M "), 86.0);
        assert_eq!(months("7.5y"), 90.0);
        assert_eq!(months("0"), 0.0);
    }

    #[test]
    fn bad_ages_say_what_is_wrong() {
        for (s, why) in [
            ("7y14m", "0–11"),
            ("-3", "negative"),
            ("-1y", "negative"),
            ("7y-2m", "negative"),
            ("seven", "not a number"),
            ("7y2", "after the years"),
            ("7.5y2m", "whole"),
            ("", "not a number"),
            ("nan", "not a number"),
        ] {
            let e = ChronologicalAge::parse(s).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(&format!("{s:?}")), "{s}: {e}");
        }
    }

    #[test]
    fn ages_from_dates() {
        let a = ChronologicalAge::from_date_strings("2019-01-10", "2026-03-10").unwrap();
        assert_eq!(a.months, 86.0);
        // Ten days past the 86th monthly anniversary.
        let a = ChronologicalAge::from_date_strings("2019-01-10", "2026-03-20").unwrap();
        assert!((a.months - (86.0 + 10.0 / DAYS_PER_MONTH)).abs() < 1e-12);
        // Born on the 31st: the anniversary in February falls on its last day.
        let a = ChronologicalAge::from_date_strings("2020-01-31", "2020-02-29").unwrap();
        assert_eq!(a.months, 1.0);
        let a = ChronologicalAge::from_date_strings("2020-01-31", "2020-02-28").unwrap();
        assert!((a.months - 28.0 / DAYS_PER_MONTH).abs() < 1e-12, "{a:?}");
        assert_eq!(
            ChronologicalAge::from_date_strings("2020-05-05", "2020-05-05")
                .unwrap()
                .months,
            0.0
        );
    }

    #[test]
    fn an_exam_before_the_birth_and_bad_dates_are_refused() {
        let e = ChronologicalAge::from_date_strings("2020-05-05", "2020-05-04").unwrap_err();
        assert!(e.to_string().contains("before the birth date"), "{e}");
        let e = ChronologicalAge::from_date_strings("2020-02-30", "2021-01-01").unwrap_err();
        assert!(
            e.to_string().contains("birth date") && e.to_string().contains("2020-02-30"),
            "{e}"
        );
        let e = ChronologicalAge::from_date_strings("2020-01-01", "01/02/2021").unwrap_err();
        assert!(e.to_string().contains("exam date"), "{e}");
    }
}
