//! The two-player training loop of the GAN.

use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use neurogen_data::{Dataset, SignalKind, Signals};
use neurogen_models::{Critic, GanConfig, GanLoss, Generator};
use serde_json::{json, Map, Value};

use crate::fit::{adam, ckpt_err, host_tensor, resume_point, scalar, LossSums};
use crate::guard::{clip_grad_norm, first_non_finite, Fault, Guard};
use crate::progress::Progress;
use crate::rng::{batch_indices, normals, rng, uniforms, Stream};
use crate::run_dir::{write_line, Checkpoint, CheckpointState};
use crate::{Experiment, FitOptions, FitReport, RunDir, TrainError};

/// Both players, their optimisers' settings and the sampling average.
#[derive(Debug, Clone)]
pub struct Players {
    /// The generator (on the autodiff device).
    pub generator: Generator,
    /// The critic (on the autodiff device).
    pub critic: Critic,
    /// Exponential moving average of the generator (plain device), when configured.
    pub ema: Option<Generator>,
}

/// File of the critic's weights in a checkpoint.
pub fn critic_file(c: &Checkpoint) -> std::path::PathBuf {
    c.dir.join("critic.bpk")
}

/// File of the critic's optimiser state in a checkpoint.
pub fn critic_optim_file(c: &Checkpoint) -> std::path::PathBuf {
    c.dir.join("optim_critic.bpk")
}

/// File of the generator's moving average in a checkpoint.
pub fn ema_file(c: &Checkpoint) -> std::path::PathBuf {
    c.dir.join("ema.bpk")
}

/// One training step's data and noise, all drawn on the host from `(seed, step)`.
#[derive(Clone)]
pub(crate) struct StepInput {
    /// Real windows for each critic update, `[batch, channels, time]`.
    pub real: Vec<Tensor<3>>,
    /// Generator noise for each critic update, then for the generator update.
    pub z: Vec<Tensor<2>>,
}

pub(crate) fn step_input(
    exp: &Experiment,
    cfg: &GanConfig,
    data: &Signals,
    step: u64,
    device: &Device,
) -> StepInput {
    let (b, nc, dim) = (
        exp.train.batch_size,
        cfg.n_critic as u64,
        data.meta.channels * data.meta.time,
    );
    let shape = [b, data.meta.channels, data.meta.time];
    let real = (0..nc)
        .map(|c| {
            let idx = batch_indices(exp.seed, (step - 1) * nc + c + 1, data.n, b);
            let x = data.batch(&idx, device); // [batch, channels, time]
            if data.meta.kind == SignalKind::Counts {
                // Dequantised counts k + u: the generator can match a continuous density,
                // and the floor of its samples gives counts back.
                let u = uniforms(
                    &mut rng(exp.seed, Stream::Dequantise, step * nc + c),
                    b * dim,
                );
                x + host_tensor(u, shape, device)
            } else {
                x
            }
        })
        .collect();
    let z = (0..=nc)
        .map(|c| {
            let mut r = rng(exp.seed, Stream::TrainNoise, step * (nc + 1) + c);
            host_tensor(
                normals(&mut r, b * cfg.noise_dim),
                [b, cfg.noise_dim],
                device,
            )
        })
        .collect();
    StepInput { real, z }
}

/// The losses of one step, for logging.
pub(crate) struct StepLosses {
    pub critic: Tensor<1>,
    pub generator: Tensor<1>,
    d_real: Tensor<1>,
    d_fake: Tensor<1>,
    /// Largest global gradient norm of the critic's updates and the generator's, before
    /// clipping (only when `train.grad_clip` > 0).
    grad_norms: Option<(f64, f64)>,
}

impl StepLosses {
    /// Every figure of the step, read to the host.
    fn values(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("loss", scalar(&self.critic)),
            ("loss_critic", scalar(&self.critic)),
            ("loss_generator", scalar(&self.generator)),
            ("d_real", scalar(&self.d_real)),
            ("d_fake", scalar(&self.d_fake)),
        ];
        if let Some((c, g)) = self.grad_norms {
            v.extend([("grad_norm_critic", c), ("grad_norm_generator", g)]);
        }
        v
    }
}

