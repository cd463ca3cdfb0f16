//! The `[data]` table.
//!
//! `source` picks the variant; `window`, `stride`, `normalize`, `split` and `split_by` are shared
//! by every source. serde's internally tagged enums buffer their content and lose the key path
//! of an error, so the table is taken apart by hand here and every error names its key.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sim::Recordings;
use crate::sim::{IzhikevichConfig, KuramotoConfig, LorenzConfig, NeuralMassConfig};
use crate::sources::{ArraySource, CsvSource, EdfSource};
use crate::windows::cut_windows;
use crate::{DataError, SignalKind, Windows};

/// One variant per built-in simulator or file format, chosen by `source`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// Poisson spike counts driven by a Lorenz attractor (the LFADS benchmark).
    LorenzSpikes(LorenzConfig),
    /// Coupled phase oscillators mixed into EEG-like channels with 1/f background.
    Kuramoto(KuramotoConfig),
    /// Jansen–Rit neural-mass columns: EEG-like signals with an alpha rhythm.
    NeuralMass(NeuralMassConfig),
    /// A random network of Izhikevich neurons: binned spike counts (or an LFP proxy).
    Izhikevich(IzhikevichConfig),
    /// An EDF/EDF+ file (BDF read too: the header decides).
    Edf(EdfSource),
    /// A BDF/BDF+ file (EDF read too: the header decides).
    Bdf(EdfSource),
    /// A NumPy `.npy` array.
    Npy(ArraySource),
    /// A NumPy `.npz` archive (with optional `labels`, `sfreq`, `channel_names`).
    Npz(ArraySource),
    /// A CSV file in the channels or trials layout.
    Csv(CsvSource),
}

impl Source {
    const NAMES: &'static [&'static str] = &[
        "lorenz_spikes",
        "kuramoto",
        "neural_mass",
        "izhikevich",
        "edf",
        "bdf",
        "npy",
        "npz",
        "csv",
    ];

    /// The `source` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Source::LorenzSpikes(_) => "lorenz_spikes",
            Source::Kuramoto(_) => "kuramoto",
            Source::NeuralMass(_) => "neural_mass",
            Source::Izhikevich(_) => "izhikevich",
            Source::Edf(_) => "edf",
            Source::Bdf(_) => "bdf",
            Source::Npy(_) => "npy",
            Source::Npz(_) => "npz",
            Source::Csv(_) => "csv",
        }
    }

    /// Whether the true latents this source records are angles (Kuramoto's oscillator phases in
    /// [0, 2π)), which a linear map can only reach through their cosine and sine.
    pub fn latents_are_phases(&self) -> bool {
        matches!(self, Source::Kuramoto(_))
    }

    /// The file this source reads, if it reads one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Source::Edf(s) | Source::Bdf(s) => Some(&s.path),
            Source::Npy(s) | Source::Npz(s) => Some(&s.path),
            Source::Csv(s) => Some(&s.path),
            _ => None,
        }
    }

    /// A copy of a file source that also reads `inputs` besides its `channels` selection
    /// (which names the modelled channels): as channels, or (NPZ) as members.
    pub fn also_reading(&self, inputs: &[String]) -> Source {
        let mut out = self.clone();
        match &mut out {
            Source::Edf(s) | Source::Bdf(s) => s.inputs = inputs.to_vec(),
            Source::Npy(s) | Source::Npz(s) => s.inputs = inputs.to_vec(),
            Source::Csv(s) => s.inputs = inputs.to_vec(),
            _ => {}
        }
        out
    }

    /// The channels a file source's `channels` key selects, when given.
    fn channels(&self) -> Option<&[String]> {
        match self {
            Source::Edf(s) | Source::Bdf(s) => s.channels.as_deref(),
            Source::Npy(s) | Source::Npz(s) => s.channels.as_deref(),
            Source::Csv(s) => s.channels.as_deref(),
            _ => None,
        }
    }

    /// The recording file a file source reads, mutably (to resolve it against a directory).
    pub fn path_mut(&mut self) -> Option<&mut std::path::PathBuf> {
        match self {
            Source::Edf(s) | Source::Bdf(s) => Some(&mut s.path),
            Source::Npy(s) | Source::Npz(s) => Some(&mut s.path),
            Source::Csv(s) => Some(&mut s.path),
            _ => None,
        }
    }
}

