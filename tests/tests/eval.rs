//! `neurogen eval` and `neurogen plot` through the real binary.

use std::path::Path;

mod common;

use common::{neurogen, ok, read_json, root};

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

fn train(cwd: &Path, config: &str, out: &Path, extra: &[&str]) {
    let cfg = root().join("configs").join(config);
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "ndarray",
    ];
    args.extend_from_slice(extra);
    ok(cwd, &args);
}

/// A minute of Kuramoto EEG in half-second windows: a few seconds of training.
const KURAMOTO_DATA: [&str; 6] = [
    "--set",
    "data.duration_s=60",
    "--set",
    "data.window=64",
    "--set",
    "data.stride=32",
];

fn metric(report: &serde_json::Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("report.json lacks {key}: {report}"))
}

#[test]
fn eval_judges_a_continuous_run_with_every_metric_and_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        "vae-kuramoto.toml",
        &run,
        &[
            &KURAMOTO_DATA[..],
            &[
                "--set",
                "model.hidden=[32]",
                "--set",
                "model.latent_dim=4",
                "--set",
                "train.steps=60",
                "--set",
                "train.batch_size=16",
                "--set",
                "train.valid_every=20",
                "--set",
                "train.checkpoint_every=20",
            ],
        ]
        .concat(),
    );
    let r = ok(
        tmp.path(),
        &["eval", run.to_str().unwrap(), "-n", "40", "-k", "4"],
    );
    assert!(r.stdout.contains("psd_db_distance"), "{}", r.stdout);
    let rep = read_json(&run.join("eval/report.json"));
    for key in [
        "psd_db_distance",
        "band_alpha_rel_error",
        "correlation_distance",
        "coherence_distance",
        "ks_mean",
        "acf_distance",
        "mmd2",
        "sliced_wasserstein",
        "neg_elbo",
        "neg_iwae_k4",
        "bits_per_dim",
        "latent_r2",
    ] {
        assert!(metric(&rep, key).is_finite(), "{key}");
    }
    let p = metric(&rep, "mmd_p_value");
    assert!(p > 0.0 && p <= 1.0, "{p}");
    let auc = metric(&rep, "c2st_auc");
    assert!((0.0..=1.0).contains(&auc), "{auc}");
    let mem = metric(&rep, "memorisation_ratio");
    assert!(mem > 0.0, "{mem}");
    // IWAE is a tighter bound than the ELBO.
    assert!(metric(&rep, "neg_iwae_k4") <= metric(&rep, "neg_elbo") + 1e-6);
    // Every sample metric has its real-vs-real floor beside it, and the table prints both.
    for key in [
        "psd_db_distance",
        "ks_mean",
        "mmd2",
        "mmd_p_value",
        "c2st_auc",
        "memorisation_ratio",
        "discriminative_score",
        "discriminative_auc",
    ] {
        let floor = metric(&rep, &format!("{key}_floor"));
        assert!(floor.is_finite(), "{key}_floor");
    }
    assert!(metric(&rep, "memorisation_ratio_floor") > 0.3);
    let d = metric(&rep, "discriminative_score");
    assert!((0.0..=0.5).contains(&d), "{d}");
    assert_eq!(rep["meta"]["discriminator"]["steps"], 400);
    assert!(r.stdout.contains("floor"), "{}", r.stdout);
    assert_eq!(rep["meta"]["model"], "vae");
    assert_eq!(rep["meta"]["n_samples"], 40);
    assert_eq!(rep["meta"]["kind"], "continuous");
    let figs = run.join("eval/figures");
    assert_eq!(
        png_size(&figs.join("traces.png")),
        (420 * 2 + 40, 120 * 8 + 60)
    );
    assert_eq!(png_size(&figs.join("psd.png")), (900, 520));
    assert_eq!(png_size(&figs.join("loss.png")), (900, 520));
    assert_eq!(png_size(&figs.join("latents.png")), (720, 640));
    assert!(!figs.join("raster.png").exists());

    // The same seed gives the same report; plot draws one figure on demand.
    let again = tmp.path().join("again");
    ok(
        tmp.path(),
        &[
            "eval",
            run.to_str().unwrap(),
            "-n",
            "40",
            "-k",
            "4",
            "-o",
            again.to_str().unwrap(),
            "-q",
        ],
    );
    let rep2 = read_json(&again.join("report.json"));
    assert_eq!(rep["psd_db_distance"], rep2["psd_db_distance"]);
    assert_eq!(rep["c2st_auc"], rep2["c2st_auc"]);
    let out = tmp.path().join("figs");
    ok(
        tmp.path(),
        &[
            "plot",
            run.to_str().unwrap(),
            "--figure",
            "loss",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(png_size(&out.join("loss.png")), (900, 520));
    let r = neurogen(
        tmp.path(),
        &["plot", run.to_str().unwrap(), "--figure", "raster"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--figure raster: draws spike counts"),
        "{}",
        r.stderr
    );
}

#[test]
fn eval_on_spikes_reports_spike_statistics_bits_per_spike_and_latent_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        "latent-ode-lorenz.toml",
        &run,
        &[
            "--set",
            "data.n_trials=60",
            "--set",
            "data.n_neurons=8",
            "--set",
            "data.n_bins=20",
            "--set",
            "model.latent_dim=3",
            "--set",
            "model.hidden=[16]",
            "--set",
            "model.rnn_hidden=16",
            "--set",
            "train.steps=20",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.valid_every=10",
            "--set",
            "train.checkpoint_every=10",
        ],
    );
    ok(
        tmp.path(),
        &["eval", run.to_str().unwrap(), "-n", "30", "-k", "2", "-q"],
    );
    let rep = read_json(&run.join("eval/report.json"));
    for key in [
        "rate_hz_samples",
        "rate_hz_reference",
        "rate_abs_error_hz",
        "fano_reference",
        "spike_correlation_distance",
        "synchrony_reference",
        "acf_distance",
        "bits_per_spike",
        "latent_r2",
        "c2st_auc",
    ] {
        assert!(metric(&rep, key).is_finite(), "{key}: {rep}");
    }
    assert!(
        rep.get("psd_db_distance").is_none(),
        "no spectra for spikes"
    );
    assert!(metric(&rep, "latent_r2") <= 1.0);
    let figs = run.join("eval/figures");
    let (w, _) = png_size(&figs.join("raster.png"));
    assert_eq!(w, 460 * 2);
    assert!(figs.join("latents.png").exists());
    assert!(!figs.join("psd.png").exists());
}

