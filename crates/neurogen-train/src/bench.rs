//! The reference workloads of `../shared/bench/WORKLOADS.md`, timed with its protocol.
//!
//! Every workload is a shipped experiment under `configs/bench/` (compiled in), built by the
//! same `init` and stepped by the same loss, optimiser and GAN step as `neurogen train`: what
//! is timed is what users train. Inputs follow the reference: a pool of 16 standard-normal
//! batches made before timing and cycled in order; per-step noise is drawn on the host, as in
//! training. One process runs one workload (the CLI spawns itself), so peak RSS is its own.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Distribution, Tensor};
use neurogen_models::{GenerativeModel, LossContext, ModelConfig, Transform, WindowShape};

use crate::fit::{adam, host_tensor, optimise};
use crate::gan::{gan_step, Players, StepInput};
use crate::rng::{normals, rng, Stream};
use crate::{build_model, ConfigError, Experiment, Model};

/// One row of the reference table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// W1: MLP VAE training step, batch 128.
    Vae,
    /// W2: RealNVP training step, batch 256.
    RealNvp,
    /// W2: one call sampling 10,000 points, no autograd.
    RealNvpSample,
    /// W2: one call of `log_prob` on 10,000 points, no autograd.
    RealNvpLogProb,
    /// W3: DCGAN step (critic update, then generator update), batch 64.
    Gan,
    /// W4: latent ODE training step through 99 RK4 steps, batch 64.
    LatentOde,
    /// The machine limit: a 2048 × 2048 float32 matrix product.
    Sgemm,
}

/// Warm-up calls, then `repeats` timed runs of `steps` calls each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// Untimed calls first.
    pub warmup: usize,
    /// Calls per timed repeat.
    pub steps: usize,
    /// Timed repeats; the median rate is reported.
    pub repeats: usize,
}

/// What timing one workload measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Median calls (steps) per second over the repeats.
    pub steps_per_s: f64,
    /// Each repeat's rate.
    pub repeats: Vec<f64>,
    /// Trainable and fixed parameters of the model(s), as burn counts them.
    pub params: usize,
}

impl Workload {
    /// Every workload, in the reference order.
    pub const ALL: [Workload; 7] = [
        Workload::Sgemm,
        Workload::Vae,
        Workload::RealNvp,
        Workload::RealNvpSample,
        Workload::RealNvpLogProb,
        Workload::Gan,
        Workload::LatentOde,
    ];

    /// The name in the reference JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Vae => "vae",
            Workload::RealNvp => "realnvp",
            Workload::RealNvpSample => "realnvp_sample",
            Workload::RealNvpLogProb => "realnvp_log_prob",
            Workload::Gan => "gan",
            Workload::LatentOde => "latent_ode",
            Workload::Sgemm => "sgemm_2048",
        }
    }

    /// The workload called `name` (`sgemm` is accepted for `sgemm_2048`).
    pub fn from_name(name: &str) -> Option<Workload> {
        let name = if name == "sgemm" { "sgemm_2048" } else { name };
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The shipped experiment the workload's model comes from, and its text.
    pub fn config(self) -> Option<(&'static str, &'static str)> {
        match self {
            Workload::Vae => Some((
                "configs/bench/vae.toml",
                include_str!("../../../configs/bench/vae.toml"),
            )),
            Workload::RealNvp | Workload::RealNvpSample | Workload::RealNvpLogProb => Some((
                "configs/bench/realnvp.toml",
                include_str!("../../../configs/bench/realnvp.toml"),
            )),
            Workload::Gan => Some((
                "configs/bench/gan.toml",
                include_str!("../../../configs/bench/gan.toml"),
            )),
            Workload::LatentOde => Some((
                "configs/bench/latent-ode.toml",
                include_str!("../../../configs/bench/latent-ode.toml"),
            )),
            Workload::Sgemm => None,
        }
    }

    /// Windows per step (points per call for the RealNVP rows, `n` for sgemm).
    pub fn batch(self) -> usize {
        match self {
            Workload::Vae => 128,
            Workload::RealNvp => 256,
            Workload::RealNvpSample | Workload::RealNvpLogProb => 10_000,
            Workload::Gan | Workload::LatentOde => 64,
            Workload::Sgemm => SGEMM_N,
        }
    }

    /// The window shape of the workload's data.
    pub fn shape(self) -> WindowShape {
        let (channels, time, sfreq) = match self {
            Workload::Vae | Workload::Gan => (16, 128, 128.0),
            Workload::RealNvp | Workload::RealNvpSample | Workload::RealNvpLogProb => {
                (4, 16, 128.0)
            }
            Workload::LatentOde => (16, 100, 99.0),
            Workload::Sgemm => (1, SGEMM_N, 1.0),
        };
        WindowShape {
            channels,
            time,
            sfreq,
        }
    }

    /// Analytic matmul/conv FLOPs of one step as WORKLOADS.md defines them (the reference
    /// architecture's, so GFLOP/s compare the same nominal work across frameworks).
    pub fn flops_per_step(self) -> u64 {
        match self {
            Workload::Vae => 1_830_813_696,
            Workload::RealNvp => 1_107_296_256,
            Workload::RealNvpSample | Workload::RealNvpLogProb => 14_417_920_000,
            Workload::Gan => 1_461_977_088,
            Workload::LatentOde => 1_534_722_048,
            Workload::Sgemm => 2 * (SGEMM_N as u64).pow(3),
        }
    }

    /// The reference protocol: 10 warm-up steps and 5 × 50 timed for training steps; 2 and
    /// 5 × 5 for the 10,000-point calls; 3 and 5 × 10 for sgemm.
    pub fn protocol(self) -> Protocol {
        let (warmup, steps) = match self {
            Workload::RealNvpSample | Workload::RealNvpLogProb => (2, 5),
            Workload::Sgemm => (3, 10),
            _ => (10, 50),
        };
        Protocol {
            warmup,
            steps,
            repeats: 5,
        }
    }

    /// The workload's experiment, parsed and checked.
    pub fn experiment(self) -> Result<Option<Experiment>, ConfigError> {
        let Some((path, text)) = self.config() else {
            return Ok(None);
        };
        Experiment::parse(text, Path::new(path), &[]).map(Some)
    }
}

