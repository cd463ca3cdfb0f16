//! GAN, VAE-GAN, RealNVP and latent ODE through the real binary: every shipped config trains
//! (shrunk) and samples, the two-player and dropout runs resume exactly, and `score` ranks
//! artefact windows below clean ones.

use std::path::Path;

mod common;

use common::{metrics_without_timing, neurogen, ok, read_npy, root, tiny_train_args};

/// Trains `config` shrunk to `steps` steps into `out`, with extra `--set` overrides.
fn train_tiny(cwd: &Path, config: &str, out: &Path, steps: u64, extra: &[&str]) -> common::Run {
    let args = tiny_train_args(config, out, steps, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(cwd, &args)
}

fn last(metrics: &[serde_json::Value], split: &str) -> serde_json::Value {
    metrics
        .iter()
        .rev()
        .find(|m| m["split"] == split)
        .cloned()
        .unwrap_or_else(|| panic!("no {split} line"))
}

#[test]
fn every_family_config_trains_and_samples_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    // (config, keys every train line has, keys the valid line has)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "gan-kuramoto",
            &["loss_critic", "loss_generator", "d_real", "d_fake"],
            &["mmd2", "diversity"],
        ),
        (
            "gan-lorenz",
            &["loss_critic", "loss_generator"],
            &["mmd2", "diversity"],
        ),
        (
            "realnvp-kuramoto",
            &["nll", "bits_per_dim"],
            &["bits_per_dim"],
        ),
        (
            "realnvp-lorenz",
            &["nll", "bits_per_dim"],
            &["bits_per_dim"],
        ),
        (
            "latent-ode-lorenz",
            &["nll", "kl", "neg_elbo", "nfe"],
            &["neg_elbo", "nfe"],
        ),
        (
            "latent-ode-kuramoto",
            &["nll", "kl", "forecast_nll", "forecast_mse", "nfe"],
            &["forecast_mse"],
        ),
        (
            "vae-gan-kuramoto",
            &[
                "loss_elbo",
                "neg_elbo",
                "loss_adversarial",
                "loss_critic",
                "d_real",
                "d_fake",
            ],
            &["neg_elbo"],
        ),
        ("diffusion-kuramoto", &["mse"], &["mse"]),
        ("diffusion-lorenz", &["mse"], &["mse"]),
        (
            "wavenet-kuramoto",
            &["nll", "bits_per_dim", "nll_per_value"],
            &["nll", "bits_per_dim"],
        ),
        ("wavenet-lorenz", &["nll", "bits_per_dim"], &["nll"]),
    ];
    for (config, train_keys, valid_keys) in cases {
        let run = tmp.path().join(config);
        let r = train_tiny(tmp.path(), config, &run, 20, &[]);
        assert!(
            r.stdout.contains("trained 20 steps"),
            "{config}: {}",
            r.stdout
        );
        let metrics = metrics_without_timing(&run);
        let (t, v) = (last(&metrics, "train"), last(&metrics, "valid"));
        for key in train_keys.iter().chain(&["loss", "step"]) {
            assert!(
                t[key].as_f64().is_some_and(f64::is_finite),
                "{config}: {key} in {t}"
            );
        }
        for key in *valid_keys {
            assert!(
                v[key].as_f64().is_some_and(f64::is_finite),
                "{config}: {key} in {v}"
            );
        }
        if config.starts_with("latent-ode") {
            // RK4 / midpoint with one step per sample: 4 or 2 evaluations per interval.
            assert!(t["nfe"].as_f64().unwrap() >= 19.0, "{config}: {t}");
        }
        if config.starts_with("gan") || config.starts_with("vae-gan") {
            assert!(run.join("checkpoints/20/critic.bpk").is_file());
            assert!(run.join("checkpoints/20/optim_critic.bpk").is_file());
        }
        if *config == "gan-lorenz" || config.starts_with("diffusion") {
            assert!(
                run.join("checkpoints/20/ema.bpk").is_file(),
                "the config keeps an EMA"
            );
        }

        let out = tmp.path().join(format!("{config}.npy"));
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "7",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let npy = read_npy(&out);
        let shape = if config.ends_with("lorenz") {
            vec![7, 6, 20]
        } else {
            vec![7, 3, 32]
        };
        assert_eq!(npy.shape, shape, "{config}");
        assert!(npy.values.iter().all(|v| v.is_finite()), "{config}");
        if config.ends_with("lorenz") {
            assert!(
                npy.values.iter().all(|v| *v >= 0.0 && v.fract() == 0.0),
                "{config}: counts are non-negative integers"
            );
        } else {
            let sd = std_dev(&npy.values);
            assert!(sd > 0.0, "{config}: samples vary");
        }
    }
}

