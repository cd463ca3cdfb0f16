//! `[data] source = "edf"` or `"bdf"`: a whole recording, or epochs around annotations.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{format_err, pick};
use crate::edf::EdfFile;
use crate::sim::Recordings;
use crate::{DataError, SignalKind};

/// Windows cut around annotations: `[onset + tmin, onset + tmax)`, labelled by event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epochs {
    /// Annotation texts to cut around; the label of an epoch is its event's position here.
    pub events: Vec<String>,
    /// Start relative to the event onset, seconds.
    pub tmin: f64,
    /// End relative to the event onset, seconds (exclusive).
    pub tmax: f64,
}

/// `[data] source = "edf"` or `"bdf"` (either reads both; the header decides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdfSource {
    /// The recording.
    pub path: PathBuf,
    /// Signals to keep, by label; default: every ordinary signal of the most common rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// `[data] inputs`, read besides `channels` (set by [`crate::DataConfig::build`]).
    #[serde(skip)]
    pub inputs: Vec<String>,
    /// Cut epochs around annotations instead of windowing the whole recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Epochs>,
}

/// Scale to µV of a physical dimension that is a voltage.
fn to_microvolts(unit: &str) -> Option<f64> {
    match unit.trim() {
        "V" => Some(1e6),
        "mV" => Some(1e3),
        "uV" | "µV" | "μV" => Some(1.0),
        "nV" => Some(1e-3),
        _ => None,
    }
}

impl EdfSource {
    /// Reads the file and cuts it into recordings (the whole file, or its epochs).
    pub fn load(&self) -> Result<Recordings, DataError> {
        let path = &self.path;
        let file = crate::edf::read(path)?;
        let names: Vec<String> = file.signals.iter().map(|s| s.label.clone()).collect();
        let keep = match &self.channels {
            Some(wanted) => {
                let keep = pick(&names, wanted, &self.inputs)?;
                let rate = file.signals[keep[0]].samples_per_record;
                if let Some(&o) = keep
                    .iter()
                    .find(|&&i| file.signals[i].samples_per_record != rate)
                {
                    return Err(DataError::invalid(
                        "channels",
                        format!(
                            "\"{}\" is sampled at {} Hz and \"{}\" at {} Hz; choose signals of one rate",
                            names[keep[0]],
                            file.signals[keep[0]].sfreq,
                            names[o],
                            file.signals[o].sfreq
                        ),
                    ));
                }
                keep
            }
            None => {
                // The most common rate (ties: the higher), and say which signals it leaves out.
                let mut rates: Vec<usize> =
                    file.signals.iter().map(|s| s.samples_per_record).collect();
                rates.sort_unstable();
                let rate = rates
                    .chunk_by(|a, b| a == b)
                    .max_by_key(|g| (g.len(), g[0]))
                    .map(|g| g[0])
                    .ok_or_else(|| format_err(path, "the file has no ordinary signal".into()))?;
                let (keep, left): (Vec<usize>, Vec<usize>) =
                    (0..names.len()).partition(|&i| file.signals[i].samples_per_record == rate);
                if !left.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        "left out {} signal(s) sampled at another rate than {} Hz: {} (name them in data.channels to choose)",
                        left.len(),
                        file.signals[keep[0]].sfreq,
                        left.iter()
                            .map(|&i| format!("{} ({} Hz)", names[i], file.signals[i].sfreq))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                keep
            }
        };
        let first = &file.signals[keep[0]];
        let (sfreq, spr) = (first.sfreq, first.samples_per_record);
        let samples = first.values.len();
        let mut unit = None;
        let mut data = Vec::with_capacity(keep.len() * samples);
        for &i in &keep {
            let s = &file.signals[i];
            let (u, scale) = match to_microvolts(&s.unit) {
                Some(k) => ("uV".to_string(), k),
                None => (s.unit.clone(), 1.0),
            };
            match &unit {
                None => unit = Some(u),
                Some(prev) if *prev != u => {
                    return Err(DataError::invalid(
                        "channels",
                        format!(
                            "\"{}\" is in \"{}\" and \"{}\" in \"{}\"; choose signals of one unit",
                            names[keep[0]], prev, s.label, s.unit
                        ),
                    ))
                }
                Some(_) => {}
            }
            data.extend(s.values.iter().map(|&v| (v * scale) as f32));
        }
        let channel_names: Vec<String> = keep.iter().map(|&i| names[i].clone()).collect();
        let unit = unit.unwrap_or_default();
        match &self.epochs {
            None => Ok(Recordings {
                data: vec![data],
                samples: vec![samples],
                channel_names,
                sfreq,
                kind: SignalKind::Continuous,
                unit,
                latents: None,
                trials: false,
                breaks: vec![file.breaks(spr)],
                labels: None,
            }),
            Some(ep) => cut_epochs(
                path,
                &file,
                ep,
                &data,
                samples,
                spr,
                sfreq,
                channel_names,
                unit,
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn cut_epochs(
    path: &Path,
    file: &EdfFile,
    ep: &Epochs,
    data: &[f32],
    samples: usize,
    spr: usize,
    sfreq: f64,
    channel_names: Vec<String>,
    unit: String,
) -> Result<Recordings, DataError> {
    if ep.events.is_empty() {
        return Err(DataError::invalid("epochs.events", "lists no event"));
    }
    if !(ep.tmin.is_finite() && ep.tmax.is_finite() && ep.tmax > ep.tmin) {
        return Err(DataError::invalid(
            "epochs",
            format!("tmax ({}) must be greater than tmin ({})", ep.tmax, ep.tmin),
        ));
    }
    let len = ((ep.tmax - ep.tmin) * sfreq).round() as usize;
    if len == 0 {
        return Err(DataError::invalid(
            "epochs",
            format!("tmax − tmin is shorter than one sample at {sfreq} Hz"),
        ));
    }
    let offset = (ep.tmin * sfreq).round() as i64;
    let breaks = file.breaks(spr);
    let channels = channel_names.len();
    let (mut out, mut labels, mut dropped) = (Vec::new(), Vec::new(), 0usize);
    for a in &file.annotations {
        let Some(label) = ep.events.iter().position(|e| *e == a.text) else {
            continue;
        };
        let start = file
            .sample_at(a.onset, sfreq, spr)
            .map(|s| s as i64 + offset)
            .filter(|&s| s >= 0 && s as usize + len <= samples)
            .map(|s| s as usize);
        match start {
            Some(s) if !breaks.iter().any(|&b| b > s && b < s + len) => {
                let mut epoch = Vec::with_capacity(channels * len);
                for c in 0..channels {
                    epoch.extend_from_slice(&data[c * samples + s..c * samples + s + len]);
                }
                out.push(epoch);
                labels.push(label as u32);
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::warn!(
            file = %path.display(),
            "dropped {dropped} epoch(s) that run past the recording or across a gap"
        );
    }
    if out.is_empty() {
        let mut seen: Vec<&str> = file.annotations.iter().map(|a| a.text.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.truncate(12);
        return Err(DataError::invalid(
            "epochs.events",
            format!(
                "no whole epoch around {:?} in {}; its annotations are {:?}",
                ep.events,
                path.display(),
                seen
            ),
        ));
    }
    let n = out.len();
    Ok(Recordings {
        data: out,
        samples: vec![len; n],
        channel_names,
        sfreq,
        kind: SignalKind::Continuous,
        unit,
        latents: None,
        trials: true,
        breaks: vec![Vec::new(); n],
        labels: Some((labels, ep.events.clone())),
    })
}
