//! The experiment file: parse, apply `--set` overrides, check, resolve defaults.

use std::collections::BTreeMap;
use std::path::Path;

use neurogen_data::{DataConfig, DataError, Signals};
use neurogen_models::ModelError;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, ModelConfig};

/// Which burn backend runs the model. The CLI maps it to a `Device` in one function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// burn-ndarray on the CPU.
    #[default]
    Ndarray,
    /// burn-flex, burn's pure-Rust CPU backend.
    Flex,
    /// burn-wgpu: Vulkan/Metal/DX12 GPU (or Mesa's software Vulkan).
    Wgpu,
}

impl Backend {
    /// The name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        }
    }
}

/// The `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Windows per batch.
    pub batch_size: usize,
    /// Adam learning rate (the peak, under a schedule).
    pub lr: f64,
    /// How the learning rate changes over the run's steps.
    #[serde(skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Adam β₁ and β₂.
    pub betas: [f64; 2],
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay (AdamW): every step multiplies each weight by `1 − lr·weight_decay`
    /// (0 = plain Adam).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub weight_decay: f64,
    /// Steps over which the KL weight ramps linearly from 0 to the model's β (0 = no ramp).
    pub kl_warmup_steps: u64,
    /// Log a training line to `metrics.jsonl` every this many steps.
    pub log_every: u64,
    /// Evaluate the validation split every this many steps.
    pub valid_every: u64,
    /// Write a checkpoint every this many steps (and always at the last step).
    pub checkpoint_every: u64,
    /// Keep this many newest checkpoints.
    pub keep_checkpoints: usize,
    /// Scale gradients so their global L2 norm is at most this (0 = no clipping; the norm is
    /// then neither computed nor checked).
    pub grad_clip: f64,
    /// Multiply the learning rate by this after each rollback of the NaN guard.
    pub lr_cut: f64,
    /// Rollbacks the NaN guard may make before training stops with exit code 3.
    pub max_rollbacks: u32,
    /// Also keep the checkpoint of the best validation (`checkpoints/best-<step>/`), which `sample`,
    /// `score`, `eval` and `plot` load with `--best`.
    #[serde(skip_serializing_if = "KeepBest::is_none")]
    pub keep_best: KeepBest,
    /// Stop early after this many validations in a row without a lower validation loss
    /// (0 = never).
    #[serde(skip_serializing_if = "is_zero")]
    pub patience: u64,
}

impl TrainConfig {
    /// Whether the run follows its best validation (`keep_best` or `patience`).
    pub fn tracks_best(&self) -> bool {
        self.keep_best != KeepBest::None || self.patience > 0
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Which checkpoint besides the newest `train.keep_best` keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepBest {
    /// Only the newest ones.
    #[default]
    None,
    /// The one of the lowest validation loss (the total the run minimises, on the whole
    /// validation split).
    ValidLoss,
}

impl KeepBest {
    fn is_none(&self) -> bool {
        *self == KeepBest::None
    }
}

/// Why a run driven by exogenous inputs takes no burn-in (`model.burn_in`, `--burn-in`).
pub(crate) const DRIVEN_NO_BURN_IN: &str =
    "a run driven by exogenous inputs starts its samples at the stimulus's first step";

/// The learning rate's course over a run (`train.lr_schedule`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// From `lr` at the first step down a half cosine towards 0 at the last (Loshchilov &
    /// Hutter 2017, without restarts). Adam at a constant rate leaves every weight jittering by
    /// about `lr` a step; an autoregressive sampler integrates a jittered output bias into a
    /// drift, which the decay takes out.
    Cosine,
}

impl LrSchedule {
    fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }

    /// The factor on `lr` at `step` (1-based) of `steps`: exactly 1 for `Constant`, so a
    /// constant run computes what it computed before schedules existed.
    pub fn factor(self, step: u64, steps: u64) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                let done = step.saturating_sub(1) as f64 / steps.max(1) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos())
            }
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            batch_size: 64,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            kl_warmup_steps: 0,
            log_every: 10,
            valid_every: 100,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            grad_clip: 0.0,
            lr_cut: 0.5,
            max_rollbacks: 3,
            keep_best: KeepBest::None,
            patience: 0,
        }
    }
}