/// How windows are scaled before the model sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Subtract each channel's training mean and divide by its training standard deviation.
    Channel,
    /// Leave values as they are (required for spike counts under a Poisson likelihood).
    None,
}

/// How windows are assigned to train / valid / test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitBy {
    /// Whole trials (recordings) go to one split.
    Trial,
    /// Each recording is cut into contiguous blocks: train first, then valid, then test.
    Time,
}

/// Fractions of the data in each split; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFractions {
    /// Training fraction.
    pub train: f64,
    /// Validation fraction.
    pub valid: f64,
    /// Test fraction.
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            train: 0.8,
            valid: 0.1,
            test: 0.1,
        }
    }
}

/// The `[data]` table: a source plus the keys every source shares.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// Where the signals come from.
    pub source: Source,
    /// Window length in samples; default: a whole trial for trial data, 256 otherwise.
    pub window: Option<usize>,
    /// Hop between window starts in samples; default: `window` (no overlap).
    pub stride: Option<usize>,
    /// Scaling; default `channel` for continuous data, `none` for counts.
    pub normalize: Option<Normalize>,
    /// Split fractions.
    pub split: SplitFractions,
    /// Split unit; default `trial` when there are several recordings, `time` otherwise.
    pub split_by: Option<SplitBy>,
    /// Channels read as exogenous inputs (a stimulus), not modelled: the model conditions on
    /// them and `sample --inputs` replaces them. Empty: every channel is modelled.
    pub inputs: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Shared {
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stride: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<Normalize>,
    #[serde(default)]
    split: SplitFractions,
    #[serde(skip_serializing_if = "Option::is_none")]
    split_by: Option<SplitBy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<String>,
}

const SHARED_KEYS: &[&str] = &[
    "window",
    "stride",
    "normalize",
    "split",
    "split_by",
    "inputs",
];

/// Deserialises `T` from a TOML table; an error reads `key.path: what was wrong`.
///
/// Used for the tagged tables (`[data]`, `[model]`) so their errors keep the key path.
pub fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Removes the tag key (`source`, `kind`) from `table` and returns its value.
pub fn take_tag(table: &mut toml::Table, tag: &str, expected: &[&str]) -> Result<String, String> {
    let list = expected
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match table.remove(tag) {
        Some(toml::Value::String(s)) if expected.contains(&s.as_str()) => Ok(s),
        Some(toml::Value::String(s)) => Err(format!(
            "{tag}: unknown {tag} \"{s}\", expected one of {list}"
        )),
        Some(other) => Err(format!(
            "{tag}: expected a string (one of {list}), found {}",
            other.type_str()
        )),
        None => Err(format!("{tag}: missing; expected one of {list}")),
    }
}

impl<'de> Deserialize<'de> for DataConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let name = take_tag(&mut table, "source", Source::NAMES).map_err(D::Error::custom)?;
        let mut shared = toml::Table::new();
        for key in SHARED_KEYS {
            if let Some(v) = table.remove(*key) {
                shared.insert((*key).to_string(), v);
            }
        }
        let hint = |e: String| {
            if e.contains("unknown field") {
                format!(
                    "{e} (or one shared by every source: {})",
                    SHARED_KEYS.join(", ")
                )
            } else {
                e
            }
        };
        let source = match name.as_str() {
            "lorenz_spikes" => from_table(table).map(Source::LorenzSpikes),
            "kuramoto" => from_table(table).map(Source::Kuramoto),
            "neural_mass" => from_table(table).map(Source::NeuralMass),
            "izhikevich" => from_table(table).map(Source::Izhikevich),
            "edf" => from_table(table).map(Source::Edf),
            "bdf" => from_table(table).map(Source::Bdf),
            "npy" => from_table(table).map(Source::Npy),
            "npz" => from_table(table).map(Source::Npz),
            "csv" => from_table(table).map(Source::Csv),
            other => Err(format!("source: no data source \"{other}\"")),
        }
        .map_err(|e| D::Error::custom(hint(e)))?;
        let shared: Shared = from_table(shared).map_err(D::Error::custom)?;
        Ok(DataConfig {
            source,
            window: shared.window,
            stride: shared.stride,
            normalize: shared.normalize,
            split: shared.split,
            split_by: shared.split_by,
            inputs: shared.inputs,
        })
    }
}

