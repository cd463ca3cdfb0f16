//! Models driven by exogenous inputs (`[data] inputs`) through the real binary: trained on
//! Lorenz spike trains whose even-numbered neurons fire exp(stim_gain) = 3× faster while a
//! stimulus pulse is on, a WaveNet's and a latent ODE's responses to a new stimulus follow it
//! as the simulator's truth says; and every way of getting inputs wrong fails with its message.

use std::path::Path;

mod common;

use common::{neurogen, ok, read_json, read_npy, root};

/// The stimulus-driven Lorenz data shrunk to seconds: 8 neurons × 40 bins, two 8-bin pulses.
const STIM_DATA: &[&str] = &[
    "data.n_trials=300",
    "data.n_neurons=8",
    "data.n_bins=40",
    "data.stim_bins=8",
    "train.batch_size=32",
    "train.valid_every=100",
    "train.checkpoint_every=100",
];

fn train(cwd: &Path, config: &str, out: &Path, sets: &[&str]) {
    let sets: Vec<&str> = STIM_DATA.iter().chain(sets).copied().collect();
    let mut args = common::train_args(config, out, &sets);
    args.push("-q".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(cwd, &args);
}

/// Writes a `[1, 40]` stimulus on over `on`.
fn stimulus(path: &Path, on: std::ops::Range<usize>) {
    let mut u = vec![0f32; 40];
    u[on].fill(1.0);
    neurogen_data::npy::write_f32(path, &[1, 40], &u).unwrap();
}

/// `-n 400` responses of `run` to `stim` from seed 0 (so two stimuli see the same latents and
/// noise), `[400, 8, 40]` counts.
fn respond(cwd: &Path, run: &Path, stim: &Path, out: &Path) -> Vec<f32> {
    ok(
        cwd,
        &[
            "sample",
            run.to_str().unwrap(),
            "--inputs",
            stim.to_str().unwrap(),
            "-n",
            "400",
            "-o",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    let npy = read_npy(out);
    assert_eq!(npy.shape, vec![400, 8, 40]);
    npy.values
}

/// Mean count over bins `on` of the even (driven) and odd (undriven) neurons.
fn rates(x: &[f32], on: std::ops::Range<usize>) -> (f64, f64) {
    let (mut even, mut odd) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        let (neuron, bin) = ((i / 40) % 8, i % 40);
        if on.contains(&bin) {
            if neuron % 2 == 0 {
                even += *v as f64;
            } else {
                odd += *v as f64;
            }
        }
    }
    (even, odd)
}

/// The response to a pulse over bins 10..18 divided by the response to no stimulus, over the
/// pulse, for driven and undriven neurons.
fn gains(cwd: &Path, run: &Path) -> (f64, f64) {
    let (pulse, none) = (cwd.join("pulse.npy"), cwd.join("none.npy"));
    stimulus(&pulse, 10..18);
    stimulus(&none, 0..0);
    let a = respond(cwd, run, &pulse, &cwd.join("a.npy"));
    let b = respond(cwd, run, &none, &cwd.join("b.npy"));
    let ((ae, ao), (be, bo)) = (rates(&a, 10..18), rates(&b, 10..18));
    (ae / be, ao / bo)
}

#[test]
fn a_driven_wavenet_responds_to_a_new_stimulus_as_the_simulator_says() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let run = cwd.join("wn");
    train(
        cwd,
        "wavenet-lorenz-stim",
        &run,
        &[
            "model.residual=16",
            "model.skip=16",
            "model.dilations=[1, 2, 4, 8]",
            "train.lr=3e-3",
            "train.steps=600",
        ],
    );
    // Truth: exp(ln 3) = 3 for driven neurons, 1 for the others.
    let (driven, undriven) = gains(cwd, &run);
    assert!((2.3..4.0).contains(&driven), "driven gain {driven}");
    assert!((0.8..1.25).contains(&undriven), "undriven gain {undriven}");

    // The inputs go beside the samples, named in the sidecar.
    let beside = read_npy(&cwd.join("a_inputs.npy"));
    assert_eq!(beside.shape, vec![400, 1, 40]);
    assert_eq!(
        &beside.values[..40],
        &read_npy(&cwd.join("pulse.npy")).values[..]
    );
    assert_eq!(
        read_json(&cwd.join("a.json"))["input_names"],
        serde_json::json!(["stim"])
    );
    // And `score` reads them back: the samples score, a file without them is refused.
    let r = run.to_str().unwrap();
    ok(cwd, &["score", r, "a.npy", "-o", "s.csv"]);
    let plain = cwd.join("plain.npy");
    std::fs::copy(cwd.join("a.npy"), &plain).unwrap();
    let out = neurogen(cwd, &["score", r, "plain.npy"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("driven by exogenous inputs (stim)"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(cwd.join("a_inputs.npy")).unwrap();
    let out = neurogen(cwd, &["score", r, "a.npy"]);
    assert!(
        out.code != 0 && out.stderr.contains("a_inputs.npy") && out.stderr.contains("missing"),
        "{}",
        out.stderr
    );

    // Without --inputs a driven run responds to its held-out windows' inputs, and says so.
    let o = ok(cwd, &["sample", r, "-n", "5", "-o", "held.npy"]);
    assert!(o.stderr.contains("held-out test windows"), "{}", o.stderr);
    assert_eq!(read_npy(&cwd.join("held_inputs.npy")).shape, vec![5, 1, 40]);
    // A stimulus of another length gives a response as long, one window per stimulus.
    let long = cwd.join("long.npy");
    neurogen_data::npy::write_f32(&long, &[3, 1, 90], &[1.0; 270]).unwrap();
    ok(cwd, &["sample", r, "--inputs", "long.npy", "-o", "l.npy"]);
    assert_eq!(read_npy(&cwd.join("l.npy")).shape, vec![3, 8, 90]);

    // Bad --inputs, each with its message.
    neurogen_data::npy::write_f32(&cwd.join("two.npy"), &[2, 40], &[0.0; 80]).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--inputs", "two.npy"],
            "expected [1, samples] or [n, 1, samples]",
        ),
        (&["--inputs", "long.npy", "-n", "4"], "holds 3 stimuli"),
        (
            &["--inputs", "pulse.npy", "--length", "50"],
            "40 samples long",
        ),
        (&["--length", "50"], "as long as their inputs"),
        (&["--inputs", "nothing.npy"], "nothing.npy"),
    ];
    for (args, want) in cases {
        let mut all = vec!["sample", r];
        all.extend_from_slice(args);
        let out = neurogen(cwd, &all);
        assert!(
            out.code != 0 && out.stderr.contains(want),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_driven_latent_ode_responds_to_a_new_stimulus() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let run = cwd.join("lo");
    train(
        cwd,
        "latent-ode-lorenz-stim",
        &run,
        &[
            "model.latent_dim=4",
            "model.rnn_hidden=32",
            "model.hidden=[64]",
            "train.kl_warmup_steps=100",
            "train.steps=800",
        ],
    );
    let (driven, undriven) = gains(cwd, &run);
    assert!((2.0..4.0).contains(&driven), "driven gain {driven}");
    assert!((0.8..1.25).contains(&undriven), "undriven gain {undriven}");
}

#[test]
fn inputs_are_refused_where_they_cannot_be_used() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let cfg = root().join("configs/vae-lorenz.toml");
    let cfg = cfg.to_str().unwrap();
    // A family that cannot be driven.
    let out = neurogen(
        cwd,
        &[
            "train",
            cfg,
            "--set",
            "data.stim_pulses=2",
            "--set",
            "data.inputs=[\"stim\"]",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    for want in [
        "data.inputs",
        "`vae`",
        "\"latent_ode\"",
        "\"autoregressive\"",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    // An input that is not a channel.
    let wn = root().join("configs/wavenet-lorenz-stim.toml");
    let out = neurogen(
        cwd,
        &[
            "train",
            wn.to_str().unwrap(),
            "--set",
            "data.inputs=[\"stimulus\"]",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("data.inputs") && out.stderr.contains("no channel \"stimulus\""),
        "{}",
        out.stderr
    );
    // --inputs to a run trained without inputs.
    let run = cwd.join("vae");
    let args = common::tiny_train_args("vae-lorenz", &run, 2, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(cwd, &args);
    neurogen_data::npy::write_f32(&cwd.join("u.npy"), &[1, 20], &[0.0; 20]).unwrap();
    let out = neurogen(cwd, &["sample", run.to_str().unwrap(), "--inputs", "u.npy"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("trained without exogenous inputs"),
        "{}",
        out.stderr
    );
}
