//! Training curves drawn with plotters into a bitmap (the font is a DejaVu Sans subset
//! compiled in, so no system font is needed).

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::picture::Picture;
use crate::train::LogRow;

const FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would only cost the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Training loss per step (thin), its running mean (bold) and the validation loss per epoch
/// (points), on a logarithmic loss axis (drawn as log10 with the loss values as labels, so
/// the axis has ticks however narrow the range).
pub fn training_curves(log: &[LogRow], width: u32, height: u32) -> Result<Picture, String> {
    register_font();
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let points: Vec<(f64, f64)> = log
            .iter()
            .filter(|r| r.loss.is_finite() && r.loss > 0.0)
            .map(|r| (r.step as f64, r.loss.log10()))
            .collect();
        let val: Vec<(f64, f64)> = log
            .iter()
            .filter_map(|r| r.val_loss.map(|v| (r.step as f64, v)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .map(|(s, v)| (s, v.log10()))
            .collect();
        let all = points.iter().chain(&val).map(|p| p.1);
        let lo = all.clone().fold(f64::INFINITY, f64::min);
        let hi = all.fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0)
        };
        let pad = (hi - lo) * 0.05;
        let last = points.last().map_or(1.0, |p| p.0).max(1.0);
        let smooth = (points.len() / 20).max(1);
        let mean = running_mean(&points);
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..last, lo - pad..hi + pad)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (log scale)")
            .y_label_formatter(&|v| format!("{:.3}", 10f64.powf(*v)))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let light = RGBColor(160, 180, 220);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &light))
            .map_err(|e| e.to_string())?
            .label("loss per step")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], light));
        chart
            .draw_series(LineSeries::new(mean, BLUE.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("running mean ({smooth} steps)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled())))
            .map_err(|e| e.to_string())?
            .label("validation loss (epoch end)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, RED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Picture {
        width: width as usize,
        height: height as usize,
        rgb: buf,
    })
}

/// A named line and its colour.
type Series = (String, Vec<(f64, f64)>, RGBColor);

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A linear-scale chart of named series on `area`.
fn line_panel(area: &Area, title: &str, y_desc: &str, series: &[Series]) -> Result<(), String> {
    let values = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (-1.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let last = series
        .iter()
        .filter_map(|s| s.1.last().map(|p| p.0))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..last, lo - pad..hi + pad)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("generator step")
        .y_desc(y_desc)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, points, color) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())
}

/// The running mean of `points` over windows of 1/20 of their length.
fn running_mean(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let smooth = (points.len() / 20).max(1);
    points
        .windows(smooth)
        .map(|w| {
            (
                w[w.len() - 1].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

/// A GAN's training (labels spell γ as "gamma": the bundled font subset has no Greek):
/// generator and discriminator losses (running means, linear scale, as the
/// generator's hinge term may be negative) above the γ of both SAGAN attention blocks, which
/// show how much non-local evidence each network has learnt to use.
pub fn gan_curves(log: &[LogRow], width: u32, height: u32) -> Result<Picture, String> {
    register_font();
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((2, 1));
        let series = |f: &dyn Fn(&LogRow) -> Option<f64>| -> Vec<(f64, f64)> {
            log.iter()
                .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
                .filter(|p| p.1.is_finite())
                .collect()
        };
        line_panel(
            &panels[0],
            "adversarial training (running means)",
            "loss",
            &[
                (
                    "generator loss".into(),
                    running_mean(&series(&|r| Some(r.loss))),
                    BLUE,
                ),
                (
                    "discriminator hinge loss".into(),
                    running_mean(&series(&|r| r.d_loss)),
                    RED,
                ),
            ],
        )?;
        line_panel(
            &panels[1],
            "attention gate gamma",
            "gamma",
            &[
                ("gamma, generator".into(), series(&|r| r.gamma_g), BLUE),
                ("gamma, discriminator".into(), series(&|r| r.gamma_d), RED),
            ],
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Picture {
        width: width as usize,
        height: height as usize,
        rgb: buf,
    })
}
