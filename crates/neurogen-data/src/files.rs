//! `[data]` sources that read a user's recording: `edf`/`bdf`, `npy`/`npz`, `csv`.
//!
//! Each turns its file into [`Recordings`] in physical units (EDF voltages in µV), with
//! labels where the file has them. `path` is relative to the experiment file; the experiment
//! loader makes it absolute before anything reads it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::edf::EdfFile;
use crate::npy::{NpyArray, NpyValues};
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
    /// Cut epochs around annotations instead of windowing the whole recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Epochs>,
}

/// `[data] source = "npy"` or `"npz"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySource {
    /// The file: `[channels, samples]` (continuous) or `[n, channels, time]` (trials).
    pub path: PathBuf,
    /// Sampling rate in Hz; required unless an NPZ holds an `sfreq` array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfreq: Option<f64>,
    /// One name per channel in the file; default: an NPZ's `channel_names`, else `ch1`, `ch2`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_names: Option<Vec<String>>,
    /// Channels to keep, by name; default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// NPZ member holding the signals; default `data`, or the only 2-D/3-D array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// `continuous` (default) or `counts`.
    #[serde(default = "continuous")]
    pub kind: SignalKind,
    /// Physical unit; default `uV` for continuous data, `count` for counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The two CSV layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvLayout {
    /// One row per sample, one column per channel.
    Channels,
    /// One row per trial and electrode, then one column per time point (EEG-GAN).
    Trials,
}

/// `[data] source = "csv"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSource {
    /// The file.
    pub path: PathBuf,
    /// `channels` (default) or `trials`.
    #[serde(default = "channels_layout")]
    pub layout: CsvLayout,
    /// Sampling rate in Hz; optional when a leading time column gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfreq: Option<f64>,
    /// Channels to keep, by name; default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// `continuous` (default) or `counts`.
    #[serde(default = "continuous")]
    pub kind: SignalKind,
    /// Physical unit; default `uV` for continuous data, `count` for counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Trials layout: the condition (label) column.
    #[serde(default = "condition_column")]
    pub condition_column: String,
    /// Trials layout: the trial-number column.
    #[serde(default = "trial_column")]
    pub trial_column: String,
    /// Trials layout: the electrode column.
    #[serde(default = "electrode_column")]
    pub electrode_column: String,
    /// Trials layout: other identifier columns to skip.
    #[serde(default = "ignore_columns")]
    pub ignore_columns: Vec<String>,
}

fn continuous() -> SignalKind {
    SignalKind::Continuous
}
fn channels_layout() -> CsvLayout {
    CsvLayout::Channels
}
fn condition_column() -> String {
    "Condition".into()
}
fn trial_column() -> String {
    "Trial".into()
}
fn electrode_column() -> String {
    "Electrode".into()
}
fn ignore_columns() -> Vec<String> {
    vec![
        "ParticipantID".into(),
        "Participant".into(),
        "Session".into(),
    ]
}

fn default_unit(kind: SignalKind, unit: &Option<String>) -> String {
    unit.clone().unwrap_or_else(|| match kind {
        SignalKind::Continuous => "uV".into(),
        SignalKind::Counts => "count".into(),
    })
}

fn format_err(path: &Path, message: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// Indices of `wanted` in `names`; every wanted name must exist, once.
fn pick(names: &[String], wanted: &[String]) -> Result<Vec<usize>, DataError> {
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

/// Refuses the first NaN or infinity in `values` read from `path`, naming its position.
pub fn check_finite(path: &Path, values: &[f32]) -> Result<(), DataError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format_err(
            path,
            format!(
                "value {i} (in file order) is {}; the data must be finite",
                values[i]
            ),
        )),
        None => Ok(()),
    }
}

