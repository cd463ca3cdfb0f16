//! Windows, splits and normalisation.

#[cfg(feature = "burn")]
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, Inputs, Normalize, SplitBy};
use crate::sim::Recordings;
use crate::{DataError, SignalMeta, Signals};

/// Which split a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    /// Training windows (and the normalisation statistics).
    Train,
    /// Validation windows.
    Valid,
    /// Held-out test windows.
    Test,
}

/// Where one window came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// Index of the recording (trial) in source order.
    pub recording: usize,
    /// First sample of the window in that recording.
    pub start: usize,
    /// The split it was assigned to.
    pub split: SplitName,
}

/// Every window a `[data]` table builds, in recording order and physical units.
#[derive(Debug, Clone)]
pub struct Windows {
    /// The windows, `[n, channels, time]`.
    pub signals: Signals,
    /// One entry per window.
    pub info: Vec<WindowInfo>,
    /// The normalisation the config asks for.
    pub normalize: Normalize,
    /// The `[data]` table with every default filled, including those that needed the data.
    pub config: DataConfig,
}

/// Per-channel affine scaling: `normalised = (physical - mean) / std`, of the modelled
/// channels and (when there are any) of the exogenous inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Per-channel offset (physical units).
    pub mean: Vec<f32>,
    /// Per-channel scale (physical units).
    pub std: Vec<f32>,
    /// Per-input offset (physical units); empty without inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_mean: Vec<f32>,
    /// Per-input scale (physical units); empty without inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_std: Vec<f32>,
}

impl Normalization {
    /// The identity for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
            input_mean: Vec::new(),
            input_std: Vec::new(),
        }
    }

    /// The identity for the channels and inputs of `meta`.
    pub fn identity_for(meta: &SignalMeta) -> Self {
        let k = meta.input_names.len();
        Normalization {
            input_mean: vec![0.0; k],
            input_std: vec![1.0; k],
            ..Self::identity(meta.channels)
        }
    }

    /// Statistics of each channel (and input) over every window and time step of `s`.
    pub fn fit(s: &Signals) -> Self {
        let (mean, std) = channel_stats(&s.values, s.meta.channels, s.meta.time);
        let (input_mean, input_std) = match &s.inputs {
            Some(u) => channel_stats(u, s.meta.input_names.len(), s.meta.time),
            None => (Vec::new(), Vec::new()),
        };
        Normalization {
            mean,
            std,
            input_mean,
            input_std,
        }
    }

    /// Physical → normalised, in place.
    pub fn apply(&self, s: &mut Signals) {
        let f = |v: f32, m: f32, sd: f32| (v - m) / sd;
        map_rows(&mut s.values, s.meta.time, &self.mean, &self.std, f);
        self.map_inputs(s, f);
    }

    /// Normalised → physical, in place.
    pub fn invert(&self, s: &mut Signals) {
        let f = |v: f32, m: f32, sd: f32| v * sd + m;
        map_rows(&mut s.values, s.meta.time, &self.mean, &self.std, f);
        self.map_inputs(s, f);
    }

    /// Physical → normalised inputs `[n, inputs, time]` of windows `time` long, in place.
    pub fn apply_inputs(&self, inputs: &mut [f32], time: usize) {
        let f = |v: f32, m: f32, sd: f32| (v - m) / sd;
        map_rows(inputs, time, &self.input_mean, &self.input_std, f);
    }

    fn map_inputs(&self, s: &mut Signals, f: impl Fn(f32, f32, f32) -> f32) {
        if let Some(u) = &mut s.inputs {
            map_rows(u, s.meta.time, &self.input_mean, &self.input_std, f);
        }
    }
}

/// Mean and standard deviation of each row of `[n, rows, time]` values, over windows and time.
fn channel_stats(values: &[f32], rows: usize, time: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f64; rows];
    let mut sq = vec![0f64; rows];
    for (i, row) in values.chunks(time.max(1)).enumerate() {
        let c = i % rows.max(1);
        for &v in row {
            mean[c] += v as f64;
            sq[c] += (v as f64) * (v as f64);
        }
    }
    let count = (values.len() / rows.max(1)).max(1) as f64;
    mean.iter()
        .zip(&sq)
        .map(|(m, q)| {
            let m = m / count;
            let var = (q / count - m * m).max(0.0);
            // A flat channel keeps scale 1 instead of dividing by zero.
            let sd = if var.sqrt() > 1e-8 { var.sqrt() } else { 1.0 };
            (m as f32, sd as f32)
        })
        .unzip()
}