const SGEMM_N: usize = 2048;
/// Batches in the input pool, cycled in order.
const POOL: usize = 16;

/// Times `workload` on `device` (a plain device; training runs on its autodiff twin).
pub fn run(workload: Workload, device: &Device, p: Protocol) -> Result<Timing, ConfigError> {
    device.seed(0);
    let exp = workload.experiment()?;
    let shape = workload.shape();
    let b = workload.batch();
    let ad = device.clone().autodiff();
    let timing = match (workload, exp) {
        (Workload::Sgemm, _) => {
            let a = Tensor::<2>::random([b, b], Distribution::Normal(0.0, 1.0), device);
            let m = Tensor::<2>::random([b, b], Distribution::Normal(0.0, 1.0), device);
            // One element of the product is read at the end of a repeat to wait for it.
            time(p, 0, |_| {
                a.clone().matmul(m.clone()).slice([0..1, 0..1]).reshape([1])
            })
        }
        (_, None) => unreachable!("every model workload has a config"),
        (Workload::Gan, Some(exp)) => {
            let ModelConfig::Gan(cfg) = &exp.model else {
                unreachable!("configs/bench/gan.toml is a GAN")
            };
            let generator = cfg.init_generator(shape, exp.data.kind(), &ad);
            let critic = cfg.init_critic(shape, &ad);
            let params = generator.num_params() + critic.num_params();
            let mut players = Some(Players {
                generator,
                critic,
                ema: None,
            });
            let (mut opt_g, mut opt_c) = (adam(&exp.train).init(), adam(&exp.train).init());
            let pool = pool(shape, b, &ad);
            let lr = exp.train.lr;
            time(p, params, |i| {
                let z = |k: u64| {
                    let n = normals(
                        &mut rng(0, Stream::TrainNoise, 2 * i as u64 + k),
                        b * cfg.noise_dim,
                    );
                    host_tensor(n, [b, cfg.noise_dim], &ad)
                };
                let input = StepInput {
                    real: vec![pool[i % POOL].clone()],
                    z: vec![z(0), z(1)],
                };
                let p = players
                    .take()
                    .expect("players are put back after each step");
                let (p, losses) = gan_step(p, cfg, input, (lr, lr), 0.0, &mut opt_g, &mut opt_c);
                players = Some(p);
                losses.generator
            })
        }
        (_, Some(exp)) => match build_model(&exp, shape, &ad) {
            Model::Vae(m) => train(m, &exp, shape, &ad, p),
            Model::LatentOde(m) => train(m, &exp, shape, &ad, p),
            Model::RealNvp(m) if workload == Workload::RealNvp => train(m, &exp, shape, &ad, p),
            Model::RealNvp(m) => {
                // Sampling and scoring run without autograd, as `sample` and `score` do.
                let m = m.valid();
                let params = m.num_params();
                let dim = shape.dim();
                let pool = pool(shape, b, device);
                time(p, params, |i| {
                    if workload == Workload::RealNvpSample {
                        let z = normals(&mut rng(0, Stream::TrainNoise, i as u64), b * dim);
                        let (x, _) = m.inverse(host_tensor(z, [b, dim], device)); // [b, dim]
                        x.slice([0..1, 0..1]).reshape([1])
                    } else {
                        m.log_prob_flat(pool[i % POOL].clone().reshape([b, dim]))
                            .narrow(0, 0, 1)
                    }
                })
            }
            Model::Gan(_) => unreachable!("the GAN is matched above"),
        },
    };
    Ok(timing)
}

/// `POOL` standard-normal batches of `b` windows of `shape`, made once before timing.
fn pool(shape: WindowShape, b: usize, device: &Device) -> Vec<Tensor<3>> {
    (0..POOL)
        .map(|_| {
            Tensor::random(
                [b, shape.channels, shape.time],
                Distribution::Normal(0.0, 1.0),
                device,
            )
        })
        .collect()
}

