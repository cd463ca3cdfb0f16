//! Writing windows in the format a file's extension names: NPY, NPZ, EDF, BDF or CSV.

use std::path::Path;

use crate::npy::{NpyArray, NpyValues};
use crate::sources::format_err;
use crate::{DataError, SignalKind};

/// The file formats windows can be written in, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.npy`: `[n, channels, time]` float32.
    Npy,
    /// `.npz`: `data`, `sfreq`, `channel_names` and, when labelled, `labels`.
    Npz,
    /// `.edf`: EDF+C, 16-bit, one record per window, labels as annotations.
    Edf,
    /// `.bdf`: BDF+C, 24-bit, otherwise as `.edf`.
    Bdf,
    /// `.csv`: the trials layout (`Trial,[Condition,]Electrode,Time1..`).
    Csv,
}

impl OutputFormat {
    /// The format `path`'s extension names.
    pub fn of(path: &Path) -> Result<OutputFormat, DataError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Ok(match ext.as_deref() {
            Some("npy") => OutputFormat::Npy,
            Some("npz") => OutputFormat::Npz,
            Some("edf") => OutputFormat::Edf,
            Some("bdf") => OutputFormat::Bdf,
            Some("csv") => OutputFormat::Csv,
            _ => return Err(format_err(
                path,
                "unsupported output format; the extension picks it: .npy, .npz, .edf, .bdf or .csv"
                    .into(),
            )),
        })
    }
}

/// Writes windows (physical units) to `path` in the format its extension names, atomically;
/// labelled windows carry their labels (NPZ array, EDF+ annotations, CSV column), and
/// windows with exogenous inputs have them written beside as `<stem>_inputs.npy`.
pub fn write_signals(path: &Path, s: &crate::Signals) -> Result<OutputFormat, DataError> {
    let format = OutputFormat::of(path)?;
    // Exogenous inputs go beside, in every format: `<stem>_inputs.npy`, `[n, inputs, time]`.
    if let (Some(u), true) = (&s.inputs, s.has_inputs()) {
        let beside = crate::samples::sidecar_path(path, "_inputs.npy");
        let shape = [s.n, s.meta.input_names.len(), s.meta.time];
        crate::npy::write_f32(&beside, &shape, u)?;
    }
    let shape = [s.n, s.meta.channels, s.meta.time];
    let labels = s.label_texts();
    match format {
        OutputFormat::Npy => crate::npy::write_f32(path, &shape, &s.values)?,
        OutputFormat::Npz => {
            let mut arrays = vec![
                (
                    "data",
                    NpyArray {
                        shape: shape.to_vec(),
                        values: NpyValues::Numbers(s.values.clone()),
                    },
                ),
                (
                    "sfreq",
                    NpyArray {
                        shape: vec![],
                        values: NpyValues::Numbers(vec![s.meta.sfreq as f32]),
                    },
                ),
                (
                    "channel_names",
                    NpyArray {
                        shape: vec![s.meta.channels],
                        values: NpyValues::Text(s.meta.channel_names.clone()),
                    },
                ),
            ];
            if let Some(l) = &labels {
                arrays.push((
                    "labels",
                    NpyArray {
                        shape: vec![s.n],
                        values: NpyValues::Text(l.clone()),
                    },
                ));
            }
            crate::npy::write_npz(path, &arrays)?
        }
        OutputFormat::Edf | OutputFormat::Bdf => crate::edf::write(
            path,
            if format == OutputFormat::Edf {
                crate::edf::EdfFormat::Edf
            } else {
                crate::edf::EdfFormat::Bdf
            },
            &crate::edf::EdfWindows {
                values: &s.values,
                n: s.n,
                channel_names: &s.meta.channel_names,
                time: s.meta.time,
                sfreq: s.meta.sfreq,
                unit: &s.meta.unit,
                labels: labels.as_deref(),
                integer: s.meta.kind == SignalKind::Counts,
            },
        )?,
        OutputFormat::Csv => crate::csv::write_trials(
            path,
            &s.values,
            s.n,
            &s.meta.channel_names,
            s.meta.time,
            labels.as_deref(),
        )?,
    }
    Ok(format)
}
