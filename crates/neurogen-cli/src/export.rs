//! `neurogen export`: a run's weights as safetensors plus model.json.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use neurogen_train::export::{export_run, safetensors_bytes};

use crate::common::{open_run, status, BackendArg, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run to export.
    run_dir: PathBuf,
    /// The weights file (.safetensors); model.json is written beside it, named after it
    /// (`model.safetensors` → `model.json`).
    #[arg(short = 'o', long = "out", default_value = "model.safetensors")]
    out: PathBuf,
    /// Export the best validated checkpoint instead of the newest.
    #[arg(long)]
    best: bool,
    /// Backend to load the weights on (any gives the same numbers).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(UsageError(format!(
            "-o {}: expected a .safetensors file name",
            a.out.display()
        )));
    }
    let (device, loaded) = open_run(&a.run_dir, a.backend, a.best, None)?;
    let exp = &loaded.exp;
    let export = export_run(&loaded, &device)?;
    let (tensors, desc) = (&export.tensors, &export.desc);
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("neurogen_family".to_string(), exp.model.kind().to_string()),
    ]);
    let bytes = safetensors_bytes(tensors, &meta);
    neurogen_data::io::write_atomic(&a.out, &bytes)?;
    let json_path = a.out.with_extension("json");
    let text = serde_json::to_string_pretty(desc)?;
    neurogen_data::io::write_atomic(&json_path, text.as_bytes())?;
    let check_path = a.out.with_extension("reference.safetensors");
    let bytes = safetensors_bytes(&export.reference, &BTreeMap::new());
    neurogen_data::io::write_atomic(&check_path, &bytes)?;
    let values: usize = tensors.iter().map(|t| t.values.len()).sum();
    status(
        quiet,
        &format!(
            "exported {} tensors ({values} values) of {} step {} to {} and {} (reference draws: {})",
            tensors.len(),
            exp.model.kind(),
            desc["checkpoint_step"],
            a.out.display(),
            json_path.display(),
            check_path.display()
        ),
    );
    Ok(())
}