/// `f(value, mean[row], std[row])` over `[n, rows, time]` values, in place; nothing when there
/// are no statistics (an identity kept by an older run).
fn map_rows(
    values: &mut [f32],
    time: usize,
    mean: &[f32],
    std: &[f32],
    f: impl Fn(f32, f32, f32) -> f32,
) {
    if mean.is_empty() || std.len() != mean.len() {
        return;
    }
    for (i, v) in values.iter_mut().enumerate() {
        let c = (i / time) % mean.len();
        *v = f(*v, mean[c], std[c]);
    }
}

/// The three splits, normalised, plus the statistics that undo the normalisation.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training windows.
    pub train: Signals,
    /// Validation windows.
    pub valid: Signals,
    /// Test windows.
    pub test: Signals,
    /// Statistics from the training split.
    pub norm: Normalization,
}

#[cfg(feature = "burn")]
impl Signals {
    /// The windows at `indices` as a tensor, each followed by its exogenous inputs (a model
    /// built for `inputs` trailing channels reads them as inputs, not data).
    ///
    /// # Shapes
    /// - output: `[indices.len(), channels + inputs, time]`
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<3> {
        let k = match self.inputs {
            Some(_) => self.meta.input_names.len(),
            None => 0,
        };
        let len = self.window_len() + k * self.meta.time;
        let mut buf = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            buf.extend_from_slice(self.window(i));
            buf.extend_from_slice(self.inputs_of(i));
        }
        Tensor::from_data(
            TensorData::new(buf, [indices.len(), self.meta.channels + k, self.meta.time]),
            device,
        )
    }

    /// The labels of the windows at `indices` as one-hot rows over `classes`; `None` when the
    /// windows carry no labels.
    ///
    /// # Shapes
    /// - output: `[indices.len(), classes]`
    pub fn label_batch(
        &self,
        indices: &[usize],
        classes: usize,
        device: &Device,
    ) -> Option<Tensor<2>> {
        let labels = self.labels.as_ref()?;
        let mut v = vec![0f32; indices.len() * classes];
        for (row, &i) in indices.iter().enumerate() {
            let l = labels.get(i).copied().unwrap_or(u32::MAX) as usize;
            if l < classes {
                v[row * classes + l] = 1.0;
            }
        }
        Some(Tensor::from_data(
            TensorData::new(v, [indices.len(), classes]),
            device,
        ))
    }
}

