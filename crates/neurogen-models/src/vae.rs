//! Variational autoencoder over whole windows.
//!
//! The encoder flattens `[channels × time]` and maps it through an MLP to the mean and
//! log-variance of a diagonal Gaussian posterior; the decoder maps a latent back to the
//! parameters of the observation model (Gaussian means, or Poisson log-rates for counts).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::likelihood::{gaussian_kl, gaussian_nll, poisson_nll, Likelihood};
use crate::{GenerativeModel, Loss, LossContext, Mlp, ModelError, Observation, WindowShape};

/// `[model] kind = "vae"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeConfig {
    /// Latent dimension.
    pub latent_dim: usize,
    /// Hidden layer sizes of the encoder (the decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Observation model; default `poisson` for counts, `gaussian` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<Likelihood>,
    /// Gaussian σ in normalised units: the fixed value, or the start of a learned one.
    pub sigma: f64,
    /// Learn one σ per channel (Gaussian likelihood only).
    pub learn_sigma: bool,
    /// Final weight of the KL term (β-VAE); `[train] kl_warmup_steps` ramps up to it.
    pub beta: f64,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            latent_dim: 16,
            hidden: vec![256, 128],
            likelihood: None,
            sigma: 1.0,
            learn_sigma: true,
            beta: 1.0,
        }
    }
}

impl VaeConfig {
    /// A copy with the likelihood filled in for data of `kind`.
    pub fn resolved(&self, kind: SignalKind) -> VaeConfig {
        VaeConfig {
            likelihood: Some(self.likelihood.unwrap_or(match kind {
                SignalKind::Counts => Likelihood::Poisson,
                SignalKind::Continuous => Likelihood::Gaussian,
            })),
            ..self.clone()
        }
    }

    /// Checks the config against data of `kind`.
    pub fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if self.latent_dim == 0 {
            return bad("latent_dim", "must be at least 1".into());
        }
        if self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("layer sizes must be ≥ 1, got {:?}", self.hidden),
            );
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad("sigma", format!("must be positive, got {}", self.sigma));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("beta", format!("must be ≥ 0, got {}", self.beta));
        }
        if kind == SignalKind::Continuous && self.likelihood == Some(Likelihood::Poisson) {
            return bad(
                "likelihood",
                "\"poisson\" needs count data; this data set is continuous (use \"gaussian\")"
                    .into(),
            );
        }
        Ok(())
    }

    /// Builds the model for windows of `shape`.
    pub fn init(&self, shape: WindowShape, device: &Device) -> Vae {
        let input = shape.channels * shape.time;
        let mut enc = vec![input];
        enc.extend(&self.hidden);
        let last = *enc.last().unwrap_or(&input);
        let mut dec = vec![self.latent_dim];
        dec.extend(self.hidden.iter().rev());
        let dec_last = *dec.last().unwrap_or(&self.latent_dim);
        Vae {
            encoder: Mlp::init(&enc, device),
            mu: LinearConfig::new(last, self.latent_dim).init(device),
            logvar: LinearConfig::new(last, self.latent_dim).init(device),
            decoder: Mlp::init(&dec, device),
            out: LinearConfig::new(dec_last, input).init(device),
            log_sigma: Param::from_tensor(Tensor::full([shape.channels], self.sigma.ln(), device)),
            channels: shape.channels,
            time: shape.time,
            latent_dim: self.latent_dim,
            poisson: self.likelihood == Some(Likelihood::Poisson),
            learn_sigma: self.learn_sigma,
            beta: self.beta as f32,
        }
    }
}

/// The VAE module.
#[derive(Module, Debug)]
pub struct Vae {
    encoder: Mlp,
    mu: Linear,
    logvar: Linear,
    decoder: Mlp,
    out: Linear,
    /// ln σ per channel (Gaussian likelihood).
    log_sigma: Param<Tensor<1>>,
    channels: usize,
    time: usize,
    latent_dim: usize,
    poisson: bool,
    learn_sigma: bool,
    beta: f32,
}

impl Vae {
    /// Posterior mean and log-variance.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` → (`[batch, latent]`, `[batch, latent]`)
    pub fn encode(&self, x: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let [b, c, t] = x.dims();
        // Counts are heavy-tailed; log1p keeps the encoder's input near unit scale.
        let x = if self.poisson { x.log1p() } else { x };
        let h = self.encoder.forward(x.reshape([b, c * t])); // [batch, hidden]
                                                             // Bounded log-variance keeps exp() finite early in training.
        (
            self.mu.forward(h.clone()),
            self.logvar.forward(h).clamp(-12.0, 8.0),
        )
    }

    /// Decoder output: Gaussian means or Poisson log-rates.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent]` → `[batch, channels, time]`
    pub fn decode(&self, z: Tensor<2>) -> Tensor<3> {
        let b = z.dims()[0];
        let out = self.out.forward(self.decoder.forward(z)); // [batch, channels * time]
        let out = out.reshape([b, self.channels, self.time]);
        if self.poisson {
            out.clamp(-15.0, 8.0)
        } else {
            out
        }
    }

