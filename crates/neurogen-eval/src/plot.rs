//! PNG figures drawn with plotters: traces, rasters, spectra, loss curves and latents.
//!
//! Each figure renders into an RGB buffer with DejaVu Sans (bundled, so text looks the same on
//! every machine without fontconfig) and is written as a PNG through a temporary file and a
//! rename, so a figure on disk is always complete.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::spectral::{Spectra, BANDS};
use crate::{EvalError, View};
use neurogen_data::Signals;

const FONT: &str = "sans-serif";
/// One colour per data set: reference first (near-black), then the samples.
const SET_COLOURS: [RGBColor; 4] = [
    RGBColor(40, 40, 40),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];
/// Label colours for latent scatter plots (matplotlib's tab10).
const LABEL_COLOURS: [RGBColor; 10] = [
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
const BAND_COLOURS: [RGBColor; 5] = [
    RGBColor(255, 230, 200),
    RGBColor(220, 240, 200),
    RGBColor(200, 225, 250),
    RGBColor(240, 210, 240),
    RGBColor(250, 250, 200),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; registering it cannot
        // fail at run time, and if it ever did, text would be left out rather than the figure.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../fonts/DejaVuSans.ttf"),
        );
    });
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> EvalError + '_ {
    move |e| EvalError::Io {
        path: path.to_path_buf(),
        message: format!("drawing the figure failed: {e:?}"),
    }
}

/// Renders `draw` on a `width × height` canvas and writes it as a PNG at `path`, atomically.
fn render<F>(path: &Path, (width, height): (u32, u32), draw: F) -> Result<(), EvalError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), EvalError>,
{
    register_font();
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(path))?;
        draw(&root)?;
        root.present().map_err(draw_err(path))?;
    }
    let io = |e: String| EvalError::Io {
        path: path.to_path_buf(),
        message: e,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| io(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(e.to_string()))?;
    {
        let mut enc = png::Encoder::new(std::io::BufWriter::new(tmp.as_file()), width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| io(e.to_string()))?;
        w.write_image_data(&buf).map_err(|e| io(e.to_string()))?;
        w.finish().map_err(|e| io(e.to_string()))?;
    }
    tmp.as_file().sync_all().map_err(|e| io(e.to_string()))?;
    tmp.persist(path).map_err(|e| io(e.error.to_string()))?;
    Ok(())
}

/// A 2-D chart on the bitmap backend, with `f64` axes (linear or log).
type Chart<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// One curve with its legend entry.
fn draw_line<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    path: &Path,
    points: &[(f64, f64)],
    name: &str,
    colour: RGBColor,
) -> Result<(), EvalError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points.to_vec(), colour.stroke_width(2)))
        .map_err(draw_err(path))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    Ok(())
}

/// The legend box, top right.
fn draw_legend<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    path: &Path,
) -> Result<(), EvalError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(draw_err(path))
}

/// `(lo, hi)` of `values`, widened when flat so an axis always has extent.
fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Traces of the first window of each set, one row per channel (at most `max_channels`), one
/// column per set, on a shared amplitude scale per channel.
pub fn traces(
    path: &Path,
    sets: &[(&str, &Signals)],
    max_channels: usize,
) -> Result<(), EvalError> {
    let Some((_, first)) = sets.first() else {
        return Err(EvalError::Invalid("no data to plot".into()));
    };
    let meta = &first.meta;
    let rows = meta.channels.min(max_channels).max(1);
    let size = (420 * sets.len() as u32 + 40, 120 * rows as u32 + 60);
    render(path, size, |root| {
        let (title, body) = root.split_vertically(40);
        title
            .titled(
                &format!("first window per set, {} Hz ({})", meta.sfreq, meta.unit),
                (FONT, 20),
            )
            .map_err(draw_err(path))?;
        let cells = body.split_evenly((rows, sets.len()));
        for c in 0..rows {
            let (lo, hi) = extent(
                sets.iter()
                    .flat_map(|(_, s)| View::of(s).row(0, c).iter().map(|v| *v as f64)),
            );
            for (k, (name, s)) in sets.iter().enumerate() {
                let v = View::of(s);
                let dur = v.time as f64 / s.meta.sfreq;
                let caption = if c == 0 {
                    format!(
                        "{name}: {}",
                        s.meta.channel_names.get(c).map_or("", |n| n.as_str())
                    )
                } else {
                    s.meta.channel_names.get(c).cloned().unwrap_or_default()
                };
                let mut chart = ChartBuilder::on(&cells[c * sets.len() + k])
                    .caption(caption, (FONT, 14))
                    .margin(4)
                    .x_label_area_size(if c + 1 == rows { 24 } else { 0 })
                    .y_label_area_size(48)
                    .build_cartesian_2d(0f64..dur, lo..hi)
                    .map_err(draw_err(path))?;
                let mut mesh = chart.configure_mesh();
                mesh.y_labels(3).x_labels(5).light_line_style(WHITE);
                if c + 1 == rows {
                    mesh.x_desc("time (s)");
                }
                mesh.draw().map_err(draw_err(path))?;
                let colour = SET_COLOURS[k % SET_COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(
                        v.row(0, c)
                            .iter()
                            .enumerate()
                            .map(|(t, y)| (t as f64 / s.meta.sfreq, *y as f64)),
                        colour.stroke_width(1),
                    ))
                    .map_err(draw_err(path))?;
            }
        }
        Ok(())
    })
}

