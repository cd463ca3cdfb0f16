//! The `neurogen` command line.
//!
//! The one design decision of this crate: **it is the only place that knows which backend
//! runs**. [`device_for`] maps the configured [`Backend`] to a burn `Device`; every other crate
//! takes a `Device` and never names a backend. It is also the only crate that reads argv, prints
//! errors for people and picks exit codes: 0 on success, 2 for the user's input (usage, config,
//! data, run directory), 1 for anything else, never a panic backtrace.

mod bench;
mod commands;
mod eval;

use std::ffi::OsString;

use burn::tensor::{Device, DeviceKind};
use clap::Parser;
use neurogen_train::Backend;

pub use commands::Cli;

/// mimalloc keeps freed memory for reuse: burn allocates a fresh buffer for nearly every tensor
/// op (forward, backward, and burn's own Adam a dozen parameter-sized ones per step), and glibc's
/// malloc hands large buffers back to the kernel on free, so each one was paid again in page
/// faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad usage, config or input.
pub const EXIT_USAGE: i32 = 2;

/// Maps a backend to its burn device.
///
/// Also points `BURN_DEVICE` at it, so the places where burn falls back to its default device
/// (optimiser state loaded from a checkpoint) use the same backend instead of probing for a GPU.
#[allow(deprecated)] // burn-ndarray is deprecated upstream but is this project's default CPU backend.
pub fn device_for(backend: Backend) -> Device {
    std::env::set_var("BURN_DEVICE", backend.name());
    match backend {
        Backend::Ndarray => Device::ndarray(),
        Backend::Flex => Device::flex(),
        Backend::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
    }
}

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.verbose, cli.quiet);
    // A panic is a bug of ours: report it in one line, not as a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| on_worker_thread(|| commands::dispatch(&cli)));
    std::panic::set_hook(default_hook);
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("neurogen: error: {}", commands::describe(&e));
            commands::exit_code(&e)
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("neurogen: internal error: {msg}");
            if msg.contains("wgpu") || msg.contains("adapter") || msg.contains("Vulkan") {
                eprintln!("hint: the wgpu backend found no usable GPU adapter; install a Vulkan driver (e.g. Debian's mesa-vulkan-drivers) or use --backend ndarray");
            }
            1
        }
    }
}

/// Runs `f` on a thread of the compute pool rather than beside it.
///
/// The CPU backends split each large op over rayon's pool. Called from a thread outside the
/// pool, every such op parks the caller and wakes it again when the workers finish: two context
/// switches per op, which on the 2-core VM cost more than the second core gave (RealNVP training
/// ran faster on one thread than on two). On a pool thread the caller takes its own share of
/// the op and only the other workers are woken. The pool has `RAYON_NUM_THREADS` threads (rayon's
/// default: one per core), as the global pool would.
fn on_worker_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEUROGEN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "neurogen={level},neurogen_train={level},neurogen_data={level},neurogen_cli={level}"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