impl Serialize for DataConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut table = toml::Table::try_from(&self.source).map_err(S::Error::custom)?;
        let shared = toml::Table::try_from(Shared {
            window: self.window,
            stride: self.stride,
            normalize: self.normalize,
            split: self.split,
            split_by: self.split_by,
            inputs: self.inputs.clone(),
        })
        .map_err(S::Error::custom)?;
        table.extend(shared);
        table.serialize(s)
    }
}

impl DataConfig {
    /// A copy with every default filled in that can be known without reading a file (a file
    /// source's window and split unit are filled by [`DataConfig::build`], in
    /// [`Windows::config`]).
    pub fn resolved(&self) -> DataConfig {
        let (window, recordings) = match &self.source {
            Source::LorenzSpikes(c) => (Some(c.n_bins), Some(c.n_trials)),
            Source::Kuramoto(c) => (Some(256), Some(c.n_recordings)),
            Source::NeuralMass(c) => (Some(256), Some(c.n_recordings)),
            Source::Izhikevich(c) => (Some(c.n_bins), Some(c.n_trials)),
            // A continuous recording is one; epochs are many.
            Source::Edf(s) | Source::Bdf(s) => (None, Some(if s.epochs.is_some() { 3 } else { 1 })),
            Source::Npy(_) | Source::Npz(_) | Source::Csv(_) => (None, None),
        };
        let window = self.window.or(window);
        DataConfig {
            window,
            stride: self.stride.or(window),
            normalize: Some(self.normalize.unwrap_or(match self.kind() {
                SignalKind::Continuous => Normalize::Channel,
                SignalKind::Counts => Normalize::None,
            })),
            split_by: self.split_by.or(recordings.map(default_split)),
            ..self.clone()
        }
    }

    /// The signal kind this source produces.
    pub fn kind(&self) -> SignalKind {
        match &self.source {
            Source::LorenzSpikes(_) => SignalKind::Counts,
            Source::Kuramoto(_) | Source::NeuralMass(_) => SignalKind::Continuous,
            Source::Izhikevich(c) => match c.output {
                crate::sim::IzhikevichOutput::Spikes => SignalKind::Counts,
                crate::sim::IzhikevichOutput::Lfp => SignalKind::Continuous,
            },
            Source::Edf(_) | Source::Bdf(_) => SignalKind::Continuous,
            Source::Npy(s) | Source::Npz(s) => s.kind,
            Source::Csv(s) => s.kind,
        }
    }

    /// Makes a file source's relative `path` relative to `base` (the experiment's folder).
    pub fn with_base(mut self, base: &std::path::Path) -> DataConfig {
        if let Some(p) = self.source.path_mut() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self
    }

    /// Checks the shared keys that need no data.
    pub fn check(&self) -> Result<(), DataError> {
        let s = &self.split;
        for (name, f) in [("train", s.train), ("valid", s.valid), ("test", s.test)] {
            if !(0.0..=1.0).contains(&f) {
                return Err(DataError::invalid(
                    "split",
                    format!("{name} = {f} must lie in [0, 1]"),
                ));
            }
        }
        if s.train <= 0.0 {
            return Err(DataError::invalid("split", "train must be > 0"));
        }
        if ((s.train + s.valid + s.test) - 1.0).abs() > 1e-6 {
            return Err(DataError::invalid(
                "split",
                format!(
                    "train + valid + test must be 1, got {}",
                    s.train + s.valid + s.test
                ),
            ));
        }
        if self.window == Some(0) {
            return Err(DataError::invalid("window", "must be at least 1 sample"));
        }
        if self.stride == Some(0) {
            return Err(DataError::invalid("stride", "must be at least 1 sample"));
        }
        for (i, name) in self.inputs.iter().enumerate() {
            if self.inputs[..i].contains(name) {
                return Err(DataError::invalid(
                    "inputs",
                    format!("\"{name}\" is listed twice"),
                ));
            }
            if self.source.channels().is_some_and(|c| c.contains(name)) {
                return Err(DataError::invalid(
                    "inputs",
                    format!(
                        "\"{name}\" is also listed in channels; a channel is either modelled \
                         (channels) or an input (inputs)"
                    ),
                ));
            }
        }
        if self.kind() == SignalKind::Counts && self.normalize == Some(Normalize::Channel) {
            return Err(DataError::invalid(
                "normalize",
                "spike counts cannot be normalised (a Poisson likelihood needs counts); use \"none\"",
            ));
        }
        Ok(())
    }

