//! `[data]` sources that read a user's recording, one file each: `edf.rs` (`edf`/`bdf`),
//! `array.rs` (`npy`/`npz`), `csv.rs`.
//!
//! Each turns its file into [`Recordings`] in physical units (EDF voltages in µV), with
//! labels where the file has them. `path` is relative to the experiment file; the experiment
//! loader makes it absolute before anything reads it.

mod array;
mod csv;
mod edf;

use std::path::Path;

pub use array::ArraySource;
pub use csv::{CsvLayout, CsvSource};
pub use edf::{EdfSource, Epochs};

use crate::samples::check_finite;
use crate::sim::Recordings;
use crate::{DataError, SignalKind};

/// The `kind` of a file source without one.
fn continuous() -> SignalKind {
    SignalKind::Continuous
}

fn default_unit(kind: SignalKind, unit: &Option<String>) -> String {
    unit.clone().unwrap_or_else(|| match kind {
        SignalKind::Continuous => "uV".into(),
        SignalKind::Counts => "count".into(),
    })
}

pub(crate) fn format_err(path: &Path, message: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// Indices of `wanted` in `names` (every wanted name must exist, once), then those of the
/// `inputs` that exist and are not wanted (a missing input is reported under `inputs` once the
/// recordings are read).
fn pick(names: &[String], wanted: &[String], inputs: &[String]) -> Result<Vec<usize>, DataError> {
    if wanted.is_empty() {
        return Err(DataError::invalid("channels", "lists no channel"));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let i = names.iter().position(|n| n == w).ok_or_else(|| {
            DataError::invalid(
                "channels",
                format!("no channel \"{w}\"; the file has {}", names.join(", ")),
            )
        })?;
        if out.contains(&i) {
            return Err(DataError::invalid(
                "channels",
                format!("\"{w}\" is listed twice"),
            ));
        }
        out.push(i);
    }
    for name in inputs {
        if let Some(i) = names.iter().position(|n| n == name) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// One recording, or `n` trials, `[channels, samples]` each, of the channels at `keep`.
fn take_channels(data: &[f32], samples: usize, keep: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(keep.len() * samples);
    for &c in keep {
        out.extend_from_slice(&data[c * samples..(c + 1) * samples]);
    }
    out
}

fn check_counts<'a>(
    path: &Path,
    kind: SignalKind,
    mut values: impl Iterator<Item = &'a f32>,
) -> Result<(), DataError> {
    if kind == SignalKind::Counts {
        if let Some(v) = values.find(|v| **v < 0.0 || v.fract() != 0.0) {
            return Err(format_err(
                path,
                format!("kind = \"counts\" needs non-negative integers, found {v}"),
            ));
        }
    }
    Ok(())
}

fn check_sfreq(sfreq: Option<f64>, why: &str) -> Result<f64, DataError> {
    match sfreq {
        Some(f) if f.is_finite() && f > 0.0 => Ok(f),
        Some(f) => Err(DataError::invalid(
            "sfreq",
            format!("must be positive, got {f}"),
        )),
        None => Err(DataError::invalid("sfreq", format!("required: {why}"))),
    }
}

/// Sorted distinct names, and each value's index among them.
fn index_labels(values: Vec<String>) -> (Vec<u32>, Vec<String>) {
    let mut names = values.clone();
    names.sort();
    names.dedup();
    let idx = values
        .iter()
        .map(|v| names.iter().position(|n| n == v).unwrap_or(0) as u32)
        .collect();
    (idx, names)
}

/// What the NPY, NPZ and CSV sources share once resolved: how a table of numbers becomes
/// recordings.
struct Common<'a> {
    path: &'a Path,
    keep: Option<&'a [String]>,
    /// `[data] inputs`: read besides `keep`, and not held to the counts check.
    inputs: &'a [String],
    kind: SignalKind,
    unit: String,
}

impl<'a> Common<'a> {
    fn new(
        path: &'a Path,
        keep: Option<&'a [String]>,
        inputs: &'a [String],
        kind: SignalKind,
        unit: String,
    ) -> Self {
        Common {
            path,
            keep,
            inputs,
            kind,
            unit,
        }
    }

    /// Trials `[n, channels, time]` or one recording `[channels, samples]` as [`Recordings`].
    fn recordings(
        self,
        sfreq: f64,
        shape: &[usize],
        values: Vec<f32>,
        names: Vec<String>,
        labels: Option<Vec<String>>,
    ) -> Result<Recordings, DataError> {
        let Common {
            path,
            keep,
            inputs,
            kind,
            unit,
        } = self;
        let (n, channels, time, trials) = match *shape {
            [c, t] => (1, c, t, false),
            [n, c, t] => (n, c, t, true),
            _ => {
                return Err(format_err(
                    path,
                    format!("shape {shape:?}: expected [channels, samples] or [n, channels, time]"),
                ))
            }
        };
        if n == 0 || channels == 0 || time == 0 {
            return Err(format_err(
                path,
                format!("shape {shape:?}: the data are empty"),
            ));
        }
        if names.len() != channels {
            return Err(DataError::invalid(
                "channel_names",
                format!("names {} channels, the file has {channels}", names.len()),
            ));
        }
        check_finite(path, &values)?;
        let keep = match keep {
            Some(w) => pick(&names, w, inputs)?,
            None => (0..channels).collect(),
        };
        // Counts are checked in the modelled channels; an input (a stimulus) may be any number.
        let modelled: Vec<usize> = keep
            .iter()
            .copied()
            .filter(|&c| !inputs.contains(&names[c]))
            .collect();
        check_counts(
            path,
            kind,
            values
                .chunks_exact(time)
                .enumerate()
                .filter(|(row, _)| modelled.contains(&(row % channels)))
                .flat_map(|(_, v)| v),
        )?;
        let labels = match labels {
        Some(l) if !trials => {
            return Err(format_err(
                path,
                format!("labels ({} of them) need trials [n, channels, time], the data are [channels, samples]", l.len()),
            ))
        }
        Some(l) if l.len() != n => {
            return Err(format_err(
                path,
                format!("labels: {} labels for {n} trials", l.len()),
            ))
        }
        Some(l) => Some(index_labels(l)),
        None => None,
    };
        let data: Vec<Vec<f32>> = values
            .chunks_exact(channels * time)
            .map(|trial| take_channels(trial, time, &keep))
            .collect();
        Ok(Recordings {
            samples: vec![time; n],
            data,
            channel_names: keep.iter().map(|&i| names[i].clone()).collect(),
            sfreq,
            kind,
            unit,
            latents: None,
            trials,
            breaks: vec![Vec::new(); n],
            labels,
        })
    }
}
