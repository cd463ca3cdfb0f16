//! Conditioning on labels, shared by every family: `[model] conditional = true` makes the run's
//! labels (conditions, stimuli) an input of the model, as a learned embedding of the one-hot
//! label that each family feeds where its standard conditional form puts it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;

/// A learned embedding of one-hot labels: a `[classes, dim]` table, read by a product with the
/// one-hot rows (no bias), so a row of the table is the embedding of its label.
#[derive(Module, Debug)]
pub struct LabelEmbedding {
    table: Linear,
    dim: usize,
}

impl LabelEmbedding {
    /// A table for `classes` labels, `dim` values each.
    pub fn init(classes: usize, dim: usize, device: &Device) -> Self {
        LabelEmbedding {
            table: LinearConfig::new(classes, dim)
                .with_bias(false)
                .init(device),
            dim,
        }
    }

    /// Size of one embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Labels the table embeds.
    pub fn classes(&self) -> usize {
        self.table.weight.dims()[0]
    }

    /// # Shapes
    /// - `y`: `[batch, classes]` one-hot → `[batch, dim]`
    pub fn forward(&self, y: Tensor<2>) -> Tensor<2> {
        self.table.forward(y)
    }
}

/// The embedding of `y` when the model is conditional (`embed` is set): zeros when it is given
/// no labels, which a conditional model reads as "no condition".
///
/// # Shapes
/// - `y`: `[batch, classes]` one-hot → `[batch, dim]`
pub fn embed(
    embed: &Option<LabelEmbedding>,
    y: Option<Tensor<2>>,
    batch: usize,
    device: &Device,
) -> Option<Tensor<2>> {
    let e = embed.as_ref()?;
    Some(match y {
        Some(y) => e.forward(y),
        None => Tensor::zeros([batch, e.dim()], device),
    })
}

/// `h` with `e` appended to each row; `h` itself without an embedding.
///
/// # Shapes
/// - `h`: `[batch, d]`, `e`: `[batch, e]` → `[batch, d + e]`
pub fn with(h: Tensor<2>, e: Option<Tensor<2>>) -> Tensor<2> {
    match e {
        Some(e) => Tensor::cat(vec![h, e], 1),
        None => h,
    }
}

/// `y` repeated for `k` draws, draw-major (row `j·batch + i` is row `i`), as importance
/// sampling lays out its draws.
///
/// # Shapes
/// - `y`: `[batch, d]` → `[k·batch, d]`
pub fn repeat_rows(y: Tensor<2>, k: usize) -> Tensor<2> {
    let [b, d] = y.dims();
    y.unsqueeze_dim::<3>(0)
        .expand([k, b, d])
        .reshape([k * b, d])
}

/// One-hot rows of `labels` over `classes`, on `device`.
///
/// # Shapes
/// - output: `[labels.len(), classes]`
pub fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            v[i * classes + l as usize] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [labels.len(), classes]), device)
}

/// Checks the `embed_dim` of a conditional config.
pub fn check(conditional: bool, embed_dim: usize) -> Result<(), ModelError> {
    if conditional && embed_dim == 0 {
        return Err(ModelError::Invalid {
            key: "embed_dim",
            message: "a conditional model needs an embedding of at least 1 value".into(),
        });
    }
    Ok(())
}

/// The embedding a family builds: `dim` values per label when `conditional` and the data have
/// labels, else none.
pub fn init(
    conditional: bool,
    classes: usize,
    dim: usize,
    device: &Device,
) -> Option<LabelEmbedding> {
    (conditional && classes > 0).then(|| LabelEmbedding::init(classes, dim, device))
}

/// The default `embed_dim`.
pub fn default_embed_dim() -> usize {
    16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_hot_row_reads_its_labels_row_of_the_table() {
        let d = Device::flex();
        let e = LabelEmbedding::init(3, 4, &d);
        let table: Vec<f32> = e.table.weight.val().into_data().try_to_vec().unwrap(); // [3, 4]
        let got: Vec<f32> = e
            .forward(one_hot(&[2, 0], 3, &d))
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(&got[..4], &table[8..12]);
        assert_eq!(&got[4..], &table[..4]);
        let rep: Vec<f32> = repeat_rows(one_hot(&[1, 2], 3, &d), 2)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(rep, [0., 1., 0., 0., 0., 1., 0., 1., 0., 0., 0., 1.]);
        assert!(init(false, 3, 4, &d).is_none() && init(true, 0, 4, &d).is_none());
        assert!(check(true, 0).is_err() && check(false, 0).is_ok());
    }
}
