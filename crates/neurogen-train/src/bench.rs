//! The reference workloads of `../shared/bench/WORKLOADS.md`, timed with its protocol.
//!
//! Every workload is a shipped experiment under `configs/bench/` (compiled in), built by the
//! family registry and stepped by the family's own [`Trainer::step`], as `neurogen train` does:
//! what is timed is what users train. Inputs follow the reference: a pool of 16 standard-normal
//! batches made before timing and cycled in order; per-step noise is drawn on the host, as in
//! training. One process runs one workload (the CLI spawns
//! itself), so peak RSS is its own.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use neurogen_models::{Observation, WindowShape};

use crate::registry::Build;
use crate::rng::{normals, rng, Stream};
use crate::trainer::{host_tensor, Batch, StepArgs, Trainer};
use crate::{ConfigError, Experiment, TrainError};

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
    /// W5: DDPM denoiser training step, batch 64.
    Diffusion,
    /// W5: one call sampling 64 windows by DDIM (η = 0) over 50 steps, no autograd.
    DiffusionSample,
    /// W6: WaveNet training step (teacher forcing), batch 16.
    WaveNet,
    /// W6: one call generating 16 windows of 256 steps, one step at a time with each layer's
    /// past kept, no autograd.
    WaveNetSample,
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
    pub const ALL: [Workload; 11] = [
        Workload::Sgemm,
        Workload::Vae,
        Workload::RealNvp,
        Workload::RealNvpSample,
        Workload::RealNvpLogProb,
        Workload::Gan,
        Workload::LatentOde,
        Workload::Diffusion,
        Workload::DiffusionSample,
        Workload::WaveNet,
        Workload::WaveNetSample,
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
            Workload::Diffusion => "diffusion",
            Workload::DiffusionSample => "diffusion_sample",
            Workload::WaveNet => "wavenet",
            Workload::WaveNetSample => "wavenet_sample",
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
            Workload::Diffusion | Workload::DiffusionSample => Some((
                "configs/bench/diffusion.toml",
                include_str!("../../../configs/bench/diffusion.toml"),
            )),
            Workload::WaveNet | Workload::WaveNetSample => Some((
                "configs/bench/wavenet.toml",
                include_str!("../../../configs/bench/wavenet.toml"),
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
            Workload::Diffusion | Workload::DiffusionSample => 64,
            Workload::WaveNet | Workload::WaveNetSample => 16,
            Workload::Sgemm => SGEMM_N,
        }
    }

    /// The window shape of the workload's data.
    pub fn shape(self) -> WindowShape {
        let (channels, time, sfreq) = match self {
            Workload::Vae | Workload::Gan | Workload::Diffusion | Workload::DiffusionSample => {
                (16, 128, 128.0)
            }
            Workload::RealNvp | Workload::RealNvpSample | Workload::RealNvpLogProb => {
                (4, 16, 128.0)
            }
            Workload::LatentOde => (16, 100, 99.0),
            Workload::WaveNet | Workload::WaveNetSample => (16, 256, 128.0),
            Workload::Sgemm => (1, SGEMM_N, 1.0),
        };
        WindowShape {
            inputs: 0,
            channels,
            time,
            sfreq,
            classes: 0,
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
            // 3 × 64 × 17,891,328 and 64 × 50 × 17,891,328 (W5's forward FLOPs per window).
            Workload::Diffusion => 3_435_134_976,
            Workload::DiffusionSample => 57_252_249_600,
            // 3 × 16 × 103,925,760 (W6's forward FLOPs per window).
            Workload::WaveNet => 4_988_436_480,
            // 16 × 256 × 407,552: W6's forward FLOPs per predicted position (103,925,760 / 255),
            // for every generated step of every window.
            Workload::WaveNetSample => 1_669_332_992,
            Workload::Sgemm => 2 * (SGEMM_N as u64).pow(3),
        }
    }

    /// The reference protocol: 10 warm-up steps and 5 × 50 timed for training steps; 2 and
    /// 5 × 5 for the 10,000-point calls; 1 and 5 × 2 for DDIM and WaveNet sampling; 3 and
    /// 5 × 10 for sgemm.
    pub fn protocol(self) -> Protocol {
        let (warmup, steps) = match self {
            Workload::RealNvpSample | Workload::RealNvpLogProb => (2, 5),
            Workload::Sgemm => (3, 10),
            Workload::DiffusionSample | Workload::WaveNetSample => (1, 2),
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
/// Batches in the input pool.
const POOL: usize = 16;

/// What a model workload times (sgemm has no model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Training steps.
    Train,
    /// Sampling calls, no autograd.
    Sample,
    /// Likelihood calls, no autograd.
    LogProb,
}

impl Workload {
    fn measure(self) -> Option<Measure> {
        match self {
            Workload::Sgemm => None,
            Workload::RealNvpSample | Workload::DiffusionSample | Workload::WaveNetSample => {
                Some(Measure::Sample)
            }
            Workload::RealNvpLogProb => Some(Measure::LogProb),
            Workload::Vae
            | Workload::RealNvp
            | Workload::Gan
            | Workload::LatentOde
            | Workload::Diffusion
            | Workload::WaveNet => Some(Measure::Train),
        }
    }

    /// The trainer `neurogen train` would build for the workload's experiment on `device` (no
    /// data-dependent initialisation: timing does not depend on the weights).
    pub fn trainer(self, exp: &Experiment, device: &Device) -> Box<dyn Trainer> {
        let build = Build {
            shape: self.shape(),
            kind: exp.data.kind(),
            train: &exp.train,
            seed: exp.seed,
            device,
        };
        exp.model.family().trainer(&build, None)
    }
}

/// Times `workload` on `device` (a plain device; training runs on its autodiff twin).
pub fn run(workload: Workload, device: &Device, p: Protocol) -> Result<Timing, TrainError> {
    device.seed(0);
    let b = workload.batch();
    let (Some(measure), Some(exp)) = (workload.measure(), workload.experiment()?) else {
        let a = Tensor::<2>::random([b, b], Distribution::Normal(0.0, 1.0), device);
        let m = Tensor::<2>::random([b, b], Distribution::Normal(0.0, 1.0), device);
        // One element of the product is read at the end of a repeat to wait for it.
        return Ok(time(p, 0, |_| {
            Some(a.clone().matmul(m.clone()).slice([0..1, 0..1]).reshape([1]))
        }));
    };
    let shape = workload.shape();
    let mut trainer = workload.trainer(&exp, device);
    let params = trainer.num_params();
    let timing = match measure {
        Measure::Train => {
            let updates = trainer.batches_per_step() as usize;
            let pool = pool(shape, b, &device.clone().autodiff());
            time(p, params, |i| {
                let step = i as u64 + 1;
                // The reference's pool, cycled in order: each update takes the next batch.
                let batch = Batch {
                    windows: (0..updates)
                        .map(|u| pool[(i * updates + u) % POOL].clone())
                        .collect(),
                    labels: vec![],
                };
                let args = StepArgs {
                    step,
                    lr_scale: 1.0,
                    clip: exp.train.grad_clip,
                    grads: false,
                };
                // The step reads its losses to the host, which waits for its work.
                trainer.step(batch, args);
                None
            })
        }
        // Sampling and scoring run without autograd, as `sample` and `score` do.
        Measure::Sample => {
            let sampler = trainer.sampler();
            let d = sampler.noise_dim();
            time(p, params, |i| {
                let z = normals(&mut rng(0, Stream::TrainNoise, i as u64), b * d);
                let z = host_tensor(z, [b, d], device); // [b, noise_dim]
                let (Observation::Point { values: x }
                | Observation::Gaussian { mean: x, .. }
                | Observation::GaussianAr1 { mean: x, .. }
                | Observation::Poisson { rate: x }) = sampler.generate(z, None);
                Some(x.slice([0..1, 0..1, 0..1]).reshape([1]))
            })
        }
        Measure::LogProb => {
            let sampler = trainer.sampler();
            let density = sampler.density().ok_or_else(|| {
                TrainError::Input(format!("{}: the model has no likelihood", workload.name()))
            })?;
            let batches = pool(shape, b, device);
            let (draws, d) = density.score_noise(1);
            let noise = Tensor::zeros([draws, b, d], device); // unused by continuous data
            let mut failed = None;
            let t = time(p, params, |i| {
                let x = batches[i % POOL].clone();
                match density.log_likelihood(x, None, noise.clone()) {
                    Ok((ll, _)) => Some(ll.narrow(0, 0, 1)),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            });
            if let Some(e) = failed {
                return Err(TrainError::Input(e.to_string()));
            }
            t
        }
    };
    Ok(timing)
}

/// The reference's input pool: `POOL` standard-normal batches of `b` windows of `shape`, made
/// once before timing.
fn pool(shape: WindowShape, b: usize, device: &Device) -> Vec<Tensor<3>> {
    (0..POOL)
        .map(|_| {
            let dims = [b, shape.channels, shape.time];
            Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
        })
        .collect()
}

/// Runs `step(i)` `p.warmup` times, then `p.repeats` × `p.steps` times, reading the last
/// result of each repeat (when the call returns one) to the host so that lazy backends have
/// finished the work timed.
fn time(p: Protocol, params: usize, mut step: impl FnMut(usize) -> Option<Tensor<1>>) -> Timing {
    let mut i = 0;
    let mut call = |i: &mut usize| {
        let out = step(*i);
        *i += 1;
        out
    };
    let mut last = None;
    for _ in 0..p.warmup {
        last = call(&mut i);
    }
    if let Some(t) = last {
        let _ = t.into_scalar::<f32>();
    }
    let mut rates: Vec<f64> = (0..p.repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            let mut last = None;
            for _ in 0..p.steps.max(1) {
                last = call(&mut i);
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
            let params = w.trainer(&exp, &device).num_params();
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
                Workload::Diffusion | Workload::DiffusionSample => 103_440,
                Workload::WaveNet | Workload::WaveNetSample => 205_984,
                Workload::Sgemm => continue,
            };
            assert_eq!(params, expected, "{}", w.name());
            // The shape the workload declares is the one its data make.
            let (path, _) = w.config().unwrap();
            let data = exp.build_data(Path::new(path)).unwrap().signals;
            assert_eq!(w.shape(), WindowShape::from(&data.meta), "{}", w.name());
            if w.measure() == Some(Measure::Train) {
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
