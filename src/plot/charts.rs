//! Charts: the bone-age distribution by sex and training curves from `metrics.csv`, plus
//! the chart scaffolding (margins, fonts, mesh, legend) that `evaluation` shares.
use std::ops::Range;
use std::path::Path;

use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{font, plot_err, Plot, FEMALE, MALE};
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::summary::AgeStats;

/// Bone ages (months) by sex, binned by year: the original's "Analyze gender distribution".
#[derive(Clone, Debug)]
pub struct AgeHistogram {
    pub ages_months: Vec<f64>,
    pub males: Vec<bool>,
    pub title: String,
}

impl AgeHistogram {
    /// The histogram of a labelled annotation frame (`boneage`, `male` columns).
    pub fn of(frame: &DataFrame) -> Result<AgeHistogram> {
        Ok(AgeHistogram {
            ages_months: crate::dataset::ages(frame)?,
            males: crate::dataset::males(frame)?,
            title: "Bone age by sex".into(),
        })
    }

    /// Counts per one-year bin `[female, male]`, for bins 0..=last full year.
    pub fn counts(&self) -> Vec<[usize; 2]> {
        let years = |m: f64| (m / 12.0).floor().max(0.0) as usize;
        let n = self
            .ages_months
            .iter()
            .map(|&m| years(m))
            .max()
            .map_or(0, |y| y + 1);
        let mut bins = vec![[0usize; 2]; n];
        for (&age, &male) in self.ages_months.iter().zip(&self.males) {
            bins[years(age)][male as usize] += 1;
        }
        bins
    }
}

impl Plot for AgeHistogram {
    fn size(&self) -> (u32, u32) {
        (900, 450)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let bins = self.counts();
        let top = bins.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
        let x = 0.0..bins.len().max(1) as f64;
        let labels = bins.len().clamp(2, 20);
        let mut chart = chart(area, &self.title, 20.0, x, 0.0..top, AXES_AGE_COUNT, |m| {
            m.disable_x_mesh()
                .x_labels(labels)
                .x_label_formatter(&whole)
                .y_label_formatter(&whole);
        })?;
        for (sex, colour, name) in [(0, FEMALE, "female"), (1, MALE, "male")] {
            let ages: Vec<f64> = (self.ages_months.iter().zip(&self.males))
                .filter(|(_, &m)| m as usize == sex)
                .map(|(&a, _)| a)
                .collect();
            let label = match AgeStats::of(&ages) {
                Some(s) => format!("{name}: n = {}, mean {:.1} y", s.count, s.mean / 12.0),
                None => format!("{name}: n = 0"),
            };
            let x0 = sex as f64 * 0.45 + 0.05;
            chart
                .draw_series(bins.iter().enumerate().map(|(y, c)| {
                    let x = y as f64 + x0;
                    Rectangle::new([(x, 0.0), (x + 0.45, c[sex] as f64)], colour.filled())
                }))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Loss and validation score per epoch, from a run's `metrics.csv`.
#[derive(Clone, Debug)]
pub struct TrainingCurves {
    pub history: Vec<EpochMetrics>,
}

impl TrainingCurves {
    /// The curves of the run in `run_dir`.
    pub fn read(run_dir: &Path) -> Result<TrainingCurves> {
        let history = crate::metrics::read_metrics(run_dir)?;
        if history.is_empty() {
            return Err(Error::Dataset {
                path: run_dir.join("metrics.csv"),
                message: "no epochs recorded yet".into(),
            });
        }
        Ok(TrainingCurves { history })
    }
}

impl Plot for TrainingCurves {
    fn size(&self) -> (u32, u32) {
        (1000, 400)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let h = &self.history;
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        let epochs = 0.0..h.iter().map(|m| m.epoch).max().unwrap_or(1) as f64 + 1.0;
        let series =
            |f: fn(&EpochMetrics) -> f64| h.iter().map(|m| (m.epoch as f64, f(m))).collect();
        line_chart(
            &left,
            "Loss",
            "loss",
            epochs.clone(),
            &[
                ("train", FEMALE, series(|m| m.train_loss)),
                ("validation", MALE, series(|m| m.val_loss)),
            ],
        )?;
        let (title, desc, points): (&str, &str, Vec<(f64, f64)>) =
            if h.iter().any(|m| m.val_mae_months.is_some()) {
                let p = h
                    .iter()
                    .filter_map(|m| Some((m.epoch as f64, m.val_mae_months?)));
                ("Validation MAE", "months", p.collect())
            } else {
                let p = h
                    .iter()
                    .filter_map(|m| Some((m.epoch as f64, 100.0 * m.val_accuracy?)));
                ("Validation accuracy", "%", p.collect())
            };
        line_chart(&right, title, desc, epochs, &[("validation", MALE, points)])
    }
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Mesh<'a, 'b, DB> = MeshStyle<'a, 'b, RangedCoordf64, RangedCoordf64, DB>;

const AXES_AGE_COUNT: (&str, &str) = ("bone age (years)", "radiographs");

/// Tick labels for counts and epochs: whole numbers only (no "1, 1, 1" for 0.8, 1.0, 1.2).
fn whole(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// A captioned x–y chart with the shared margins and fonts, its mesh drawn after `mesh`
/// has adjusted it (ticks, formatters).
pub(super) fn chart<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    caption_px: f64,
    x: Range<f64>,
    y: Range<f64>,
    (x_desc, y_desc): (&str, &str),
    mesh: impl FnOnce(&mut Mesh<'a, '_, DB>),
) -> Result<Chart<'a, DB>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(caption_px))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let mut style = chart.configure_mesh();
    style
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(font(12.0))
        .axis_desc_style(font(14.0));
    mesh(&mut style);
    style.draw().map_err(plot_err)?;
    Ok(chart)
}

/// Lines with markers over epochs, y from 0 (or the data's minimum when negative).
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    epochs: Range<f64>,
    series: &[Series],
) -> Result<()> {
    let ys = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((0f64, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let hi = if hi > lo { hi * 1.1 } else { lo + 1.0 };
    let mut chart = chart(area, title, 18.0, epochs, lo..hi, ("epoch", y_desc), |m| {
        m.x_labels(12).x_label_formatter(&whole);
    })?;
    for (name, colour, points) in series {
        let c = *colour;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(plot_err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(font(13.0))
        .draw()
        .map_err(plot_err)
}