/// `n_critic` critic updates on detached fakes, then one generator update through a fresh
/// forward pass of the updated critic.
pub(crate) fn gan_step(
    mut p: Players,
    cfg: &GanConfig,
    input: StepInput,
    lr: (f64, f64),
    clip: f64,
    opt_g: &mut ModuleOptimizer,
    opt_c: &mut ModuleOptimizer,
) -> (Players, StepLosses) {
    let loss = cfg.loss;
    let mut last = None;
    let mut norm_c = 0.0f64;
    for (real, z) in input.real.into_iter().zip(&input.z) {
        let mut critic = p.critic;
        if cfg.spectral_norm {
            critic = critic.power_iteration();
        }
        let fake = p.generator.forward(z.clone()).detach(); // [batch, channels, time]
        let (d_real, d_fake) = (critic.forward(real), critic.forward(fake));
        let l = loss.critic(d_real.clone(), d_fake.clone());
        let mut grads = GradientsParams::from_grads(l.backward(), &critic);
        if clip > 0.0 {
            let norm;
            (grads, norm) = clip_grad_norm(&critic, grads, clip);
            // A NaN must survive later finite updates, and `f64::max` drops NaN operands.
            norm_c = if norm_c.is_nan() || norm.is_nan() {
                f64::NAN
            } else {
                norm_c.max(norm)
            };
        }
        critic = opt_c.step(lr.1, critic, grads);
        if loss == GanLoss::WganClip {
            critic = critic.clip(cfg.clip as f32);
        }
        p.critic = critic;
        last = Some((l, d_real.mean(), d_fake.mean()));
    }
    let z = input.z.last().cloned().expect("n_critic + 1 noise draws");
    let gl = loss.generator(p.critic.forward(p.generator.forward(z)));
    // Only the generator's parameters are collected, so this step leaves the critic as it is.
    let mut grads = GradientsParams::from_grads(gl.backward(), &p.generator);
    let mut norm_g = 0.0;
    if clip > 0.0 {
        (grads, norm_g) = clip_grad_norm(&p.generator, grads, clip);
    }
    p.generator = opt_g.step(lr.0, p.generator, grads);
    if let (Some(ema), Some(decay)) = (p.ema.take(), cfg.ema) {
        p.ema = Some(blend(ema, &p.generator.valid(), decay as f32));
    }
    let (critic, d_real, d_fake) = last.expect("n_critic ≥ 1");
    (
        p,
        StepLosses {
            critic,
            generator: gl,
            d_real,
            d_fake,
            grad_norms: (clip > 0.0).then_some((norm_c, norm_g)),
        },
    )
}