/// Training steps of a single-optimiser model, as `fit` takes them (without its logging).
fn train<M: GenerativeModel>(
    model: M,
    exp: &Experiment,
    shape: WindowShape,
    device: &Device,
    p: Protocol,
) -> Timing {
    let b = exp.train.batch_size;
    let (params, noise_dim) = (model.num_params(), model.noise_dim());
    let pool = pool(shape, b, device);
    let mut optim: ModuleOptimizer = adam(&exp.train).init();
    let ctx = LossContext { kl_warmup: 1.0 };
    let mut model = Some(model);
    time(p, params, |i| {
        let eps = normals(&mut rng(0, Stream::TrainNoise, i as u64), b * noise_dim);
        let eps = host_tensor(eps, [b, noise_dim], device); // [batch, noise_dim]
        let m = model.take().expect("the model is put back after each step");
        let loss = m.loss(pool[i % POOL].clone(), eps, &ctx).total;
        let (m, _) = optimise(m, &mut optim, loss.clone(), exp.train.lr, 0.0);
        model = Some(m);
        loss.detach()
    })
}

/// Runs `step(i)` `p.warmup` times, then `p.repeats` × `p.steps` times, reading the last
/// result of each repeat to the host so that lazy backends have finished the work timed.
fn time(p: Protocol, params: usize, mut step: impl FnMut(usize) -> Tensor<1>) -> Timing {
    let mut i = 0;
    let mut call = |i: &mut usize| {
        let out = step(*i);
        *i += 1;
        out
    };
    let mut last = None;
    for _ in 0..p.warmup {
        last = Some(call(&mut i));
    }
    if let Some(t) = last {
        let _ = t.into_scalar::<f32>();
    }
    let mut rates: Vec<f64> = (0..p.repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            let mut last = None;
            for _ in 0..p.steps.max(1) {
                last = Some(call(&mut i));
            }
            if let Some(t) = last {
                let _ = t.into_scalar::<f32>();
            }
            p.steps.max(1) as f64 / start.elapsed().as_secs_f64().max(1e-12)
        })
        .collect();
    let repeats = rates.clone();
    rates.sort_by(f64::total_cmp);
    Timing {
        steps_per_s: rates[rates.len() / 2],
        repeats,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_config_builds_the_reference_architecture() {
        let device = Device::flex();
        for w in Workload::ALL {
            let Some(exp) = w.experiment().unwrap() else {
                continue;
            };
            let params = match (&exp.model, build_model(&exp, w.shape(), &device)) {
                (ModelConfig::Gan(c), Model::Gan(g)) => {
                    g.num_params() + c.init_critic(w.shape(), &device).num_params()
                }
                (_, Model::Vae(m)) => m.num_params(),
                (_, Model::RealNvp(m)) => m.num_params(),
                (_, Model::LatentOde(m)) => m.num_params(),
                _ => unreachable!(),
            };
            // WORKLOADS.md's counts, plus what our families add to the reference networks:
            // the VAE's and latent ODE's per-channel log σ (16, fixed here), the critic's
            // power-iteration vectors (one per output channel, 32 + 64 + 128 + 1, unused
            // without spectral_norm), and the latent ODE's GRU reads a mask channel beside
            // each data channel (16 × 192 weights).
            let expected = match w {
                Workload::Vae => 2_387_520 + 16,
                Workload::RealNvp | Workload::RealNvpSample | Workload::RealNvpLogProb => 725_504,
                Workload::Gan => 221_521 + 225,
                Workload::LatentOde => 24_384 + 16 + 16 * 192,
                Workload::Sgemm => unreachable!(),
            };
            assert_eq!(params, expected, "{}", w.name());
            // The shape the workload declares is the one its data make.
            let (path, _) = w.config().unwrap();
            let data = exp.build_data(Path::new(path)).unwrap().signals;
            assert_eq!(w.shape(), WindowShape::from(&data.meta), "{}", w.name());
            if !matches!(w, Workload::RealNvpSample | Workload::RealNvpLogProb) {
                assert_eq!(exp.train.batch_size, w.batch(), "{}", w.name());
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        assert_eq!(Workload::from_name("sgemm"), Some(Workload::Sgemm));
        assert_eq!(Workload::from_name("vae2"), None);
    }

    #[test]
    fn a_tiny_protocol_reports_the_median_of_its_repeats() {
        let p = Protocol {
            warmup: 1,
            steps: 1,
            repeats: 3,
        };
        for w in [Workload::Vae, Workload::RealNvpLogProb] {
            let t = run(w, &Device::flex(), p).unwrap();
            assert_eq!(t.repeats.len(), 3);
            assert!(t.steps_per_s > 0.0 && t.steps_per_s.is_finite());
            let mut r = t.repeats.clone();
            r.sort_by(f64::total_cmp);
            assert_eq!(t.steps_per_s, r[1], "the median");
        }
    }
}
