//! The report's plots, drawn by plotters as inline SVG.

use std::ops::Range;

use plotters::prelude::*;

/// Tableau's ten colours: distinct in print and for the common colour-vision deficiencies.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const SIZE: (u32, u32) = (520, 360);

/// A named polyline.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: `series` in palette order, an optional vertical marker (the selected epoch)
/// and an optional dashed diagonal (chance on ROC axes, perfect calibration).
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: Range<f64>,
    pub y: Range<f64>,
    pub series: Vec<Series>,
    pub marker: Option<(f64, String)>,
    pub diagonal: bool,
    /// Whole-number x ticks (epochs).
    pub integer_x: bool,
}

type DrawResult<T> = Result<T, String>;

fn fail<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The range of `values` padded by 5% (a flat series gets ±0.5), for axes that fit the data.
pub fn fitted_range(values: impl IntoIterator<Item = f64>) -> Range<f64> {
    let (lo, hi) =
        values.into_iter().filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad)..(hi + pad)
}

impl LineChart<'_> {
    pub fn svg(&self) -> DrawResult<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(fail)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(self.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(self.x.clone(), self.y.clone())
                .map_err(fail)?;
            let whole = |x: &f64| if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() };
            // Up to 4 decimals without trailing zeros: 0.6, not 0.6000000000000001.
            let plain = |x: &f64| {
                let text = format!("{x:.4}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            };
            let x_format: &dyn Fn(&f64) -> String = if self.integer_x { &whole } else { &plain };
            chart
                .configure_mesh()
                .x_desc(self.x_label)
                .y_desc(self.y_label)
                .max_light_lines(1)
                .x_labels(if self.integer_x { (self.x.end - self.x.start).ceil() as usize + 1 } else { 8 })
                .x_label_formatter(x_format)
                .y_labels(8)
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()
                .map_err(fail)?;
            if self.diagonal {
                let line = [(self.x.start, self.x.start), (self.x.end, self.x.end)];
                chart.draw_series(DashedLineSeries::new(line, 4, 4, BLACK.mix(0.4).stroke_width(1))).map_err(fail)?;
            }
            if let Some((x, label)) = &self.marker {
                let line = [(*x, self.y.start), (*x, self.y.end)];
                chart
                    .draw_series(DashedLineSeries::new(line, 6, 3, BLACK.mix(0.6).stroke_width(1)))
                    .map_err(fail)?
                    .label(label.as_str())
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
            }
            for (i, series) in self.series.iter().enumerate() {
                let style = color(i).stroke_width(2);
                chart
                    .draw_series(LineSeries::new(series.points.iter().copied(), style))
                    .map_err(fail)?
                    .label(series.name.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
                if series.points.len() == 1 {
                    chart.draw_series(series.points.iter().map(|&p| Circle::new(p, 3, color(i).filled()))).map_err(fail)?;
                }
            }
            if !self.series.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 11))
                    .position(SeriesLabelPosition::LowerRight)
                    .draw()
                    .map_err(fail)?;
            }
            root.present().map_err(fail)?;
        }
        Ok(svg)
    }
}

/// A reliability diagram: per confidence bin, a bar up to the bin's accuracy, with the
/// diagonal of perfect calibration; `bins` as `(lower, upper, accuracy, count)`, empty bins
/// left out.
pub fn reliability_svg(title: &str, bins: &[(f64, f64, f64, u64)]) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("confidence (top-class probability)")
            .y_desc("accuracy")
            .max_light_lines(1)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(fail)?;
        let bars = bins
            .iter()
            .filter(|b| b.3 > 0)
            .map(|&(lower, upper, accuracy, _)| Rectangle::new([(lower, 0.0), (upper, accuracy)], color(0).mix(0.7).filled()));
        chart.draw_series(bars).map_err(fail)?;
        let outlines = bins
            .iter()
            .filter(|b| b.3 > 0)
            .map(|&(lower, upper, accuracy, _)| Rectangle::new([(lower, 0.0), (upper, accuracy)], WHITE.stroke_width(1)));
        chart.draw_series(outlines).map_err(fail)?;
        chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 4, 4, BLACK.mix(0.6).stroke_width(1))).map_err(fail)?;
        root.present().map_err(fail)?;
    }
    Ok(svg)
}