/// Trains both players on `data.train`, logging to and checkpointing in `run`; a fresh run
/// checkpoints its initial players as step 0.
pub fn fit_gan(
    mut p: Players,
    cfg: &GanConfig,
    data: &Dataset,
    exp: &Experiment,
    run: &RunDir,
    device: &Device,
    opts: FitOptions,
) -> Result<(Players, FitReport), TrainError> {
    let t = &exp.train;
    let ad = device.clone().autodiff();
    let (mut opt_g, mut opt_c) = (adam(t).init(), adam(t).init());
    let lr = (t.lr, cfg.critic_lr.unwrap_or(t.lr));
    let (mut step, mut interval, mut guard) = (0, LossSums::default(), Guard::new(None));
    if opts.resume {
        let (ckpt, state) = resume_point(run, "gan")?;
        (p, opt_g, opt_c) = restore(p, &ckpt, t)?;
        (step, interval) = (state.step, state.interval.clone());
        guard = Guard::new(Some(&state));
    }
    let metrics_path = run.metrics_file();
    let mut metrics = run.open_metrics(step, t.log_every, t.valid_every, false)?;
    let (batch, n_critic) = (t.batch_size, cfg.n_critic as u64);
    let state_at = |step, interval: &LossSums, guard: &Guard| {
        CheckpointState::at(step, exp, data.train.n, n_critic, 1.0, interval, guard)
    };
    let save = |p: &Players, opt_g: &ModuleOptimizer, opt_c: &ModuleOptimizer, state| {
        run.save_checkpoint(&state, "gan", t.keep_checkpoints, |c| {
            let files = [
                (
                    p.generator.clone().save_file(c.model_file()),
                    c.model_file(),
                ),
                (p.critic.clone().save_file(critic_file(c)), critic_file(c)),
            ];
            for (r, f) in files {
                r.map_err(|e| ckpt_err(&f, e))?;
            }
            if let Some(ema) = &p.ema {
                ema.clone()
                    .save_file(ema_file(c))
                    .map_err(|e| ckpt_err(&ema_file(c), e))?;
            }
            opt_g
                .save(c.optim_file())
                .map_err(|e| ckpt_err(&c.optim_file(), e))?;
            opt_c
                .save(critic_optim_file(c))
                .map_err(|e| ckpt_err(&critic_optim_file(c), e))
        })
    };
    if !opts.resume {
        save(&p, &opt_g, &opt_c, state_at(0, &interval, &guard))?;
    }
    let progress = Progress::new(opts.verbosity, step, t.steps);
    let (began, mut since) = (Instant::now(), Instant::now());
    let mut report = FitReport::starting_at(step);
    while step < t.steps {
        step += 1;
        let input = step_input(exp, cfg, &data.train, step, &ad);
        let lr = (lr.0 * guard.lr_scale, lr.1 * guard.lr_scale);
        let (next, l) = gan_step(p, cfg, input, lr, t.grad_clip, &mut opt_g, &mut opt_c);
        p = next;
        let values = l.values();
        if let Some(mut fault) = Fault::find(step, &values) {
            fault.param = first_non_finite(&p.generator)
                .map(|s| format!("generator.{s}"))
                .or_else(|| first_non_finite(&p.critic).map(|s| format!("critic.{s}")));
            let (ckpt, state, file) = guard.roll_back(run, "gan", fault, t)?;
            (p, opt_g, opt_c) = restore(p, &ckpt, t)?;
            (step, interval, metrics, since) = (state.step, state.interval, file, Instant::now());
            continue;
        }
        interval.add_named(&values, 1.0);
        let elapsed = since.elapsed().as_secs_f64().max(1e-9);
        let rate = interval.weight.max(1.0) * batch as f64 / elapsed;
        progress.update(
            step,
            interval.mean("loss"),
            rate,
            (t.steps - step) as f64 * elapsed / interval.weight.max(1.0),
        );
        let on_grid = step.is_multiple_of(t.log_every);
        if on_grid || step == t.steps {
            let mut line = interval.means();
            extend(
                &mut line,
                [
                    ("step", json!(step)),
                    ("split", json!("train")),
                    ("lr", json!(lr.0)),
                    ("samples_per_s", json!(rate)),
                ],
            );
            write_line(&mut metrics, &metrics_path, &Value::Object(line))?;
            report.train_loss = interval.mean("loss");
            if on_grid {
                (interval, since) = (LossSums::default(), Instant::now());
            }
        }
        if (step.is_multiple_of(t.valid_every) || step == t.steps) && data.valid.n > 1 {
            let sampler = p.ema.clone().unwrap_or_else(|| p.generator.valid());
            let mut line = quality(
                &sampler,
                &p.critic.valid(),
                cfg,
                &data.valid,
                exp.seed,
                device,
            );
            extend(
                &mut line,
                [("step", json!(step)), ("split", json!("valid"))],
            );
            let mmd = line.get("mmd2").and_then(Value::as_f64).unwrap_or(f64::NAN);
            let div = line
                .get("diversity")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN);
            write_line(&mut metrics, &metrics_path, &Value::Object(line.clone()))?;
            progress.println(&format!(
                "step {step}: valid mmd2 {mmd:.4}, diversity {div:.3}"
            ));
            report.valid_loss = line.get("loss").and_then(Value::as_f64);
            report.valid = Some(line);
        }
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps {
            save(&p, &opt_g, &opt_c, state_at(step, &interval, &guard))?;
        }
        report.steps = step;
    }
    progress.finish();
    report.wall_s = began.elapsed().as_secs_f64();
    Ok((p, report))
}

/// Both players, their average and both optimisers as a checkpoint saved them.
fn restore(
    mut p: Players,
    ckpt: &Checkpoint,
    t: &crate::TrainConfig,
) -> Result<(Players, ModuleOptimizer, ModuleOptimizer), TrainError> {
    p.generator = p
        .generator
        .try_load_file(ckpt.model_file())
        .map_err(|e| ckpt_err(&ckpt.model_file(), e))?;
    p.critic = p
        .critic
        .try_load_file(critic_file(ckpt))
        .map_err(|e| ckpt_err(&critic_file(ckpt), e))?;
    if let Some(ema) = p.ema.take() {
        p.ema = Some(
            ema.try_load_file(ema_file(ckpt))
                .map_err(|e| ckpt_err(&ema_file(ckpt), e))?,
        );
    }
    let opt_g = adam(t)
        .init()
        .load(ckpt.optim_file())
        .map_err(|e| ckpt_err(&ckpt.optim_file(), e))?;
    let opt_c = adam(t)
        .init()
        .load(critic_optim_file(ckpt))
        .map_err(|e| ckpt_err(&critic_optim_file(ckpt), e))?;
    Ok((p, opt_g, opt_c))
}

fn extend<const N: usize>(line: &mut Map<String, Value>, items: [(&str, Value); N]) {
    line.extend(items.map(|(k, v)| (k.to_string(), v)));
}

