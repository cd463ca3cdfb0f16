//! Signals and where they come from.
//!
//! The one design decision of this crate: **everything here lives on the host**. Simulators,
//! windowing, splits and normalisation produce plain `Vec<f32>` arrays laid out
//! `[n, channels, time]`; only [`Signals::batch`] turns a selection of windows into a burn tensor.
//! That keeps data preparation identical across backends (a run on `ndarray` and one on `wgpu`
//! see the same bytes) and lets the evaluation crate judge any sample file without burn.
//!
//! Flow: a [`DataConfig`] is built with a seed into [`Windows`] (every window in recording
//! order, physical units, each tagged with its split), then [`Windows::into_dataset`] cuts the
//! splits and normalises them with statistics taken from the training split alone.

pub mod config;
pub mod csv;
pub mod edf;
mod error;
pub mod io;
pub mod npy;
pub mod samples;
mod signals;
pub mod sim;
pub mod sources;
mod windows;
pub mod write;

pub use config::{from_table, take_tag, DataConfig, Normalize, Source, SplitBy, SplitFractions};
pub use error::DataError;
pub use signals::{SignalKind, SignalMeta, Signals};
pub use windows::{Dataset, Normalization, SplitName, WindowInfo, Windows};