    /// ln σ broadcastable over `[batch, channels, time]`.
    fn log_sigma(&self) -> Tensor<3> {
        let ls = self.log_sigma.val();
        let ls = if self.learn_sigma { ls } else { ls.detach() };
        ls.reshape([1, self.channels, 1])
    }

    /// Negative log-likelihood of `x` under decoder output `out`, per window.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, channels, time]` → `[batch]`
    pub fn nll(&self, x: Tensor<3>, out: Tensor<3>) -> Tensor<1> {
        if self.poisson {
            poisson_nll(x, out)
        } else {
            gaussian_nll(x, out, self.log_sigma())
        }
    }
}

impl GenerativeModel for Vae {
    fn noise_dim(&self) -> usize {
        self.latent_dim
    }

    fn loss(&self, x: Tensor<3>, noise: Tensor<2>, ctx: &LossContext) -> Loss {
        let (mu, logvar) = self.encode(x.clone()); // [batch, latent]
        let z = mu.clone() + logvar.clone().mul_scalar(0.5).exp() * noise; // [batch, latent]
        let nll = self.nll(x, self.decode(z)); // [batch]
        let kl = gaussian_kl(mu, logvar); // [batch]
        let total = (nll.clone() + kl.clone().mul_scalar(self.beta * ctx.kl_warmup)).mean();
        Loss {
            total,
            terms: vec![
                ("nll", nll.clone().mean()),
                ("kl", kl.clone().mean()),
                ("neg_elbo", (nll + kl).mean()),
            ],
        }
    }

    fn generate(&self, z: Tensor<2>) -> Observation {
        let out = self.decode(z);
        if self.poisson {
            Observation::Poisson { rate: out.exp() }
        } else {
            Observation::Gaussian {
                mean: out,
                sigma: self.log_sigma.val().detach().exp(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    fn fit_steps(kind: SignalKind, x: Tensor<3>, steps: usize) -> (f32, f32) {
        let device = x.device();
        let cfg = VaeConfig {
            latent_dim: 3,
            hidden: vec![32],
            ..Default::default()
        }
        .resolved(kind);
        let [b, c, t] = x.dims();
        let mut model = cfg.init(
            WindowShape {
                channels: c,
                time: t,
            },
            &device,
        );
        let mut optim = AdamConfig::new().init();
        let noise = Tensor::<2>::random([b, 3], Distribution::Normal(0.0, 1.0), &device);
        let ctx = LossContext { kl_warmup: 1.0 };
        let first = model
            .loss(x.clone(), noise.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        for _ in 0..steps {
            let loss = model.loss(x.clone(), noise.clone(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        (first, model.loss(x, noise, &ctx).total.into_scalar::<f32>())
    }

    #[test]
    fn loss_falls_on_a_tiny_batch() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let x = Tensor::<3>::random([8, 4, 10], Distribution::Normal(0.0, 1.0), &device);
        let (first, last) = fit_steps(SignalKind::Continuous, x, 150);
        assert!(
            last < first - 0.25 * first.abs(),
            "gaussian: {first} -> {last}"
        );

        // Counts with a clear per-channel rate structure: 0, 1, 3, 6 expected per bin.
        let counts: Vec<f32> = (0..8 * 4 * 10)
            .map(|i| [0.0, 1.0, 3.0, 6.0][(i / 10) % 4])
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(counts, [8, 4, 10]), &device);
        let (first, last) = fit_steps(SignalKind::Counts, x, 150);
        assert!(last < 0.5 * first, "poisson: {first} -> {last}");
    }

    #[test]
    fn fixed_sigma_is_not_learned_and_generate_has_the_right_shapes() {
        let device = Device::flex();
        let cfg = VaeConfig {
            learn_sigma: false,
            sigma: 0.5,
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let model = cfg.init(
            WindowShape {
                channels: 3,
                time: 7,
            },
            &device,
        );
        match model.generate(Tensor::zeros([5, 16], &device)) {
            Observation::Gaussian { mean, sigma } => {
                assert_eq!(mean.dims(), [5, 3, 7]);
                let s = sigma.into_data().try_to_vec::<f32>().unwrap();
                assert!(s.iter().all(|v| (v - 0.5).abs() < 1e-6), "{s:?}");
            }
            Observation::Poisson { .. } => panic!("continuous data decodes to a Gaussian"),
        }
        let counts = VaeConfig::default().resolved(SignalKind::Counts);
        assert_eq!(counts.likelihood, Some(Likelihood::Poisson));
        let e = VaeConfig {
            likelihood: Some(Likelihood::Poisson),
            ..Default::default()
        }
        .check(SignalKind::Continuous)
        .unwrap_err();
        assert!(e.to_string().contains("likelihood"));
    }
}