/// Assigns recordings (or time blocks) to splits and cuts windows that never straddle two.
pub(crate) fn cut_windows(
    cfg: DataConfig,
    recs: &Recordings,
    inputs: Option<&Inputs>,
    seed: u64,
) -> Result<Windows, DataError> {
    // resolved() filled every option.
    let window = cfg.window.unwrap_or(1);
    let stride = cfg.stride.unwrap_or(window);
    let split_by = cfg.split_by.unwrap_or(SplitBy::Trial);
    let f = cfg.split;
    let n_rec = recs.data.len();
    let channels = recs.channels();

    // Segments: (recording, first sample, end sample, split).
    let mut segments = Vec::new();
    match split_by {
        SplitBy::Trial => {
            let mut order: Vec<usize> = (0..n_rec).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5eed_5917));
            let n_train = ((f.train * n_rec as f64).round() as usize).clamp(1, n_rec);
            let n_valid = ((f.valid * n_rec as f64).round() as usize).min(n_rec - n_train);
            let mut split_of = vec![SplitName::Test; n_rec];
            for (rank, &r) in order.iter().enumerate() {
                split_of[r] = if rank < n_train {
                    SplitName::Train
                } else if rank < n_train + n_valid {
                    SplitName::Valid
                } else {
                    SplitName::Test
                };
            }
            for (r, split) in split_of.into_iter().enumerate() {
                segments.push((r, 0, recs.samples[r], split));
            }
        }
        SplitBy::Time => {
            for r in 0..n_rec {
                let t = recs.samples[r];
                let a = (f.train * t as f64).round() as usize;
                let b = ((f.train + f.valid) * t as f64).round() as usize;
                for (lo, hi, s) in [
                    (0, a, SplitName::Train),
                    (a, b, SplitName::Valid),
                    (b, t, SplitName::Test),
                ] {
                    if hi > lo {
                        segments.push((r, lo, hi, s));
                    }
                }
            }
        }
    }

    let longest = segments.iter().map(|s| s.2 - s.1).max().unwrap_or(0);
    if window > longest {
        return Err(DataError::invalid(
            "window",
            match cfg.source.path() {
                Some(p) => format!(
                    "{window} samples is longer than the longest split segment ({longest} \
                     samples) of {}, whose longest recording holds {} samples",
                    p.display(),
                    recs.samples.iter().max().unwrap_or(&0)
                ),
                None => format!(
                    "{window} samples is longer than the longest split segment ({longest} samples)"
                ),
            },
        ));
    }

    let mut values = Vec::new();
    let mut lat_values = Vec::new();
    let mut input_values = Vec::new();
    let mut labels = Vec::new();
    let mut info = Vec::new();
    for &(r, lo, hi, split) in &segments {
        let t = recs.samples[r];
        let breaks = recs.breaks.get(r).map(Vec::as_slice).unwrap_or_default();
        let mut start = lo;
        while start + window <= hi {
            // No window straddles a gap in time: restart at the gap.
            if let Some(&b) = breaks.iter().find(|&&b| b > start && b < start + window) {
                start = b;
                continue;
            }
            if let Some((l, _)) = &recs.labels {
                labels.push(l[r]);
            }
            for c in 0..channels {
                values.extend_from_slice(&recs.data[r][c * t + start..c * t + start + window]);
            }
            if let Some((lat, dim)) = &recs.latents {
                for d in 0..*dim {
                    lat_values.extend_from_slice(&lat[r][d * t + start..d * t + start + window]);
                }
            }
            if let Some((u, names)) = inputs {
                for d in 0..names.len() {
                    input_values.extend_from_slice(&u[r][d * t + start..d * t + start + window]);
                }
            }
            info.push(WindowInfo {
                recording: r,
                start,
                split,
            });
            start += stride;
        }
    }
    for split in [SplitName::Train, SplitName::Valid, SplitName::Test] {
        let wanted = match split {
            SplitName::Train => f.train,
            SplitName::Valid => f.valid,
            SplitName::Test => f.test,
        };
        if wanted > 0.0 && !info.iter().any(|w| w.split == split) {
            return Err(DataError::invalid(
                "split",
                format!("the {split:?} split got no window of {window} samples; use more data, a shorter window or other fractions").to_lowercase(),
            ));
        }
    }
    let n = info.len();
    Ok(Windows {
        signals: Signals {
            values,
            n,
            meta: SignalMeta {
                channels,
                time: window,
                sfreq: recs.sfreq,
                channel_names: recs.channel_names.clone(),
                kind: recs.kind,
                unit: recs.unit.clone(),
                label_names: recs
                    .labels
                    .as_ref()
                    .map(|(_, names)| names.clone())
                    .unwrap_or_default(),
                input_names: inputs.map(|(_, names)| names.clone()).unwrap_or_default(),
            },
            latents: recs.latents.as_ref().map(|(_, d)| (lat_values, *d)),
            labels: recs.labels.as_ref().map(|_| labels),
            inputs: inputs.map(|_| input_values),
        },
        info,
        normalize: cfg.normalize.unwrap_or(Normalize::None),
        config: cfg,
    })
}

impl Windows {
    /// Indices of the windows in `split`, in recording order.
    pub fn indices(&self, split: SplitName) -> Vec<usize> {
        (0..self.info.len())
            .filter(|&i| self.info[i].split == split)
            .collect()
    }

