//! The two views of a labelled evaluation: predicted against true bone age with the
//! identity line and the MAE, and the residuals by age (Bland–Altman style); and the
//! two files `bone-age evaluate` writes from them.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{chart, legend, Chart};
use super::{plot_err, save, Plot, FEMALE, MALE};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluation, Prediction};
use crate::model::Target;
use crate::summary::AgeStats;

/// The labelled predictions of an evaluation, as (true, predicted, male) in months.
fn labelled(predictions: &[Prediction]) -> Result<Vec<(f64, f64, bool)>> {
    let v: Vec<_> = predictions
        .iter()
        .filter_map(|p| Some((p.boneage?, p.predicted, p.male)))
        .collect();
    if v.is_empty() {
        return Err(Error::Invalid {
            what: "evaluation plot".into(),
            message: "no labelled age predictions (a sex model, or an unlabelled set)".into(),
        });
    }
    Ok(v)
}

/// Predicted against true bone age (years) with the identity line and the MAE.
#[derive(Clone, Debug)]
pub struct PredictionScatter {
    pub predictions: Vec<Prediction>,
}

impl Plot for PredictionScatter {
    fn size(&self) -> (u32, u32) {
        (600, 600)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let pts = labelled(&self.predictions)?;
        let mae = pts.iter().map(|p| (p.1 - p.0).abs()).sum::<f64>() / pts.len() as f64;
        let top = pts.iter().map(|p| p.0.max(p.1)).fold(12.0, f64::max) / 12.0 + 1.0;
        let caption = format!("Predicted vs true: MAE {mae:.2} months (n = {})", pts.len());
        let axes = ("true bone age (years)", "predicted bone age (years)");
        let mut chart = chart(area, &caption, 18.0, 0.0..top, 0.0..top, axes, |_| {})?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (top, top)],
                8,
                6,
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(plot_err)?
            .label("identity")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
        sex_points(&mut chart, &pts, |p| (p.0 / 12.0, p.1 / 12.0))?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Residuals (predicted − true, months) against the true age (years), Bland–Altman
/// style: the mean bias and its 95% limits of agreement (± 1.96 SD). The x axis is the
/// reference reading rather than the two methods' mean, since the label is the standard.
#[derive(Clone, Debug)]
pub struct Residuals {
    pub predictions: Vec<Prediction>,
}

impl Plot for Residuals {
    fn size(&self) -> (u32, u32) {
        (800, 450)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let pts = labelled(&self.predictions)?;
        let res: Vec<f64> = pts.iter().map(|p| p.1 - p.0).collect();
        let s = AgeStats::of(&res).expect("non-empty");
        let limits = [s.mean - 1.96 * s.sd, s.mean + 1.96 * s.sd];
        let span = res
            .iter()
            .fold(limits[1].abs().max(limits[0].abs()), |m, r| m.max(r.abs()));
        let right = pts.iter().map(|p| p.0).fold(12.0, f64::max) / 12.0 + 1.0;
        let caption = format!(
            "Residuals by age: bias {:+.2}, limits of agreement {:+.1} to {:+.1} months",
            s.mean, limits[0], limits[1]
        );
        let axes = ("true bone age (years)", "predicted − true (months)");
        let y = -span * 1.1..span * 1.1;
        let mut chart = chart(area, &caption, 17.0, 0.0..right, y, axes, |_| {})?;
        sex_points(&mut chart, &pts, |p| (p.0 / 12.0, p.1 - p.0))?;
        let hline = |y: f64| [(0.0, y), (right, y)];
        chart
            .draw_series(LineSeries::new(hline(s.mean), BLACK.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("bias {:+.2}", s.mean))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for (i, y) in limits.into_iter().enumerate() {
            let series = chart
                .draw_series(DashedLineSeries::new(
                    hline(y),
                    8,
                    6,
                    BLACK.mix(0.6).stroke_width(1),
                ))
                .map_err(plot_err)?;
            if i == 1 {
                series
                    .label("± 1.96 SD")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Circles per sex, each point mapped by `at`; one legend entry per sex.
fn sex_points<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    pts: &[(f64, f64, bool)],
    at: impl Fn(&(f64, f64, bool)) -> (f64, f64),
) -> Result<()> {
    for (male, colour, name) in [(false, FEMALE, "female"), (true, MALE, "male")] {
        let mine: Vec<_> = pts.iter().filter(|p| p.2 == male).collect();
        if mine.is_empty() {
            continue;
        }
        chart
            .draw_series(
                mine.iter()
                    .map(|p| Circle::new(at(p), 3, colour.mix(0.6).filled())),
            )
            .map_err(plot_err)?
            .label(format!("{name} (n = {})", mine.len()))
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
    }
    Ok(())
}

/// Draws `scatter.png` and `residuals.png` (age models with labels) into `dir`; returns
/// the files written (none for a sex model or an unlabelled set).
pub fn write_evaluation_plots(eval: &Evaluation, dir: &Path) -> Result<Vec<PathBuf>> {
    if eval.target != Target::Age || eval.mae_months.is_none() {
        return Ok(Vec::new());
    }
    let predictions = eval.predictions.clone();
    let (scatter, residuals) = (dir.join("scatter.png"), dir.join("residuals.png"));
    save(
        &PredictionScatter {
            predictions: predictions.clone(),
        },
        &scatter,
        None,
    )?;
    save(&Residuals { predictions }, &residuals, None)?;
    Ok(vec![scatter, residuals])
}