    /// Simulates or reads the source and cuts every window.
    pub fn build(&self, seed: u64) -> Result<Windows, DataError> {
        self.check()?;
        let mut cfg = self.resolved();
        // A file source's `channels` picks the modelled channels; its inputs are read too.
        let source = cfg.source.also_reading(&cfg.inputs);
        let mut recs = match &source {
            Source::LorenzSpikes(c) => c.simulate(seed)?,
            Source::Kuramoto(c) => c.simulate(seed)?,
            Source::NeuralMass(c) => c.simulate(seed)?,
            Source::Izhikevich(c) => c.simulate(seed)?,
            Source::Edf(s) | Source::Bdf(s) => s.load()?,
            Source::Npy(s) => s.load(false)?,
            Source::Npz(s) => s.load(true)?,
            Source::Csv(s) => s.load()?,
        };
        let inputs = take_inputs(&mut recs, &cfg.inputs)?;
        // Defaults that needed the data: a trial's length, and trials split by trial.
        let shortest = recs.samples.iter().copied().min().unwrap_or(0);
        let window = cfg
            .window
            .unwrap_or(if recs.trials { shortest } else { 256 });
        cfg.window = Some(window);
        cfg.stride = Some(cfg.stride.unwrap_or(window));
        cfg.split_by = Some(cfg.split_by.unwrap_or(default_split(recs.data.len())));
        cut_windows(cfg, &recs, inputs.as_ref(), seed)
    }

    /// The same `[data]` reading another recording of the same format (every window goes to
    /// the training split), or `None` when this source does not read files of `path`'s kind.
    ///
    /// Used to score a new recording exactly as a run's data were cut: same channels, window,
    /// stride, epochs and keys.
    pub fn for_recording(&self, path: &std::path::Path) -> Option<DataConfig> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        let fits = match (&self.source, ext.as_str()) {
            (Source::Edf(_) | Source::Bdf(_), "edf" | "bdf") => true,
            // An .npy is always read as windows by `score`, so it is not listed here.
            (Source::Npz(_), "npz") | (Source::Csv(_), "csv") => true,
            _ => false,
        };
        if !fits {
            return None;
        }
        let mut cfg = self.clone();
        *cfg.source.path_mut()? = path.to_path_buf();
        cfg.split = SplitFractions {
            train: 1.0,
            valid: 0.0,
            test: 0.0,
        };
        Some(cfg)
    }
}

/// Exogenous inputs split off recordings: `[inputs, samples]` per recording, and their names.
pub(crate) type Inputs = (Vec<Vec<f32>>, Vec<String>);

/// Moves the channels named in `names` out of `recs` into [`Inputs`]; `None` when there are
/// none. Every name must be a channel, and at least one channel must stay to be modelled.
fn take_inputs(recs: &mut Recordings, names: &[String]) -> Result<Option<Inputs>, DataError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let i = recs
            .channel_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| {
                DataError::invalid(
                    "inputs",
                    format!(
                        "no channel \"{name}\"; the data have {} (an NPZ member of that name is \
                         read too; `lorenz_spikes` has a \"stim\" channel with stim_pulses > 0)",
                        recs.channel_names.join(", ")
                    ),
                )
            })?;
        rows.push(i);
    }
    let channels = recs.channels();
    if rows.len() >= channels {
        return Err(DataError::invalid(
            "inputs",
            format!(
                "names every channel ({}); at least one must be left to model",
                names.join(", ")
            ),
        ));
    }
    let keep: Vec<usize> = (0..channels).filter(|c| !rows.contains(c)).collect();
    let mut inputs = Vec::with_capacity(recs.data.len());
    for (data, &t) in recs.data.iter_mut().zip(&recs.samples) {
        let row = |c: usize| &data[c * t..(c + 1) * t];
        inputs.push(rows.iter().flat_map(|&c| row(c).to_vec()).collect());
        *data = keep.iter().flat_map(|&c| row(c).to_vec()).collect();
    }
    recs.channel_names = keep
        .iter()
        .map(|&c| recs.channel_names[c].clone())
        .collect();
    Ok(Some((inputs, names.to_vec())))
}

/// Trials when there are enough recordings to put one in each split; time blocks otherwise.
fn default_split(recordings: usize) -> SplitBy {
    if recordings >= 3 {
        SplitBy::Trial
    } else {
        SplitBy::Time
    }
}