/// Where a run came from; written into the run's resolved experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// neurogen version that trained the run.
    pub neurogen_version: String,
    /// burn version it was built with.
    pub burn_version: String,
    /// Backend that ran it.
    pub backend: Backend,
    /// Seed.
    pub seed: u64,
    /// The experiment file it was launched from.
    pub config_file: String,
    /// Unix time (seconds) the run directory was created.
    pub created_unix: u64,
    /// The git commit neurogen was built from (`git rev-parse HEAD` at build time; edits not
    /// yet committed are not recorded), when built from a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Every input file the data read, by path: its XXH3-128 hash (32 hex digits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
}

/// The git commit this neurogen was built from, when built from a checkout.
pub const GIT_COMMIT: Option<&str> = option_env!("NEUROGEN_GIT_COMMIT");

/// A whole experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Run name; default: the file's stem. Names the default run directory `runs/<name>`.
    #[serde(default)]
    pub name: String,
    /// Backend; default `ndarray`.
    #[serde(default)]
    pub backend: Backend,
    /// Seed of every random draw in the run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[train]`.
    #[serde(default)]
    pub train: TrainConfig,
    /// Present only in a run directory's resolved copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

fn default_seed() -> u64 {
    7
}

/// The version of burn this build links (kept in step with the workspace pin).
pub const BURN_VERSION: &str = "0.22.1";

impl Experiment {
    /// Reads, overrides, parses, resolves and checks an experiment file.
    ///
    /// `overrides` are `key.path=value` strings applied to the TOML before any check; the value
    /// is read as a TOML value (`200`, `1e-3`, `"gaussian"`, `[64, 32]`) and otherwise as a string.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Experiment, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, overrides)
    }

    /// [`load`](Self::load) of `text`, the contents of `path` (named in errors, and the base
    /// of relative recording paths).
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Experiment, ConfigError> {
        let mut table = parse_toml(text, path)?;
        for arg in overrides {
            apply_override(&mut table, arg)?;
        }
        let mut exp = Self::from_table(table, path)?;
        // A recording's path is relative to the experiment file; the run keeps it absolute.
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        exp.data = exp.data.with_base(&dir);
        if exp.name.is_empty() {
            exp.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
        }
        exp = exp.resolved();
        exp.check(path)?;
        Ok(exp)
    }

    /// Parses a table (e.g. a run directory's resolved copy) without resolving or checking.
    pub fn from_table(table: toml::Table, path: &Path) -> Result<Experiment, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let outer = e.path().to_string();
            let inner = e.into_inner().to_string();
            let (key, message) = join_key(&outer, &inner);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            }
        })
    }

    /// A copy with every default filled in.
    pub fn resolved(&self) -> Experiment {
        let data = self.data.resolved();
        let model = self.model.resolved(data.kind());
        Experiment {
            data,
            model,
            ..self.clone()
        }
    }

    /// Range and consistency checks that need no data.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if let Err(DataError::Invalid { key, message }) = self.data.check() {
            return Err(invalid_data(path, key, message));
        }
        let kind = self.data.kind();
        if let Err(ModelError::Invalid { key, message }) = self.model.check(kind) {
            return Err(invalid(format!("model.{key}"), message));
        }
        if !self.data.inputs.is_empty() && !self.model.takes_inputs() {
            let driven: Vec<_> = ModelConfig::driven_kinds()
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect();
            return Err(invalid(
                "data.inputs".into(),
                format!(
                    "a `{}` model cannot be driven by exogenous inputs; use kind = {}, or \
                     drop the inputs",
                    self.model.kind(),
                    driven.join(" or ")
                ),
            ));
        }
        if let ModelConfig::Autoregressive(c) = &self.model {
            if c.burn_in > 0 && !self.data.inputs.is_empty() {
                return Err(invalid(
                    "model.burn_in".into(),
                    format!("{DRIVEN_NO_BURN_IN}; drop burn_in"),
                ));
            }
        }
        let t = &self.train;
        let positive = [
            ("steps", t.steps as f64),
            ("batch_size", t.batch_size as f64),
            ("lr", t.lr),
            ("eps", t.eps),
            ("log_every", t.log_every as f64),
            ("valid_every", t.valid_every as f64),
            ("checkpoint_every", t.checkpoint_every as f64),
            ("keep_checkpoints", t.keep_checkpoints as f64),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(
                    format!("train.{key}"),
                    format!("must be positive, got {v}"),
                ));
            }
        }
        if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
            return Err(invalid(
                "train.grad_clip".into(),
                format!(
                    "must be a non-negative norm (0 = no clipping), got {}",
                    t.grad_clip
                ),
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0 && t.lr * t.weight_decay < 1.0) {
            return Err(invalid(
                "train.weight_decay".into(),
                format!(
                    "must be a non-negative decay with lr × weight_decay < 1 (0 = none), got {}",
                    t.weight_decay
                ),
            ));
        }
        if !(t.lr_cut > 0.0 && t.lr_cut < 1.0) {
            return Err(invalid(
                "train.lr_cut".into(),
                format!("must lie strictly between 0 and 1, got {}", t.lr_cut),
            ));
        }
        for b in t.betas {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(
                    "train.betas".into(),
                    format!("each must lie in [0, 1), got {b}"),
                ));
            }
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(invalid(
                "name".into(),
                format!("\"{}\" must be a plain directory name", self.name),
            ));
        }
        Ok(())
    }

    /// Simulates or reads `[data]` and cuts its windows; a bad value is reported against the
    /// experiment file as `data.<key>`.
    pub fn build_data(&self, path: &Path) -> Result<neurogen_data::Windows, crate::TrainError> {
        self.data.build(self.seed).map_err(|e| match e {
            DataError::Invalid { key, message } => invalid_data(path, key, message).into(),
            // The recording named by data.path is unreadable or malformed: name both files.
            e @ (DataError::Format { .. } | DataError::Io { .. }) => ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "data.path".into(),
                message: e.to_string(),
            }
            .into(),
        })
    }

    /// Checks that need the built data: the batch must fit in the training split, and a
    /// conditional model needs labelled data.
    pub fn check_against(&self, path: &Path, train: &Signals) -> Result<(), ConfigError> {
        if self.model.conditional() && (train.labels.is_none() || train.meta.label_names.is_empty())
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "model.conditional".into(),
                message: format!(
                    "a conditional model needs labelled data, but data source \"{}\" gives no \
                     labels (labels come from a simulator's n_conditions, EDF+ epochs, an NPZ \
                     `labels` array or a CSV condition column)",
                    self.data.source.name()
                ),
            });
        }
        let n_train = train.n;
        if self.train.batch_size > n_train {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "train.batch_size".into(),
                message: format!(
                    "{} is larger than the training set ({n_train} windows); lower it or add data",
                    self.train.batch_size
                ),
            });
        }
        Ok(())
    }

    /// The resolved experiment as TOML.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }

    /// The parts that must not change when a run is resumed: everything but `train.steps`, the
    /// NaN guard's settings (`train.grad_clip`, `train.lr_cut`, `train.max_rollbacks`), early
    /// stopping (`train.keep_best`, `train.patience`), an autoregressive model's `burn_in` (how
    /// it samples, not what it learns), `backend`, `name` and the provenance.
    pub fn resume_key(&self) -> Experiment {
        let model = match &self.model {
            ModelConfig::Autoregressive(c) => {
                ModelConfig::Autoregressive(neurogen_models::WaveNetConfig {
                    burn_in: 0,
                    ..c.clone()
                })
            }
            other => other.clone(),
        };
        Experiment {
            model,
            name: String::new(),
            backend: Backend::Ndarray,
            train: TrainConfig {
                steps: 0,
                grad_clip: 0.0,
                lr_cut: 0.5,
                max_rollbacks: 0,
                keep_best: KeepBest::None,
                patience: 0,
                ..self.train.clone()
            },
            provenance: None,
            ..self.clone()
        }
    }
}