/// Spike rasters of the first window of each set, side by side: a tick per bin with a spike
/// (darker for more spikes), neurons on the vertical axis.
pub fn raster(path: &Path, sets: &[(&str, &Signals)]) -> Result<(), EvalError> {
    let Some((_, first)) = sets.first() else {
        return Err(EvalError::Invalid("no data to plot".into()));
    };
    let neurons = first.meta.channels;
    let size = (
        460 * sets.len() as u32,
        (6 * neurons as u32).clamp(240, 800) + 80,
    );
    render(path, size, |root| {
        let cells = root.split_evenly((1, sets.len()));
        for (k, (name, s)) in sets.iter().enumerate() {
            let v = View::of(s);
            let dt = 1.0 / s.meta.sfreq;
            let dur = v.time as f64 * dt;
            let mut chart = ChartBuilder::on(&cells[k])
                .caption(format!("{name} (first window)"), (FONT, 18))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(44)
                .build_cartesian_2d(0f64..dur, 0f64..neurons as f64)
                .map_err(draw_err(path))?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("time (s)")
                .y_desc("neuron")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(draw_err(path))?;
            let colour = SET_COLOURS[k % SET_COLOURS.len()];
            let ticks = (0..neurons).flat_map(|c| {
                v.row(0, c)
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0.0)
                    .map(move |(t, n)| (c, t, *n))
            });
            chart
                .draw_series(ticks.map(|(c, t, n)| {
                    let alpha = (0.5 + 0.25 * n as f64).min(1.0);
                    Rectangle::new(
                        [
                            (t as f64 * dt, c as f64 + 0.1),
                            ((t as f64 + 1.0) * dt, c as f64 + 0.9),
                        ],
                        colour.mix(alpha).filled(),
                    )
                }))
                .map_err(draw_err(path))?;
        }
        Ok(())
    })
}

/// The channel-mean Welch PSD of each set on a log power axis, EEG bands shaded.
pub fn psd(
    path: &Path,
    sets: &[(&str, &Spectra)],
    unit: &str,
    f_max: f64,
) -> Result<(), EvalError> {
    let Some((_, first)) = sets.first() else {
        return Err(EvalError::Invalid("no spectra to plot".into()));
    };
    let nyquist = first.freqs.last().copied().unwrap_or(1.0);
    let f_hi = f_max
        .min(nyquist)
        .max(first.freqs.get(1).copied().unwrap_or(1.0));
    let curves: Vec<Vec<(f64, f64)>> = sets
        .iter()
        .map(|(_, s)| {
            s.freqs
                .iter()
                .zip(s.mean_psd())
                .filter(|(f, p)| **f > 0.0 && **f <= f_hi && *p > 0.0)
                .map(|(f, p)| (*f, p))
                .collect()
        })
        .collect();
    let (lo, hi) = curves
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, p)| {
            (a.min(*p), b.max(*p))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-3, 1.0)
    };
    render(path, (900, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Welch PSD, mean over channels", (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..f_hi, (lo..hi).log_scale())
            .map_err(draw_err(path))?;
        chart
            .configure_mesh()
            .x_desc("frequency (Hz)")
            .y_desc(format!("power ({unit}²/Hz)"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(draw_err(path))?;
        for (i, (name, blo, bhi)) in BANDS.iter().enumerate() {
            if *blo >= f_hi {
                continue;
            }
            let colour = BAND_COLOURS[i];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*blo, lo), (bhi.min(f_hi), hi)],
                    colour.filled(),
                )))
                .map_err(draw_err(path))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (*blo + 0.2, hi / 1.6),
                    (FONT, 13),
                )))
                .map_err(draw_err(path))?;
        }
        for (k, ((name, _), curve)) in sets.iter().zip(&curves).enumerate() {
            let colour = SET_COLOURS[k % SET_COLOURS.len()];
            draw_line(&mut chart, path, curve, name, colour)?;
        }
        draw_legend(&mut chart, path)?;
        Ok(())
    })
}

