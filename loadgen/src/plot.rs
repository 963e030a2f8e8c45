//! SVG plots of a report: throughput over time and latency percentile curves. SVG only, so no
//! font or system library is needed (text is emitted as SVG `<text>`).

use crate::error::{Error, Result};
use crate::report::Report;
use crate::workload::TargetRate;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const PLOT_WIDTH_PX: u32 = 1000;
const PLOT_HEIGHT_PX: u32 = 560;
/// Latency curve x axis: "nines" = -log10(1 - p/100); p = 100 is drawn at this many nines.
const NINES_MAX: f64 = 5.0;

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 10_f64.powf(-NINES_MAX) {
        NINES_MAX
    } else {
        -rest.log10()
    }
}

/// `p0`, `p90`, `p99`, `p99.9`, ... for a position on the nines axis.
fn percentile_label(nines: f64) -> String {
    let p = 100.0 - 100.0 * 10_f64.powf(-nines);
    let text = format!("{p:.5}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

/// Writes `<stem>-throughput.svg` and `<stem>-latency.svg`; returns their paths.
pub fn write_plots(report: &Report, stem: &Path) -> Result<Vec<PathBuf>> {
    let base = stem.with_extension("");
    let throughput = PathBuf::from(format!("{}-throughput.svg", base.display()));
    let latency = PathBuf::from(format!("{}-latency.svg", base.display()));
    plot_throughput(report, &throughput)?;
    plot_latency(report, &latency)?;
    Ok(vec![throughput, latency])
}

fn plot_throughput(report: &Report, path: &Path) -> Result<()> {
    // Steps are laid end to end on the time axis.
    let mut produce = Vec::new();
    let mut consume = Vec::new();
    let mut offset = 0.0;
    for step in &report.steps {
        for s in step.intervals.iter().filter(|s| s.t_s > 0.0) {
            produce.push((offset + s.t_s, s.produce_mb_per_s));
            consume.push((offset + s.t_s, s.consume_mb_per_s));
        }
        offset += step.measured_s.ceil();
    }
    let x_max = produce.iter().map(|p| p.0).fold(1.0_f64, f64::max);
    let y_max = produce
        .iter()
        .chain(consume.iter())
        .map(|p| p.1)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (PLOT_WIDTH_PX, PLOT_HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} - {} - throughput", report.workload.name, report.target),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("seconds (measured window)")
        .y_desc("MB/s")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    chart
        .draw_series(LineSeries::new(produce, &BLUE))
        .map_err(|e| plot_error(path, e))?
        .label("produce MB/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(consume, &RED))
        .map_err(|e| plot_error(path, e))?
        .label("consume MB/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}

fn plot_latency(report: &Report, path: &Path) -> Result<()> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for step in &report.steps {
        let rate = match step.target_rate {
            TargetRate::Max => "max".to_owned(),
            TargetRate::MessagesPerSecond(_) => format!("{:.0} MB/s", step.produce.mb_per_s),
        };
        for (kind, lat) in [("ack", &step.produce_latency), ("e2e", &step.e2e_latency)] {
            if lat.count == 0 {
                continue;
            }
            let points = lat.curve.iter().map(|p| (nines(p.percentile), p.ms.max(0.001))).collect();
            series.push((format!("{rate} {kind}"), points));
        }
    }
    let values = || series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let y_max = values().fold(1.0_f64, f64::max) * 1.5;
    let y_min = (values().fold(f64::INFINITY, f64::min) / 1.5).clamp(0.001, y_max / 10.0);
    let root = SVGBackend::new(path, (PLOT_WIDTH_PX, PLOT_HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} - {} - latency percentiles", report.workload.name, report.target),
            ("sans-serif", 18),
        )
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..NINES_MAX, (y_min..y_max).log_scale())
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (1 = p90, 2 = p99, 3 = p99.9, ...)")
        .y_desc("ms (log)")
        .x_labels(NINES_MAX as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, (label, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color))
            .map_err(|e| plot_error(path, e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{report, step};

    #[test]
    fn plot_writes_two_svgs() {
        let mut s = step(100.0, 5.0);
        s.intervals = (0..5)
            .map(|i| crate::metrics::IntervalSample {
                t_s: f64::from(i) + 1.0,
                produce_mb_per_s: 100.0,
                ..Default::default()
            })
            .collect();
        let r = report(vec![s], 1, 1);
        let dir = tempfile::tempdir().unwrap();
        let paths = write_plots(&r, &dir.path().join("run.json")).unwrap();
        assert_eq!(paths.len(), 2);
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.starts_with("<svg"), "{}", p.display());
        }
    }

    #[test]
    fn plot_nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES_MAX);
        assert_eq!(percentile_label(0.0), "p0");
        assert_eq!(percentile_label(2.0), "p99");
        assert_eq!(percentile_label(3.0), "p99.9");
    }
}