fn std_dev(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    (v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn resumed_two_player_diffusion_and_dropout_runs_equal_the_uninterrupted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let gan: &[&str] = &[
        "model.n_critic=2",
        "model.ema=0.9",
        "model.spectral_norm=true",
    ];
    // The diffusion run keeps an EMA of its weights, which must resume too.
    let diffusion: &[&str] = &["model.ema=0.9"];
    for (config, extra) in [
        ("gan-kuramoto", gan),
        ("diffusion-kuramoto", diffusion),
        // Stopping by a smaller train.steps would move a cosine schedule (its exact resume is
        // tested in reliability.rs, stopped by `reproduce --steps`).
        (
            "wavenet-kuramoto",
            &["train.lr_schedule=\"constant\""] as &[&str],
        ),
        ("vae-gan-kuramoto", &[]),
        // Dropout masks are training noise: they too must come back on resume.
        ("realnvp-kuramoto", &["model.dropout=0.2"]),
    ] {
        let (full, part) = (
            tmp.path().join(format!("{config}-full")),
            tmp.path().join(format!("{config}-part")),
        );
        train_tiny(tmp.path(), config, &full, 30, extra);
        // Stop off the logging grid (step 18; lines every 5, checkpoints every 10), resume.
        train_tiny(tmp.path(), config, &part, 18, extra);
        let mut args = tiny_train_args(config, &part, 30, extra);
        args.push("--resume".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(tmp.path(), &args);
        assert_eq!(
            metrics_without_timing(&part),
            metrics_without_timing(&full),
            "{config}"
        );
        // The samples come from the same (averaged) weights.
        let draw = |run: &Path| {
            let out = run.join("s.npy");
            ok(
                tmp.path(),
                &[
                    "sample",
                    run.to_str().unwrap(),
                    "-n",
                    "3",
                    "-o",
                    out.to_str().unwrap(),
                    "-q",
                ],
            );
            read_npy(&out).values
        };
        assert_eq!(draw(&part), draw(&full), "{config}");
    }
}

/// The windows of shipped `config`'s data, shrunk as the tiny runs are, written and read back.
fn tiny_kuramoto_windows(dir: &Path, config: &str) -> common::Npy {
    let data_file = dir.join("windows.npy");
    let cfg = root().join(format!("configs/{config}.toml"));
    let mut args = vec![
        "data",
        cfg.to_str().unwrap(),
        "-o",
        data_file.to_str().unwrap(),
    ];
    for s in common::TINY_KURAMOTO_DATA {
        args.extend(["--set", s]);
    }
    ok(dir, &args);
    read_npy(&data_file)
}

#[test]
fn score_ranks_artefact_windows_below_clean_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tiny_kuramoto_windows(tmp.path(), "realnvp-kuramoto");
    let [n, c, t] = [clean.shape[0], clean.shape[1], clean.shape[2]];
    let win = c * t;
    let sd = std_dev(&clean.values) as f32;

    // 20 clean windows (the last ones: the test split), 5 flat lines stuck at a rail (+4 sd),
    // 5 clean windows with a few large spikes (±12 sd).
    let mut values: Vec<f32> = clean.values[(n - 20) * win..].to_vec();
    for i in 0..5 {
        values.extend(std::iter::repeat_n(
            4.0 * sd * if i % 2 == 0 { 1.0 } else { -1.0 },
            win,
        ));
    }
    for i in 0..5 {
        let mut w = clean.values[(n - 20 + i) * win..(n - 19 + i) * win].to_vec();
        for k in [3, 11, 40, 77] {
            w[(k + 7 * i) % win] += 12.0 * sd * if k % 2 == 0 { 1.0 } else { -1.0 };
        }
        values.extend(w);
    }
    let probe = tmp.path().join("probe.npy");
    neurogen_data::npy::write_f32(&probe, &[30, c, t], &values).unwrap();

    for (config, family_steps, bound) in [
        ("realnvp-kuramoto", 150u64, "exact"),
        ("latent-ode-kuramoto", 60, "iwae_k=16"),
    ] {
        let run = tmp.path().join(config);
        let extra = if config.starts_with("latent") {
            vec!["model.extrapolate=0.0", "model.obs_keep=1.0"]
        } else {
            vec![]
        };
        train_tiny(tmp.path(), config, &run, family_steps, &extra);
        let csv = tmp.path().join(format!("{config}.csv"));
        ok(
            tmp.path(),
            &[
                "score",
                run.to_str().unwrap(),
                probe.to_str().unwrap(),
                "-k",
                "16",
                "-o",
                csv.to_str().unwrap(),
            ],
        );
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("window,bound,log_likelihood,bits_per_dim"),
            "{header}"
        );
        let scores: Vec<f64> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f[1], bound, "{config}: {l}");
                f[2].parse().unwrap()
            })
            .collect();
        assert_eq!(scores.len(), 30);
        let worst_clean = scores[..20].iter().copied().fold(f64::INFINITY, f64::min);
        for (i, s) in scores[20..].iter().enumerate() {
            assert!(
                *s < worst_clean,
                "{config}: artefact {i} scores {s}, the worst clean window {worst_clean}"
            );
        }
    }
}