/// One named curve of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Curves on shared axes (loss curves: step against loss), with a legend.
pub fn curves(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), EvalError> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    if all().next().is_none() {
        return Err(EvalError::Invalid(format!("no points to plot for {title}")));
    }
    let (x0, x1) = extent(all().map(|p| p.0));
    let (y0, y1) = extent(all().map(|p| p.1));
    render(path, (900, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err(path))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(draw_err(path))?;
        for (k, s) in series.iter().enumerate() {
            let colour = LABEL_COLOURS[k % LABEL_COLOURS.len()];
            draw_line(&mut chart, path, &s.points, &s.name, colour)?;
        }
        draw_legend(&mut chart, path)?;
        Ok(())
    })
}

/// Grouped bars: one group per category (`groups`), one bar per series within it, on a
/// `[y0, y1]` axis (AUROC per artefact type and scoring method).
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    (y0, y1): (f64, f64),
) -> Result<(), EvalError> {
    if groups.is_empty() || series.is_empty() {
        return Err(EvalError::Invalid(format!("no bars to plot for {title}")));
    }
    let k = series.len() as f64;
    render(path, (1000, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..groups.len() as f64, y0..y1)
            .map_err(draw_err(path))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 1e-6 {
                    groups.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(draw_err(path))?;
        for (j, (name, values)) in series.iter().enumerate() {
            let colour = LABEL_COLOURS[j % LABEL_COLOURS.len()];
            let rects = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(g, v)| {
                    let left = g as f64 + 0.1 + 0.8 * j as f64 / k;
                    Rectangle::new(
                        [(left, y0), (left + 0.8 / k, v.clamp(y0, y1))],
                        colour.filled(),
                    )
                });
            chart
                .draw_series(rects)
                .map_err(draw_err(path))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()
            .map_err(draw_err(path))
    })
}

/// How the points of a latent scatter plot are coloured.
#[derive(Debug, Clone)]
pub enum Colouring {
    /// A category per point (indices into `names`), one colour each, with a legend.
    Labels {
        /// Per point.
        index: Vec<u32>,
        /// Category names.
        names: Vec<String>,
    },
    /// A number per point (e.g. the window's start time), on a blue→red scale.
    Value {
        /// Per point.
        values: Vec<f64>,
        /// What the number is, for the title.
        name: String,
    },
}

/// A 2-D scatter plot of latent projections.
pub fn scatter(
    path: &Path,
    title: &str,
    points: &[(f64, f64)],
    colour: &Colouring,
) -> Result<(), EvalError> {
    if points.is_empty() {
        return Err(EvalError::Invalid("no latents to plot".into()));
    }
    let (x0, x1) = extent(points.iter().map(|p| p.0));
    let (y0, y1) = extent(points.iter().map(|p| p.1));
    let title = match colour {
        Colouring::Value { name, .. } => format!("{title}; colour: {name}, blue → red"),
        Colouring::Labels { .. } => title.to_string(),
    };
    render(path, (720, 640), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err(path))?;
        chart
            .configure_mesh()
            .x_desc("PC 1")
            .y_desc("PC 2")
            .draw()
            .map_err(draw_err(path))?;
        match colour {
            Colouring::Labels { index, names } => {
                for (k, name) in names.iter().enumerate() {
                    let c = LABEL_COLOURS[k % LABEL_COLOURS.len()];
                    let pts: Vec<(f64, f64)> = points
                        .iter()
                        .zip(index)
                        .filter(|(_, i)| **i as usize == k)
                        .map(|(p, _)| *p)
                        .collect();
                    chart
                        .draw_series(
                            pts.into_iter()
                                .map(|p| Circle::new(p, 3, c.mix(0.8).filled())),
                        )
                        .map_err(draw_err(path))?
                        .label(name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
                }
                draw_legend(&mut chart, path)?;
            }
            Colouring::Value { values, .. } => {
                let (v0, v1) = extent(values.iter().copied());
                chart
                    .draw_series(points.iter().zip(values).map(|(p, v)| {
                        let t = ((v - v0) / (v1 - v0)).clamp(0.0, 1.0);
                        let c = RGBColor((40.0 + 200.0 * t) as u8, 60, (240.0 - 200.0 * t) as u8);
                        Circle::new(*p, 3, c.mix(0.8).filled())
                    }))
                    .map_err(draw_err(path))?;
            }
        }
        Ok(())
    })
}

