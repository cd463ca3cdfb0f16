//! `neurogen data`.

use std::path::PathBuf;

use anyhow::Result;
use neurogen_data::samples::{sidecar, sidecar_path, write_sidecar};
use neurogen_data::write::{write_signals, OutputFormat};
use neurogen_train::Experiment;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The experiment (TOML).
    config: PathBuf,
    /// Output file (.npy, .npz, .edf, .bdf or .csv); default <name>-data.npy.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Override any key, as for train.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    let exp = Experiment::load(&a.config, &a.set)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-data.npy", exp.name)));
    OutputFormat::of(&out)?;
    let windows = exp.build_data(&a.config)?;
    let s = &windows.signals;
    write_signals(&out, s)?;
    let mut meta = sidecar(s);
    meta.insert("windows".into(), json!(windows.info));
    if let Some((lat, dim)) = &s.latents {
        let lat_path = sidecar_path(&out, "_latents.npy");
        neurogen_data::npy::write_f32(&lat_path, &[s.n, *dim, s.meta.time], lat)?;
        let file = lat_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        let shape = [s.n, *dim, s.meta.time];
        meta.insert("latents".into(), json!({ "file": file, "shape": shape }));
    }
    let meta_path = write_sidecar(&out, &meta)?;
    if !quiet {
        println!(
            "wrote {} windows [{} × {} × {}] to {} and {}",
            s.n,
            s.n,
            s.meta.channels,
            s.meta.time,
            out.display(),
            meta_path.display()
        );
    }
    Ok(())
}