#[test]
fn wavenet_continues_past_its_window_and_localises_surprise_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("wavenet");
    train_tiny(tmp.path(), "wavenet-kuramoto", &run, 60, &[]);
    let r = run.to_str().unwrap();
    // Recordings three times the 32-sample window, as NPY and as EDF.
    for name in ["long.npy", "long.edf"] {
        let out = tmp.path().join(name);
        let o = ok(
            tmp.path(),
            &[
                "sample",
                r,
                "-n",
                "2",
                "--length",
                "100",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.stdout.contains("windows/s"), "{}", o.stdout);
    }
    let long = read_npy(&tmp.path().join("long.npy"));
    assert_eq!(long.shape, vec![2, 3, 100]);
    assert!(long.values.iter().all(|v| v.is_finite()));
    // Past the window the recording neither decays to a constant nor blows up: its second
    // half is about as variable as its first.
    let row = &long.values[..100];
    let (a, b) = (std_dev(&row[..50]), std_dev(&row[50..]));
    assert!(a > 0.0 && b > 0.2 * a && b < 5.0 * a, "sd {a} then {b}");
    // Families that generate fixed windows refuse --length, naming the reason.
    let vae = tmp.path().join("vae");
    train_tiny(tmp.path(), "vae-kuramoto", &vae, 2, &[]);
    let out = neurogen(
        tmp.path(),
        &["sample", vae.to_str().unwrap(), "--length", "100"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--length") && out.stderr.contains("fixed windows of 32"),
        "{}",
        out.stderr
    );

    // Per-step surprise: a spike at step 20 of one window is where the surprise peaks, and the
    // steps sum to the window's exact log-likelihood.
    let clean = tiny_kuramoto_windows(tmp.path(), "wavenet-kuramoto");
    let [c, t] = [clean.shape[1], clean.shape[2]];
    let sd_all = std_dev(&clean.values) as f32;
    let mut values = clean.values[..4 * c * t].to_vec();
    values[3 * c * t + t + 20] += 15.0 * sd_all; // window 3, channel 1, step 20
    let probe = tmp.path().join("probe.npy");
    neurogen_data::npy::write_f32(&probe, &[4, c, t], &values).unwrap();
    let (csv, steps) = (tmp.path().join("s.csv"), tmp.path().join("steps.npy"));
    ok(
        tmp.path(),
        &[
            "score",
            r,
            probe.to_str().unwrap(),
            "-o",
            csv.to_str().unwrap(),
            "--per-sample",
            steps.to_str().unwrap(),
        ],
    );
    let surprise = read_npy(&steps);
    assert_eq!(surprise.shape, vec![4, t]);
    let w3 = &surprise.values[3 * t..];
    let peak = (0..t).max_by(|&i, &j| w3[i].total_cmp(&w3[j])).unwrap();
    assert_eq!(peak, 20, "surprise {w3:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    for (i, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[1], "exact");
        let ll: f64 = f[2].parse().unwrap();
        let sum: f64 = surprise.values[i * t..(i + 1) * t]
            .iter()
            .map(|v| -(*v as f64))
            .sum();
        assert!((ll - sum).abs() < 1e-3 * ll.abs().max(1.0), "{ll} vs {sum}");
    }
    // --per-sample on a model that does not factorise over time is refused.
    let out = neurogen(
        tmp.path(),
        &[
            "score",
            vae.to_str().unwrap(),
            probe.to_str().unwrap(),
            "--per-sample",
            steps.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no per-step likelihood"),
        "{}",
        out.stderr
    );
}

#[test]
fn burn_in_samples_from_the_same_weights_and_the_flag_overrides_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let (plain, burnt) = (cwd.join("plain"), cwd.join("burnt"));
    train_tiny(cwd, "wavenet-kuramoto", &plain, 20, &["model.burn_in=0"]);
    train_tiny(cwd, "wavenet-kuramoto", &burnt, 20, &["model.burn_in=40"]);
    // Burn-in is how a run samples, not what it learns: the two runs train alike.
    assert_eq!(
        metrics_without_timing(&plain),
        metrics_without_timing(&burnt)
    );
    let draw = |run: &Path, name: &str, extra: &[&str]| {
        let out = cwd.join(name);
        let mut args = vec!["sample", run.to_str().unwrap(), "-n", "3", "-q", "-o"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        ok(cwd, &args);
        read_npy(&out)
    };
    let key = draw(&burnt, "key.npy", &[]);
    let flag = draw(&plain, "flag.npy", &["--burn-in", "40"]);
    let none = draw(&burnt, "none.npy", &["--burn-in", "0"]);
    let unburnt = draw(&plain, "unburnt.npy", &[]);
    assert_eq!(key.shape, vec![3, 3, 32]);
    assert_eq!(
        key.values, flag.values,
        "--burn-in 40 is model.burn_in = 40"
    );
    assert_eq!(none.values, unburnt.values, "--burn-in 0 switches it off");
    let sidecar = common::read_json(&cwd.join("flag.json"));
    assert_eq!(sidecar["burn_in"], 40, "{sidecar}");
    assert_ne!(key.values, unburnt.values);
    // eval draws with the override and says so in its report.
    let report = cwd.join("eval-burnt");
    ok(
        cwd,
        &[
            "eval",
            plain.to_str().unwrap(),
            "--burn-in",
            "40",
            "-n",
            "8",
            "--discriminator-steps",
            "0",
            "-q",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let r = common::read_json(&report.join("report.json"));
    assert_eq!(r["meta"]["burn_in"], 40, "{}", r["meta"]);
    // Burn-in is not part of what must match on --resume.
    let mut resume = common::tiny_train_args("wavenet-kuramoto", &burnt, 30, &["model.burn_in=7"]);
    resume.push("--resume".into());
    ok(cwd, &resume.iter().map(String::as_str).collect::<Vec<_>>());
    // A driven run's samples start at the stimulus's first step.
    let stim = root().join("configs/wavenet-lorenz-stim.toml");
    common::fails(
        cwd,
        &[
            "train",
            stim.to_str().unwrap(),
            "--out",
            cwd.join("stim").to_str().unwrap(),
            "--set",
            "model.burn_in=8",
        ],
        2,
        "model.burn_in: a run driven by exogenous inputs starts its samples at the stimulus's first step",
    );
    // Families that draw whole windows, and eval without a run to draw from, refuse it.
    let vae = cwd.join("vae");
    train_tiny(cwd, "vae-kuramoto", &vae, 5, &[]);
    let v = vae.to_str().unwrap();
    common::fails(
        cwd,
        &["sample", v, "--burn-in", "8"],
        2,
        "--burn-in: a `vae` run draws whole windows at once; only autoregressive runs burn in",
    );
    let k = cwd.join("key.npy");
    common::fails(
        cwd,
        &[
            "eval",
            burnt.to_str().unwrap(),
            "--samples",
            k.to_str().unwrap(),
            "--burn-in",
            "8",
        ],
        2,
        "--burn-in sets how the run draws its samples: it needs a RUN_DIR and no --samples",
    );
}

#[test]
fn score_refuses_what_it_cannot_score() {
    let tmp = tempfile::tempdir().unwrap();
    let gan = tmp.path().join("gan");
    train_tiny(tmp.path(), "gan-lorenz", &gan, 2, &[]);
    let nvp = tmp.path().join("nvp");
    train_tiny(tmp.path(), "realnvp-lorenz", &nvp, 2, &[]);
    let wrong = tmp.path().join("wrong.npy");
    neurogen_data::npy::write_f32(&wrong, &[2, 5, 20], &[0.0; 200]).unwrap();
    let fractional = tmp.path().join("fractional.npy");
    neurogen_data::npy::write_f32(&fractional, &[1, 6, 20], &[0.5; 120]).unwrap();
    let garbage = tmp.path().join("garbage.npy");
    std::fs::write(&garbage, b"not numpy at all").unwrap();
    let cases: &[(&Path, &Path, &[&str])] = &[
        (&gan, &wrong, &["gan", "no likelihood"]),
        (
            &nvp,
            &wrong,
            &["wrong.npy", "[5 channels × 20 samples]", "[6 × 20]"],
        ),
        (&nvp, &fractional, &["fractional.npy", "spike counts"]),
        (&nvp, &garbage, &["garbage.npy", "magic"]),
    ];
    for (run, data, fragments) in cases {
        let r = neurogen(
            tmp.path(),
            &["score", run.to_str().unwrap(), data.to_str().unwrap()],
        );
        assert_eq!(r.code, 2, "{}", r.stderr);
        for f in *fragments {
            assert!(r.stderr.contains(f), "missing {f:?} in {}", r.stderr);
        }
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    assert!(!nvp.join("scores.csv").exists(), "no partial output");
}
