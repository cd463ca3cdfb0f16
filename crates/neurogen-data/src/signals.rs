use serde::{Deserialize, Serialize};

/// What the numbers in a [`Signals`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Real-valued series (EEG, LFP) in physical units.
    Continuous,
    /// Non-negative integer spike counts per time bin.
    Counts,
}

/// What the numbers of a set of windows are: shape of one window, rate, names, kind, unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalMeta {
    /// Channels (or neurons) per window.
    pub channels: usize,
    /// Samples (or bins) per window.
    pub time: usize,
    /// Sampling rate in Hz (bins per second for counts).
    pub sfreq: f64,
    /// One name per channel.
    pub channel_names: Vec<String>,
    /// Continuous or counts.
    pub kind: SignalKind,
    /// Physical unit of the values (`"uV"`, `"count"`).
    pub unit: String,
    /// Names of the labels that [`Signals::labels`] index (empty without labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    /// Names of the exogenous input channels that [`Signals::inputs`] holds (empty without).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_names: Vec<String>,
}

/// A set of equally shaped windows on the host.
///
/// # Shapes
/// - `values`: `[n, channels, time]`, row-major.
/// - `latents`: `[n, latent_dim, time]` when the source knows its ground truth.
/// - `inputs`: `[n, inputs, time]`, the exogenous inputs (`meta.input_names`) of each window.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Samples, `[n, channels, time]` row-major.
    pub values: Vec<f32>,
    /// Number of windows.
    pub n: usize,
    /// Shape of one window, rate, names, kind and unit.
    pub meta: SignalMeta,
    /// Ground-truth latents `[n, latent_dim, time]` and `latent_dim`, for simulators.
    pub latents: Option<(Vec<f32>, usize)>,
    /// Optional per-window labels (condition, stimulus) for conditional models: indices into
    /// `meta.label_names`.
    pub labels: Option<Vec<u32>>,
    /// Exogenous inputs `[n, inputs, time]` row-major, one row per `meta.input_names`.
    pub inputs: Option<Vec<f32>>,
}

impl Signals {
    /// Elements in one window (`channels * time`).
    pub fn window_len(&self) -> usize {
        self.meta.channels * self.meta.time
    }

    /// The samples of window `i`, `[channels, time]`.
    pub fn window(&self, i: usize) -> &[f32] {
        let len = self.window_len();
        &self.values[i * len..(i + 1) * len]
    }

    /// Whether the windows carry exogenous inputs (named in `meta.input_names`).
    pub fn has_inputs(&self) -> bool {
        self.inputs.is_some() && !self.meta.input_names.is_empty()
    }

    /// The exogenous inputs of window `i`, `[inputs, time]` (empty without inputs).
    pub fn inputs_of(&self, i: usize) -> &[f32] {
        let len = self.meta.input_names.len() * self.meta.time;
        match &self.inputs {
            Some(u) => &u[i * len..(i + 1) * len],
            None => &[],
        }
    }

    /// A copy holding only the windows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Signals {
        let len = self.window_len();
        let mut values = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            values.extend_from_slice(self.window(i));
        }
        let latents = self.latents.as_ref().map(|(lat, dim)| {
            let llen = dim * self.meta.time;
            let mut out = Vec::with_capacity(indices.len() * llen);
            for &i in indices {
                out.extend_from_slice(&lat[i * llen..(i + 1) * llen]);
            }
            (out, *dim)
        });
        Signals {
            values,
            n: indices.len(),
            latents,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            inputs: self.inputs.as_ref().map(|_| {
                indices
                    .iter()
                    .flat_map(|&i| self.inputs_of(i).to_vec())
                    .collect()
            }),
            meta: self.meta.clone(),
        }
    }
}

impl Signals {
    /// The label name of each window, when the windows are labelled.
    pub fn label_texts(&self) -> Option<Vec<String>> {
        let labels = self.labels.as_ref()?;
        Some(
            labels
                .iter()
                .map(|&l| {
                    self.meta
                        .label_names
                        .get(l as usize)
                        .cloned()
                        .unwrap_or_else(|| l.to_string())
                })
                .collect(),
        )
    }
}