/// Validation figures: the critic's loss on valid windows against fakes, the MMD² between
/// generated and valid windows, and the diversity ratio (mean pairwise distance of samples over
/// that of the data; near 0 = mode collapse), on up to 256 windows of each with fixed noise.
fn quality(
    g: &Generator,
    critic: &Critic,
    cfg: &GanConfig,
    valid: &Signals,
    seed: u64,
    device: &Device,
) -> Map<String, Value> {
    let n = valid.n.min(256);
    let idx: Vec<usize> = (0..n).collect();
    let real = valid.batch(&idx, device); // [n, channels, time]
    let z = host_tensor(
        normals(&mut rng(seed, Stream::ValidNoise, 0), n * cfg.noise_dim),
        [n, cfg.noise_dim],
        device,
    );
    let fake = g.forward(z); // [n, channels, time]
    let loss = cfg
        .loss
        .critic(critic.forward(real.clone()), critic.forward(fake.clone()));
    let dim = valid.meta.channels * valid.meta.time;
    let read = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
    let (r, f) = (read(real), read(fake));
    let spread = neurogen_eval::mean_pairwise_distance(&r, dim);
    let mut line = Map::new();
    extend(
        &mut line,
        [
            ("loss", json!(scalar(&loss))),
            ("mmd2", json!(neurogen_eval::mmd2_rbf(&f, &r, dim))),
            (
                "diversity",
                json!(neurogen_eval::mean_pairwise_distance(&f, dim) / spread),
            ),
        ],
    );
    line
}

/// Collects a module's float parameters in visiting order, flattened.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// `θ ← d·θ + (1 − d)·θ_src` for each float parameter, in visiting order.
struct Blend {
    src: std::vec::IntoIter<Tensor<1>>,
    decay: f32,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.src.next() {
            Some(s) => {
                let d = self.decay;
                param.map(|t| {
                    let dims = t.dims();
                    t.mul_scalar(d) + s.reshape(dims).mul_scalar(1.0 - d)
                })
            }
            None => param,
        }
    }
}

/// The moving average `ema` after one step towards `current` (same architecture).
fn blend(ema: Generator, current: &Generator, decay: f32) -> Generator {
    let mut c = Collect(Vec::new());
    current.visit(&mut c);
    ema.map(&mut Blend {
        src: c.0.into_iter(),
        decay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use neurogen_models::WindowShape;

    fn params<M: Module>(m: &M) -> Vec<f32> {
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn a_step_updates_the_critic_on_detached_fakes_and_the_generator_alone_after() {
        let ad = Device::flex().autodiff();
        ad.seed(3);
        let shape = WindowShape {
            channels: 2,
            time: 16,
            sfreq: 10.0,
        };
        let cfg = GanConfig {
            hidden: vec![8, 4],
            noise_dim: 6,
            n_critic: 2,
            ema: Some(0.5),
            ..Default::default()
        };
        let g = cfg.init_generator(shape, SignalKind::Continuous, &ad);
        let p = Players {
            ema: Some(g.valid()),
            generator: g,
            critic: cfg.init_critic(shape, &ad),
        };
        let before = (params(&p.generator), params(&p.critic));
        let input = || StepInput {
            real: (0..2)
                .map(|_| Tensor::random([5, 2, 16], Distribution::Normal(0.0, 1.0), &ad))
                .collect(),
            z: (0..3)
                .map(|_| Tensor::random([5, 6], Distribution::Normal(0.0, 1.0), &ad))
                .collect(),
        };
        let adam = burn::optim::AdamConfig::new();
        let input = input();
        // Same critic learning rate, generator learning rate 0 or not: the critics come out
        // identical (the generator update does not touch the critic), the generators do not.
        let (mut og, mut oc) = (adam.init(), adam.init());
        let (p0, _) = gan_step(
            p.clone(),
            &cfg,
            input.clone(),
            (0.0, 1e-2),
            0.0,
            &mut og,
            &mut oc,
        );
        assert_eq!(params(&p0.generator), before.0, "lr 0 leaves G as it is");
        assert_ne!(params(&p0.critic), before.1, "the critic steps");
        let (mut og, mut oc) = (adam.init(), adam.init());
        let (p1, l) = gan_step(p, &cfg, input, (1e-2, 1e-2), 0.0, &mut og, &mut oc);
        assert_eq!(
            params(&p1.critic),
            params(&p0.critic),
            "the generator step leaves the critic"
        );
        assert_ne!(params(&p1.generator), before.0, "the generator steps");
        // EMA with decay ½ sits halfway between the old and the new generator.
        let (old, new, ema) = (
            before.0,
            params(&p1.generator),
            params(p1.ema.as_ref().unwrap()),
        );
        for ((o, n), e) in old.iter().zip(&new).zip(&ema) {
            assert!((e - 0.5 * (o + n)).abs() < 1e-6);
        }
        assert!(scalar(&l.critic).is_finite() && scalar(&l.generator).is_finite());
    }
}