    /// Cuts the splits and normalises them with statistics of the training split.
    pub fn into_dataset(self) -> Dataset {
        let mut train = self.signals.select(&self.indices(SplitName::Train));
        let mut valid = self.signals.select(&self.indices(SplitName::Valid));
        let mut test = self.signals.select(&self.indices(SplitName::Test));
        let norm = match self.normalize {
            Normalize::Channel => Normalization::fit(&train),
            Normalize::None => Normalization::identity_for(&self.signals.meta),
        };
        for s in [&mut train, &mut valid, &mut test] {
            norm.apply(s);
        }
        Dataset {
            train,
            valid,
            test,
            norm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{KuramotoConfig, LorenzConfig};
    use crate::{Source, SplitFractions};

    fn lorenz(n_trials: usize) -> DataConfig {
        DataConfig {
            source: Source::LorenzSpikes(LorenzConfig {
                n_trials,
                n_neurons: 5,
                n_bins: 40,
                ..Default::default()
            }),
            window: None,
            stride: None,
            normalize: None,
            split: SplitFractions::default(),
            split_by: None,
            inputs: Vec::new(),
        }
    }

    #[test]
    fn trial_split_keeps_every_trial_in_one_split() {
        let w = lorenz(50).build(1).unwrap();
        assert_eq!(w.info.len(), 50);
        assert_eq!(w.indices(SplitName::Train).len(), 40);
        assert_eq!(w.indices(SplitName::Valid).len(), 5);
        assert_eq!(w.indices(SplitName::Test).len(), 5);
        // Windows of 20 with stride 10 overlap, but never across trials of different splits.
        let cfg = DataConfig {
            window: Some(20),
            stride: Some(10),
            ..lorenz(50)
        };
        let w = cfg.build(1).unwrap();
        for r in 0..50 {
            let splits: Vec<_> = w
                .info
                .iter()
                .filter(|i| i.recording == r)
                .map(|i| i.split)
                .collect();
            assert_eq!(splits.len(), 3);
            assert!(splits.iter().all(|s| *s == splits[0]));
        }
    }

    #[test]
    fn time_split_blocks_do_not_overlap() {
        let cfg = DataConfig {
            source: Source::Kuramoto(KuramotoConfig {
                duration_s: 20.0,
                ..Default::default()
            }),
            window: Some(128),
            stride: Some(32),
            normalize: None,
            split: SplitFractions::default(),
            split_by: None,
            inputs: Vec::new(),
        };
        let w = cfg.build(3).unwrap();
        let t = 20 * 128;
        let (a, b) = ((0.8 * t as f64) as usize, (0.9 * t as f64) as usize);
        for i in &w.info {
            let (lo, hi) = match i.split {
                SplitName::Train => (0, a),
                SplitName::Valid => (a, b),
                SplitName::Test => (b, t),
            };
            assert!(i.start >= lo && i.start + 128 <= hi, "{i:?}");
        }
        // Train first, test last.
        assert_eq!(w.info.first().unwrap().split, SplitName::Train);
        assert_eq!(w.info.last().unwrap().split, SplitName::Test);
    }

    #[test]
    fn normalisation_uses_train_statistics_and_inverts() {
        let cfg = DataConfig {
            source: Source::Kuramoto(KuramotoConfig {
                duration_s: 20.0,
                ..Default::default()
            }),
            window: Some(128),
            stride: None,
            normalize: None,
            split: SplitFractions::default(),
            split_by: None,
            inputs: Vec::new(),
        };
        let windows = cfg.build(3).unwrap();
        let physical_train = windows.signals.select(&windows.indices(SplitName::Train));
        let ds = windows.into_dataset();
        let refit = Normalization::fit(&ds.train);
        for c in 0..ds.train.meta.channels {
            assert!(refit.mean[c].abs() < 1e-4 && (refit.std[c] - 1.0).abs() < 1e-4);
        }
        let mut back = ds.train.clone();
        ds.norm.invert(&mut back);
        for (x, y) in back.values.iter().zip(&physical_train.values) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()));
        }
    }

    #[test]
    fn bad_windows_and_splits_say_what_is_wrong() {
        let e = DataConfig {
            window: Some(41),
            ..lorenz(20)
        }
        .build(0)
        .unwrap_err()
        .to_string();
        assert!(e.contains("window") && e.contains("longer"), "{e}");
        let e = DataConfig {
            split: SplitFractions {
                train: 0.5,
                valid: 0.1,
                test: 0.1,
            },
            ..lorenz(20)
        }
        .build(0)
        .unwrap_err()
        .to_string();
        assert!(e.contains("split") && e.contains("must be 1"), "{e}");
        let e = DataConfig {
            normalize: Some(Normalize::Channel),
            ..lorenz(20)
        }
        .build(0)
        .unwrap_err()
        .to_string();
        assert!(e.contains("normalize"), "{e}");
    }

    /// An NPZ of trials `[12, 3, 20]` (channels a, b, c) with a `stim` member `[12, 20]`.
    fn npz_with_stim(dir: &std::path::Path) -> std::path::PathBuf {
        use crate::npy::{NpyArray, NpyValues};
        let (n, c, t) = (12, 3, 20);
        let data: Vec<f32> = (0..n * c * t).map(|i| (i % 17) as f32).collect();
        let stim: Vec<f32> = (0..n * t).map(|i| 100.0 + (i % 5) as f32).collect();
        let path = dir.join("rec.npz");
        let arr = |shape: Vec<usize>, v| NpyArray {
            shape,
            values: NpyValues::Numbers(v),
        };
        let names = NpyArray {
            shape: vec![3],
            values: NpyValues::Text(vec!["a".into(), "b".into(), "c".into()]),
        };
        crate::npy::write_npz(
            &path,
            &[
                ("data", arr(vec![n, c, t], data)),
                ("stim", arr(vec![n, t], stim)),
                ("sfreq", arr(vec![], vec![100.0])),
                ("channel_names", names),
            ],
        )
        .unwrap();
        path
    }

    fn npz_config(path: &std::path::Path, inputs: &[&str]) -> DataConfig {
        let mut cfg: DataConfig = toml::from_str(&format!(
            "source = \"npz\"\npath = \"{}\"\n",
            path.display()
        ))
        .unwrap();
        cfg.inputs = inputs.iter().map(|s| s.to_string()).collect();
        cfg
    }

    #[test]
    fn inputs_are_read_from_channels_and_npz_members_and_normalised_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = npz_with_stim(dir.path());
        // A member and a channel as inputs; the channels left are modelled.
        let w = npz_config(&path, &["stim", "b"]).build(0).unwrap();
        let s = &w.signals;
        assert_eq!(s.meta.channel_names, ["a", "c"]);
        assert_eq!(s.meta.input_names, ["stim", "b"]);
        assert_eq!(s.n, 12);
        let (t, first) = (20, w.info[0].recording);
        let u = s.inputs_of(0);
        assert_eq!(u.len(), 2 * t);
        assert_eq!(u[0], 100.0 + ((first * t) % 5) as f32, "stim row");
        assert_eq!(u[t], ((first * 60 + t) % 17) as f32, "channel b row");
        assert_eq!(
            s.window(0)[t],
            ((first * 60 + 2 * t) % 17) as f32,
            "channel c"
        );
        // A channel selection names the modelled channels; inputs are read besides.
        let mut cfg = npz_config(&path, &["b"]);
        if let Source::Npz(a) = &mut cfg.source {
            a.channels = Some(vec!["a".into()]);
        }
        let w = cfg.build(0).unwrap();
        assert_eq!(w.signals.meta.channel_names, ["a"]);
        assert_eq!(w.signals.meta.input_names, ["b"]);
        // Normalisation: the inputs get their own training statistics, and invert.
        let mut cfg = npz_config(&path, &["stim"]);
        cfg.normalize = Some(Normalize::Channel);
        let windows = cfg.build(0).unwrap();
        let physical = windows.signals.select(&windows.indices(SplitName::Train));
        let ds = windows.into_dataset();
        assert_eq!(ds.norm.input_mean.len(), 1);
        assert!((ds.norm.input_mean[0] - 102.0).abs() < 0.5, "{:?}", ds.norm);
        let refit = Normalization::fit(&ds.train);
        assert!(refit.input_mean[0].abs() < 1e-4 && (refit.input_std[0] - 1.0).abs() < 1e-4);
        let mut back = ds.train.clone();
        ds.norm.invert(&mut back);
        for (x, y) in back.inputs.unwrap().iter().zip(physical.inputs.unwrap()) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()));
        }
    }

    #[test]
    fn bad_inputs_name_the_key_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let path = npz_with_stim(dir.path());
        let err = |inputs: &[&str]| npz_config(&path, inputs).build(0).unwrap_err().to_string();
        let e = err(&["nope"]);
        assert!(
            e.contains("inputs") && e.contains("no channel \"nope\"") && e.contains("a, b, c"),
            "{e}"
        );
        let e = err(&["a", "b", "c"]);
        assert!(
            e.contains("inputs") && e.contains("at least one must be left"),
            "{e}"
        );
        let e = err(&["b", "b"]);
        assert!(e.contains("inputs") && e.contains("listed twice"), "{e}");
        // A member whose shape does not follow the trials.
        use crate::npy::{NpyArray, NpyValues};
        let bad = dir.path().join("bad.npz");
        crate::npy::write_npz(
            &bad,
            &[
                (
                    "data",
                    NpyArray {
                        shape: vec![4, 2, 10],
                        values: NpyValues::Numbers(vec![0.0; 80]),
                    },
                ),
                (
                    "stim",
                    NpyArray {
                        shape: vec![3, 10],
                        values: NpyValues::Numbers(vec![0.0; 30]),
                    },
                ),
            ],
        )
        .unwrap();
        let mut cfg = npz_config(&bad, &["stim"]);
        if let Source::Npz(a) = &mut cfg.source {
            a.sfreq = Some(10.0);
        }
        let e = cfg.build(0).unwrap_err().to_string();
        assert!(
            e.contains("inputs") && e.contains("[3, 10]") && e.contains("[4, 10]"),
            "{e}"
        );
    }

    #[test]
    fn npy_header_is_padded_and_parsable() {
        let h = crate::npy::header(&[3, 4, 5]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert!(dict.contains("'shape': (3, 4, 5)") && dict.ends_with('\n'));
    }
}