/// Writes `[n, 2, 256]` windows at 128 Hz: a sinusoid at `freq` with a per-window phase.
fn write_oscillation(path: &Path, n: usize, freq: f64, phase0: f64) {
    let mut v = Vec::new();
    for i in 0..n {
        for c in 0..2 {
            let phase = phase0 + 0.7 * i as f64 + 1.3 * c as f64;
            for k in 0..256 {
                let t = k as f64 / 128.0;
                let noise = ((i * 7919 + c * 104729 + k * 31) % 1000) as f64 / 1000.0 - 0.5;
                v.push(
                    (3.0 * (2.0 * std::f64::consts::PI * freq * t + phase).sin() + noise) as f32,
                );
            }
        }
    }
    neurogen_data::npy::write_f32(path, &[n, 2, 256], &v).unwrap();
}

#[test]
fn eval_compares_any_two_npy_files_and_plot_draws_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a.npy"),
        tmp.path().join("b.npy"),
        tmp.path().join("c.npy"),
    );
    write_oscillation(&a, 40, 10.0, 0.0);
    write_oscillation(&b, 40, 10.0, 0.3);
    write_oscillation(&c, 40, 21.0, 0.0);
    let out = tmp.path().join("same");
    let args = |s: &Path, r: &Path, o: &Path| {
        vec![
            "eval".to_string(),
            "--samples".into(),
            s.display().to_string(),
            "--against".into(),
            r.display().to_string(),
            "--sfreq".into(),
            "128".into(),
            "-o".into(),
            o.display().to_string(),
            "-q".into(),
        ]
    };
    let run = |v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ok(tmp.path(), &refs)
    };
    run(args(&a, &a, &out));
    let same = read_json(&out.join("report.json"));
    assert_eq!(metric(&same, "psd_db_distance"), 0.0);
    assert_eq!(metric(&same, "ks_mean"), 0.0);
    assert!(same.get("neg_elbo").is_none() && same.get("memorisation_ratio").is_none());
    let near = tmp.path().join("near");
    run(args(&a, &b, &near));
    let far = tmp.path().join("far");
    run(args(&a, &c, &far));
    let (near, far) = (
        read_json(&near.join("report.json")),
        read_json(&far.join("report.json")),
    );
    assert!(
        metric(&near, "psd_db_distance") < 0.01 && metric(&far, "psd_db_distance") > 2.0,
        "{near} {far}"
    );
    assert!(metric(&far, "c2st_auc") > 0.9, "{far}");
    assert!(metric(&far, "mmd_p_value") < 0.05, "{far}");
    assert!(tmp.path().join("far/figures/psd.png").exists());

    // plot on a file: beside it, named after it.
    ok(
        tmp.path(),
        &["plot", a.to_str().unwrap(), "--sfreq", "128", "-q"],
    );
    assert_eq!(
        png_size(&tmp.path().join("a-figures/traces.png")),
        (420 + 40, 120 * 2 + 60)
    );
    assert!(tmp.path().join("a-figures/psd.png").exists());
}

