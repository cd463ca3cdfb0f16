//! `neurogen bench` and `neurogen parity` through the real binary.

mod common;

use common::{neurogen, neurogen_env, ok, root, tiny_sets, wgpu_available};
use serde_json::Value;

/// WORKLOADS.md: every workload's batch and analytic FLOPs per step.
const REFERENCE: &[(&str, u64, u64)] = &[
    ("sgemm_2048", 2048, 17_179_869_184),
    ("vae", 128, 1_830_813_696),
    ("realnvp", 256, 1_107_296_256),
    ("realnvp_sample", 10_000, 14_417_920_000),
    ("realnvp_log_prob", 10_000, 14_417_920_000),
    ("gan", 64, 1_461_977_088),
    ("latent_ode", 64, 1_534_722_048),
    ("diffusion", 64, 3_435_134_976),
    ("diffusion_sample", 64, 57_252_249_600),
    ("wavenet", 16, 4_988_436_480),
    ("wavenet_sample", 16, 1_669_332_992),
];

#[test]
fn bench_writes_one_reference_line_per_workload_and_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results.jsonl");
    let r = ok(
        tmp.path(),
        &[
            "bench",
            "--workload",
            "all",
            "--backend",
            "ndarray,flex",
            "--threads",
            "1",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--repeats",
            "3",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), REFERENCE.len() * 2, "{lines:#?}");
    let mut i = 0;
    for (workload, batch, flops) in REFERENCE {
        for framework in ["burn-ndarray", "burn-flex"] {
            let v = lines[i].as_object().unwrap();
            i += 1;
            let mut keys: Vec<&str> = v.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "batch",
                    "device",
                    "flops_per_step",
                    "framework",
                    "params",
                    "peak_rss_mb",
                    "samples_per_s",
                    "steps_per_s",
                    "threads",
                    "workload"
                ],
                "exactly the documented fields"
            );
            assert_eq!(v["workload"], *workload);
            assert_eq!(v["framework"], framework);
            assert_eq!(v["device"], "cpu");
            assert_eq!(v["threads"], 1);
            assert_eq!(v["batch"].as_u64(), Some(*batch));
            assert_eq!(v["flops_per_step"].as_u64(), Some(*flops));
            let steps = v["steps_per_s"].as_f64().unwrap();
            let samples = v["samples_per_s"].as_f64().unwrap();
            assert!(steps > 0.0 && steps.is_finite(), "{v:?}");
            assert!(
                (samples - steps * *batch as f64).abs() <= 0.01 + 1e-3 * samples,
                "samples_per_s = steps_per_s × batch: {v:?}"
            );
            // A process that ran a model holds at least its weights.
            let params = v["params"].as_u64().unwrap();
            let rss = v["peak_rss_mb"].as_f64().unwrap();
            assert!(rss > (params * 4) as f64 / (1 << 20) as f64, "{v:?}");
            assert_eq!(params == 0, *workload == "sgemm_2048", "{v:?}");
        }
    }
    // With -o the table goes to stdout, after a progress line per row on stderr.
    assert!(r.stdout.contains("workload") && r.stdout.contains("GFLOP/s"));
    assert!(
        r.stdout.contains("latent_ode        burn-flex"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr.matches("steps/s,").count(),
        REFERENCE.len() * 2,
        "{}",
        r.stderr
    );
}