/// The first two principal components of the rows of `x` (`[n, dim]`), by power iteration on
/// the covariance; `[(pc1, pc2)]` per row.
pub fn pca2(x: &[f64], dim: usize) -> Vec<(f64, f64)> {
    let n = x.len() / dim.max(1);
    if n == 0 {
        return Vec::new();
    }
    let mean: Vec<f64> = (0..dim)
        .map(|j| (0..n).map(|i| x[i * dim + j]).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(k, v)| v - mean[k % dim])
        .collect();
    let mut cov = vec![0f64; dim * dim];
    for r in centred.chunks(dim) {
        for a in 0..dim {
            for b in 0..dim {
                cov[a * dim + b] += r[a] * r[b];
            }
        }
    }
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for k in 0..2.min(dim) {
        let mut v: Vec<f64> = (0..dim)
            .map(|j| 1.0 + (j * (k + 1)) as f64 * 0.37)
            .collect();
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..dim)
                .map(|a| (0..dim).map(|b| cov[a * dim + b] * v[b]).sum())
                .collect();
            // Deflate the components already found.
            for c in &comps {
                let d: f64 = w.iter().zip(c).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(c).for_each(|(a, b)| *a -= d * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm < 1e-300 {
                break;
            }
            v = w.into_iter().map(|a| a / norm).collect();
        }
        comps.push(v);
    }
    centred
        .chunks(dim)
        .map(|r| {
            let p = |k: usize| {
                comps
                    .get(k)
                    .map_or(0.0, |c| r.iter().zip(c).map(|(a, b)| a * b).sum())
            };
            (p(0), p(1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurogen_data::SignalKind;

    /// Decodes a PNG: `(width, height, rgb bytes)`.
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn non_white_fraction(rgb: &[u8]) -> f64 {
        let px = rgb.chunks(3).filter(|p| p.iter().any(|c| *c < 250)).count();
        px as f64 / (rgb.len() / 3) as f64
    }

    fn sine_set(freq: f64) -> Signals {
        let (c, t, fs) = (3, 256, 128.0);
        let values = (0..2 * c * t)
            .map(|i| {
                let k = (i % t) as f64;
                (10.0 * (2.0 * std::f64::consts::PI * freq * k / fs).sin()) as f32
            })
            .collect();
        crate::test_signals(values, 2, c, fs, SignalKind::Continuous)
    }

    #[test]
    fn figures_decode_with_the_expected_size_and_are_not_blank() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (sine_set(10.0), sine_set(20.0));
        let p = dir.path().join("traces.png");
        traces(&p, &[("data", &a), ("samples", &b)], 8).unwrap();
        let (w, h, rgb) = decode(&p);
        assert_eq!((w, h), (420 * 2 + 40, 120 * 3 + 60));
        let ink = non_white_fraction(&rgb);
        assert!(ink > 0.02 && ink < 0.9, "ink fraction {ink}");

        let p = dir.path().join("psd.png");
        let (sa, sb) = (
            Spectra::of(&View::of(&a), 128.0),
            Spectra::of(&View::of(&b), 128.0),
        );
        psd(&p, &[("data", &sa), ("samples", &sb)], "uV", 40.0).unwrap();
        let (w, h, rgb) = decode(&p);
        assert_eq!((w, h), (900, 520));
        // The sample curve is drawn in its colour.
        assert!(rgb.chunks(3).any(|px| px == [31, 119, 180]));

        let p = dir.path().join("loss.png");
        let s = Series {
            name: "train".into(),
            points: (0..50)
                .map(|i| (i as f64, 100.0 / (1.0 + i as f64)))
                .collect(),
        };
        curves(&p, "loss", "step", "loss", &[s]).unwrap();
        assert_eq!(decode(&p).0, 900);

        let p = dir.path().join("latents.png");
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| ((i as f64).sin(), (i as f64).cos()))
            .collect();
        let colour = Colouring::Labels {
            index: (0..40).map(|i| i % 2).collect(),
            names: vec!["left".into(), "right".into()],
        };
        scatter(&p, "latents", &pts, &colour).unwrap();
        let (w, h, rgb) = decode(&p);
        assert_eq!((w, h), (720, 640));
        assert!(
            rgb.chunks(3).any(|px| px == [255, 127, 14]),
            "the second label's colour is drawn"
        );
        // No temporary file is left beside the figures.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn pca_finds_the_direction_of_largest_variance() {
        // Points along (1, 2, 0)/√5 with small noise on the third axis.
        let x: Vec<f64> = (0..100)
            .flat_map(|i| {
                let t = i as f64 - 50.0;
                [t, 2.0 * t, 0.01 * ((i * 7) % 5) as f64]
            })
            .collect();
        let p = pca2(&x, 3);
        // PC1 of a point is ±(t − mean t)·√5; the first point sits 49.5 below the mean.
        assert!(
            (p[0].0.abs() - 49.5 * 5f64.sqrt()).abs() < 1e-3,
            "{:?}",
            p[0]
        );
        assert!(p.iter().all(|q| q.1.abs() < 0.05));
    }
}
