//! `[data] source = "csv"`: one column per channel, or EEG-GAN's one row per trial and
//! electrode.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{check_sfreq, continuous, default_unit, Common};
use crate::sim::Recordings;
use crate::{DataError, SignalKind};

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
    /// `[data] inputs`, read besides `channels` (set by [`crate::DataConfig::build`]).
    #[serde(skip)]
    pub inputs: Vec<String>,
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

impl CsvSource {
    /// Reads the file in its layout.
    pub fn load(&self) -> Result<Recordings, DataError> {
        let path = &self.path;
        let unit = default_unit(self.kind, &self.unit);
        let common = Common::new(
            path,
            self.channels.as_deref(),
            &self.inputs,
            self.kind,
            unit,
        );
        match self.layout {
            CsvLayout::Channels => {
                let t = crate::csv::read_channels(path)?;
                let sfreq = check_sfreq(
                    self.sfreq.or(t.sfreq),
                    "the CSV has no leading time column to take it from",
                )?;
                common.recordings(
                    sfreq,
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
                common.recordings(
                    sfreq,
                    &[t.n, t.channel_names.len(), t.time],
                    t.data,
                    t.channel_names,
                    t.conditions,
                )
            }
        }
    }
}