#[test]
fn bench_refuses_unknown_workloads_and_backends() {
    // Run where nothing else is, so "writes nothing" can be checked.
    let tmp = tempfile::tempdir().unwrap();
    let config = root().join("configs/vae-lorenz.toml").display().to_string();
    for (args, needle) in [
        (
            vec!["bench", "--workload", "vae,resnet"],
            "--workload resnet: no such workload; choose from all, sgemm_2048, vae",
        ),
        (
            vec!["bench", "--backend", "cuda"],
            "--backend cuda: no such backend; choose from ndarray, flex, wgpu",
        ),
        (
            vec!["bench", "--threads", "0"],
            "--threads: must be at least 1",
        ),
        (
            vec!["parity", config.as_str(), "--backends", "flex"],
            "--backends: name at least two backends",
        ),
    ] {
        let r = neurogen(tmp.path(), &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(
            tmp.path().read_dir().unwrap().next().is_none(),
            "{args:?} wrote into its working directory"
        );
    }
}

fn parity_args(config: &str, backends: &str, out: &std::path::Path) -> Vec<String> {
    let cfg = root().join("configs").join(format!("{config}.toml"));
    let mut args = vec![
        "parity".to_string(),
        cfg.display().to_string(),
        "--backends".into(),
        backends.into(),
        "--steps".into(),
        "10".into(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(tiny_sets(config, 10, &[]));
    args
}

fn report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn parity_holds_between_ndarray_and_flex_for_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        "vae-lorenz",
        "vae-kuramoto",
        "realnvp-kuramoto",
        "realnvp-lorenz",
        "latent-ode-lorenz",
        "latent-ode-kuramoto",
        "gan-kuramoto",
        "gan-lorenz",
        "diffusion-kuramoto",
        "diffusion-lorenz",
        "wavenet-kuramoto",
        "wavenet-lorenz",
        "vae-gan-kuramoto",
    ] {
        let out = tmp.path().join(format!("{config}.json"));
        let args = parity_args(config, "ndarray,flex", &out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = ok(tmp.path(), &args);
        let rep = report(&out);
        assert_eq!(rep["passed"], true, "{config}: {}", r.stderr);
        assert_eq!(rep["reference"], "ndarray");
        assert_eq!(rep["reference_curve"].as_array().unwrap().len(), 10);
        let b = &rep["backends"][0];
        assert_eq!(b["backend"], "flex");
        // Every trainable parameter was compared, and the two backends did differ in their
        // rounding somewhere (the comparison is not of a backend with itself).
        let grads = b["grads"].as_array().unwrap();
        assert!(grads.len() >= 4, "{config}: {grads:?}");
        let differs = |d: &Value| d["max_abs"].as_f64().unwrap() > 0.0;
        assert!(
            grads.iter().any(differs) || differs(&b["curve"]),
            "{config}: ndarray and flex agree to the last bit: {b:?}"
        );
        assert!(r.stderr.contains("flex vs ndarray: PASS"), "{}", r.stderr);
    }
}

#[test]
fn parity_fails_with_a_report_when_one_backend_has_other_weights() {
    let tmp = tempfile::tempdir().unwrap();
    for config in ["vae-lorenz", "gan-kuramoto"] {
        let out = tmp.path().join(format!("{config}.json"));
        let args = parity_args(config, "ndarray,flex", &out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = neurogen_env(
            tmp.path(),
            &args,
            &[("NEUROGEN_FAULT_PERTURB_BACKEND", "flex")],
        );
        assert_eq!(r.code, 1, "{config}: {}", r.stderr);
        assert!(
            r.stderr.contains("flex vs ndarray: FAIL")
                && r.stderr
                    .contains("neurogen: error: flex differs from ndarray: loss term")
                && r.stderr.contains("gradients of"),
            "{config}: {}",
            r.stderr
        );
        let rep = report(&out);
        assert_eq!(rep["passed"], false);
        let failures = rep["backends"][0]["failures"].as_array().unwrap();
        assert!(failures.len() >= 2, "{failures:?}");
    }
}

/// CPU against wgpu (a GPU, or Mesa's software Vulkan in CI with NEUROGEN_TEST_WGPU=1).
#[test]
fn parity_holds_between_flex_and_wgpu_on_a_small_config() {
    if !wgpu_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("wgpu.json");
    let args = parity_args("vae-lorenz", "flex,wgpu", &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok(tmp.path(), &args);
    let rep = report(&out);
    assert_eq!(rep["passed"], true, "{}", r.stderr);
    assert_eq!(rep["backends"][0]["backend"], "wgpu");
}

/// The binary runs with mimalloc's purge delay at one second (it starts itself again with the
/// setting, same process id), and a value the user set is kept.
#[cfg(target_os = "linux")]
#[test]
fn the_allocator_setting_is_applied_and_a_users_value_wins() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    for (theirs, want) in [(None, "1000"), (Some("7"), "7")] {
        let mut command = Command::new(common::binary());
        command
            .args([
                "bench",
                "--workload",
                "vae",
                "--backend",
                "flex",
                "--threads",
                "1",
            ])
            .args(["--warmup", "1", "--steps", "20", "--repeats", "1"])
            .current_dir(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match theirs {
            Some(v) => command.env("MIMALLOC_PURGE_DELAY", v),
            None => command.env_remove("MIMALLOC_PURGE_DELAY"),
        };
        let mut child = command.spawn().unwrap();
        let environ = format!("/proc/{}/environ", child.id());
        let mut seen = None;
        while child.try_wait().unwrap().is_none() {
            let vars = std::fs::read(&environ).unwrap_or_default();
            seen = vars
                .split(|&b| b == 0)
                .find_map(|v| v.strip_prefix(b"MIMALLOC_PURGE_DELAY="))
                .map(|v| String::from_utf8_lossy(v).into_owned());
            if seen.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(seen.as_deref(), Some(want), "user's value {theirs:?}");
    }
}