fn check_counts(path: &Path, kind: SignalKind, values: &[f32]) -> Result<(), DataError> {
    if kind == SignalKind::Counts {
        if let Some(v) = values.iter().find(|v| **v < 0.0 || v.fract() != 0.0) {
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
                let keep = pick(&names, wanted)?;
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

/// What the NPY, NPZ and CSV sources share once resolved: how a table of numbers becomes
/// recordings.
struct Common<'a> {
    path: &'a Path,
    keep: Option<&'a [String]>,
    sfreq: f64,
    kind: SignalKind,
    unit: String,
}

impl<'a> Common<'a> {
    fn new(
        path: &'a Path,
        keep: Option<&'a [String]>,
        sfreq: f64,
        kind: SignalKind,
        unit: String,
    ) -> Self {
        Common {
            path,
            keep,
            sfreq,
            kind,
            unit,
        }
    }

    /// Trials `[n, channels, time]` or one recording `[channels, samples]` as [`Recordings`].
    fn recordings(
        self,
        shape: &[usize],
        values: Vec<f32>,
        names: Vec<String>,
        labels: Option<Vec<String>>,
    ) -> Result<Recordings, DataError> {
        let Common {
            path,
            keep,
            sfreq,
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
        check_counts(path, kind, &values)?;
        let keep = match keep {
            Some(w) => pick(&names, w)?,
            None => (0..channels).collect(),
        };
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

fn numbers(path: &Path, name: &str, a: NpyArray) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    a.into_numbers()
        .map_err(|e| format_err(path, format!("{name}: {e}")))
}

fn texts(a: NpyArray) -> Vec<String> {
    match a.values {
        NpyValues::Text(t) => t,
        NpyValues::Numbers(v) => v
            .iter()
            .map(|x| {
                if x.fract() == 0.0 {
                    format!("{}", *x as i64)
                } else {
                    x.to_string()
                }
            })
            .collect(),
    }
}

impl ArraySource {
    /// Reads an `.npy` (`npz = false`) or `.npz` file.
    pub fn load(&self, npz: bool) -> Result<Recordings, DataError> {
        let path = &self.path;
        let unit = default_unit(self.kind, &self.unit);
        if !npz {
            if self.array.is_some() {
                return Err(DataError::invalid(
                    "array",
                    "names an NPZ member; this source is npy",
                ));
            }
            let (shape, values) = numbers(path, "data", crate::npy::read(path)?)?;
            let sfreq = check_sfreq(self.sfreq, "an .npy file cannot state its sampling rate")?;
            let names = self.names(&shape);
            return Common::new(&self.path, self.channels.as_deref(), sfreq, self.kind, unit)
                .recordings(&shape, values, names, None);
        }
        let mut members = crate::npy::read_npz(path)?;
        fn take_from(members: &mut Vec<(String, NpyArray)>, name: &str) -> Option<NpyArray> {
            let i = members.iter().position(|(k, _)| k == name)?;
            Some(members.remove(i).1)
        }
        let data = match &self.array {
            Some(name) => take_from(&mut members, name).ok_or_else(|| {
                DataError::invalid(
                    "array",
                    format!("{} has no member \"{name}\"", path.display()),
                )
            })?,
            None => match take_from(&mut members, "data") {
                Some(a) => a,
                None => {
                    let cands: Vec<String> = members
                        .iter()
                        .filter(|(_, a)| matches!(a.shape.len(), 2 | 3))
                        .map(|(k, _)| k.clone())
                        .collect();
                    match &cands[..] {
                        [one] => take_from(&mut members, &one.clone())
                            .ok_or_else(|| format_err(path, "vanished member".into()))?,
                        _ => {
                            return Err(DataError::invalid(
                                "array",
                                format!(
                                "{} has no \"data\" member and {} 2-D/3-D arrays ({}); name one",
                                path.display(),
                                cands.len(),
                                cands.join(", ")
                            ),
                            ))
                        }
                    }
                }
            },
        };
        let (shape, values) = numbers(path, "data", data)?;
        let sfreq = match (self.sfreq, take_from(&mut members, "sfreq")) {
            (Some(f), _) => Some(f),
            (None, Some(a)) => match a.values {
                NpyValues::Numbers(v) if v.len() == 1 => Some(v[0] as f64),
                _ => return Err(format_err(path, "sfreq: expected one number".into())),
            },
            (None, None) => None,
        };
        let sfreq = check_sfreq(
            sfreq,
            "give it in [data] or store an `sfreq` array in the archive",
        )?;
        let names = match (
            &self.channel_names,
            take_from(&mut members, "channel_names"),
        ) {
            (None, Some(a)) => texts(a),
            _ => self.names(&shape),
        };
        let labels = take_from(&mut members, "labels").map(texts);
        Common::new(&self.path, self.channels.as_deref(), sfreq, self.kind, unit)
            .recordings(&shape, values, names, labels)
    }

    fn names(&self, shape: &[usize]) -> Vec<String> {
        let channels = shape
            .get(shape.len().saturating_sub(2))
            .copied()
            .unwrap_or(0);
        self.channel_names
            .clone()
            .unwrap_or_else(|| (1..=channels).map(|i| format!("ch{i}")).collect())
    }
}

impl CsvSource {
    /// Reads the file in its layout.
    pub fn load(&self) -> Result<Recordings, DataError> {
        let path = &self.path;
        let unit = default_unit(self.kind, &self.unit);
        match self.layout {
            CsvLayout::Channels => {
                let t = crate::csv::read_channels(path)?;
                let sfreq = check_sfreq(
                    self.sfreq.or(t.sfreq),
                    "the CSV has no leading time column to take it from",
                )?;
                Common::new(&self.path, self.channels.as_deref(), sfreq, self.kind, unit)
                    .recordings(
                        &[t.channel_names.len(), t.samples],
                        t.data,
                        t.channel_names,
                        None,
                    )
            }
            CsvLayout::Trials => {
                let t = crate::csv::read_trials(
                    path,
                    &crate::csv::TrialColumns {
                        condition: &self.condition_column,
                        trial: &self.trial_column,
                        electrode: &self.electrode_column,
                        ignore: &self.ignore_columns,
                    },
                )?;
                let sfreq = check_sfreq(self.sfreq, "the trials layout has no time column")?;
                Common::new(&self.path, self.channels.as_deref(), sfreq, self.kind, unit)
                    .recordings(
                        &[t.n, t.channel_names.len(), t.time],
                        t.data,
                        t.channel_names,
                        t.conditions,
                    )
            }
        }
    }
}

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
/// labelled windows carry their labels (NPZ array, EDF+ annotations, CSV column).
pub fn write_signals(path: &Path, s: &crate::Signals) -> Result<OutputFormat, DataError> {
    let format = OutputFormat::of(path)?;
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
