//! `neurogen export`: a checkpoint's sampling weights as safetensors, PyTorch's way.
//!
//! Names are burn's dotted module paths without enum variants (`decoder.layers.0.weight`);
//! `Linear` weights are transposed to PyTorch's `[out, in]`, norms' gamma/beta renamed
//! weight/bias; convolutions already share PyTorch's `[out, in, kernel]`. `model.json` beside
//! it holds what a loader needs besides the weights: the family and every architecture setting,
//! the window shape, the normalisation statistics and the label names.

use std::collections::BTreeMap;

use burn::store::burn_pack::DType;
use burn::tensor::Device;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::registry::Build;
use crate::{LoadedRun, TrainError};

/// One exported tensor: name, shape and little-endian f32 data.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// PyTorch-style name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// Windows in the reference draws that come with an export.
pub const REFERENCE_WINDOWS: usize = 4;

/// What `neurogen export` writes: the weights, `model.json`, and reference draws.
#[derive(Debug, Clone)]
pub struct Export {
    /// The sampling weights, by PyTorch name.
    pub tensors: Vec<Exported>,
    /// `model.json`.
    pub desc: Value,
    /// `z` (standard normals `[n, noise_dim]`, seed 0), `y` (one-hot labels, conditional runs)
    /// and `mean`: the model's `generate(z, y)` in normalised units (the Gaussian mean, the
    /// Poisson rate, or a flow's or GAN's values) — what a port must reproduce.
    pub reference: Vec<Exported>,
}

/// The weights a loaded run samples with, its `model.json` description and reference draws.
pub fn export_run(run: &LoadedRun, device: &Device) -> Result<Export, TrainError> {
    let (exp, info, ckpt) = (&run.exp, &run.info, &run.checkpoint);
    let build = Build::new(exp, &info.meta, device);
    let mut out = Vec::new();
    for t in exp.model.family().tensors(&build, ckpt)? {
        let (name, dtype, shape, _, bytes) =
            t.into_parts().map_err(|e| TrainError::Checkpoint {
                path: ckpt.model_file(),
                message: e.to_string(),
            })?;
        if dtype != DType::F32 {
            return Err(TrainError::Checkpoint {
                path: ckpt.model_file(),
                message: format!("{name}: {dtype:?} weights; export writes f32 only"),
            });
        }
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.push(Exported {
            name,
            shape: shape.iter().copied().collect(),
            values,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    // Names without enum variants could collide; safetensors needs them unique.
    if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(TrainError::Checkpoint {
            path: ckpt.model_file(),
            message: format!("two parameters export as {}", w[0].name),
        });
    }
    let model = serde_json::to_value(&exp.model).unwrap_or(Value::Null);
    let desc = json!({
        "format": "neurogen-export/1",
        "family": exp.model.kind(),
        "model": model,
        "window": {
            "channels": info.meta.channels,
            "time": info.meta.time,
            "sfreq": info.meta.sfreq,
            "kind": info.meta.kind,
            "unit": info.meta.unit,
            "channel_names": info.meta.channel_names,
            "input_names": info.meta.input_names,
        },
        "normalization": info.norm,
        "label_names": if exp.model.conditional() { info.meta.label_names.clone() } else { Vec::new() },
        "label_counts": info.label_counts,
        "checkpoint_step": ckpt.step,
        "weights": if ckpt.ema_file().exists() { "ema" } else { "model" },
        "seed": exp.seed,
        "neurogen_version": env!("CARGO_PKG_VERSION"),
        "tensors": out.iter().map(|t| (t.name.clone(), json!(t.shape))).collect::<BTreeMap<_, _>>(),
    });
    let reference = reference_draws(run, device)?;
    Ok(Export {
        tensors: out,
        desc,
        reference,
    })
}

/// `z`, `y` and `mean` of [`Export::reference`].
fn reference_draws(run: &LoadedRun, device: &Device) -> Result<Vec<Exported>, TrainError> {
    use neurogen_models::Observation;
    let (model, ckpt) = (&run.model, &run.checkpoint);
    let (n, d, classes) = (REFERENCE_WINDOWS, model.noise_dim(), model.classes());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let z: Vec<f32> = crate::rng::normals(&mut rng, n * d);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % classes.max(1) as u32).collect();
    let zt = crate::trainer::host_tensor(z.clone(), [n, d], device); // [n, noise_dim]
    let yt = (classes > 0).then(|| neurogen_models::condition::one_hot(&labels, classes, device));
    let mean = match model.generate(zt, yt) {
        Observation::Gaussian { mean, .. } | Observation::GaussianAr1 { mean, .. } => mean,
        Observation::Poisson { rate } => rate,
        Observation::Point { values } => values,
    }; // [n, channels, time]
    let shape = mean.dims().to_vec();
    let values = mean
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Checkpoint {
            path: ckpt.model_file(),
            message: format!("{e:?}"),
        })?;
    let mut out = vec![
        Exported {
            name: "z".into(),
            shape: vec![n, d],
            values: z,
        },
        Exported {
            name: "mean".into(),
            shape,
            values,
        },
    ];
    if classes > 0 {
        let mut y = vec![0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            y[i * classes + l as usize] = 1.0;
        }
        out.push(Exported {
            name: "y".into(),
            shape: vec![n, classes],
            values: y,
        });
    }
    Ok(out)
}

/// The safetensors file of `tensors`: an 8-byte little-endian header length, the JSON header
/// (name → dtype, shape, byte offsets; `__metadata__` string → string), then the data.
pub fn safetensors_bytes(tensors: &[Exported], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for t in tensors {
        let len = t.values.len() * 4;
        header.insert(
            t.name.clone(),
            json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + len] }),
        );
        offset += len;
    }
    let mut head = Value::Object(header).to_string().into_bytes();
    // The data section starts 8-byte aligned, as the format recommends.
    while !(8 + head.len()).is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for t in tensors {
        for v in &t.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_layout_is_the_documented_one() {
        let t = vec![
            Exported {
                name: "a.weight".into(),
                shape: vec![2, 3],
                values: (0..6).map(|i| i as f32).collect(),
            },
            Exported {
                name: "b".into(),
                shape: vec![1],
                values: vec![-1.5],
            },
        ];
        let meta = BTreeMap::from([("family".to_string(), "vae".to_string())]);
        let bytes = safetensors_bytes(&t, &meta);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["family"], "vae");
        assert_eq!(header["a.weight"]["shape"], json!([2, 3]));
        assert_eq!(header["b"]["data_offsets"], json!([24, 28]));
        let data = &bytes[8 + n..];
        assert_eq!(data.len(), 28);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 5.0);
        assert_eq!(f32::from_le_bytes(data[24..28].try_into().unwrap()), -1.5);
    }
}