#[test]
fn copies_of_training_windows_are_flagged_as_memorised() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let model = [
        "--set",
        "model.hidden=[16]",
        "--set",
        "model.latent_dim=2",
        "--set",
        "train.steps=10",
        "--set",
        "train.checkpoint_every=10",
    ];
    train(
        tmp.path(),
        "vae-kuramoto.toml",
        &run,
        &[&KURAMOTO_DATA[..], &model].concat(),
    );
    // Every window of the same [data], then only the training ones as "samples".
    let cfg = root().join("configs/vae-kuramoto.toml");
    let all = tmp.path().join("all.npy");
    let mut args = vec![
        "data",
        cfg.to_str().unwrap(),
        "-o",
        all.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(&KURAMOTO_DATA);
    ok(tmp.path(), &args);
    let meta = read_json(&tmp.path().join("all.json"));
    let npy = common::read_npy(&all);
    let len = npy.shape[1] * npy.shape[2];
    let train_idx: Vec<usize> = meta["windows"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, w)| w["split"] == "train")
        .map(|(i, _)| i)
        .collect();
    let copies: Vec<f32> = train_idx
        .iter()
        .flat_map(|&i| npy.values[i * len..(i + 1) * len].iter().copied())
        .collect();
    let copies_path = tmp.path().join("copies.npy");
    neurogen_data::npy::write_f32(
        &copies_path,
        &[train_idx.len(), npy.shape[1], npy.shape[2]],
        &copies,
    )
    .unwrap();
    ok(
        tmp.path(),
        &[
            "eval",
            run.to_str().unwrap(),
            "--samples",
            copies_path.to_str().unwrap(),
            "-k",
            "2",
            "-q",
        ],
    );
    let rep = read_json(&run.join("eval/report.json"));
    assert!(metric(&rep, "memorisation_ratio") < 0.05, "{rep}");
    assert_eq!(rep["meta"]["samples"], copies_path.display().to_string());
}

#[test]
fn eval_and_plot_refuse_bad_input_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.npy");
    write_oscillation(&a, 4, 10.0, 0.0);
    let short = tmp.path().join("short.npy");
    neurogen_data::npy::write_f32(&short, &[3, 2, 100], &[0.5; 600]).unwrap();
    let broken = tmp.path().join("broken.npy");
    std::fs::copy(&a, &broken).unwrap();
    std::fs::write(tmp.path().join("broken.json"), "{ not json").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["eval"],
            "give a RUN_DIR, or --samples FILE.npy --against FILE.npy",
        ),
        (
            &["eval", "--samples", "a.npy"],
            "--against test needs a RUN_DIR",
        ),
        (
            &["eval", "--samples", "a.npy", "--against", "a.npy"],
            "a.npy: the sampling rate is unknown: pass --sfreq HZ",
        ),
        (
            &[
                "eval",
                "--samples",
                "a.npy",
                "--against",
                "short.npy",
                "--sfreq",
                "128",
            ],
            "samples are [2 channels × 256 samples] but the reference is [2 × 100]",
        ),
        (
            &[
                "eval",
                "--samples",
                "a.npy",
                "--against",
                "a.npy",
                "--sfreq",
                "128",
                "--kind",
                "counts",
            ],
            "a.npy: the windows should be spike counts (--kind counts), but the file holds values that are not non-negative integers",
        ),
        (
            &[
                "eval",
                "--samples",
                "a.csv",
                "--against",
                "a.npy",
                "--sfreq",
                "128",
            ],
            "a.csv: expected an .npy of windows [n, channels, time]",
        ),
        (&["eval", "nowhere"], "nowhere"),
        (
            &["plot", "missing.npy"],
            "missing.npy: no such run directory or file",
        ),
        (
            &["plot", "a.npy", "--sfreq", "128", "--figure", "loss"],
            "--figure loss: needs a run directory",
        ),
        (
            &["plot", "a.npy", "--sfreq=-5"],
            "--sfreq -5: must be a positive number of Hz",
        ),
    ];
    for (args, want) in cases {
        let r = neurogen(tmp.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("internal error"), "{}", r.stderr);
    }
    assert!(
        !tmp.path().join("eval").exists(),
        "a refused eval leaves no output"
    );
}
