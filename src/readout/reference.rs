//! The Greulich–Pyle reference: the Brush Foundation children's mean bone age and its
//! standard deviation at each chronological age, by sex (`assets/reference/`, with its
//! source), linearly interpolated between the table's ages.
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The table as shipped: `ca_months,boys_mean,boys_sd,girls_mean,girls_sd`, months.
pub const TABLE: &str = include_str!("../../assets/reference/greulich-pyle-brush.csv");

/// One line on the population, for every output that compares against the table.
pub const POPULATION_NOTE: &str = "Reference: the Greulich–Pyle atlas, from white middle-class \
     Cleveland children examined in the 1930s–50s (Brush Foundation); modern and non-European \
     children mature at other rates, so read the Z-score with that in mind.";

/// The patient's sex, which selects the table's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// `M`, `F`, `male`, `female`, `boy`, `girl` (any case).
    pub fn parse(s: &str) -> Result<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "m" | "male" | "boy" => Ok(Sex::Male),
            "f" | "female" | "girl" => Ok(Sex::Female),
            other => Err(Error::Invalid {
                what: "sex".into(),
                message: format!("{other:?}: expected M or F (male, female)"),
            }),
        }
    }

    pub fn is_male(self) -> bool {
        self == Sex::Male
    }

    /// "boys" or "girls", as the atlas names its tables.
    pub fn children(self) -> &'static str {
        match self {
            Sex::Male => "boys",
            Sex::Female => "girls",
        }
    }
}

impl std::fmt::Display for Sex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sex::Male => "M",
            Sex::Female => "F",
        })
    }
}

/// The reference at one chronological age: the mean bone age and its SD, months.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferencePoint {
    pub ca_months: f64,
    pub mean_months: f64,
    pub sd_months: f64,
}

/// The parsed table: for each sex, its points in increasing chronological age.
#[derive(Clone, Debug)]
pub struct Reference {
    boys: Vec<ReferencePoint>,
    girls: Vec<ReferencePoint>,
}

impl Reference {
    /// The shipped Greulich–Pyle / Brush Foundation table, parsed once.
    pub fn greulich_pyle() -> &'static Reference {
        static TABLE_PARSED: OnceLock<Reference> = OnceLock::new();
        TABLE_PARSED
            .get_or_init(|| Reference::parse(TABLE).expect("the shipped reference table parses"))
    }

    /// Parses the CSV layout of [`TABLE`] (`#` lines are comments; empty fields: no value).
    pub fn parse(text: &str) -> Result<Reference> {
        let (mut boys, mut girls) = (Vec::new(), Vec::new());
        let bad = |line: usize, message: String| Error::Invalid {
            what: format!("reference table, line {line}"),
            message,
        };
        let rows = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
            .skip(1); // the header
        for (i, line) in rows {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 5 {
                return Err(bad(i + 1, format!("{} fields, expected 5", f.len())));
            }
            let num = |s: &str| -> Result<Option<f64>> {
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(Some)
                    .ok_or_else(|| bad(i + 1, format!("{s:?} is not a number of months")))
            };
            let ca = num(f[0])?.ok_or_else(|| bad(i + 1, "no chronological age".into()))?;
            for (points, mean, sd) in [(&mut boys, f[1], f[2]), (&mut girls, f[3], f[4])] {
                if let (Some(mean_months), Some(sd_months)) = (num(mean)?, num(sd)?) {
                    let last = points.last().map_or(-1.0, |p: &ReferencePoint| p.ca_months);
                    if ca <= last || sd_months <= 0.0 {
                        return Err(bad(i + 1, "ages must increase and SDs be positive".into()));
                    }
                    points.push(ReferencePoint {
                        ca_months: ca,
                        mean_months,
                        sd_months,
                    });
                }
            }
        }
        if boys.len() < 2 || girls.len() < 2 {
            return Err(bad(0, "fewer than two ages for a sex".into()));
        }
        Ok(Reference { boys, girls })
    }

    /// The table's points for `sex`.
    pub fn points(&self, sex: Sex) -> &[ReferencePoint] {
        match sex {
            Sex::Male => &self.boys,
            Sex::Female => &self.girls,
        }
    }

    /// The chronological ages the table covers for `sex`, months.
    pub fn range(&self, sex: Sex) -> (f64, f64) {
        let p = self.points(sex);
        (p[0].ca_months, p[p.len() - 1].ca_months)
    }

    /// The mean and SD at `ca_months`, interpolated linearly between the two nearest
    /// ages; outside the table's range, the reason there is none.
    pub fn at(&self, sex: Sex, ca_months: f64) -> std::result::Result<ReferencePoint, String> {
        let (lo, hi) = self.range(sex);
        if !(lo..=hi).contains(&ca_months) {
            return Err(format!(
                "chronological age {ca_months:.1} months is outside the reference's {lo:.0}–{hi:.0} months for {}",
                sex.children()
            ));
        }
        let p = self.points(sex);
        let k = p.partition_point(|q| q.ca_months < ca_months).max(1);
        let (a, b) = (p[k - 1], p[k]);
        let t = (ca_months - a.ca_months) / (b.ca_months - a.ca_months);
        let lerp = |x: f64, y: f64| x + t * (y - x);
        Ok(ReferencePoint {
            ca_months,
            mean_months: lerp(a.mean_months, b.mean_months),
            sd_months: lerp(a.sd_months, b.sd_months),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values_at_its_ages_between_them_and_at_its_ends() {
        let r = Reference::greulich_pyle();
        let p = r.at(Sex::Female, 54.0).unwrap();
        assert_eq!((p.mean_months, p.sd_months), (60.06, 10.73));
        let p = r.at(Sex::Male, 204.0).unwrap();
        assert_eq!((p.mean_months, p.sd_months), (206.21, 13.05));
        let p = r.at(Sex::Male, 3.0).unwrap();
        assert_eq!((p.mean_months, p.sd_months), (3.01, 0.69));
        // Halfway between 60 and 72 months for boys: SD (8.79 + 9.17) / 2.
        let p = r.at(Sex::Male, 66.0).unwrap();
        assert!((p.sd_months - 8.98).abs() < 1e-12, "{p:?}");
        assert!((p.mean_months - (62.43 + 75.46) / 2.0).abs() < 1e-12);
        // A quarter of the way from 156 to 168 months for girls.
        let p = r.at(Sex::Female, 159.0).unwrap();
        assert!((p.sd_months - (10.67 + 0.25 * (11.30 - 10.67))).abs() < 1e-12);
        assert_eq!(r.range(Sex::Male), (3.0, 204.0));
        assert_eq!(r.range(Sex::Female), (3.0, 192.0));
    }

    #[test]
    fn outside_the_table_there_is_a_reason_not_a_value() {
        let r = Reference::greulich_pyle();
        for (sex, ca) in [(Sex::Male, 2.9), (Sex::Female, 193.0), (Sex::Male, 205.0)] {
            let e = r.at(sex, ca).unwrap_err();
            assert!(e.contains("outside the reference"), "{e}");
        }
        assert!(r.at(Sex::Male, 198.0).is_ok());
    }

    #[test]
    fn sexes_parse_and_others_are_refused() {
        assert_eq!(Sex::parse("f").unwrap(), Sex::Female);
        assert_eq!(Sex::parse(" Male ").unwrap(), Sex::Male);
        let e = Sex::parse("x").unwrap_err().to_string();
        assert!(e.contains("\"x\"") && e.contains("M or F"), "{e}");
    }

    #[test]
    fn a_malformed_table_names_its_line() {
        let e = Reference::parse("ca,a,b,c,d\n3,1,1,1,1\n6,1,x,1,1\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
