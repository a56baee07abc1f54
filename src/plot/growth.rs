//! The growth chart of a readout: bone age against chronological age, 0–18 years, with
//! the identity line, the Greulich–Pyle (Brush Foundation) mean and its ±2 SD band for
//! the patient's sex, and the patient's visits joined in date order, each with the
//! model's 95% interval.
use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{chart, legend};
use super::{plot_err, Plot, FEMALE, MALE};
use crate::error::{Error, Result};
use crate::readout::{Readout, Reference, Sex};

/// One visit on the chart, months.
#[derive(Clone, Debug, PartialEq)]
pub struct GrowthPoint {
    pub ca_months: f64,
    pub ba_months: f64,
    pub interval: Option<[f64; 2]>,
}

/// One patient's visits against the reference of their sex.
#[derive(Clone, Debug)]
pub struct GrowthChart {
    pub sex: Sex,
    /// The band's half-width in SDs (the readout's `normal_sd`).
    pub band_sd: f64,
    /// In date order (chronological age, when there are no dates).
    pub visits: Vec<GrowthPoint>,
    pub title: String,
}

/// The chart's axes: 0–18 years both ways.
pub const YEARS: f64 = 18.0;

impl GrowthChart {
    /// The chart of one patient's readouts (all of one sex), ordered by exam date, then age.
    pub fn of(readouts: &[Readout], title: &str) -> Result<GrowthChart> {
        let first = readouts.first().ok_or_else(|| Error::Invalid {
            what: "growth chart".into(),
            message: "no readings".into(),
        })?;
        if readouts.iter().any(|r| r.sex != first.sex) {
            return Err(Error::Invalid {
                what: "growth chart".into(),
                message: "readings of both sexes: one chart is one patient".into(),
            });
        }
        let mut sorted: Vec<&Readout> = readouts.iter().collect();
        sorted.sort_by(|a, b| {
            let key = |r: &Readout| (r.chronological_age.exam_date, r.chronological_age.months);
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        });
        Ok(GrowthChart {
            sex: first.sex,
            band_sd: first.normal_sd,
            visits: sorted
                .iter()
                .map(|r| GrowthPoint {
                    ca_months: r.chronological_age.months,
                    ba_months: r.bone_age_months,
                    interval: r.bone_age_interval,
                })
                .collect(),
            title: title.to_string(),
        })
    }

    /// The band's outline at the table's ages: (CA, mean − k·SD, mean + k·SD), months.
    pub fn band(&self) -> Vec<(f64, f64, f64)> {
        Reference::greulich_pyle()
            .points(self.sex)
            .iter()
            .map(|p| {
                let h = self.band_sd * p.sd_months;
                (p.ca_months, p.mean_months - h, p.mean_months + h)
            })
            .collect()
    }
}

impl Plot for GrowthChart {
    fn size(&self) -> (u32, u32) {
        (640, 600)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let y = |m: f64| m / 12.0;
        let colour = if self.sex.is_male() { MALE } else { FEMALE };
        let axes = ("chronological age (years)", "bone age (years)");
        let caption = format!(
            "{}: bone age against age ({})",
            self.title,
            self.sex.children()
        );
        let mut chart = chart(area, &caption, 17.0, 0.0..YEARS, 0.0..YEARS, axes, |m| {
            m.x_labels(10).y_labels(10);
        })?;
        let band = self.band();
        let mut outline: Vec<(f64, f64)> = band.iter().map(|b| (y(b.0), y(b.2))).collect();
        outline.extend(band.iter().rev().map(|b| (y(b.0), y(b.1))));
        let k = self.band_sd;
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                colour.mix(0.15).filled(),
            )))
            .map_err(plot_err)?
            .label(format!("Greulich–Pyle mean ± {k} SD"))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.mix(0.15).filled())
            });
        chart
            .draw_series(LineSeries::new(
                band.iter().map(|b| (y(b.0), y((b.1 + b.2) / 2.0))),
                colour.stroke_width(1),
            ))
            .map_err(plot_err)?
            .label("Brush Foundation mean")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (YEARS, YEARS)],
                8,
                6,
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(plot_err)?
            .label("bone age = age")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
        let pts: Vec<(f64, f64)> = self
            .visits
            .iter()
            .map(|v| (y(v.ca_months), y(v.ba_months)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), BLACK.stroke_width(2)))
            .map_err(plot_err)?;
        chart
            .draw_series(self.visits.iter().filter_map(|v| {
                let [lo, hi] = v.interval?;
                let x = y(v.ca_months);
                Some(PathElement::new(
                    [(x, y(lo)), (x, y(hi))],
                    BLACK.stroke_width(2),
                ))
            }))
            .map_err(plot_err)?
            .label("visit, model's 95% interval")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, BLACK.filled()));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, BLACK.filled())))
            .map_err(plot_err)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}