/// `text`, the contents of `path`, as a TOML table; a syntax error names the file, line and column.
pub(crate) fn parse_toml(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
}

/// Joins the outer key path with an inner `key: message` from a tagged table.
fn join_key(outer: &str, inner: &str) -> (String, String) {
    let outer = if outer == "." { "" } else { outer };
    if let Some((k, rest)) = inner.split_once(": ") {
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '[' || c == ']')
        {
            let key = if outer.is_empty() {
                k.to_string()
            } else {
                format!("{outer}.{k}")
            };
            return (key, rest.to_string());
        }
    }
    let key = if outer.is_empty() {
        "(top level)".to_string()
    } else {
        outer.to_string()
    };
    (key, inner.to_string())
}

/// Applies one `key.path=value` override to the parsed table.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        arg: arg.to_string(),
        message,
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key.path=value".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(format!("\"{key}\" is not a dotted key path")));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = parts.split_last().ok_or_else(|| err("empty key".into()))?;
    let mut node = table;
    for p in parents {
        let entry = node
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(err(format!(
                    "\"{p}\" is a {}, not a table",
                    other.type_str()
                )))
            }
        };
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// A bad `[data]` value, reported against the experiment file as `data.<key>`.
fn invalid_data(path: &Path, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: format!("data.{key}"),
        message,
    }
}
